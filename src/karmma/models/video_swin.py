"""Video Swin Transformer token extractor (RGB, flow, spectrogram clips).

Wraps torchvision's :class:`~torchvision.models.video.SwinTransformer3d`. The
last feature map ``[B, T/2, H/32, W/32, C]`` is pooled over space (average by
default, or maximum: ``spatial_pool``), giving one token per temporal
position: ``[B, T/2, C]`` (16 tokens of 768 channels for Swin3D-T on 32
frames). Short sequences keep the fusion block cheap (docs/method.md, "Token
pooling").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models import WeightsEnum
from torchvision.models.video import Swin3D_B_Weights, Swin3D_T_Weights, SwinTransformer3d
from torchvision.models.video.swin_transformer import PatchEmbed3d

from karmma.models.weights import load_pretrained
from karmma.train_config import SPATIAL_POOLS


@dataclass(frozen=True)
class VideoSwinConfig:
    """Architecture of a Swin3D extractor. Defaults are Swin3D-T."""

    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    patch_size: tuple[int, int, int] = (2, 4, 4)
    window_size: tuple[int, int, int] = (8, 7, 7)
    stochastic_depth_prob: float = 0.1
    #: how the last feature map is pooled over space into one token per time step: ``"mean"``
    #: (the spec's example, what Kinetics weights were trained with) or ``"max"`` (ours: keeps a
    #: small moving hand/object from being averaged away by the whole frame's camera motion)
    spatial_pool: str = "mean"
    #: a BatchNorm over the input channels before the patch embedding (ours, like PANNs' ``bn0`` on
    #: log-mel input): a log-mel image sits at a large constant offset (log of a small power), which
    #: otherwise outweighs every patch's content after the embedding's LayerNorm, so that all clips
    #: start with nearly the same tokens (docs/method.md, "Audio as images")
    input_norm: bool = False
    #: local checkpoint path or torchvision weights name (``"KINETICS400_V1"``)
    weights: str | None = None

    def __post_init__(self):
        if self.spatial_pool not in SPATIAL_POOLS:
            raise ValueError(f"spatial_pool must be one of {', '.join(SPATIAL_POOLS)}, got {self.spatial_pool!r}")

    @property
    def token_dim(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)

    @property
    def weights_enum(self) -> type[WeightsEnum]:
        """The torchvision enum whose member names ``weights`` may be (the one of this size)."""
        return _WEIGHTS_ENUMS.get((self.embed_dim, tuple(self.depths)), Swin3D_T_Weights)

    def num_tokens(self, input_shape: tuple[int, ...]) -> int:
        frames = input_shape[0]
        return -(-frames // self.patch_size[0])  # ceil: the patch embedding pads time

    def build(self, input_shape: tuple[int, ...]) -> VideoSwinTokens:
        return VideoSwinTokens(self, in_channels=input_shape[1])

    def example_input(self, input_shape: tuple[int, ...], batch: int) -> torch.Tensor:
        return torch.randn(batch, *input_shape)


def swin3d_t_config(weights: str | None = None) -> VideoSwinConfig:
    """Swin3D-T (28 M parameters, 175 GFLOPs at 32 x 224 x 224)."""
    return VideoSwinConfig(weights=weights)


def swin3d_b_config(weights: str | None = None) -> VideoSwinConfig:
    """Swin3D-B (88 M parameters, 563 GFLOPs at 32 x 224 x 224)."""
    return VideoSwinConfig(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), weights=weights)


# Pretrained-weights names resolve through the enum of the matching torchvision model.
_WEIGHTS_ENUMS = {(96, (2, 2, 6, 2)): Swin3D_T_Weights, (128, (2, 2, 18, 2)): Swin3D_B_Weights}


class VideoSwinTokens(nn.Module):
    """Swin3D over a clip ``[B, T, C, H, W]`` -> tokens ``[B, ceil(T/2), token_dim]``."""

    def __init__(self, config: VideoSwinConfig, in_channels: int = 3):
        super().__init__()
        self.config = config
        self.in_channels = in_channels
        self.swin = SwinTransformer3d(
            patch_size=list(config.patch_size),
            embed_dim=config.embed_dim,
            depths=list(config.depths),
            num_heads=list(config.num_heads),
            window_size=list(config.window_size),
            stochastic_depth_prob=config.stochastic_depth_prob,
            num_classes=1,
        )
        if in_channels != 3:
            self.swin.patch_embed = PatchEmbed3d(
                patch_size=list(config.patch_size),
                in_channels=in_channels,
                embed_dim=config.embed_dim,
                norm_layer=nn.LayerNorm,
            )
        self.input_norm = nn.BatchNorm3d(in_channels) if config.input_norm else nn.Identity()
        # Classification head and global pool are unused: tokens come from the feature map.
        self.swin.head = nn.Identity()
        self.swin.avgpool = nn.Identity()
        if config.weights is not None:
            load_pretrained(
                self.swin,
                config.weights,
                config.weights_enum,
                first_layer="patch_embed.proj.weight",
                drop_prefixes=("head.",),
            )

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        x = self.input_norm(clip.transpose(1, 2))  # [B, C, T, H, W], torchvision's layout
        x = self.swin.patch_embed(x)  # [B, T', H', W', C0]
        x = self.swin.pos_drop(x)
        x = self.swin.features(x)  # [B, T', H'', W'', C]
        x = self.swin.norm(x)
        if self.config.spatial_pool == "max":
            return x.amax(dim=(2, 3))  # [B, T', C]
        return x.mean(dim=(2, 3))  # [B, T', C]
