"""``karmma prepare``: raw videos -> the EPIC-KITCHENS media layout.

For every video under ``SRC`` (``.mp4 .MP4 .webm .mkv .avi .mov``):

* RGB frames, upright (rotation metadata applied), resized to a short side, at the
  video's average rate or ``--fps``, placed by presentation time (frame ``n`` shows
  time ``(n - 1) / fps``: variable-frame-rate video is resampled by time):
  ``OUT/P01/rgb_frames/P01_01/frame_0000000001.jpg``;
* optical flow between frames (TV-L1 as in the official data, or DIS, much
  faster), quantised to JPEGs in ``[-20, 20]`` px: ``.../flow_frames/P01_01/{u,v}/``,
  between frames the recipe's flow stride apart (:mod:`karmma.data.recipe`: by
  default 2018-style EPIC ids ``PXX_YY`` get flow at half the RGB rate, like the
  official data, everything else one flow frame per RGB frame);
* the audio track as 24 kHz mono 16-bit WAV: ``OUT/P01/audio/P01_01.wav``
  (no WAV when the video has no audio track).

Ids that do not look like ``P01_...`` go to ``OUT/<kind>/<id>`` (e.g. SSv2).
Annotation files (``*.csv``, ``*.json``) found under ``SRC`` are copied to
``OUT/annotations``; with ``--fps`` the frame numbers of EPIC-format CSVs are
recomputed from their timestamps and ``EPIC_100_video_info.csv`` is rewritten.

Each video is streamed (decoded, written and its flow computed frame by frame:
memory does not grow with its length) into temporary folders renamed into
place, then a marker ``OUT/.prepared/<id>.json`` is written: the recipe
(:class:`~karmma.data.recipe.PrepareSettings`, every setting a model depends on)
and the video's summary, its flow stride included. A re-run skips videos with a
marker for the same recipe and redoes half-written ones. An
undecodable or truncated stream (video or audio) is a failed video, never a
shorter one; only a video without any audio stream is "without audio".
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
from pathlib import Path

import numpy as np

from karmma.data.media import MediaError, encode_flow
from karmma.data.recipe import PUBLISHED_EPIC, PrepareSettings, marker_path
from karmma.data.video import NoAudioTrack, flow_calculator, iter_audio, iter_video_frames, resize_short_side
from karmma.io import atomic_open, atomic_write_bytes, atomic_write_text
from karmma.parallel import process_pool

log = logging.getLogger("karmma.prepare")

VIDEO_SUFFIXES = {".mp4", ".webm", ".mkv", ".avi", ".mov"}
EPIC_ID = re.compile(r"(P\d+)_\d+")
AUDIO_RATE = 24000
JPEG_QUALITY = 90


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


def _write_jpeg(path: Path, image: np.ndarray, quality: int) -> None:
    import cv2

    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise OSError(f"could not write {path}")


class _WavWriter:
    """24 kHz mono 16-bit WAV written chunk by chunk (opened on the first chunk)."""

    def __init__(self, path: Path, rate: int):
        self.path, self.rate, self.samples, self._file = path, rate, 0, None

    def write(self, samples: np.ndarray) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = wave.open(str(self.path), "wb")
            self._file.setnchannels(1)
            self._file.setsampwidth(2)
            self._file.setframerate(self.rate)
        self._file.writeframes((np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes())
        self.samples += len(samples)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def prepare_video(job: tuple[str, str, PrepareSettings]) -> dict:
    """Prepare one video, streaming: each frame is decoded, written and its flow computed
    before the next is decoded (memory does not grow with the video's length). Returns
    counts and seconds per step, or an error (an undecodable or truncated stream)."""
    import cv2

    cv2.setNumThreads(1)  # parallelism comes from the worker processes
    video, out, settings = Path(job[0]), Path(job[1]), job[2]
    video_id = video.stem
    dirs = output_dirs(out, video_id)
    marker = marker_path(out, video_id)
    if marker.is_file() and _recorded_settings(marker) == settings:
        return {"video": video_id, "skipped": True}
    partial = {name: target.with_name(target.name + ".partial") for name, target in dirs.items()}
    for target in [*dirs.values(), *partial.values(), marker]:  # half-written or prepared with other settings
        _remove(target)
    timings = {"decode": 0.0, "rgb": 0.0, "flow": 0.0, "audio": 0.0}
    try:
        partial["rgb"].mkdir(parents=True)
        (partial["flow"] / "u").mkdir(parents=True)
        (partial["flow"] / "v").mkdir(parents=True)
        stride = None  # the recipe's, once the frame rate is known
        calculator = flow_calculator(settings.flow)
        count = flow_count = 0
        previous_grey = None
        rate, size, source_size = None, None, None
        frames = iter_video_frames(video, settings.fps)
        while True:
            start = time.perf_counter()
            frame = next(frames, None)
            timings["decode"] += time.perf_counter() - start
            if frame is None:
                break
            start = time.perf_counter()
            stride = stride or settings.stride(video_id, frame.rate)
            image = resize_short_side(frame.image, settings.short_side)
            count += 1
            _write_jpeg(partial["rgb"] / f"frame_{count:010d}.jpg", image, JPEG_QUALITY)
            rate, size, source_size = frame.rate, image.shape[:2], (frame.image.shape[1], frame.image.shape[0])
            timings["rgb"] += time.perf_counter() - start
            if (count - 1) % stride == 0:  # flow between every stride-th frame and the next such one
                start = time.perf_counter()
                grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
                if previous_grey is not None:
                    flow_count += 1
                    u, v = encode_flow(calculator.calc(previous_grey, grey, None), settings.flow_bound)
                    _write_jpeg(partial["flow"] / "u" / f"frame_{flow_count:010d}.jpg", u, JPEG_QUALITY)
                    _write_jpeg(partial["flow"] / "v" / f"frame_{flow_count:010d}.jpg", v, JPEG_QUALITY)
                previous_grey = grey
                timings["flow"] += time.perf_counter() - start
        if not count:
            raise MediaError(f"{video}: no frames decoded")

        start = time.perf_counter()
        wav = _WavWriter(partial["audio"], AUDIO_RATE)
        try:
            for chunk in iter_audio(video, AUDIO_RATE):
                wav.write(chunk)
        except NoAudioTrack as error:
            log.info("%s", error)  # no audio stream at all: the video simply has no A
        finally:
            wav.close()
        timings["audio"] = time.perf_counter() - start

        partial["rgb"].rename(dirs["rgb"])
        partial["flow"].rename(dirs["flow"])
        if wav.samples:
            os.replace(partial["audio"], dirs["audio"])
        h, w = size
        summary = {
            "video": video_id,
            "frames": count,
            "flow_frames": flow_count,
            "flow_stride": stride,
            "fps": rate,
            "width": w,
            "height": h,
            "source_width": source_size[0],
            "source_height": source_size[1],
            "audio_seconds": wav.samples / AUDIO_RATE,
            "duration": count / rate,
            "timings": timings,
        }
        atomic_write_text(marker, json.dumps({"settings": settings.to_record(), "summary": summary}))
        return summary
    except (MediaError, OSError) as error:
        for target in partial.values():  # a failed video leaves nothing half-written behind
            _remove(target)
        return {"video": video_id, "error": str(error)}


def _recorded_settings(marker: Path) -> PrepareSettings | None:
    """The recipe of a marker (None when it is half-written or unreadable: the video is redone)."""
    try:
        return PrepareSettings.from_record(json.loads(marker.read_text())["settings"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _rewrite_epic_csv(src: Path, dst: Path, fps: float) -> None:
    from karmma.data.annotations import row_timestamp

    with src.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = [(reader.line_num, row) for row in reader]
        columns = list(rows[0][1].keys()) if rows else []
    with atomic_open(dst, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for line, row in rows:
            start = int(row_timestamp(row, "start_timestamp", src, line) * fps) + 1
            stop = max(start, int(row_timestamp(row, "stop_timestamp", src, line) * fps) + 1)
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
                writer.writerow(
                    [
                        s["video"],
                        f"{s['duration']:.3f}",
                        s["fps"],
                        f"{s['width']}x{s['height']}",
                        f"{s['source_width']}x{s['source_height']}",
                    ]
                )


def prepare(
    src: str | Path,
    out: str | Path,
    settings: PrepareSettings = PUBLISHED_EPIC,
    workers: int = 2,
    progress: bool = True,
) -> dict:
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
        summaries = list(
            tqdm(pool.map(prepare_video, jobs), total=len(jobs), desc="prepare", unit="video", disable=not progress)
        )
    wall = time.perf_counter() - start
    # videos skipped this time still count in video_info: take their summaries from the markers
    full = []
    for s in summaries:
        if s.get("skipped"):
            full.append(json.loads(marker_path(out, s["video"]).read_text())["summary"])
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
        "settings": settings.to_record(),
    }
