"""How much of a moved object's shape survives in SynthKitchen's stored DIS flow (docs/evaluation.md,
"Session 16: what more compute and smaller clips give the extractors").

The information ceilings count the object's outline as seen by flow whenever the hand moves it
(every verb but *cut*). This probe asks how much of it the prepared flow keeps: a linear
classifier of the annotated noun's shape (round, tall, flat, long) from the clip's mean flow
magnitude (camera shake removed per frame), cropped around its peak, beside the verb, against the
verb alone. A linear probe is a lower bound on what a model could read; the gap to the verb alone
is what the outline adds. It first prints the moving blob's proportions (width over height at the
segment's frame of most motion) for each drawn shape on the *take* / *put* test clips: how much of
the outline reaches the flow at all.

    python scripts/flow_shape_probe.py DEMO_SEED_FOLDER     # e.g. karmma-demo/seed_0 (8 x 64 x 64 demo)

Trains on the pre-training recordings (train and validation) and the main recordings' train and
validation splits; scores on the main recordings' test split.
"""

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np
import torch

from karmma.data.recipe import read_recipe
from karmma.data.synth_world import NOUNS, VERBS
from karmma.data.views import flow_frame

SHAPES = ("round", "tall", "flat", "long")
SHAPE_OF = {noun.name: SHAPES.index(noun.shape) for noun in NOUNS}
VERB_NAMES = [verb.name for verb in VERBS]
HALF = 12  # the crop around the motion peak is 24 x 24 pixels of the 64-pixel flow


def segments(root: Path, part: str, split: str) -> list[dict]:
    with open(root / "recordings" / part / "annotations" / f"EPIC_100_{split}.csv", newline="") as f:
        return [{**row, "part": part} for row in csv.DictReader(f)]


