"""ResNet token extractor over a log-mel spectrogram (the student's audio).

Input ``[B, 1, n_mels, frames]`` (EPIC convention: 128 mel bins x 400 frames
for 2 s of 24 kHz audio with a 5 ms hop). The last feature map
``[B, C, n_mels/32, frames/32]`` is averaged over frequency, giving one token
per time step: ``[B, ceil(frames/32), C]`` (13 tokens of 512 for ResNet-18).

With the default widths and blocks this is exactly torchvision's ResNet-18
(same parameter names), so ImageNet weights load with the RGB filters of the
first convolution averaged into one channel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models import ResNet18_Weights
from torchvision.models.resnet import BasicBlock, conv1x1

from karmma.models.weights import load_pretrained


@dataclass(frozen=True)
class AudioResNetConfig:
    """A BasicBlock ResNet; defaults are ResNet-18."""

    widths: tuple[int, ...] = (64, 128, 256, 512)
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    #: local checkpoint path or torchvision ResNet-18 weights name (``"IMAGENET1K_V1"``)
    weights: str | None = None

    @property
    def token_dim(self) -> int:
        return self.widths[-1]

    @property
    def weights_enum(self) -> type[ResNet18_Weights]:
        """The torchvision enum whose member names ``weights`` may be."""
        return ResNet18_Weights

    def num_tokens(self, input_shape: tuple[int, ...]) -> int:
        frames = input_shape[-1]
        # conv1 (stride 2), max-pool (stride 2), then stride 2 in every stage but the first
        for _ in range(2 + len(self.widths) - 1):
            frames = (frames - 1) // 2 + 1
        return frames

    def build(self, input_shape: tuple[int, ...]) -> AudioResNetTokens:
        return AudioResNetTokens(self, in_channels=input_shape[0])

    def example_input(self, input_shape: tuple[int, ...], batch: int) -> torch.Tensor:
        return torch.randn(batch, *input_shape)


def resnet18_config(weights: str | None = None) -> AudioResNetConfig:
    """ResNet-18 (11.2 M parameters without the classifier, 3.7 GFLOPs on 128 x 400)."""
    return AudioResNetConfig(weights=weights)


class AudioResNetTokens(nn.Module):
    """ResNet over ``[B, C_in, n_mels, frames]`` -> tokens ``[B, N, widths[-1]]``."""

    def __init__(self, config: AudioResNetConfig, in_channels: int = 1):
        super().__init__()
        if len(config.widths) != len(config.blocks):
            raise ValueError(f"widths {config.widths} and blocks {config.blocks} must have the same length")
        self.config = config
        stem = config.widths[0]
        self.conv1 = nn.Conv2d(in_channels, stem, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = stem
        for i, (width, blocks) in enumerate(zip(config.widths, config.blocks)):
            stride = 1 if i == 0 else 2
            layers = []
            for j in range(blocks):
                downsample = None
                if j == 0 and (stride != 1 or inplanes != width):
                    downsample = nn.Sequential(conv1x1(inplanes, width, stride), nn.BatchNorm2d(width))
                layers.append(BasicBlock(inplanes, width, stride if j == 0 else 1, downsample))
                inplanes = width
            self.add_module(f"layer{i + 1}", nn.Sequential(*layers))
        self.num_stages = len(config.widths)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if config.weights is not None:
            load_pretrained(
                self,
                config.weights,
                config.weights_enum,
                first_layer="conv1.weight",
                drop_prefixes=("fc.",),
            )

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(spectrogram))))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return x.mean(dim=2).transpose(1, 2)  # [B, C, F', T'] -> [B, T', C]
