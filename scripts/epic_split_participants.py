"""Hold out EPIC-KITCHENS participants to pre-train the teacher's extractors on (docs/epic.md).

The teacher's extractors must never fit the clips the teacher's fusion and the
students are trained on (docs/method.md). This splits EPIC_100_train.csv by
participant into

* EPIC_100_train_extractors.csv / EPIC_100_validation_extractors.csv: the held-out
  participants' segments (every 10th of their videos for validation), for the
  unimodal pre-training runs;
* EPIC_100_train_fusion.csv: every other participant, for the teacher, the
  students and the baselines.

    python scripts/epic_split_participants.py /data/epic100-prepared/annotations --fraction 0.15

Participants are taken in a seeded random order until ``--fraction`` of the
segments is held out; the same arguments always give the same files.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
from collections import Counter
from pathlib import Path


def _write(path: Path, header: list[str], rows: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def split(annotations: Path, fraction: float, seed: int) -> dict[str, list[str] | int]:
    source = annotations / "EPIC_100_train.csv"
    if not source.is_file():
        raise SystemExit(f"{source} not found: put the epic-kitchens-100-annotations CSVs in {annotations}")
    with open(source, newline="") as f:
        reader = csv.DictReader(f)
        header, rows = list(reader.fieldnames or []), list(reader)
    per_participant = Counter(r["participant_id"] for r in rows)
    order = sorted(per_participant)
    random.Random(seed).shuffle(order)
    held, count = [], 0
    for participant in order:
        if count >= fraction * len(rows):
            break
        held.append(participant)
        count += per_participant[participant]
    held_rows = [r for r in rows if r["participant_id"] in held]
    videos = sorted({r["video_id"] for r in held_rows})
    validation_videos = set(videos[::10])
    outputs = {
        "EPIC_100_train_extractors.csv": [r for r in held_rows if r["video_id"] not in validation_videos],
        "EPIC_100_validation_extractors.csv": [r for r in held_rows if r["video_id"] in validation_videos],
        "EPIC_100_train_fusion.csv": [r for r in rows if r["participant_id"] not in held],
    }
    for name, selected in outputs.items():
        _write(annotations / name, header, selected)
    return {"held_out_participants": sorted(held), **{name: len(selected) for name, selected in outputs.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("annotations", type=Path, help="folder with EPIC_100_train.csv (e.g. <prepared>/annotations)")
    parser.add_argument(
        "--fraction", type=float, default=0.15, help="share of training segments held out (default 0.15)"
    )
    parser.add_argument("--seed", type=int, default=0, help="order in which participants are held out (default 0)")
    args = parser.parse_args()
    for key, value in split(args.annotations, args.fraction, args.seed).items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
