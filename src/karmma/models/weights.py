"""Pretrained weights from local files only: never the network.

``weights`` in an extractor config is either a path to a local checkpoint
(``.pth``/``.pt`` saved tensors, or ``.safetensors``) or the name of a
torchvision weights enum member (e.g. ``"KINETICS400_V1"``), which is looked up
in the torchvision/torch hub cache (``$TORCH_HOME/hub/checkpoints``) and never
downloaded here (``karmma weights fetch``, in ``karmma.weight_files``, puts it
there). :func:`weights_location` is the one rule for which file a setting means.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torchvision.models import WeightsEnum

from karmma.checkpoints import load_error_cause, refused_pickle


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights were asked for but are not on disk."""


def torchvision_cache_path(weights: WeightsEnum) -> Path:
    """Where ``torchvision`` would have cached ``weights`` after a download."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def torchvision_weights(weights: str, weights_enum: type[WeightsEnum] | None) -> WeightsEnum | None:
    """The member of ``weights_enum`` that ``weights`` names, or None (then it is a local path)."""
    if weights_enum is not None and weights in weights_enum.__members__:
        return weights_enum[weights]
    return None


def weights_location(weights: str, weights_enum: type[WeightsEnum] | None) -> Path:
    """The file a ``weights`` setting points to, whether or not it exists: the torchvision cache
    file for a member name of ``weights_enum``, else the local path (``~`` expanded)."""
    member = torchvision_weights(weights, weights_enum)
    return torchvision_cache_path(member) if member is not None else Path(weights).expanduser()


def resolve_weights_file(weights: str, weights_enum: type[WeightsEnum] | None) -> Path:
    """Turn a ``weights`` setting into an existing local file (:func:`weights_location`), or raise.

    Args:
        weights: a local file path or a member name of ``weights_enum``.
        weights_enum: the torchvision enum whose members name cached files
            (None: the extractor has no torchvision weights, only local files).
    """
    path = weights_location(weights, weights_enum)
    if path.is_file():
        return path
    if torchvision_weights(weights, weights_enum) is not None:
        raise MissingWeightsError(
            f"pretrained weights {weights_enum.__name__}.{weights} not found at {path}. "
            f"karmma never downloads during a run: `karmma weights fetch CONFIG` puts {path.name} there "
            "(or copy it there, or set TORCH_HOME), or pass a local checkpoint path instead."
        )
    names = list(weights_enum.__members__) if weights_enum is not None else []
    choices = f" or one of the torchvision weights {', '.join(names)}" if names else ""
    raise MissingWeightsError(
        f"pretrained weights file not found: {path} (expected a local .pth/.pt/.safetensors file{choices})"
    )


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load tensors safely: safetensors, or ``torch.load(weights_only=True)``."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # garbage, truncated or pickled objects: torch/safetensors raise many types
        reason = refused_pickle(error) or f"unreadable ({load_error_cause(error)})"
        raise ValueError(
            f"pretrained weights {path}: {reason}; expected a .pth/.pt state dict or a .safetensors file"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"pretrained weights {path} do not hold a state dict of tensors (got {type(state).__name__})")
    bad = next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise ValueError(f"pretrained weights {path}: tensor {bad!r} holds NaN or infinite values")
    return state


def adapt_input_channels(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Fit a pretrained RGB first-layer filter ``[out, 3, ...]`` to ``in_channels``.

    The RGB filters are averaged and the average is repeated over the new
    channels (the cross-modality initialisation of TSN for flow).
    """
    if weight.shape[1] == in_channels:
        return weight
    return weight.mean(dim=1, keepdim=True).repeat_interleave(in_channels, dim=1)


def load_pretrained(
    module: torch.nn.Module,
    weights: str,
    weights_enum: type[WeightsEnum] | None,
    first_layer: str,
    drop_prefixes: tuple[str, ...],
) -> None:
    """Load ``weights`` into ``module``, adapting ``first_layer`` to its input channels.

    Keys starting with one of ``drop_prefixes`` (the classification head) are
    ignored; any other missing or unexpected key is an error.
    """
    path = resolve_weights_file(weights, weights_enum)
    state = {k: v for k, v in load_state_dict(path).items() if not k.startswith(drop_prefixes)}
    target = module.state_dict()
    if first_layer in state and first_layer in target:
        state[first_layer] = adapt_input_channels(state[first_layer], target[first_layer].shape[1])
    expected = {k for k in target if not k.startswith(drop_prefixes)}
    missing, unexpected = sorted(expected - state.keys()), sorted(state.keys() - expected)
    if missing or unexpected:
        raise ValueError(
            f"pretrained weights {path} do not match the extractor architecture: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    try:
        module.load_state_dict(state, strict=False)
    except RuntimeError as error:  # same names, other shapes
        raise ValueError(
            f"pretrained weights {path} do not fit the extractor: {str(error).splitlines()[-1][:200]}"
        ) from None
