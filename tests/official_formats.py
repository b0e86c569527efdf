"""Small releases written in the exact published layouts, for the end-to-end dry run.

Annotation rows are real rows of ``shared/data`` (their narration / video ids,
participants and classes: 97 verbs, 300 nouns, 174 SSv2 actions); only their
times are moved into short synthetic recordings, so the media stay small. The
media are noise in the official formats:

* EPIC-KITCHENS-100: ``P01/rgb_frames/P01_01/frame_0000000001.jpg`` (1-based),
  ``P01/flow_frames/P01_01/{u,v}/...`` at half the RGB rate for the 2018
  videos (``PXX_YY``) and at the full rate for 2020 ones (``PXX_1YY``), audio
  as ``P01/audio/P01_01.wav`` for some videos and as datasets of one
  ``audio.hdf5`` for the others;
* Something-Something v2: ``<id>.webm`` clips, the labels / split JSON files
  and the four Something-Else box files ``bounding_box_smthsmth_part{1..4}.json``.

Pretrained weights: random tensors saved under the names karmma looks for
(the torchvision cache, and local files for the teacher), never downloaded.
"""

from __future__ import annotations

import csv
import json
import shutil
import wave
from pathlib import Path

import numpy as np
import torch
from PIL import Image

EPIC_VIDEOS = {  # video id -> (source CSV, split written): 2018 and 2020 recordings, one unseen participant
    "P01_01": ("EPIC_100_uda_source_train.csv", "train"),
    "P03_101": ("EPIC_100_uda_target_val.csv", "train"),
    "P01_11": ("EPIC_100_validation.csv", "validation"),
    "P18_01": ("EPIC_100_validation.csv", "validation"),
}
WAV_VIDEOS = ("P01_01", "P01_11")  # the others' audio is in audio.hdf5
SEGMENTS_PER_VIDEO = 5
EPIC_COPIED = (
    "EPIC_100_verb_classes.csv",
    "EPIC_100_noun_classes.csv",
    "EPIC_100_tail_verbs.csv",
    "EPIC_100_tail_nouns.csv",
    "EPIC_100_unseen_participant_ids_validation.csv",
)
FRAME_SIZE = (80, 45)  # 16:9 like the official 456 x 256 frames, smaller to stay fast
SSV2_BOX_PARTS = tuple(f"bounding_box_smthsmth_part{i}.json" for i in range(1, 5))


def _timestamp(seconds: float) -> str:
    minutes, s = divmod(seconds, 60)
    return f"00:{int(minutes):02d}:{s:06.3f}"


def _jpeg(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, quality=90)


