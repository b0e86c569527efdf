"""Spatio-temporal transformer over per-frame hand/object boxes (the D modality).

Input ``[B, T, K, 6]``: for each of ``T`` frames, ``K`` box slots of
``(x1, y1, x2, y2, score, category)`` with coordinates normalised to
``[0, 1]``, ``score`` in ``(0, 1]`` for a real box and ``0`` for an empty slot,
and ``category`` an integer id stored as a float (e.g. 0 = hand, 1 = object).

Each frame gets a learned frame token; frame tokens and box tokens (with time
and slot embeddings) attend to each other across space and time, empty slots
masked out. The frame tokens are the output: ``[B, T, dim]``. Because frame
tokens are never masked, a clip with no boxes at all still gives finite tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from karmma.models.transformer import TransformerBlock
from karmma.models.weights import load_pretrained


@dataclass(frozen=True)
class BoxTransformerConfig:
    dim: int = 128
    depth: int = 2
    num_heads: int = 4
    num_categories: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    #: a local state dict of this extractor (``.pth``/``.pt``/``.safetensors``); no public pre-training exists
    weights: str | None = None

    @property
    def token_dim(self) -> int:
        return self.dim

    @property
    def weights_enum(self) -> None:
        """No torchvision weights: ``weights`` is always a local file."""
        return None

    def num_tokens(self, input_shape: tuple[int, ...]) -> int:
        return input_shape[0]

    def build(self, input_shape: tuple[int, ...]) -> BoxTransformerTokens:
        frames, slots, features = input_shape
        if features != 6:
            raise ValueError(
                f"box input must have 6 features per box (x1, y1, x2, y2, score, category), got {features}"
            )
        return BoxTransformerTokens(self, frames=frames, slots=slots)

    def example_input(self, input_shape: tuple[int, ...], batch: int) -> torch.Tensor:
        frames, slots, _ = input_shape
        xy = torch.rand(batch, frames, slots, 2) * 0.6
        wh = torch.rand(batch, frames, slots, 2) * 0.4
        score = (torch.rand(batch, frames, slots, 1) > 0.3).float()
        category = torch.randint(0, self.num_categories, (batch, frames, slots, 1)).float()
        return torch.cat([xy, xy + wh, score, category], dim=-1)


class BoxTransformerTokens(nn.Module):
    """Boxes ``[B, T, K, 6]`` -> frame tokens ``[B, T, dim]``."""

    def __init__(self, config: BoxTransformerConfig, frames: int, slots: int):
        super().__init__()
        self.config = config
        dim = config.dim
        self.box_embed = nn.Sequential(nn.Linear(5, dim), nn.GELU(), nn.Linear(dim, dim))
        self.category_embed = nn.Embedding(config.num_categories, dim)
        self.time_embed = nn.Parameter(torch.zeros(frames, dim))
        self.slot_embed = nn.Parameter(torch.zeros(slots, dim))
        self.frame_token = nn.Parameter(torch.zeros(dim))
        for p in (self.time_embed, self.slot_embed, self.frame_token):
            nn.init.trunc_normal_(p, std=0.02)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, config.num_heads, config.mlp_ratio, config.dropout) for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(dim)
        if config.weights is not None:
            load_pretrained(self, config.weights, config.weights_enum, first_layer="", drop_prefixes=())

    def forward(self, boxes: torch.Tensor) -> torch.Tensor:
        b, t, k, _ = boxes.shape
        valid = boxes[..., 4] > 0  # [B, T, K]
        category = boxes[..., 5].long().clamp(0, self.config.num_categories - 1)
        box_tokens = self.box_embed(boxes[..., :5]) + self.category_embed(category)
        box_tokens = box_tokens + self.time_embed[:t, None] + self.slot_embed[None, :k]
        frame_tokens = (self.frame_token + self.time_embed[:t]).expand(b, t, -1)
        x = torch.cat([frame_tokens, box_tokens.reshape(b, t * k, -1)], dim=1)  # [B, T + T*K, dim]
        attend = torch.cat([torch.ones(b, t, dtype=torch.bool, device=boxes.device), valid.reshape(b, t * k)], dim=1)
        for block in self.blocks:
            x = block(x, attend)
        return self.norm(x[:, :t])
