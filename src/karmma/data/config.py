"""Which dataset to read, as a typed config, and the splits it yields.

Formats:

* ``epic``: EPIC-KITCHENS-100 (train / validation / test CSVs as published).
* ``epic_star``: Epic-Kitchens* (the paper's protocol): a seeded 90 % / 10 %
  split of the official training CSV into train / validation, and the official
  validation CSV as test. ``split_by`` is ``"segment"`` (default, the paper's
  split of segments) or ``"video"`` (no video on both sides).
* ``ssv2``: Something-Something v2 (+ Something-Else boxes for D).
* ``manifest``: a user's own CSV manifests (see :mod:`karmma.data.manifest`).

Relative annotation paths are resolved against ``annotations`` (default
``<root>/annotations``). The config itself (:class:`DatasetConfig`, ``data:`` of a
training config) is in :mod:`karmma.train_config`, which needs no data code.
"""

from __future__ import annotations

from pathlib import Path

from karmma.data.annotations import (
    read_class_list,
    read_epic_segments,
    read_ssv2_labels,
    read_ssv2_split,
    split_train_validation,
)
from karmma.data.recipe import PUBLISHED_EPIC, PrepareSettings, read_recipe
from karmma.data.views import ClipSample
from karmma.train_config import SPLITS, DatasetConfig


def detect_dataset(folder: str | Path) -> DatasetConfig:
    """Guess the config of a prepared folder from the annotation files it holds."""
    folder = Path(folder)
    annotations = folder / "annotations"
    if (annotations / "EPIC_100_train.csv").is_file() or (annotations / "EPIC_100_validation.csv").is_file():
        has_train = (annotations / "EPIC_100_train.csv").is_file()
        return DatasetConfig(format="epic", root=str(folder), train="EPIC_100_train.csv" if has_train else "")
    labels = sorted(annotations.glob("*labels.json"))
    if labels:
        splits = {s: next(iter(sorted(annotations.glob(f"*{s}.json"))), None) for s in SPLITS}
        return DatasetConfig(
            format="ssv2",
            root=str(folder),
            labels=labels[0].name,
            train=splits["train"].name if splits["train"] else "",
            validation=splits["validation"].name if splits["validation"] else "",
            boxes=[
                p.name
                for p in sorted(
                    [*annotations.glob("bounding_box_smthsmth_part*.json"), *annotations.glob("*something_else*.json")]
                )
            ],
        )
    manifests = sorted(folder.glob("*.csv"))
    if manifests:
        by_name = {p.stem: p.name for p in manifests}
        return DatasetConfig(
            format="manifest",
            root=str(folder),
            annotations=str(folder),
            train=by_name.get("train", manifests[0].name),
            validation=by_name.get("validation", ""),
            test=by_name.get("test", ""),
        )
    raise FileNotFoundError(
        f"{folder} does not look like a prepared dataset: expected annotations/EPIC_100_*.csv, "
        "annotations/*labels.json (SSv2) or manifest CSV files"
    )


def _video_info(config: DatasetConfig) -> dict:
    from karmma.data.epic import read_video_info

    candidates = (
        [Path(config.video_info)]
        if config.video_info
        else [Path(config.root) / "video_info.csv", config.path("EPIC_100_video_info.csv")]
    )
    for path in candidates:
        if path.is_file():
            return read_video_info(path)
    return {}


def dataset_heads(config: DatasetConfig) -> dict[str, int]:
    """Classes per head: verb/noun for EPIC, action for SSv2, the manifest's label columns."""
    if config.format in ("epic", "epic_star"):
        return {
            "verb": len(read_class_list(config.path(config.verb_classes))),
            "noun": len(read_class_list(config.path(config.noun_classes))),
        }
    if config.format == "ssv2":
        return {"action": len(read_ssv2_labels(config.path(config.labels)))}
    if config.heads:
        return dict(config.heads)
    from karmma.data.manifest import read_manifest

    heads: dict[str, int] = {}
    for name in (config.train, config.validation, config.test):
        if name:
            samples, names = read_manifest(config.path(name))
            for head in names:
                heads[head] = max([heads.get(head, 0)] + [s.labels[head] + 1 for s in samples])
    return heads


def dataset_recipe(config: DatasetConfig) -> PrepareSettings | None:
    """How the dataset's frames were made: the recipe ``karmma prepare`` recorded under the root,
    else for the EPIC formats the published one (the official frames); None when unknown
    (frames not made by ``karmma prepare``, or no root)."""
    if not config.root or not Path(config.root).is_dir():
        return None
    recorded = read_recipe(config.root)
    if recorded is None and config.format in ("epic", "epic_star"):
        return PUBLISHED_EPIC
    return recorded


def load_split(config: DatasetConfig, split: str, modalities: tuple[str, ...] | None = None) -> list[ClipSample]:
    """The clips of ``split`` (train / validation / test) with their media sources (flow read
    with the strides of :func:`dataset_recipe`)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    modalities = modalities or config.modalities
    root = Path(config.root)
    recipe = dataset_recipe(config)
    if config.format in ("epic", "epic_star"):
        from karmma.data.epic import EpicLayout, epic_samples

        heads = dataset_heads(config)
        if config.format == "epic_star" and split in ("train", "validation"):
            segments = read_epic_segments(config.path(config.train), heads, require_labels=True)
            train, validation = split_train_validation(
                segments, config.validation_fraction, config.split_seed, config.split_by
            )
            segments = train if split == "train" else validation
        else:
            name = {"train": config.train, "validation": config.validation, "test": config.test}[split]
            if config.format == "epic_star":
                name = config.validation  # Epic-Kitchens*: the official validation set is the test set
            if not name:
                raise FileNotFoundError(
                    f"no annotation file configured for the {split} split (data.{split}"
                    + (", e.g. data.test=EPIC_100_test_timestamps.csv)" if split == "test" else ")")
                )
            segments = read_epic_segments(config.path(name), heads)
        layout = EpicLayout(root, audio=config.audio, recipe=recipe)
        return epic_samples(segments, layout, _video_info(config), modalities)
    if config.format == "ssv2":
        from karmma.data.boxes import read_something_else
        from karmma.data.ssv2 import ssv2_samples

        name = {"train": config.train, "validation": config.validation, "test": config.test}[split]
        if not name:
            raise FileNotFoundError(f"no annotation file configured for the {split} split")
        labels = read_ssv2_labels(config.path(config.labels)) if split != "test" else None
        segments = read_ssv2_split(config.path(name), labels)
        boxes = {}
        for box_file in config.boxes:
            boxes.update(read_something_else(config.path(box_file)))
        return ssv2_samples(segments, root, _video_info(config), boxes if config.boxes else None, modalities, recipe)
    from karmma.data.manifest import read_manifest

    name = {"train": config.train, "validation": config.validation, "test": config.test}[split]
    if not name:
        raise FileNotFoundError(f"no manifest configured for the {split} split")
    samples, _ = read_manifest(config.path(name), modalities, config.heads or None, recipe)
    return samples
