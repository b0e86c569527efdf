"""Generate EPIC-KITCHENS-100-layout media at the real frame size, for loader benchmarks.

Writes, for each video ``P01_101, P01_102, ...`` (2020-style ids: one flow frame per RGB frame):

```
OUT/P01/rgb_frames/P01_1xx/frame_%010d.jpg      456 x 256 RGB JPEGs (quality 90)
OUT/P01/flow_frames/P01_1xx/{u,v}/frame_%010d.jpg  456 x 256 grayscale quantised flow (one fewer)
OUT/P01/audio/P01_1xx.wav                       24 kHz mono 16-bit
OUT/annotations/EPIC_100_{train,verb_classes,noun_classes,video_info}.csv
```

The pictures are textured (a panning photo-like texture with moving blobs)
and the flow smooth, so file sizes and JPEG decode times are of the order of
the official release (the script prints the mean file sizes). Nothing here
is meant to be learnable.

Usage: python scripts/make_epic_frames.py OUT [--videos 3] [--frames 600] [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
import os
import wave
from pathlib import Path

import numpy as np
from PIL import Image

from karmma.data.annotations import EPIC_LABEL_COLUMNS, EPIC_TIMESTAMP_COLUMNS, epic_timestamp
from karmma.data.media import encode_flow
from karmma.io import atomic_open

WIDTH, HEIGHT, FPS, SAMPLE_RATE = 456, 256, 50.0, 24000


def _save(image: Image.Image, path: Path, **options) -> None:
    temporary = path.with_name(path.name + ".tmp")
    image.save(temporary, format="JPEG", **options)
    os.replace(temporary, path)


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int, channels: int) -> np.ndarray:
    """Noise of ``channels`` planes, smooth over about ``cell`` pixels, in [0, 1]."""
    coarse = rng.random((channels, height // cell + 2, width // cell + 2)).astype(np.float32)
    planes = [np.asarray(Image.fromarray(plane, "F").resize((width, height), Image.BICUBIC)) for plane in coarse]
    return np.clip(np.stack(planes, axis=-1), 0, 1)


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A photo-like RGB texture: broad colour regions plus mid and fine detail, uint8."""
    texture = 0.6 * _smooth_noise(rng, height, width, 64, 3) + 0.32 * _smooth_noise(rng, height, width, 8, 3)
    texture += 0.08 * rng.random((height, width, 1), dtype=np.float32)
    return (np.clip(texture, 0, 1) * 255).astype(np.uint8)


def make_video(out: Path, video_id: str, frames: int, rng: np.random.Generator) -> None:
    participant = video_id.split("_")[0]
    rgb_dir = out / participant / "rgb_frames" / video_id
    flow_dir = out / participant / "flow_frames" / video_id
    for folder in (rgb_dir, flow_dir / "u", flow_dir / "v", out / participant / "audio"):
        folder.mkdir(parents=True, exist_ok=True)
    texture = _texture(rng, HEIGHT + 2 * frames // 4 + 64, WIDTH + 2 * frames // 2 + 64)
    base_flow = (_smooth_noise(rng, HEIGHT, WIDTH, 48, 2) - 0.5) * 12.0  # about +-6 px
    for number in range(1, frames + 1):
        y, x = number // 4, number // 2  # a slow pan
        picture = texture[y : y + HEIGHT, x : x + WIDTH]
        _save(Image.fromarray(picture), rgb_dir / f"frame_{number:010d}.jpg", quality=90)
        if number < frames:  # one flow frame fewer than RGB frames
            flow = np.roll(base_flow, shift=(number % HEIGHT, (2 * number) % WIDTH), axis=(0, 1))
            u, v = encode_flow(flow)
            _save(Image.fromarray(u), flow_dir / "u" / f"frame_{number:010d}.jpg", quality=90)
            _save(Image.fromarray(v), flow_dir / "v" / f"frame_{number:010d}.jpg", quality=90)
    seconds = frames / FPS
    samples = (0.1 * rng.standard_normal(int(seconds * SAMPLE_RATE))).clip(-1, 1)
    wav = out / participant / "audio" / f"{video_id}.wav"
    with wave.open(str(wav) + ".tmp", "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(SAMPLE_RATE)
        f.writeframes((samples * 32767).astype("<i2").tobytes())
    os.replace(str(wav) + ".tmp", wav)


def write_annotations(out: Path, videos: list[str], frames: int, rng: np.random.Generator) -> int:
    """Segments of 1-4 s every 1.5 s of each video; returns their number."""
    folder = out / "annotations"
    folder.mkdir(parents=True, exist_ok=True)
    for name, count in (("verb", 97), ("noun", 300)):
        with atomic_open(folder / f"EPIC_100_{name}_classes.csv", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "key", "instances", "category"])
            writer.writerows([i, f"{name}{i}", f"['{name}{i}']", "none"] for i in range(count))
    with atomic_open(folder / "EPIC_100_video_info.csv", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video_id", "duration", "fps", "resolution"])
        writer.writerows([v, frames / FPS, FPS, "1920x1080"] for v in videos)
    rows = []
    for video in videos:
        start = 1
        while start + 50 < frames:
            stop = min(frames - 1, start + int(rng.integers(50, 200)))
            verb, noun = int(rng.integers(97)), int(rng.integers(300))
            rows.append(
                [
                    f"{video}_{len(rows)}",
                    video.split("_")[0],
                    video,
                    epic_timestamp(start / FPS),
                    epic_timestamp(start / FPS),
                    epic_timestamp(stop / FPS),
                    start,
                    stop,
                    f"verb{verb} noun{noun}",
                    f"verb{verb}",
                    verb,
                    f"noun{noun}",
                    noun,
                    f"['noun{noun}']",
                    f"[{noun}]",
                ]
            )
            start += 75
    with atomic_open(folder / "EPIC_100_train.csv", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*EPIC_TIMESTAMP_COLUMNS, *EPIC_LABEL_COLUMNS])
        writer.writerows(rows)
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--frames", type=int, default=600, help="RGB frames per video (at 50 fps)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out, rng = Path(args.out), np.random.default_rng(args.seed)
    videos = [f"P01_{101 + i}" for i in range(args.videos)]
    for video in videos:
        make_video(out, video, args.frames, rng)
    segments = write_annotations(out, videos, args.frames, rng)
    sizes = {
        kind: [p.stat().st_size for p in out.glob(f"P01/{pattern}")]
        for kind, pattern in (("rgb", "rgb_frames/*/*.jpg"), ("flow", "flow_frames/*/*/*.jpg"))
    }
    print(
        f"{len(videos)} videos x {args.frames} frames ({WIDTH}x{HEIGHT}), {segments} segments -> {out}; mean JPEG size: "
        + ", ".join(f"{k} {np.mean(v) / 1024:.1f} KiB" for k, v in sizes.items())
    )


if __name__ == "__main__":
    main()