def flow_image(folder: Path, component: str, number: int) -> np.ndarray:
    image = cv2.imread(str(folder / component / f"frame_{number:010d}.jpg"), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise FileNotFoundError(folder / component / f"frame_{number:010d}.jpg")
    return image.astype(np.float32) - 128  # quantised around 128


def segment_flow(root: Path, row: dict) -> tuple[Path, int, int, int]:
    """The segment's flow folder, its first and last flow frame numbers, and the flow stride in RGB frames."""
    prepared = root / "prepared" / row["part"]
    stride = read_recipe(prepared).stride(row["video_id"], None)  # the recipe karmma prepare recorded
    flow = prepared / row["participant_id"] / "flow_frames" / row["video_id"]
    count = len(list((flow / "u").iterdir()))
    first = flow_frame(int(row["start_frame"]), stride)
    return flow, first, min(count, flow_frame(int(row["stop_frame"]), stride)), stride


def mean_motion_crop(root: Path, row: dict) -> np.ndarray:
    """``[2 * HALF, 2 * HALF]`` mean flow magnitude over the segment, around its peak, scaled to 1."""
    flow, first, last, stride = segment_flow(root, row)
    magnitudes = []
    for number in range(first, last + 1, max(1, 2 // stride)):  # the flow of every other RGB frame
        u, v = flow_image(flow, "u", number), flow_image(flow, "v", number)
        u, v = u - np.median(u), v - np.median(v)  # camera shake moves the whole frame
        magnitudes.append(np.hypot(u, v))
    mean = np.mean(magnitudes, axis=0)
    y, x = np.unravel_index(np.argmax(cv2.GaussianBlur(mean, (0, 0), 3)), mean.shape)
    crop = np.pad(mean, HALF)[y : y + 2 * HALF, x : x + 2 * HALF]
    return crop / (crop.max() + 1e-6)


def blob_aspect(root: Path, row: dict) -> float:
    """Width over height (spread of x over spread of y) of the moving blob in the segment's flow frame
    of most motion, away from its first and last three frames; pixels above half the frame's peak
    magnitude, camera shake removed."""
    flow, first, last, _ = segment_flow(root, row)
    best, energy = None, -1.0
    for number in range(first + 3, last - 2):
        u, v = flow_image(flow, "u", number), flow_image(flow, "v", number)
        magnitude = np.hypot(u - np.median(u), v - np.median(v))
        top = np.sort(magnitude.ravel())[-100:].sum()
        if top > energy:
            best, energy = magnitude, top
    if best is None:
        return float("nan")
    ys, xs = np.nonzero(best > 0.5 * best.max())
    return float(xs.std() / (ys.std() + 1e-6))


def probe_data(root: Path, sets: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    rows = [row for part, split in sets for row in segments(root, part, split)]
    crops = np.stack([mean_motion_crop(root, row).ravel() for row in rows])
    shapes = torch.tensor([SHAPE_OF[row["noun"]] for row in rows])  # the annotated noun, as models are scored
    return torch.from_numpy(crops), shapes, [row["verb"] for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="one seed's demo folder: recordings/ and prepared/ in it")
    root = parser.parse_args().folder
    train = [("pretrain", "train"), ("pretrain", "validation"), ("main", "train"), ("main", "validation")]
    x_train, y_train, verbs_train = probe_data(root, train)
    x_test, y_test, verbs_test = probe_data(root, [("main", "test")])

    # the verb alone: the most frequent shape of each verb's training clips
    by_verb = {
        verb: int(np.bincount(y_train[[i for i, v in enumerate(verbs_train) if v == verb]], minlength=4).argmax())
        for verb in set(verbs_train)
    }
    verb_alone = torch.tensor([by_verb.get(verb, 0) for verb in verbs_test])

    def inputs(crops: torch.Tensor, verbs: list[str]) -> torch.Tensor:
        verb = torch.nn.functional.one_hot(torch.tensor([VERB_NAMES.index(v) for v in verbs]), len(VERB_NAMES))
        return torch.cat([(crops - mean) / std, 3 * verb.float()], dim=1)

    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    torch.manual_seed(0)
    probe = torch.nn.Linear(x_train.shape[1] + len(VERB_NAMES), len(SHAPES))
    optimizer = torch.optim.Adam(probe.parameters(), lr=0.01, weight_decay=0.01)
    features = inputs(x_train, verbs_train)
    for _ in range(300):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(probe(features), y_train).backward()
        optimizer.step()
    with torch.no_grad():
        predicted = probe(inputs(x_test, verbs_test)).argmax(1)

    def accuracy(guess: torch.Tensor, index: list[int] | None = None) -> float:
        index = torch.arange(len(y_test)) if index is None else torch.tensor(index)
        return 100 * (guess[index] == y_test[index]).float().mean().item()

    # how the outline reaches the flow: the moving blob's proportions for each drawn shape
    lifted = [row for row in segments(root, "main", "test") if row["verb"] in ("take", "put")]
    aspects: dict[str, list[float]] = {shape: [] for shape in SHAPES}
    for row in lifted:
        aspects[SHAPES[SHAPE_OF[row["noun"]]]].append(blob_aspect(root, row))
    print(f"moving blob's width / height in {len(lifted)} take / put test clips (median, by annotated shape):")
    print("  " + ", ".join(f"{shape} {np.nanmedian(a):.2f} ({len(a)})" for shape, a in aspects.items() if a))

    print(f"{len(y_train)} training clips, {len(y_test)} test clips; shape top-1 (%)")
    print(f"{'verb':8s} {'clips':>5s} {'flow + verb':>11s} {'verb alone':>10s}")
    for verb in [*VERB_NAMES, None]:
        index = [i for i, v in enumerate(verbs_test) if verb is None or v == verb]
        if index:
            name = verb or "all"
            print(f"{name:8s} {len(index):5d} {accuracy(predicted, index):11.1f} {accuracy(verb_alone, index):10.1f}")


if __name__ == "__main__":
    main()
