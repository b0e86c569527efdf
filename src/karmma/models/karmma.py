"""The KARMMA model: per-modality extractors, token embedding with learned
missing-modality tokens, transformer fusion, and a multi-head MLP.

One class serves the teacher (frozen extractors), the student (trainable
extractors, learned tokens) and the baselines. How a missing modality is
handled is one explicit choice, ``missing_strategy`` (docs/method.md,
"Missing modalities"):

* ``"learned"`` (KARMMA): its tokens are the learned modality + position tokens;
* ``"zeros"`` (the paper's Baseline): its input is zeros, run through its
  extractor, embedded, attended to and averaged in like any other modality;
* ``"mask"`` (our masked Baseline): it is left out of attention and out of the
  prediction average, so it contributes nothing.

Shapes: ``inputs[key]`` is ``[B, *spec.input_shape]``; ``availability`` is a
``[B, M]`` bool mask over ``model.modalities``; extractors give tokens
``[B, N_m, C_m]``; fusion runs over ``[B, 1 + sum_m N_m, width]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from karmma.availability import check_availability
from karmma.modalities import ModalitySpec
from karmma.models.transformer import TransformerBlock
from karmma.train_config import MISSING_STRATEGIES, MissingStrategy


@dataclass(frozen=True)
class FusionConfig:
    """Width and depth of the embedding, fusion block and heads."""

    width: int = 512
    depth: int = 2
    num_heads: int = 8
    mlp_ratio: float = 4.0
    dropout: float = 0.1


@dataclass
class KARMMAOutput:
    """What a forward pass returns.

    Attributes:
        logits: final prediction per head, ``[B, classes]``: the average of the
            CLS prediction and the prediction of each available modality.
        cls_logits: the CLS token's prediction per head.
        modality_logits: per modality key, the pooled-token prediction per head.
        modality_features: per modality key, its fused tokens average-pooled,
            ``[B, width]`` (meaningful only where the modality is available).
        availability: the ``[B, M]`` mask the prediction was made with.
    """

    logits: dict[str, torch.Tensor]
    cls_logits: dict[str, torch.Tensor]
    modality_logits: dict[str, dict[str, torch.Tensor]]
    modality_features: dict[str, torch.Tensor]
    availability: torch.Tensor


class MultiHeadMLP(nn.Module):
    """A shared hidden layer and one linear classifier per head: ``[..., width] -> {head: [..., classes]}``."""

    def __init__(self, width: int, heads: Mapping[str, int], dropout: float = 0.0):
        super().__init__()
        if not heads:
            raise ValueError("at least one classification head is needed, e.g. {'verb': 97, 'noun': 300}")
        self.hidden = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Dropout(dropout))
        self.classifiers = nn.ModuleDict({name: nn.Linear(width, n) for name, n in heads.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.hidden(x)
        return {name: classifier(hidden) for name, classifier in self.classifiers.items()}


class KARMMA(nn.Module):
    """Multimodal fusion model over any subset of its modalities.

    Args:
        modalities: one spec per modality, in the order of the availability columns.
        heads: classes per head, e.g. ``{"verb": 97, "noun": 300}``.
        fusion: width/depth of embedding, fusion block and heads.
        missing_strategy: ``"learned"`` (a missing modality's tokens are the
            learned modality + position tokens), ``"zeros"`` (its tokens are the
            extractor's tokens of an all-zero input, and it takes part in
            attention and in the prediction average) or ``"mask"`` (left out of
            attention and of the prediction average: it contributes nothing).
        freeze_extractors: the teacher's extractors are frozen (no gradients,
            always in eval mode) so their tokens can be cached.
    """

    def __init__(
        self,
        modalities: Sequence[ModalitySpec],
        heads: Mapping[str, int],
        fusion: FusionConfig = FusionConfig(),
        missing_strategy: MissingStrategy = "learned",
        freeze_extractors: bool = False,
    ):
        super().__init__()
        if missing_strategy not in MISSING_STRATEGIES:
            raise ValueError(
                f"missing_strategy must be one of {', '.join(MISSING_STRATEGIES)}, got {missing_strategy!r}"
            )
        keys = [spec.key for spec in modalities]
        if not keys or len(set(keys)) != len(keys):
            raise ValueError(f"modalities must be a non-empty list of distinct keys, got {keys}")
        self.modalities = keys
        self.specs = {spec.key: spec for spec in modalities}
        self.heads = dict(heads)
        self.fusion_config = fusion
        self.missing_strategy = missing_strategy
        self.freeze_extractors = freeze_extractors
        width = fusion.width

        self.extractors = nn.ModuleDict({spec.key: spec.build_extractor() for spec in modalities})
        self.embed = nn.ModuleDict({spec.key: nn.Linear(spec.token_dim, width) for spec in modalities})
        # t̆^m (one per modality) and ṫ_i^m (one per token position), docs/method.md, "Missing modalities"
        self.modality_tokens = nn.ParameterDict({k: nn.Parameter(torch.zeros(width)) for k in keys})
        self.position_tokens = nn.ParameterDict(
            {spec.key: nn.Parameter(torch.zeros(spec.num_tokens, width)) for spec in modalities}
        )
        self.cls_token = nn.Parameter(torch.zeros(width))
        self.blocks = nn.ModuleList(
            TransformerBlock(width, fusion.num_heads, fusion.mlp_ratio, fusion.dropout) for _ in range(fusion.depth)
        )
        self.norm = nn.LayerNorm(width)
        self.head = MultiHeadMLP(width, heads, fusion.dropout)
        for p in [self.cls_token, *self.modality_tokens.values(), *self.position_tokens.values()]:
            nn.init.trunc_normal_(p, std=0.02)
        if freeze_extractors:
            self.extractors.requires_grad_(False)
            self.extractors.eval()
        # "zeros": the extractors' tokens of an all-zero input, kept while in eval mode (not a buffer:
        # derived from the weights, never saved).
        self._zero_input_tokens: dict[str, torch.Tensor] = {}

    def train(self, mode: bool = True) -> KARMMA:
        super().train(mode)
        if self.freeze_extractors:
            self.extractors.eval()  # frozen: batch-norm statistics and dropout stay fixed
        self._zero_input_tokens.clear()  # the weights may change from here on
        return self

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._zero_input_tokens.clear()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def zero_input_tokens(self, key: str) -> torch.Tensor:
        """Tokens ``[1, N_m, C_m]`` of modality ``key``'s extractor on an all-zero input.

        This is what the paper's Baseline (``missing_strategy="zeros"``) sees for a
        missing modality. In eval mode it is the same for every sample, so it is
        computed once and kept until the model trains or loads weights again.
        """
        device = self.cls_token.device
        cached = self._zero_input_tokens.get(key)
        if cached is not None and cached.device == device:
            return cached
        spec = self.specs[key]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_extractors):
            tokens = self.extractors[key](torch.zeros(1, *spec.input_shape, device=device))
        if not self.training and not tokens.requires_grad:
            self._zero_input_tokens[key] = tokens
        return tokens

    def extract(
        self, inputs: Mapping[str, torch.Tensor], availability: torch.Tensor, every_sample: bool = False
    ) -> dict[str, torch.Tensor]:
        """Run each extractor on the samples that have its modality.

        Returns tokens ``[B, N_m, C_m]`` per modality present in at least one
        sample; rows of samples without it are zeros. A modality missing from
        the whole batch is not computed and has no entry. (Training the
        ``"zeros"`` Baseline is the exception: every extractor runs on every
        sample, on zeros where the modality is missing.)

        ``every_sample=True`` is the trace-friendly form (ONNX export): every
        extractor runs on every sample (``inputs`` must hold every modality;
        missing ones may be zeros) and the rows of samples without the
        modality are zeroed with ``torch.where``; no control flow depends on
        the mask values, and the logits are the same.
        """
        if every_sample:
            return self._extract_every_sample(inputs, availability)
        check_availability(availability, self.modalities)
        if self.missing_strategy == "zeros" and self.training:
            return self._extract_with_zero_inputs(inputs, availability)
        batch = availability.shape[0]
        tokens = {}
        for j, key in enumerate(self.modalities):
            present = availability[:, j]
            count = batch if present.device.type == "meta" else int(present.sum())
            if count == 0:
                continue
            if key not in inputs:
                raise ValueError(f"modality {key} is marked available for {count} sample(s) but has no input tensor")
            x = inputs[key]
            expected = (batch, *self.specs[key].input_shape)
            if tuple(x.shape) != expected:
                raise ValueError(f"input for modality {key} must have shape {list(expected)}, got {list(x.shape)}")
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_extractors):
                if count == batch:
                    tokens[key] = self.extractors[key](x)
                else:
                    index = present.nonzero().flatten().to(x.device)
                    computed = self.extractors[key](x.index_select(0, index))
                    tokens[key] = computed.new_zeros(batch, *computed.shape[1:]).index_copy(0, index, computed)
        return tokens

    def _extract_with_zero_inputs(
        self, inputs: Mapping[str, torch.Tensor], availability: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Training the paper's Baseline: every extractor runs on the whole batch, a sample's
        missing modality as an all-zero input (so batch-norm statistics see it as the paper's would)."""
        tokens = {}
        for j, key in enumerate(self.modalities):
            present = availability[:, j]
            if key in inputs:
                x = inputs[key]
                x = torch.where(present.to(x.device).view(-1, *[1] * (x.dim() - 1)), x, torch.zeros_like(x))
            else:
                x = torch.zeros(availability.shape[0], *self.specs[key].input_shape, device=self.cls_token.device)
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_extractors):
                tokens[key] = self.extractors[key](x)
        return tokens

    def _extract_every_sample(
        self, inputs: Mapping[str, torch.Tensor], availability: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        check_availability(availability, self.modalities)
        missing = [k for k in self.modalities if k not in inputs]
        if missing:
            raise ValueError(
                f"every_sample=True needs an input for every modality (zeros where missing); none for {missing}"
            )
        tokens = {}
        for j, key in enumerate(self.modalities):
            computed = self.extractors[key](inputs[key])
            present = availability[:, j].to(computed.device)[:, None, None]
            tokens[key] = torch.where(present, computed, torch.zeros_like(computed))
        return tokens

    def fuse(self, tokens: Mapping[str, torch.Tensor], availability: torch.Tensor) -> KARMMAOutput:
        """Embed, fuse and classify extractor tokens (e.g. read from a feature cache).

        Args:
            tokens: ``[B, N_m, C_m]`` per modality; a modality may be absent
                when no sample of the batch has it.
            availability: ``[B, M]`` bool mask.
        """
        check_availability(availability, self.modalities)
        device = self.cls_token.device
        present_mask = availability.to(device)
        batch = availability.shape[0]
        if self.missing_strategy == "zeros":
            if not self.training or any(k not in tokens for k in self.modalities):
                # In training, ``extract`` already ran the extractors on the zero inputs, in the batch.
                tokens = self._fill_with_zero_input_tokens(tokens, present_mask)
            # The paper's Baseline cannot tell a missing modality from a present one.
            present_mask = torch.ones_like(present_mask)
        sequence = [self.cls_token.expand(batch, 1, -1)]
        attend = [torch.ones(batch, 1, dtype=torch.bool, device=device)]
        spans = {}  # key -> (start, end, availability column)
        start = 1
        for j, key in enumerate(self.modalities):
            present = present_mask[:, j]
            if key not in tokens and self.missing_strategy == "mask":
                continue  # nobody in the batch has it: it contributes nothing and costs nothing
            embedded = (self.modality_tokens[key] + self.position_tokens[key]).expand(batch, -1, -1)
            if key in tokens:
                projected = self.embed[key](tokens[key].to(device))
                embedded = embedded + projected * present[:, None, None].to(projected.dtype)
            sequence.append(embedded)
            attend.append(present[:, None].expand(-1, embedded.shape[1]))
            spans[key] = (start, start + embedded.shape[1], j)
            start += embedded.shape[1]
        x = torch.cat(sequence, dim=1)
        key_mask = torch.cat(attend, dim=1) if self.missing_strategy == "mask" else None
        for block in self.blocks:
            x = block(x, key_mask)
        x = self.norm(x)

        modality_features = {key: x[:, s:e].mean(dim=1) for key, (s, e, _) in spans.items()}
        pooled = torch.stack([x[:, 0], *modality_features.values()], dim=1)  # [B, 1 + M', width]
        predictions = self.head(pooled)  # head -> [B, 1 + M', classes]
        # Average the CLS prediction with the predictions of the available modalities only.
        weights = torch.cat(
            [torch.ones(batch, 1, device=device), *(present_mask[:, [j]].float() for _, _, j in spans.values())], dim=1
        )
        weights = weights / weights.sum(dim=1, keepdim=True)
        logits = {name: (p * weights[..., None]).sum(dim=1) for name, p in predictions.items()}
        return KARMMAOutput(
            logits=logits,
            cls_logits={name: p[:, 0] for name, p in predictions.items()},
            modality_logits={
                key: {name: p[:, i + 1] for name, p in predictions.items()} for i, key in enumerate(spans)
            },
            modality_features=modality_features,
            availability=availability,
        )

    def _fill_with_zero_input_tokens(
        self, tokens: Mapping[str, torch.Tensor], present: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Rows of samples without a modality get its zero-input tokens (``"zeros"`` strategy)."""
        filled = dict(tokens)
        for j, key in enumerate(self.modalities):
            blank = self.zero_input_tokens(key)
            if key not in tokens:
                filled[key] = blank.expand(present.shape[0], -1, -1)
            else:
                row_present = present[:, j, None, None]
                filled[key] = torch.where(row_present, tokens[key].to(blank.device, blank.dtype), blank)
        return filled

    def forward(self, inputs: Mapping[str, torch.Tensor], availability: torch.Tensor) -> KARMMAOutput:
        return self.fuse(self.extract(inputs, availability), availability)

    def example_inputs(self, batch: int = 1) -> dict[str, torch.Tensor]:
        """Random valid inputs for every modality: ``{key: [batch, *input_shape]}``."""
        return {key: spec.example_input(batch) for key, spec in self.specs.items()}
