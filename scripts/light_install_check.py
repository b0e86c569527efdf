"""Check the light install (`make test-light`): `karmma predict` on ONNX exports without torch.

    .venv/bin/python scripts/light_install_check.py .venv-light [--work DIR]

Run with the full install's Python. It checks that the light venv cannot import
torch or Lightning, makes a tiny random-weight student (exported as one ONNX
graph, as a split-ONNX folder and as safetensors) and a 3 s MP4 with audio,
then runs `karmma predict EXPORT CLIP --json` in the light venv (both ONNX
forms) and in the full one (the single graph, and the safetensors on eager
PyTorch). Every run must give the same modalities, the same top action and
the same probabilities (within 1e-4: ONNX Runtime against PyTorch). Exit 1
with one line per failure.
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


def light_environment() -> dict[str, str]:
    """This process's environment without PYTHONPATH: the light venv runs its own installed copy."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def predict(karmma: Path, model: Path, clip: Path, env: dict[str, str] | None = None) -> dict:
    """``karmma predict MODEL CLIP --json`` with the given executable, parsed."""
    done = subprocess.run(
        [str(karmma), "predict", str(model), str(clip), "--json"], capture_output=True, text=True, timeout=300, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"{karmma} predict {model.name} failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    return json.loads(done.stdout)


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
    parser.add_argument("light_venv", type=Path, help="the light install's venv (pip install . without extras)")
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
        reference = predict(full_karmma, exports["safetensors"], clip)  # eager PyTorch, full install
        runs = {
            "full install, single ONNX graph": predict(full_karmma, exports["onnx"], clip),
            "light install, single ONNX graph": predict(light_karmma, exports["onnx"], clip, light_environment()),
            "light install, split-ONNX folder": predict(light_karmma, exports["split"], clip, light_environment()),
        }
        for name, result in runs.items():
            failures += [f"{name} vs PyTorch: {problem}" for problem in differences(reference, result)]
        light = runs["light install, split-ONNX folder"]
        if light["backend"] != "onnx-split" or light["modalities"] != ["V", "F", "A"]:
            failures.append(f"light install: backend {light['backend']}, modalities {light['modalities']}")
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
        f"light install: predict on both ONNX forms matches the full install's "
        f"(top action {top['verb']} {top['noun']}, p={top['probability']:.4f}; probabilities within {TOLERANCE})"
        if not failures
        else "\n".join(failures)
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
