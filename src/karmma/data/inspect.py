"""``karmma data inspect``: what a dataset holds and what is wrong with it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch

from karmma.data.annotations import AnnotationError
from karmma.data.config import SPLITS, DatasetConfig, dataset_heads, detect_dataset, load_split
from karmma.data.dataset import ClipDataset, DataReport, collate_clips

# Any valid shapes do for inspection: existence checks do not look at them,
# and a deep scan only needs every file to decode.
INSPECT_SHAPES = {"V": (4, 3, 32, 32), "F": (4, 2, 32, 32), "A": (1, 64, 100), "D": (4, 4, 6)}


def load_dataset_config(path: str | Path) -> DatasetConfig:
    """A prepared folder (format detected) or a YAML file (top level or its ``data:`` section)."""
    path = Path(path)
    if path.is_dir():
        return detect_dataset(path)
    if path.suffix in (".yaml", ".yml"):
        from karmma.configuration import ConfigError, from_dict, read_yaml

        raw = read_yaml(path) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        section = raw.get("data", raw)
        config = from_dict(DatasetConfig, section, f"{path}.data" if "data" in raw else str(path))
        if config.root and not Path(config.root).is_absolute():
            config.root = str((path.parent / config.root).resolve())
        return config
    raise FileNotFoundError(f"{path}: not a dataset folder or a YAML config")


def class_names(config: DatasetConfig, heads: dict[str, int]) -> dict[str, list[str]] | None:
    """``{head: [name of class 0, ...]}`` from the dataset's class files; None when they are
    gone or do not match ``heads`` (callers then show class indices)."""
    from karmma.data.annotations import read_class_list, read_ssv2_labels

    try:
        if config.format in ("epic", "epic_star"):
            names = {
                "verb": read_class_list(config.path(config.verb_classes)),
                "noun": read_class_list(config.path(config.noun_classes)),
            }
        elif config.format == "ssv2":
            labels = read_ssv2_labels(config.path(config.labels))
            names = {"action": [t for t, _ in sorted(labels.items(), key=lambda item: item[1])]}
        else:
            return None
    except (OSError, ValueError):
        return None
    if any(len(names.get(h, [])) != n for h, n in heads.items()):
        return None
    return names


def inspect_dataset(config: DatasetConfig, deep: bool = False, workers: int = 2) -> dict:
    """Sizes, class counts, availability per modality and problems, per split."""
    heads = dataset_heads(config)
    result = {
        "format": config.format,
        "root": config.root,
        "heads": heads,
        "classes": class_names(config, heads),
        "splits": {},
        "problems": [],
    }
    train_classes: dict[str, set] = {}
    for split in SPLITS:
        try:
            samples = load_split(config, split)
        except FileNotFoundError as error:
            if split == "train" and not (config.validation or config.test):
                raise
            result["splits"][split] = {"available": False, "reason": str(error)}
            continue
        except AnnotationError as error:  # e.g. a label beyond data.heads: a problem to report, not a crash
            result["splits"][split] = {"available": False, "reason": str(error)}
            result["problems"].append(f"{split}: {error}")
            continue
        shapes = {k: INSPECT_SHAPES[k] for k in config.modalities}
        dataset = ClipDataset(samples, shapes, train=False)
        report = dataset.report
        if deep:
            report = DataReport(dataset.modalities)
            report.skipped = dataset.report.skipped
            report.not_covered = dataset.report.not_covered
            loader = torch.utils.data.DataLoader(dataset, batch_size=8, num_workers=workers, collate_fn=collate_clips)
            for batch in loader:
                report.add(batch["status"])
            # samples skipped at indexing never reach the loader: count them as missing everywhere
            for key in report.modalities:
                report.counts[key]["missing"] += dataset.report.skipped
        class_counts = {h: Counter(s.labels[h] for s in samples if h in s.labels) for h in heads}
        info = {
            "available": True,
            "clips": len(samples),
            "groups": len({s.group for s in samples}),
            "classes_present": {h: len(c) for h, c in class_counts.items()},
            "most_common": {h: c.most_common(3) for h, c in class_counts.items()},
            "availability": report.as_dict(),
            "scanned": "decoded every clip" if deep else "checked files exist",
        }
        result["splits"][split] = info
        short = sum(1 for s in samples if s.stop_frame - s.start_frame + 1 < 8)
        if short:
            result["problems"].append(f"{split}: {short} clip(s) shorter than 8 frames (frames will repeat)")
        if report.skipped:
            result["problems"].append(f"{split}: {report.skipped} clip(s) have no modality at all and are skipped")
        for key, uncovered in report.not_covered.items():
            if uncovered:
                past_end = sum(1 for _, why in uncovered if " ends at " in why)
                result["problems"].append(
                    f"{split}: {len(uncovered)} clip(s) whose {key} media do not cover the clip's window, "
                    f"{past_end} of them segments past the media's end (e.g. {uncovered[0][0]}: {uncovered[0][1]}); "
                    f"their {key} is treated as missing"
                )
        for key, counts in report.as_dict()["modalities"].items():
            if counts["unreadable"]:
                result["problems"].append(
                    f"{split}: {counts['unreadable']} clip(s) with unreadable {key} (see the log for paths)"
                )
            total = sum(counts.values())
            if total and counts["missing"] == total:
                result["problems"].append(f"{split}: modality {key} is missing for every clip")
        if split == "train":
            train_classes = {h: set(c) for h, c in class_counts.items()}
        elif train_classes:
            for h, c in class_counts.items():
                unseen = set(c) - train_classes.get(h, set())
                if unseen:
                    result["problems"].append(f"{split}: {len(unseen)} {h} class(es) never seen in train")
    return result


def format_inspection(result: dict) -> str:
    lines = [f"dataset: {result['format']} at {result['root']}", f"heads: {result['heads']}"]
    names = result.get("classes") or {}

    def name(head: str, cls) -> str:
        return names[head][cls] if head in names and isinstance(cls, int) and cls < len(names[head]) else f"class {cls}"

    for split, info in result["splits"].items():
        if not info["available"]:
            lines.append(f"\n[{split}] not available ({info['reason']})")
            continue
        lines.append(f"\n[{split}] {info['clips']} clips from {info['groups']} videos ({info['scanned']})")
        for head, present in info["classes_present"].items():
            common = ", ".join(f"{name(head, c)} ({n} clips)" for c, n in info["most_common"][head])
            lines.append(f"  {head}: {present} of {result['heads'][head]} classes present; most common {common}")
        avail = info["availability"]
        lines.append(f"  {'modality':8s} {'present':>8s} {'missing':>8s} {'unreadable':>10s}")
        for key, c in avail["modalities"].items():
            lines.append(f"  {key:8s} {c['present']:8d} {c['missing']:8d} {c['unreadable']:10d}")
    lines.append("\nproblems:" if result["problems"] else "\nproblems: none found")
    lines += [f"  - {p}" for p in result["problems"]]
    return "\n".join(lines)
