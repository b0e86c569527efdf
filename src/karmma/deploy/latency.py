"""Latency of the deployed student on this machine: eager PyTorch vs ONNX Runtime, per subset.

For a preset and its student (random weights: latency does not depend on
them), batch 1: eager PyTorch (only available extractors run), the single
ONNX graph (every extractor runs) and the split ONNX graphs (only available
extractors run), per modality subset; plus the pre-processing of one clip
from a real video file (decode, RGB transforms, flow, spectrogram), as its own
columns, so the real bottleneck is visible.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from karmma.artifacts import ModelInfo
from karmma.availability import availability_for_subset
from karmma.benchmark import measure_latency
from karmma.data.recipe import PrepareSettings
from karmma.data.synth import SAMPLE_RATE, write_mp4
from karmma.deploy.onnx_export import export_onnx, export_split_onnx
from karmma.deploy.preprocess import Preprocessor
from karmma.deploy.runtime import OnnxRunner, SplitOnnxRunner, TorchRunner
from karmma.modalities import IMAGE_MODALITIES, all_subsets, subset_name
from karmma.presets import EPIC_HEADS, SSV2_HEADS, build_student, get_preset
from karmma.train_config import TrainConfig

CPU = torch.device("cpu")


def _random_student(preset_name: str, modalities: Sequence[str]):
    from dataclasses import asdict

    heads = SSV2_HEADS if "D" in modalities and "A" not in modalities else EPIC_HEADS
    torch.manual_seed(0)
    model = build_student(get_preset(preset_name), heads, modalities).eval()
    config = asdict(TrainConfig(preset=preset_name, modalities=list(modalities)))
    shapes = {k: tuple(model.specs[k].input_shape) for k in model.modalities}
    size = next((s[-1] for k, s in shapes.items() if k in IMAGE_MODALITIES), 224)
    # as if trained on frames prepared with DIS flow at the input size (256 px for 224-px inputs)
    recipe = PrepareSettings(flow="dis", short_side=256 if size >= 224 else size)
    return model, ModelInfo(config, heads, shapes, preparation=recipe)


def synthetic_video(path: Path, seconds: float, short_side: int, fps: int = 30) -> Path:
    """A smooth moving test pattern with a tone, 16:9 at ``short_side`` (H.264 + AAC, as SynthKitchen's videos)."""
    height, width = short_side, (short_side * 16 // 9) // 2 * 2
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.stack(
        [
            np.stack(
                [
                    128 + 100 * np.sin((x + 40 * phase) / 17),
                    128 + 100 * np.cos((y - 25 * phase) / 13),
                    128 + 100 * np.sin((x + y) / 29 + phase),
                ],
                axis=-1,
            ).astype(np.uint8)
            for phase in [i / fps for i in range(int(seconds * fps))]
        ]
    )
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE)).astype(np.float32)
    write_mp4(path, frames, fps, tone)
    return path


#: the pre-processing step that builds each modality's input from decoded frames or samples
MODALITY_STEPS = {"rgb": "V", "flow": "F", "spectrogram": "A"}


def preprocessing_latency(pre: Preprocessor, video: Path, clip_seconds: float, repeats: int) -> dict[str, float]:
    """Median ms per clip of ``clip_seconds``: decoding it, and building each modality's input."""
    from karmma.data.video import iter_frames

    def decode():
        frames = []
        for image, rate, _ in iter_frames(video, pre.fps, pre.short_side, threads=0):
            frames.append(image)
            if len(frames) >= clip_seconds * rate:
                return frames, rate
        return frames, rate

    frames, rate = decode()
    audio = np.random.default_rng(0).standard_normal(int((clip_seconds + 1) * pre.sample_rate)).astype(np.float32) * 0.1
    numbers = pre.frame_numbers(1, len(frames))
    steps = {
        "decode": decode,
        "rgb": lambda: pre.video(frames, numbers),
        "flow": lambda: pre.flow(frames, numbers),
        "spectrogram": lambda: pre.audio(audio, 0.0, clip_seconds),
    }
    # only the steps of the modalities the model takes: a V+A student has no flow input to build
    steps = {name: step for name, step in steps.items() if name == "decode" or MODALITY_STEPS[name] in pre.input_shapes}
    result = {name: measure_latency(step, repeats, 1, CPU) for name, step in steps.items()}
    result["frames_decoded"] = len(frames)
    result["frame_size"] = list(frames[0].shape[:2])
    return result


