"""``karmma prepare``: raw videos -> the EPIC-KITCHENS media layout.

For every video under ``SRC`` (``.mp4 .MP4 .webm .mkv .avi .mov``):

* RGB frames, resized to a short side, at the video's rate or ``--fps``:
  ``OUT/P01/rgb_frames/P01_01/frame_0000000001.jpg``;
* optical flow between frames (TV-L1 as in the official data, or DIS, much
  faster), quantised to JPEGs in ``[-20, 20]`` px: ``.../flow_frames/P01_01/{u,v}/``.
  2018-style EPIC ids (``PXX_YY``) get flow at half the RGB rate, like the
  official data; everything else one flow frame per RGB frame;
* the audio track as 24 kHz mono 16-bit WAV: ``OUT/P01/audio/P01_01.wav``
  (no WAV when the video has no audio track).

Ids that do not look like ``P01_...`` go to ``OUT/<kind>/<id>`` (e.g. SSv2).
Annotation files (``*.csv``, ``*.json``) found under ``SRC`` are copied to
``OUT/annotations``; with ``--fps`` the frame numbers of EPIC-format CSVs are
recomputed from their timestamps and ``EPIC_100_video_info.csv`` is rewritten.

Each video is written into temporary folders renamed into place, then a
marker ``OUT/.prepared/<id>.json`` is written; a re-run skips videos with a
marker for the same settings and redoes half-written ones.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import shutil
import time
import wave
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from karmma.data.epic import flow_stride
from karmma.data.media import MediaError, decode_audio_track, encode_flow
from karmma.io import atomic_open, atomic_write_bytes, atomic_write_text
from karmma.parallel import process_pool

log = logging.getLogger("karmma.prepare")

VIDEO_SUFFIXES = {".mp4", ".webm", ".mkv", ".avi", ".mov"}
EPIC_ID = re.compile(r"(P\d+)_\d+")
AUDIO_RATE = 24000


@dataclass(frozen=True)
class PrepareSettings:
    flow: str = "tvl1"
    fps: float | None = None
    short_side: int = 256
    jpeg_quality: int = 90


def output_dirs(out: Path, video_id: str) -> dict[str, Path]:
    match = EPIC_ID.fullmatch(video_id)
    base = out / match.group(1) if match else out
    return {
        "rgb": base / "rgb_frames" / video_id,
        "flow": base / "flow_frames" / video_id,
        "audio": base / "audio" / f"{video_id}.wav",
    }


def find_videos(src: Path) -> list[Path]:
    videos = sorted(p for p in src.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    ids = [v.stem for v in videos]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"several videos share the id(s) {duplicates[:5]} under {src}")
    return videos


def flow_calculator(method: str):
    """An OpenCV optical-flow calculator: ``"tvl1"`` (TV-L1, as the official data) or ``"dis"`` (DIS, fast)."""
    import cv2

    if method == "tvl1":
        return cv2.optflow.DualTVL1OpticalFlow_create()
    if method == "dis":
        return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    raise ValueError(f"unknown flow method {method!r}; choose tvl1 or dis")


def resize_short_side(image: np.ndarray, short_side: int) -> np.ndarray:
    """Resize ``[H, W, C]`` so its short side is ``short_side`` (area filter when shrinking)."""
    import cv2

    h, w = image.shape[:2]
    scale = short_side / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def iter_frames(source, fps: float | None, short_side: int, threads: int = 1) -> Iterator[tuple[np.ndarray, float, tuple[int, int]]]:
    """Decode a video (path or binary file object, e.g. a pipe) frame by frame.

    Yields ``(rgb, rate, (width, height))``: the RGB frame ``[h, w, 3]`` uint8
    resized to ``short_side``, the frame rate (``fps``, or the video's when
    None; frames are dropped to resample) and the source size.
    """
    import av

    name = source if isinstance(source, (str, Path)) else getattr(source, "name", "<stream>")
    try:
        with av.open(str(source) if isinstance(source, (str, Path)) else source) as container:
            if not container.streams.video:
                raise MediaError(f"{name}: no video stream")
            stream = container.streams.video[0]
            stream.thread_count = threads
            native = float(stream.average_rate or stream.guessed_rate or 30)
            rate = fps or native
            next_time = 0.0
            for index, frame in enumerate(container.decode(video=0)):
                t = frame.time if frame.time is not None else index / native
                if fps is not None and t + 0.5 / native < next_time:
                    continue
                next_time += 1.0 / rate
                image = frame.to_ndarray(format="rgb24")
                yield resize_short_side(image, short_side), rate, (image.shape[1], image.shape[0])
    except av.FFmpegError as error:
        raise MediaError(f"{name}: undecodable video ({error})") from None


def _decode_frames(path: Path, fps: float | None, short_side: int) -> tuple[list[np.ndarray], float, tuple[int, int]]:
    """Decoded RGB frames resized to ``short_side``, resampled to ``fps`` (None: every frame).

    Returns the frames, their rate and the source ``(width, height)``."""
    decoded = list(iter_frames(path, fps, short_side))
    if not decoded:
        raise MediaError(f"{path}: no frames decoded")
    return [image for image, _, _ in decoded], decoded[0][1], decoded[0][2]


def _write_jpeg(path: Path, image: np.ndarray, quality: int) -> None:
    import cv2

    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise OSError(f"could not write {path}")


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def prepare_video(job: tuple[str, str, PrepareSettings]) -> dict:
    """Prepare one video; returns counts and seconds per step (or an error)."""
    import cv2

    cv2.setNumThreads(1)  # parallelism comes from the worker processes
    video, out, settings = Path(job[0]), Path(job[1]), job[2]
    video_id = video.stem
    dirs = output_dirs(out, video_id)
    marker = out / ".prepared" / f"{video_id}.json"
    if marker.is_file() and json.loads(marker.read_text()).get("settings") == asdict(settings):
        return {"video": video_id, "skipped": True}
    for target in list(dirs.values()) + [marker]:  # half-written or prepared with other settings
        _remove(target)
        _remove(target.with_name(target.name + ".partial"))
    timings = {"decode": 0.0, "rgb": 0.0, "flow": 0.0, "audio": 0.0}
    try:
        start = time.perf_counter()
        frames, rate, source_size = _decode_frames(video, settings.fps, settings.short_side)
        timings["decode"] = time.perf_counter() - start

        start = time.perf_counter()
        rgb_tmp = dirs["rgb"].with_name(dirs["rgb"].name + ".partial")
        rgb_tmp.mkdir(parents=True)
        for i, image in enumerate(frames, start=1):
            _write_jpeg(rgb_tmp / f"frame_{i:010d}.jpg", image, settings.jpeg_quality)
        timings["rgb"] = time.perf_counter() - start

        start = time.perf_counter()
        flow_tmp = dirs["flow"].with_name(dirs["flow"].name + ".partial")
        (flow_tmp / "u").mkdir(parents=True)
        (flow_tmp / "v").mkdir(parents=True)
        stride = flow_stride(video_id)
        calculator = flow_calculator(settings.flow)
        grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames[::stride]]
        for k in range(len(grey) - 1):
            u, v = encode_flow(calculator.calc(grey[k], grey[k + 1], None))
            _write_jpeg(flow_tmp / "u" / f"frame_{k + 1:010d}.jpg", u, settings.jpeg_quality)
            _write_jpeg(flow_tmp / "v" / f"frame_{k + 1:010d}.jpg", v, settings.jpeg_quality)
        timings["flow"] = time.perf_counter() - start

        start = time.perf_counter()
        audio_seconds = 0.0
        try:
            samples = decode_audio_track(video, AUDIO_RATE)
            audio_tmp = dirs["audio"].with_name(dirs["audio"].name + ".partial")
            audio_tmp.parent.mkdir(parents=True, exist_ok=True)
            _write_wav(audio_tmp, samples, AUDIO_RATE)
            audio_seconds = len(samples) / AUDIO_RATE
        except MediaError as error:
            log.info("%s", error)  # no audio track: the video simply has no A
            audio_tmp = None
        timings["audio"] = time.perf_counter() - start

        rgb_tmp.rename(dirs["rgb"])
        flow_tmp.rename(dirs["flow"])
        if audio_tmp is not None:
            os.replace(audio_tmp, dirs["audio"])
        h, w = frames[0].shape[:2]
        summary = {
            "video": video_id, "frames": len(frames), "flow_frames": max(len(grey) - 1, 0), "fps": rate,
            "width": w, "height": h, "source_width": source_size[0], "source_height": source_size[1],
            "audio_seconds": audio_seconds, "duration": len(frames) / rate,
            "timings": timings,
        }
        marker.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(marker, json.dumps({"settings": asdict(settings), "summary": summary}))
        return summary
    except (MediaError, OSError) as error:
        return {"video": video_id, "error": str(error)}


def _rewrite_epic_csv(src: Path, dst: Path, fps: float) -> None:
    from karmma.data.annotations import parse_timestamp

    with src.open(newline="") as f:
        rows = list(csv.DictReader(f))
        columns = list(rows[0].keys()) if rows else []
    with atomic_open(dst, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            start = int(parse_timestamp(row["start_timestamp"]) * fps) + 1
            stop = max(start, int(parse_timestamp(row["stop_timestamp"]) * fps) + 1)
            writer.writerow({**row, "start_frame": start, "stop_frame": stop})


def copy_annotations(src: Path, out: Path, settings: PrepareSettings, summaries: list[dict]) -> list[str]:
    target = out / "annotations"
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in sorted(p for p in src.rglob("*") if p.suffix.lower() in (".csv", ".json") and p.is_file()):
        if out in path.parents:
            continue
        dst = target / path.name
        header = path.open().readline() if path.suffix == ".csv" else ""
        if settings.fps and "start_timestamp" in header and "start_frame" in header:
            _rewrite_epic_csv(path, dst, settings.fps)
        elif path.name != "EPIC_100_video_info.csv" or not settings.fps:
            atomic_write_bytes(dst, path.read_bytes())
        copied.append(path.name)
    if settings.fps:
        with atomic_open(target / "EPIC_100_video_info.csv", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["video_id", "duration", "fps", "resolution"])
            for s in summaries:
                if "frames" in s:
                    writer.writerow([s["video"], f"{s['duration']:.3f}", s["fps"], f"{s['width']}x{s['height']}"])
    return copied


def write_video_info(path: Path, summaries: list[dict]) -> None:
    """``video_id,duration,fps,resolution,source_resolution`` of every prepared video."""
    with atomic_open(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video_id", "duration", "fps", "resolution", "source_resolution"])
        for s in sorted(summaries, key=lambda s: s["video"]):
            if "frames" in s:
                writer.writerow([s["video"], f"{s['duration']:.3f}", s["fps"], f"{s['width']}x{s['height']}",
                                 f"{s['source_width']}x{s['source_height']}"])


def prepare(src: str | Path, out: str | Path, settings: PrepareSettings = PrepareSettings(), workers: int = 2, progress: bool = True) -> dict:
    """Prepare every video under ``src`` into ``out``; returns a summary."""
    from tqdm import tqdm

    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise FileNotFoundError(f"source folder not found: {src}")
    flow_calculator(settings.flow)  # fail early on a bad method
    videos = find_videos(src)
    if not videos:
        raise FileNotFoundError(f"no videos ({', '.join(sorted(VIDEO_SUFFIXES))}) under {src}")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    jobs = [(str(v), str(out), settings) for v in videos]
    with process_pool(workers) as pool:
        summaries = list(tqdm(pool.map(prepare_video, jobs), total=len(jobs), desc="prepare", unit="video", disable=not progress))
    wall = time.perf_counter() - start
    # videos skipped this time still count in video_info: take their summaries from the markers
    full = []
    for s in summaries:
        if s.get("skipped"):
            full.append(json.loads((out / ".prepared" / f"{s['video']}.json").read_text())["summary"])
        else:
            full.append(s)
    copied = copy_annotations(src, out, settings, full)
    write_video_info(out / "video_info.csv", full)
    done = [s for s in summaries if "frames" in s]
    timings = {step: sum(s["timings"][step] for s in done) for step in ("decode", "rgb", "flow", "audio")}
    frames = sum(s["frames"] for s in done)
    return {
        "videos": len(videos),
        "prepared": len(done),
        "skipped": sum(1 for s in summaries if s.get("skipped")),
        "failed": {s["video"]: s["error"] for s in summaries if "error" in s},
        "without_audio": sum(1 for s in done if not s["audio_seconds"]),
        "frames": frames,
        "flow_frames": sum(s["flow_frames"] for s in done),
        "wall_seconds": round(wall, 2),
        "frames_per_second": round(frames / wall, 1) if wall and frames else 0.0,
        "step_seconds": {k: round(v, 2) for k, v in timings.items()},
        "dominant_step": max(timings, key=timings.get) if done else None,
        "annotations": copied,
        "settings": asdict(settings),
    }
