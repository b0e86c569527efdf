"""``karmma evaluate``: accuracy on every modality subset and under random sensor dropouts.

Each clip's extractors run once (with every modality the clip really has);
the fusion block then runs once per condition: every non-empty subset of the
model's modalities, and, for the dynamic sweep, each modality of each clip
dropped with probability p (at least one kept) for several seeds. This equals
running the whole model on the reduced inputs, because a missing modality's
tokens are never read (learned tokens or an attention mask stand in), and it
costs one extraction instead of dozens.

Multi-view protocol: the softmax probabilities of a clip's
``num_clips x num_crops`` views are averaged before scoring; in the sweep a
dropped sensor is dropped in every view of the clip.

A split without labels (EPIC-KITCHENS-100's ``EPIC_100_test_timestamps.csv``)
gets predictions and no metrics. Either way the per-clip scores of one
condition (every modality a clip has, or the ones of ``settings.modalities``)
are returned as :class:`ClipScores`, which the challenge export writes
(:mod:`karmma.evaluation.submission`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from karmma.accuracy import every_head_correct
from karmma.artifacts import load_model
from karmma.availability import modality_dropout
from karmma.checkpoints import resolve_checkpoint
from karmma.configuration import from_dict
from karmma.data.config import dataset_heads, dataset_recipe, load_split
from karmma.data.dataset import ClipDataset
from karmma.data.inspect import class_names
from karmma.data.loader import SWEEP_NOISE_SLOT, item_seed, make_loader
from karmma.data.recipe import check_same_recipe
from karmma.data.transforms import finish_inputs
from karmma.evaluation.metrics import (
    classification_metrics,
    confusion_counts,
    tail_metrics,
    top_pairs,
)
from karmma.io import write_json
from karmma.modalities import all_subsets, subset_name
from karmma.models.karmma import KARMMA
from karmma.train_config import TrainConfig

if TYPE_CHECKING:
    from karmma.evaluation.submission import SupervisionLevels

SWEEP_PROBABILITIES = tuple(round(0.1 * i, 1) for i in range(10))
PREDICTION_TOP_K = 5  # classes and actions per clip in the predictions of a split without labels


@dataclass
class EvaluatedModel:
    """A trained model ready for evaluation, with the training config it came from."""

    name: str
    model: KARMMA
    config: TrainConfig
    source: str


def load_for_evaluation(
    path: str | Path, name: str = "", overrides: list[str] = (), checkpoint: str = "best", device: str = "cpu"
) -> EvaluatedModel:
    """Load a run folder / checkpoint / student export onto ``device``. ``overrides``
    (``data.root=...``) change the stored training config before the model is built, e.g.
    when the data moved; ``checkpoint`` picks a run folder's ``best`` or ``last`` checkpoint."""
    file = resolve_checkpoint(path, checkpoint)
    model, info = load_model(file, overrides=overrides)
    config = from_dict(TrainConfig, info.config, str(file))
    check_same_recipe(info.preparation, dataset_recipe(config.data), f"model {file}", f"the data ({config.data.root})")
    return EvaluatedModel(name or config.stage, model.to(device), config, str(file))


def default_split(config: TrainConfig) -> str:
    """The split results are reported on: the official validation set, which is ``test``
    for Epic-Kitchens* (its ``validation`` is the 10 % held out of training for selection)."""
    return "test" if config.data.format == "epic_star" else "validation"


def selection_note(config: TrainConfig, split: str) -> str:
    """How the scored checkpoint was chosen relative to the scored split (for reports)."""
    if config.data.format == "epic_star" or split != "validation":
        return f"checkpoint chosen on the validation split, scored on {split}"
    return "checkpoint chosen on the same validation split it is scored on (the dataset has no other labelled split)"