def benchmark_student_latency(
    preset_name: str,
    modalities: Sequence[str],
    repeats: int,
    warmup: int,
    video: Path | None = None,
    clip_seconds: float = 2.0,
    workdir: Path | None = None,
    log=print,
) -> dict:
    """Latency table of one preset (see the module docstring)."""
    model, info = _random_student(preset_name, modalities)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        single = OnnxRunner(export_onnx(model, info, tmp / "student.onnx"))
        split = SplitOnnxRunner(export_split_onnx(model, info, tmp / "split"))
        export_seconds = time.perf_counter() - start
        log(f"{preset_name}: exported both ONNX forms in {export_seconds:.0f} s")
        eager = TorchRunner(model, info)
        pre = Preprocessor.for_student(info)
        if video is None:
            video = synthetic_video(tmp / "clip.mp4", clip_seconds + 0.5, pre.short_side)
        preprocessing = preprocessing_latency(pre, video, clip_seconds, max(repeats, 3))
        log(
            f"{preset_name}: pre-processing "
            + ", ".join(f"{k} {v:.1f} ms" for k, v in preprocessing.items() if isinstance(v, float))
        )
        subsets = {}
        example = model.example_inputs(1)
        for subset in all_subsets(list(model.modalities)):
            mask = availability_for_subset(subset, model.modalities)
            inputs = {k: example[k] for k in subset}
            row = {
                name: measure_latency(lambda r=runner: r.logits(inputs, mask), repeats, warmup, CPU)
                for name, runner in (("eager_ms", eager), ("onnx_ms", single), ("onnx_split_ms", split))
            }
            row["speedup_onnx"] = row["eager_ms"] / row["onnx_ms"]
            row["speedup_onnx_split"] = row["eager_ms"] / row["onnx_split_ms"]
            row["preprocess_ms"] = subset_preprocessing_ms(preprocessing, subset)
            subsets[subset_name(subset)] = row
            log(f"{preset_name} {subset_name(subset):8s} " + "  ".join(f"{k} {v:.2f}" for k, v in row.items()))
    return {
        "preset": preset_name,
        "modalities": list(model.modalities),
        "export_seconds": round(export_seconds, 1),
        **_measured_with(repeats, warmup, video, clip_seconds, pre, preprocessing),
        "subsets": subsets,
    }


def _measured_with(
    repeats: int, warmup: int, video: Path, clip_seconds: float, pre: Preprocessor, preprocessing: dict
) -> dict:
    """How a latency table was measured: runs, threads, the clip and its pre-processing."""
    return {
        "repeats": repeats,
        "warmup": warmup,
        "threads": torch.get_num_threads(),
        "video": str(video) if video else "synthetic",
        "clip_seconds": clip_seconds,
        "short_side": pre.short_side,
        "flow": pre.recipe.flow,
        "preprocessing_ms": preprocessing,
    }


def subset_preprocessing_ms(preprocessing: dict, subset) -> float:
    """Pre-processing time of one clip for ``subset``: decoding plus each present modality's step."""
    return preprocessing["decode"] + sum(preprocessing[step] for step, key in MODALITY_STEPS.items() if key in subset)


def benchmark_export(
    path: Path,
    repeats: int,
    warmup: int,
    video: Path | None = None,
    clip_seconds: float = 2.0,
    workdir: Path | None = None,
    log=print,
) -> dict:
    """Latency of an existing export (``.onnx``, a split-ONNX folder, ``.safetensors`` / ``.ckpt`` or a run
    folder) on every subset of its modalities, with its own pre-processing; the ``model_ms`` column."""
    from karmma.deploy.runtime import open_runner

    runner = open_runner(path)
    info = runner.info
    pre = Preprocessor.for_student(info)
    rng = np.random.default_rng(0)
    example = {k: rng.standard_normal((1, *shape)).astype(np.float32) for k, shape in info.input_shapes.items()}
    subsets = {}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        if video is None:
            video = synthetic_video(Path(tmp) / "clip.mp4", clip_seconds + 0.5, pre.short_side)
        preprocessing = preprocessing_latency(pre, video, clip_seconds, max(repeats, 3))
    for subset in all_subsets(list(info.modalities)):
        mask = availability_for_subset(subset, info.modalities)
        inputs = {k: example[k] for k in subset}
        row = {"model_ms": measure_latency(lambda: runner.logits(inputs, mask), repeats, warmup, CPU)}
        row["preprocess_ms"] = subset_preprocessing_ms(preprocessing, subset)
        subsets[subset_name(subset)] = row
        log(f"{path} {subset_name(subset):8s} " + "  ".join(f"{k} {v:.2f}" for k, v in row.items()))
    return {
        "model": str(path),
        "backend": type(runner).__name__,
        "modalities": list(info.modalities),
        **_measured_with(repeats, warmup, video, clip_seconds, pre, preprocessing),
        "subsets": subsets,
    }


def format_table(result: dict) -> str:
    """A markdown table of :func:`benchmark_student_latency`'s result."""
    pre = result["preprocessing_ms"]
    if "model" in result:  # an existing export (benchmark_export)
        lines = [
            f"{result['model']} ({result['backend']}), batch 1, {result['threads']} threads, median of {result['repeats']} run(s)",
            "",
            "| subset | model ms | pre-processing ms |",
            "|---|---:|---:|",
        ]
        lines += [
            f"| {name} | {row['model_ms']:.1f} | {row['preprocess_ms']:.1f} |"
            for name, row in result["subsets"].items()
        ]
        return "\n".join(lines)
    lines = [
        f"preset {result['preset']}, batch 1, {result['threads']} threads, median of {result['repeats']} run(s); "
        f"pre-processing of a {result['clip_seconds']} s clip ({pre['frames_decoded']} frames at {pre['frame_size'][0]}x{pre['frame_size'][1]}): "
        f"decode {pre['decode']:.1f} ms, RGB {pre['rgb']:.1f} ms, flow ({result['flow']}) {pre['flow']:.1f} ms, "
        f"spectrogram {pre['spectrogram']:.1f} ms",
        "",
        "| subset | eager ms | ONNX ms | split ONNX ms | ONNX speed-up | split speed-up | pre-processing ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in result["subsets"].items():
        lines.append(
            f"| {name} | {row['eager_ms']:.1f} | {row['onnx_ms']:.1f} | {row['onnx_split_ms']:.1f} | "
            f"{row['speedup_onnx']:.2f}x | {row['speedup_onnx_split']:.2f}x | {row['preprocess_ms']:.1f} |"
        )
    return "\n".join(lines)
