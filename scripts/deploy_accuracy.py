"""Accuracy of ``Recognizer.predict_file`` on the validation segments of a SynthKitchen recording set,
and its agreement with the evaluation pipeline (ClipDataset centre view on the prepared data).

Usage: python scripts/deploy_accuracy.py MODEL RAW_FOLDER [--limit N]
(MODEL: .onnx / split folder / .safetensors / .ckpt whose data.root is the prepared form of RAW_FOLDER)
"""

import argparse
import csv
import json
from pathlib import Path

from karmma.data.annotations import parse_timestamp
from karmma.data.config import load_split
from karmma.data.dataset import ClipDataset, collate_clips
from karmma.data.transforms import finish_inputs
from karmma.deploy import Recognizer

parser = argparse.ArgumentParser()
parser.add_argument("model")
parser.add_argument("raw")
parser.add_argument("--limit", type=int, default=0)
args = parser.parse_args()

recognizer = Recognizer.load(args.model)
config = recognizer.info.train_config()
raw = Path(args.raw)
with (raw / "annotations" / "EPIC_100_validation.csv").open() as f:
    rows = list(csv.DictReader(f))[: args.limit or None]
dataset = ClipDataset(
    load_split(config.data, "validation"), recognizer.info.input_shapes, train=False, config=config.clip
)
by_id = {sample.id: i for i, sample in enumerate(dataset.samples)}
correct = {"verb": 0, "noun": 0, "action": 0}
pipeline_correct = dict(correct)
agree = 0
for row in rows:
    video = next(raw.rglob(f"{row['video_id']}.MP4"))
    p = recognizer.predict_file(
        video, start=parse_timestamp(row["start_timestamp"]), end=parse_timestamp(row["stop_timestamp"]), top_k=1
    )
    names = recognizer.info.classes
    truth = {"verb": names["verb"][int(row["verb_class"])], "noun": names["noun"][int(row["noun_class"])]}
    got = {"verb": p.heads["verb"][0][0], "noun": p.heads["noun"][0][0]}
    item = collate_clips([dataset[by_id[row["narration_id"]]]])
    logits = recognizer.runner.logits(finish_inputs(item), item["availability"])
    ref = {h: names[h][int(logits[h][0].argmax())] for h in ("verb", "noun")}
    for head in ("verb", "noun"):
        correct[head] += got[head] == truth[head]
        pipeline_correct[head] += ref[head] == truth[head]
    correct["action"] += got == truth
    pipeline_correct["action"] += ref == truth
    agree += got == ref
n = len(rows)
print(
    json.dumps(
        {
            "clips": n,
            "predict_top1": {k: round(100 * v / n, 1) for k, v in correct.items()},
            "pipeline_top1": {k: round(100 * v / n, 1) for k, v in pipeline_correct.items()},
            "predict_agrees_with_pipeline_percent": round(100 * agree / n, 1),
        },
        indent=1,
    )
)
