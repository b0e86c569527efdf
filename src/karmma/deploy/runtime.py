"""Run a student on ready inputs, with eager PyTorch or ONNX Runtime.

Every runner takes ``inputs`` ``{key: [B, *input_shape]}`` (float32 tensors
or arrays; keys of missing modalities may be left out) and an availability
mask ``[B, M]`` (bool), and returns logits ``{head: [B, classes]}`` as numpy.
A sample without any available modality is refused (``ValueError``).

The ONNX runners need no torch (the light install: NumPy and ONNX Runtime);
the eager runner and the model files it reads import it when opened.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from karmma.artifacts import METADATA_KEY, SPLIT_MANIFEST, ModelInfo
from karmma.availability import check_availability
from karmma.checkpoints import CheckpointError

Inputs = Mapping[str, np.ndarray]  # or torch tensors (converted with _as_numpy / torch.as_tensor)


def _as_numpy(x, dtype=np.float32) -> np.ndarray:
    """An array or a (CPU or GPU) torch tensor as a NumPy array of ``dtype``."""
    if hasattr(x, "detach"):  # a torch tensor; checked by duck type so that torch need not be installed
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _mask(availability, modalities: list[str]) -> np.ndarray:
    mask = _as_numpy(availability, None)
    check_availability(mask, modalities)
    return mask


class TorchRunner:
    """Eager PyTorch: only the extractors of available modalities run."""

    kind = "torch"

    def __init__(self, model, info: ModelInfo, threads: int | None = None):
        import torch

        self.model, self.info = model.eval(), info
        if threads:
            torch.set_num_threads(threads)

    def logits(self, inputs: Inputs, availability) -> dict[str, np.ndarray]:
        import torch

        mask = torch.as_tensor(_mask(availability, self.info.modalities))
        tensors = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in inputs.items()}
        with torch.inference_mode():
            out = self.model(tensors, mask).logits
        return {h: v.numpy() for h, v in out.items()}


def _session(path: Path, threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types
        raise CheckpointError(f"{path}: not a readable ONNX model ({str(error).splitlines()[0][:160]})") from None


def _session_info(session, path: Path) -> ModelInfo:
    metadata = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in metadata:
        raise CheckpointError(f"{path}: not a karmma student (an ONNX model without karmma metadata)")
    return ModelInfo.from_json(metadata[METADATA_KEY])


class OnnxRunner:
    """ONNX Runtime on the single graph: every extractor runs; missing inputs are zeros."""

    kind = "onnx"

    def __init__(self, path: str | Path, threads: int | None = None):
        path = Path(path)
        self.session = _session(path, threads)
        self.info = _session_info(self.session, path)

    def logits(self, inputs: Inputs, availability) -> dict[str, np.ndarray]:
        mask = _mask(availability, self.info.modalities)
        batch = mask.shape[0]
        feed = {"availability": mask}
        for key, shape in self.info.input_shapes.items():
            feed[f"in_{key}"] = _as_numpy(inputs[key]) if key in inputs else np.zeros((batch, *shape), np.float32)
        return dict(zip(self.info.heads, self.session.run(list(self.info.heads), feed)))


class SplitOnnxRunner:
    """ONNX Runtime on per-extractor graphs and a fusion graph: missing modalities cost nothing."""

    kind = "onnx-split"

    def __init__(self, folder: str | Path, threads: int | None = None):
        folder = Path(folder)
        try:
            manifest = json.loads((folder / SPLIT_MANIFEST).read_text())
            self.info = ModelInfo.from_json(json.dumps(manifest["info"]))
        except (OSError, ValueError, KeyError, TypeError):
            raise CheckpointError(
                f"{folder}: neither a split-ONNX folder (no valid {SPLIT_MANIFEST}) nor a training run folder "
                f"(no checkpoints/); export a run first: karmma export RUN --onnx-split {folder}"
            ) from None
        self.token_shapes = {k: tuple(v) for k, v in manifest["token_shapes"].items()}
        self.extractors = {k: _session(folder / name, threads) for k, name in manifest["extractors"].items()}
        self.fusion = _session(folder / manifest["fusion"], threads)

    def logits(self, inputs: Inputs, availability) -> dict[str, np.ndarray]:
        mask = _mask(availability, self.info.modalities)
        batch = mask.shape[0]
        feed = {"availability": mask}
        for j, key in enumerate(self.info.modalities):
            if mask[:, j].any():
                feed[f"tokens_{key}"] = self.extractors[key].run(None, {f"in_{key}": _as_numpy(inputs[key])})[0]
            else:
                feed[f"tokens_{key}"] = np.zeros((batch, *self.token_shapes[key]), np.float32)
        return dict(zip(self.info.heads, self.fusion.run(list(self.info.heads), feed)))


def open_runner(path: str | Path, threads: int | None = None) -> TorchRunner | OnnxRunner | SplitOnnxRunner:
    """The runner for a model file: ``.onnx`` (single graph), a split-ONNX folder, or ``.ckpt``/``.safetensors``
    or a run folder (eager PyTorch, which needs the training install)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    if path.is_dir() and not (path / "checkpoints").is_dir():
        return SplitOnnxRunner(path, threads)
    if path.suffix == ".onnx":
        return OnnxRunner(path, threads)
    # a training run folder (its best checkpoint), a .ckpt or a .safetensors: eagerly, with torch
    from karmma.artifacts import load_model
    from karmma.train_config import stage_names

    model, info = load_model(path, stages=stage_names("student"))
    return TorchRunner(model, info, threads)