@dataclass(frozen=True)
class EvaluationSettings:
    split: str | None = None  # None: each model's default_split
    probabilities: tuple[float, ...] = SWEEP_PROBABILITIES
    seeds: int = 3
    batch_size: int = 32
    workers: int = 2
    num_clips: int | None = None  # None: the training config's clip.num_clips
    num_crops: int | None = None
    progress: bool = True
    modalities: tuple[str, ...] | None = None  # the condition of the per-clip scores; None: all the model has


@dataclass
class ClipScores:
    """Per clip the view-averaged softmax of each head under one condition.

    ``ids`` are the clips scored (split order), ``probabilities[head]`` is ``[len(ids), classes]``;
    ``unscored`` lists the split's clips with no score (none of ``modalities`` readable).
    """

    split: str
    modalities: tuple[str, ...]
    ids: list[str]
    probabilities: dict[str, torch.Tensor]
    unscored: list[str]


class _ProbabilitySums:
    """Running per-clip sums of view probabilities for one condition."""

    def __init__(self, clips: int, heads: dict[str, int]):
        self.sums = {h: torch.zeros(clips, n) for h, n in heads.items()}
        self.views = torch.zeros(clips)

    def add(self, clip_indices: torch.Tensor, logits: dict[str, torch.Tensor]) -> None:
        for head, value in logits.items():
            self.sums[head].index_add_(0, clip_indices, value.float().softmax(dim=1).cpu())
        self.views.index_add_(0, clip_indices, torch.ones(len(clip_indices)))

    def averaged(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(indices of clips seen in at least one view, their mean probabilities)."""
        seen = (self.views > 0).nonzero().flatten()
        return seen, {h: s[seen] / self.views[seen, None] for h, s in self.sums.items()}


def _fuse_subset(
    model: KARMMA, tokens: dict, availability: torch.Tensor, clip_indices: torch.Tensor, sums: _ProbabilitySums
) -> None:
    """Fuse the rows that keep at least one modality and add their probabilities."""
    rows = availability.any(dim=1)
    if not rows.any():
        return
    index = rows.nonzero().flatten()
    out = model.fuse({k: v[index] for k, v in tokens.items()}, availability[index])
    sums.add(clip_indices[index.cpu()], out.logits)


def _epic_extras(config: TrainConfig) -> tuple[set[int], set[int], set[str]] | None:
    """Tail verbs/nouns and unseen participants, when the EPIC class files are beside the annotations."""
    if config.data.format not in ("epic", "epic_star"):
        return None
    files = [
        config.data.path(n)
        for n in (
            "EPIC_100_tail_verbs.csv",
            "EPIC_100_tail_nouns.csv",
            "EPIC_100_unseen_participant_ids_validation.csv",
        )
    ]
    if not all(f.is_file() for f in files):
        return None
    from karmma.data.annotations import read_epic_tail_classes, read_epic_unseen_participants

    return (
        read_epic_tail_classes(files[0], "verb"),
        read_epic_tail_classes(files[1], "noun"),
        read_epic_unseen_participants(files[2]),
    )


def evaluate_model(evaluated: EvaluatedModel, settings: EvaluationSettings = EvaluationSettings()) -> dict:
    """Metrics of one model on every subset of its modalities and along the dropout sweep.

    Returns ``{"subsets": {"V+F": {metric: value, "samples": n}}, "sweep": {"0.3":
    {metric: mean over seeds, metric_std: spread, "std": action_top1 spread}}, ...}``;
    on a split without labels ``{"labelled": false, "predictions": {...}}`` and no metrics.
    """
    return evaluate_with_scores(evaluated, settings)[0]


def scored_modalities(model: KARMMA, modalities: tuple[str, ...] | None) -> tuple[str, ...]:
    """The modalities of the per-clip scores, in the model's order; an unknown key is an error."""
    if modalities is None:
        return tuple(model.modalities)
    unknown = [k for k in modalities if k not in model.modalities]
    if unknown or not modalities:
        raise ValueError(
            f"modalities {'+'.join(modalities) or '(none)'}: the model has {'+'.join(model.modalities)}"
            + (f" (no {', '.join(unknown)})" if unknown else "")
        )
    return tuple(k for k in model.modalities if k in modalities)


def evaluate_with_scores(
    evaluated: EvaluatedModel, settings: EvaluationSettings = EvaluationSettings()
) -> tuple[dict, ClipScores]:
    """:func:`evaluate_model`'s results and the per-clip scores of ``settings.modalities``
    (each clip with those of them it has), from the same pass over the data."""
    from tqdm import tqdm

    model, config = evaluated.model, evaluated.config
    kept = scored_modalities(model, settings.modalities)
    clip = config.clip
    if settings.num_clips or settings.num_crops:
        clip = dataclasses.replace(
            clip, num_clips=settings.num_clips or clip.num_clips, num_crops=settings.num_crops or clip.num_crops
        )
    heads = dataset_heads(config.data)
    shapes = {k: model.specs[k].input_shape for k in model.modalities}
    split = settings.split or default_split(config)
    samples = load_split(config.data, split)
    dataset = ClipDataset(samples, shapes, train=False, config=clip, missing=config.data.missing)
    if len(dataset) == 0:
        raise ValueError(f"{evaluated.source}: the {split} split has no clip with any of {model.modalities}")
    clips = len(dataset.samples)
    labelled = all(set(heads) <= set(sample.labels) for sample in dataset.samples)
    loader = make_loader(dataset, settings.batch_size, config.trainer.seed, False, settings.workers)
    device = next(model.parameters()).device

    # a split without labels is only predicted: no subset rows or sweep to score
    subsets = {
        subset_name(s): torch.tensor([k in s for k in model.modalities])
        for s in (all_subsets(model.modalities) if labelled else [])
    }
    sweep_ps = [p for p in settings.probabilities if p > 0] if labelled else []
    # One noise tensor per seed for all clips: the same draws for every p, so a sensor
    # dropped at p is also dropped at every larger p (smooth curves), and every view agrees.
    noise = [
        torch.rand(
            clips, 2, len(model.modalities), generator=torch.Generator().manual_seed(item_seed(s, 0, SWEEP_NOISE_SLOT))
        )
        for s in range(settings.seeds)
    ]
    subset_sums = {name: _ProbabilitySums(clips, heads) for name in subsets}
    as_recorded = _ProbabilitySums(clips, heads)  # every clip with the modalities it has (sweep p = 0)
    keep_scored = torch.tensor([k in kept for k in model.modalities])
    scored = as_recorded if keep_scored.all() else _ProbabilitySums(clips, heads)  # the ClipScores condition
    sweep_sums = {(p, s): _ProbabilitySums(clips, heads) for p in sweep_ps for s in range(settings.seeds)}
    labels = {h: torch.zeros(clips, dtype=torch.long) for h in heads}
    availability_counts = torch.zeros(len(model.modalities))

    with torch.no_grad():
        for batch in tqdm(
            loader, desc=f"evaluate {evaluated.name}", unit="batch", disable=not settings.progress, leave=False
        ):
            availability = batch["availability"][:, : len(model.modalities)]
            clip_indices = batch["indices"]
            for head in heads if labelled else ():
                labels[head][clip_indices] = batch["labels"][head]
            availability_counts += availability.float().sum(dim=0)
            inputs = finish_inputs(batch, device, keys=model.modalities)
            tokens = model.extract(inputs, availability.to(device))
            _fuse_subset(model, tokens, availability, clip_indices, as_recorded)
            if scored is not as_recorded:
                _fuse_subset(model, tokens, availability & keep_scored, clip_indices, scored)
            for name, keep in subsets.items():
                # Only clips that have every modality of the subset: a clip without one is
                # not scored as if it had it (each row reports how many clips it covers).
                complete = (availability | ~keep).all(dim=1)
                _fuse_subset(model, tokens, availability & keep & complete[:, None], clip_indices, subset_sums[name])
            for (p, seed), sums in sweep_sums.items():
                dropped = modality_dropout(availability, p, noise=noise[seed][clip_indices])
                _fuse_subset(model, tokens, dropped, clip_indices, sums)

    def score(sums: _ProbabilitySums) -> tuple[dict[str, float], str]:
        """The metrics of one condition, and per clip in dataset order '1' action right, '0' wrong,
        '.' not scored (for paired tests)."""
        seen, probs = sums.averaged()
        clip_labels = {h: labels[h][seen] for h in heads}
        metrics = {**classification_metrics(probs, clip_labels), "samples": int(len(seen))}
        codes = ["."] * clips
        for i, ok in zip(seen.tolist(), every_head_correct(probs, clip_labels).tolist()):
            codes[i] = "1" if ok else "0"
        return metrics, "".join(codes)

    results: dict = {
        "stage": config.stage,
        "missing_modality": config.missing_strategy,
        "source": evaluated.source,
        "data_format": config.data.format,  # with the heads, which of the paper's data sets this is
        "modalities": list(model.modalities),
        "split": split,
        "selection": selection_note(config, split),
        "clips": clips,
        "views": clip.num_clips * clip.num_crops,
        "availability": {k: int(c) for k, c in zip(model.modalities, availability_counts.tolist())},
        "labelled": labelled,
    }
    seen, probs = scored.averaged()
    scored_ids = {dataset.samples[i].id for i in seen.tolist()}
    clip_scores = ClipScores(
        split=split,
        modalities=kept,
        ids=[dataset.samples[i].id for i in seen.tolist()],
        probabilities=probs,
        unscored=[sample.id for sample in samples if sample.id not in scored_ids],
    )
    names = class_names(config.data, heads)
    if not labelled:
        results["heads"] = dict(heads)
        if names:
            results["classes"] = names
        results["note"] = f"the {split} split has no labels: predictions only, no accuracy"
        results["predictions"] = _predictions(clip_scores)
        return _finite(results), clip_scores

    results["subsets"], results["sweep"] = {}, {}
    per_clip = {"ids": [sample.id for sample in dataset.samples], "subsets": {}, "sweep": {}}
    for name, sums in subset_sums.items():
        results["subsets"][name], per_clip["subsets"][name] = score(sums)
    recorded, recorded_codes = score(as_recorded)
    results["sweep"]["0.0"] = {**{k: v for k, v in recorded.items() if k != "samples"}, "std": 0.0}
    per_clip["sweep"]["0.0"] = [recorded_codes]
    for p in sweep_ps:
        scored = [score(sweep_sums[(p, s)]) for s in range(settings.seeds)]
        per_seed = [metrics for metrics, _ in scored]
        per_clip["sweep"][f"{p:.1f}"] = [codes for _, codes in scored]
        entry = {}
        for key in per_seed[0]:
            if key == "samples":
                continue
            values = torch.tensor([m[key] for m in per_seed], dtype=torch.float64)
            entry[key] = values.mean().item()
            entry[f"{key}_std"] = values.std(unbiased=False).item()
        entry["std"] = entry["action_top1_std"]
        results["sweep"][f"{p:.1f}"] = entry
    results["per_clip"] = per_clip

    # per-class view of every clip (with the modalities it has): the report's per-class table and
    # confusion figure, and the EPIC tail / unseen splits
    seen, probs = as_recorded.averaged()
    clip_labels = {h: labels[h][seen] for h in heads}
    results["heads"] = dict(heads)
    results["confusion"] = confusion_counts(probs, clip_labels)
    if names:
        results["classes"] = names

    extras = _epic_extras(config)
    if extras is not None and {"verb", "noun"} <= set(heads):
        tail_verbs, tail_nouns, unseen = extras
        results["tail"] = tail_metrics(probs, clip_labels, tail_verbs, tail_nouns)
        participants = [dataset.samples[i].group.split("_")[0] for i in seen.tolist()]
        unseen_rows = torch.tensor([p in unseen for p in participants], dtype=torch.bool)
        if unseen_rows.any():
            results["unseen"] = {
                **classification_metrics(
                    {h: p[unseen_rows] for h, p in probs.items()}, {h: v[unseen_rows] for h, v in clip_labels.items()}
                ),
                "samples": int(unseen_rows.sum()),
            }
    return _finite(results), clip_scores


def _predictions(scores: ClipScores, top: int = PREDICTION_TOP_K) -> dict:
    """``{"modalities", "clips": {id: {head: [[class, p], ...], "action": [[verb, noun, p], ...]}}}``,
    the ``top`` best of each head (and of verb x noun by the product of probabilities), best first."""
    clips: dict[str, dict] = {clip_id: {} for clip_id in scores.ids}
    for head, probs in scores.probabilities.items():
        best = probs.topk(min(top, probs.shape[1]), dim=1)
        for clip_id, classes, values in zip(scores.ids, best.indices.tolist(), best.values.tolist()):
            clips[clip_id][head] = [[c, p] for c, p in zip(classes, values)]
    if {"verb", "noun"} <= set(scores.probabilities):
        verbs, nouns, values = top_pairs(scores.probabilities["verb"], scores.probabilities["noun"], top)
        for clip_id, v, n, p in zip(scores.ids, verbs.tolist(), nouns.tolist(), values.tolist()):
            clips[clip_id]["action"] = [list(entry) for entry in zip(v, n, p)]
    return {"modalities": subset_name(scores.modalities), "unscored": scores.unscored, "clips": clips}


def evaluate_models(
    models: list[EvaluatedModel],
    settings: EvaluationSettings = EvaluationSettings(),
    out: str | Path | None = None,
    extra: dict | None = None,
    relative_to: str | Path | None = None,
    submission: str | Path | None = None,
    levels: SupervisionLevels | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> dict:
    """Evaluate every model and return the ``results.json`` layout, written to ``out`` when given:
    ``{"models": {name: evaluate_model(...)}, "settings": {...}, **extra}``.

    Models of one name are told apart (``student``, ``student_2``); ``relative_to`` writes each
    model's source relative to that folder (a results.json that moves with its folder).
    ``submission`` also writes the one model's EPIC-KITCHENS-100 challenge file with the
    supervision ``levels``; ``log`` gets one line per model and per file written."""
    from karmma.evaluation.submission import SupervisionLevels, check_heads, write_submission

    if submission:
        check_heads(models[0].model.heads, models[0].source)  # before the evaluation, not after it
        levels = levels or SupervisionLevels()
    for name, evaluated in zip(unique_names([m.name for m in models]), models):
        evaluated.name = name
    results = {"models": {}, "settings": settings_record(settings), **(extra or {})}
    for evaluated in models:
        result, scores = evaluate_with_scores(evaluated, settings)
        if relative_to is not None:
            result["source"] = str(Path(result["source"]).relative_to(relative_to))
        results["models"][evaluated.name] = result
        if not result["labelled"]:
            log(f"{evaluated.name}: {result['note']} ({len(scores.ids)} clips predicted)")
        else:
            full = result["subsets"][subset_name(result["modalities"])]
            log(f"{evaluated.name}: action top-1 {full['action_top1']:.2f} on the full set")
        if submission:
            write_submission(submission, scores, levels)
            log(
                f"wrote {submission}: {len(scores.ids)} narration ids of the {scores.split} split, "
                f"modalities {subset_name(scores.modalities)}, sls {levels.pt}/{levels.tl}/{levels.td} (pt/tl/td)"
            )
    if out:
        write_json(out, results)
        log(f"wrote {Path(out)}")
    return results


def settings_record(settings: EvaluationSettings) -> dict:
    """The ``settings`` entry of ``results.json``."""
    return {
        "split": settings.split or "default",
        "probabilities": list(settings.probabilities),
        "seeds": settings.seeds,
        "modalities": subset_name(settings.modalities) if settings.modalities else "all",
    }


def _finite(value):
    """NaN (an empty split) -> None, so results.json is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def unique_names(names: list[str]) -> list[str]:
    """``[student, student]`` -> ``[student, student_2]``."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out