def write_epic_release(root: Path, shared: Path, seed: int = 0) -> dict[str, list[str]]:
    """An EPIC-KITCHENS-100 release in the official layout; returns ``{split: narration ids}``."""
    rng = np.random.default_rng(seed)
    epic = shared / "epic-kitchens-100"
    annotations = root / "annotations"
    annotations.mkdir(parents=True)
    for name in EPIC_COPIED:
        shutil.copy(epic / name, annotations / name)
    with (epic / "EPIC_100_video_info.csv").open(newline="") as f:
        real_fps = {row["video_id"]: float(row["fps"]) for row in csv.DictReader(f)}

    rows = {"train": [], "validation": []}
    info = []
    for video_id, (source, split) in EPIC_VIDEOS.items():
        with (epic / source).open(newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames
            chosen = [row for row in reader if row["video_id"] == video_id][:SEGMENTS_PER_VIDEO]
        fps = real_fps[video_id]
        for k, row in enumerate(chosen):  # the real row, moved to second 0.1 + 0.5 k of a short recording
            start, stop = 0.1 + 0.5 * k, 0.5 + 0.5 * k
            row.update(
                narration_timestamp=_timestamp(start),
                start_timestamp=_timestamp(start),
                stop_timestamp=_timestamp(stop),
                start_frame=int(start * fps) + 1,
                stop_frame=int(stop * fps) + 1,
            )
            rows[split].append(row)
        duration = 0.7 + 0.5 * (len(chosen) - 1)
        frames = int(duration * fps)
        participant = video_id.split("_")[0]
        width, height = FRAME_SIZE
        for n in range(1, frames + 1):
            _jpeg(
                root / participant / "rgb_frames" / video_id / f"frame_{n:010d}.jpg",
                rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
            )
        stride = 2 if len(video_id.split("_")[1]) == 2 else 1  # 2018 videos: flow at half the RGB rate
        for n in range(1, (frames - 1) // stride + 1):
            for axis in ("u", "v"):
                _jpeg(
                    root / participant / "flow_frames" / video_id / axis / f"frame_{n:010d}.jpg",
                    rng.integers(100, 156, (height, width), dtype=np.uint8),
                )
        audio = (0.1 * rng.standard_normal(int(duration * 24000))).astype(np.float32)
        if video_id in WAV_VIDEOS:
            _write_wav(root / participant / "audio" / f"{video_id}.wav", audio)
        else:
            import h5py

            with h5py.File(root / "audio.hdf5", "a") as f:
                f.create_dataset(video_id, data=audio).attrs["sample_rate"] = 24000
        info.append([video_id, f"{duration:.3f}", fps, "1920x1080"])

    for split, split_rows in rows.items():
        with (annotations / f"EPIC_100_{split}.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows(split_rows)
    with (annotations / "EPIC_100_video_info.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["video_id", "duration", "fps", "resolution"], *info])
    return {split: [r["narration_id"] for r in split_rows] for split, split_rows in rows.items()}


def _write_wav(path: Path, samples: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(24000)
        f.writeframes((samples * 32767).astype("<i2").tobytes())


def write_epic_video(path: Path, seconds: float = 2.0, fps: int = 25) -> Path:
    """A raw MP4 with an audio track, for ``karmma predict``."""
    from karmma.data.synth import write_mp4

    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (int(seconds * fps), 72, 128, 3), dtype=np.uint8)
    write_mp4(path, frames, fps, (0.1 * rng.standard_normal(int(seconds * 24000))).astype(np.float32))
    return path


def write_ssv2_release(raw: Path, shared: Path, train: int = 10, validation: int = 6, seed: int = 0) -> dict:
    """Raw Something-Something v2: ``.webm`` clips, label/split JSON, four Something-Else parts.

    The last validation video has no boxes (as many SSv2 videos in Something-Else).
    Returns ``{"train": ids, "validation": ids, "boxed": ids with boxes}``.
    """
    from karmma.data.synth import write_mp4

    rng = np.random.default_rng(seed)
    ssv2 = shared / "something-something-v2"
    annotations = raw / "annotations"
    annotations.mkdir(parents=True)
    shutil.copy(ssv2 / "something-something-v2-labels.json", annotations)
    entries = json.loads((ssv2 / "something-something-v2-validation.json").read_text())[: train + validation]
    splits = {"train": entries[:train], "validation": entries[train:]}
    for split, split_entries in splits.items():
        (annotations / f"something-something-v2-{split}.json").write_text(json.dumps(split_entries))
    parts: list[dict] = [{} for _ in SSV2_BOX_PARTS]
    boxed = []
    width, height, fps = 96, 64, 12
    for i, entry in enumerate(entries):
        frames = rng.integers(0, 256, (24, height, width, 3), dtype=np.uint8)
        write_mp4(raw / "videos" / f"{entry['id']}.webm", frames, fps, None)
        if i == len(entries) - 1:
            continue
        boxed.append(entry["id"])
        annotation = []
        for number in range(1, len(frames) + 1):
            x, y = rng.uniform(0, width / 2), rng.uniform(0, height / 2)
            labels = [
                {
                    "box2d": {"x1": x, "y1": y, "x2": x + 20, "y2": y + 15},
                    "gt_annotation": "object 0",
                    "category": entry["placeholders"][0] if entry["placeholders"] else "thing",
                    "standard_category": "0000",
                },
                {
                    "box2d": {"x1": 0, "y1": 30, "x2": 25, "y2": 60},
                    "gt_annotation": "object hand",
                    "category": "hand",
                    "standard_category": "hand",
                },
            ]
            annotation.append(
                {
                    "name": f"{entry['id']}/{number:04d}.jpg",
                    "labels": labels,
                    "gt_placeholders": entry["placeholders"],
                    "nr_instances": len(labels),
                }
            )
        parts[i % len(parts)][entry["id"]] = annotation
    for name, part in zip(SSV2_BOX_PARTS, parts):
        (annotations / name).write_text(json.dumps(part))
    return {
        "train": [e["id"] for e in splits["train"]],
        "validation": [e["id"] for e in splits["validation"]],
        "boxed": boxed,
    }


def write_torchvision_cache(torch_home: Path) -> dict[str, Path]:
    """Random Swin3D-T (Kinetics-400) and ResNet-18 (ImageNet) weights where the torchvision
    cache under ``$TORCH_HOME`` keeps them (``hub/checkpoints/<file name of the weights' URL>``)."""
    from torchvision.models import ResNet18_Weights, resnet18
    from torchvision.models.video import Swin3D_T_Weights, swin3d_t

    written = {}
    for name, weights, build in (
        ("swin3d_t", Swin3D_T_Weights.KINETICS400_V1, swin3d_t),
        ("resnet18", ResNet18_Weights.IMAGENET1K_V1, resnet18),
    ):
        path = torch_home / "hub" / "checkpoints" / Path(weights.url).name
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(build().state_dict(), path)
        written[name] = path
    return written


def write_teacher_weights(folder: Path, modalities: tuple[str, ...], frames: int) -> dict[str, Path]:
    """Local weight files for the paper teacher's extractors: a random torchvision Swin3D-B for
    V, F and A (one file, inflated per modality) and a box-transformer state dict for D."""
    from torchvision.models.video import swin3d_b

    from karmma.presets import paper_preset

    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    swin = folder / "swin3d_b_random.pth"
    torch.save(swin3d_b().state_dict(), swin)
    for key in modalities:
        if key == "D":
            spec = paper_preset(frames=frames).teacher["D"]
            paths[key] = folder / "boxes_random.pth"
            torch.save(spec.build_extractor().state_dict(), paths[key])
        else:
            paths[key] = swin
    return paths
