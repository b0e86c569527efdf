"""Check the light install (`make test-light`): `karmma predict` on ONNX exports without torch.

    .venv/bin/python scripts/light_install_check.py .venv-light [--work DIR]

Run with the full install's Python. It checks that the light venv cannot import
torch or Lightning, makes a tiny random-weight student (exported as one ONNX
graph, as a split-ONNX folder and as safetensors) and a 3 s MP4 with audio,
then runs `karmma predict EXPORT CLIP --json` in the light venv (both ONNX
forms) and in the full one (the single graph, and the safetensors on eager
PyTorch). Every run must give the same modalities, the same top action and
the same probabilities (within 1e-4: ONNX Runtime against PyTorch). It also
writes a ROS 2 bag of the clip (JPEG frames, 16 kHz audio; the [ros] extra)
and compares the light venv's per-window predictions on it with the full
install's. Exit 1 with one line per failure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path

import numpy as np

TOLERANCE = 1e-4  # probabilities: ONNX Runtime vs PyTorch differ by ~1e-7 (tests/deploy/test_onnx_parity.py)


def make_student(out: Path) -> dict[str, Path]:
    """A tiny V/F/A student with random weights (seed 0) and its three exports."""
    import torch

    from karmma.artifacts import ModelInfo, save_student
    from karmma.data.recipe import PrepareSettings
    from karmma.deploy.onnx_export import export_onnx, export_split_onnx
    from karmma.stages import build_stage_model
    from karmma.train_config import TrainConfig

    config = TrainConfig(stage="student", preset="tiny")
    heads = {"verb": 4, "noun": 6}
    torch.manual_seed(0)
    model = build_stage_model(config, heads).eval()
    info = ModelInfo(
        config=asdict(config),
        heads=heads,
        input_shapes={k: tuple(model.specs[k].input_shape) for k in model.modalities},
        classes={"verb": ["take", "put", "open", "close"], "noun": ["cup", "plate", "knife", "door", "tap", "pan"]},
        preparation=PrepareSettings(flow="dis", short_side=64),
    )
    return {
        "onnx": export_onnx(model, info, out / "student.onnx"),
        "split": export_split_onnx(model, info, out / "student-onnx"),
        "safetensors": save_student(model, info, out / "student.safetensors"),
    }


def make_clip(path: Path, seconds: float = 3.0, fps: int = 24) -> Path:
    """An MP4 (H.264, 128 x 96) of a bright square moving over noise, with a 24 kHz AAC tone."""
    import av

    rng = np.random.default_rng(0)
    background = rng.integers(0, 120, (96, 128, 3), dtype=np.uint8)
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 128, 96, "yuv420p"
        sound = container.add_stream("aac", rate=24000)
        sound.layout = "mono"
        for i in range(int(seconds * fps)):
            image = background.copy()
            x = 10 + 2 * i
            image[30:60, x % 100 : x % 100 + 24] = (230, 200, 40)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        tone = (0.3 * np.sin(np.arange(int(24000 * seconds)) * 0.05)).astype(np.float32)
        for start in range(0, len(tone), 1024):
            chunk = av.AudioFrame.from_ndarray(tone[start : start + 1024][None], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = 24000, start, Fraction(1, 24000)
            for packet in sound.encode(chunk):
                container.mux(packet)
        for packet in sound.encode():
            container.mux(packet)
    return path


def make_bag(clip: Path, out: Path) -> Path:
    """A ROS 2 bag (mcap) of ``clip``: its frames as JPEG CompressedImages, its audio as 16 kHz S16LE
    AudioDataStamped chunks of 0.1 s, and an AudioInfo topic saying so."""
    import cv2
    from rosbags.rosbag2 import StoragePlugin, Writer

    from karmma.data.video import iter_audio, iter_video_frames
    from karmma.deploy.rosbag import typestore

    store = typestore()
    types = store.types

    def header(ns: int):
        stamp = types["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9)
        return types["std_msgs/msg/Header"](stamp=stamp, frame_id="")

    messages = [("/audio/audio_info", 0, types["audio_common_msgs/msg/AudioInfo"](1, 16000, "S16LE", 256000, "wave"))]
    for frame in iter_video_frames(clip, threads=0):
        ns = round(frame.time * 1e9)
        jpeg = cv2.imencode(".jpg", np.ascontiguousarray(frame.image[..., ::-1]))[1].reshape(-1)
        messages.append(
            ("/camera/image/compressed", ns, types["sensor_msgs/msg/CompressedImage"](header(ns), "jpeg", jpeg))
        )
    pcm = (np.clip(np.concatenate(list(iter_audio(clip, 16000))), -1, 1) * 32767).astype("<i2")
    for first in range(0, len(pcm), 1600):
        ns = first * 62_500  # 1e9 / 16000
        chunk = types["audio_common_msgs/msg/AudioData"](np.frombuffer(pcm[first : first + 1600].tobytes(), np.uint8))
        messages.append(("/audio/audio", ns, types["audio_common_msgs/msg/AudioDataStamped"](header(ns), chunk)))
    with Writer(out, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {}
        for topic, ns, message in sorted(messages, key=lambda m: m[1]):
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, message.__msgtype__, typestore=store)
            writer.write(connections[topic], ns, store.serialize_cdr(message, message.__msgtype__))
    return out


BAG_TOPICS = ("--image-topic", "/camera/image/compressed", "--audio-topic", "/audio/audio", "--hop", "0.5")


def light_environment() -> dict[str, str]:
    """This process's environment without PYTHONPATH: the light venv runs its own installed copy."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def predict(karmma: Path, model: Path, clip: Path, env: dict[str, str] | None = None, options=()) -> list[dict]:
    """``karmma predict MODEL CLIP --json [options]`` with the given executable: its JSON lines, parsed."""
    done = subprocess.run(
        [str(karmma), "predict", str(model), str(clip), "--json", *options],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{karmma} predict {model.name} failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    return [json.loads(line) for line in done.stdout.splitlines()]


def differences(reference: dict, other: dict) -> list[str]:
    """What differs between two ``predict --json`` outputs beyond :data:`TOLERANCE`."""
    problems = []
    if other["modalities"] != reference["modalities"]:
        problems.append(f"modalities {other['modalities']} vs {reference['modalities']}")
    top = lambda p: {k: v for k, v in p["actions"][0].items() if k != "probability"}  # noqa: E731
    if top(other) != top(reference):
        problems.append(f"top action {top(other)} vs {top(reference)}")
    for head, ranked in reference["heads"].items():
        expected = {c["class"]: c["probability"] for c in ranked}
        got = {c["class"]: c["probability"] for c in other["heads"][head]}
        gap = max((abs(got.get(name, -1.0) - p) for name, p in expected.items()), default=0.0)
        if gap > TOLERANCE:
            problems.append(f"{head} probabilities differ by {gap:.2g} (> {TOLERANCE})")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("light_venv", type=Path, help="the light install's venv (pip install '.[ros]', no torch)")
    parser.add_argument("--work", type=Path, help="folder for the export and the clip (default: a temporary one)")
    args = parser.parse_args(argv)
    light_python, light_karmma = args.light_venv / "bin" / "python", args.light_venv / "bin" / "karmma"
    full_karmma = Path(sys.executable).with_name("karmma")
    failures = []
    for module in ("torch", "lightning"):
        done = subprocess.run(
            [str(light_python), "-c", f"import {module}"], capture_output=True, text=True, env=light_environment()
        )
        if done.returncode == 0 or "ModuleNotFoundError" not in done.stderr:
            failures.append(f"the light venv imports {module} (it must not be installed there)")
    with tempfile.TemporaryDirectory() as temporary:
        work = args.work or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        exports = make_student(work)
        clip = make_clip(work / "clip.mp4")
        reference = predict(full_karmma, exports["safetensors"], clip)[0]  # eager PyTorch, full install
        runs = {
            "full install, single ONNX graph": predict(full_karmma, exports["onnx"], clip)[0],
            "light install, single ONNX graph": predict(light_karmma, exports["onnx"], clip, light_environment())[0],
            "light install, split-ONNX folder": predict(light_karmma, exports["split"], clip, light_environment())[0],
        }
        for name, result in runs.items():
            failures += [f"{name} vs PyTorch: {problem}" for problem in differences(reference, result)]
        light = runs["light install, split-ONNX folder"]
        if light["backend"] != "onnx-split" or light["modalities"] != ["V", "F", "A"]:
            failures.append(f"light install: backend {light['backend']}, modalities {light['modalities']}")
        bag = make_bag(clip, work / "robot")  # the [ros] extra: a ROS 2 bag of the clip, window by window
        full_windows = predict(full_karmma, exports["safetensors"], bag, options=BAG_TOPICS)
        light_windows = predict(light_karmma, exports["split"], bag, light_environment(), BAG_TOPICS)
        if len(light_windows) != len(full_windows) or len(full_windows) < 2:
            failures.append(f"bag: {len(light_windows)} windows in the light install, {len(full_windows)} in the full")
        for full_window, light_window in zip(full_windows, light_windows):
            problems = differences(full_window, light_window)
            failures += [f"bag window {full_window['window']}, light vs full install: {p}" for p in problems]
        refused = subprocess.run(
            [str(light_karmma), "predict", str(exports["safetensors"]), str(clip)],
            capture_output=True,
            text=True,
            env=light_environment(),
        )
        if refused.returncode != 2 or "full install" not in refused.stderr:
            failures.append(f"light install on a .safetensors: exit {refused.returncode}, {refused.stderr.strip()!r}")
    top = reference["actions"][0]
    print(
        f"light install: predict on both ONNX forms (and on a ROS 2 bag) matches the full install's "
        f"(top action {top['verb']} {top['noun']}, p={top['probability']:.4f}; probabilities within {TOLERANCE})"
        if not failures
        else "\n".join(failures)
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
