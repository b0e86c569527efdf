"""The paper's claims decided over several seeds, and ``results.json`` aggregated over seeds.

:func:`aggregate_seeds` turns one ``results.json`` per seed (``karmma
evaluate``) into one with the same layout: every metric at its usual key is the
mean over seeds, ``<metric>_ci95`` beside it the half-width of its 95 % t
interval over seeds; the per-seed results are kept under ``seeds``; and
``claims`` lists each claim of the paper with a verdict from a two-stage
paired bootstrap over the same test clips and seeds
(:func:`karmma.evaluation.statistics.paired_bootstrap`).

The claims (docs/method.md, "Evaluation protocol"; the paper's Table I and Fig. 4):

* KARMMA_S is more accurate than the Baseline and than the Baseline w/ δ, and
  the Baseline w/ δ than the Baseline, on every modality subset;
* KARMMA_S loses less accuracy than the Baseline under random sensor dropouts;
* (ours) KARMMA_S against our masked Baseline, and against its teacher.
"""

from __future__ import annotations

import math

import numpy as np

from karmma.evaluation.model_labels import model_label
from karmma.evaluation.statistics import BOOTSTRAP_RESAMPLES, paired_bootstrap, seed_interval
from karmma.modalities import largest_first

TEST = f"two-stage paired bootstrap over seeds and clips ({BOOTSTRAP_RESAMPLES} resamples), 95 % interval"
#: (better, worse, source): pairwise accuracy claims checked on every subset
SUBSET_CLAIMS = (
    ("student", "baseline", "paper"),
    ("student", "baseline_delta", "paper"),
    ("baseline_delta", "baseline", "paper"),
    ("student", "baseline_masked", "ours"),
)
SWEEP_POINTS = ("0.3", "0.5", "0.7")


def _codes(text: str) -> np.ndarray:
    """'10.1' -> [1, 0, nan, 1]"""
    return np.array([math.nan if c == "." else float(c) for c in text])


def _paired(seeds: list[dict], better: str, worse: str, select) -> list[np.ndarray]:
    """Per seed, ``select(per_clip of better) - select(per_clip of worse)`` on the clips both scored."""
    differences = []
    for result in seeds:
        models = result["models"]
        if better not in models or worse not in models:
            continue
        a, b = select(models[better]["per_clip"]), select(models[worse]["per_clip"])
        if models[better]["per_clip"]["ids"] != models[worse]["per_clip"]["ids"]:
            raise ValueError(f"{better} and {worse} were scored on different clips: they cannot be paired")
        both = ~np.isnan(a) & ~np.isnan(b)
        differences.append(a[both] - b[both])
    return differences


def _claim(text: str, source: str, differences: list[np.ndarray], compared: tuple[str, str], condition: str) -> dict:
    """One decided claim; ``compared`` (better, worse) and ``condition`` (a subset, or a sweep rate
    ``p = 0.3``) say which numbers it compares, so a report can tell when both are at chance."""
    effect = paired_bootstrap(differences)
    return {
        "claim": text,
        "source": source,
        "compared": list(compared),
        "condition": condition,
        "verdict": effect.verdict,
        "effect": round(effect.effect, 2),
        "ci": [round(effect.low, 2), round(effect.high, 2)],
        "clips": effect.clips,
        "seeds": effect.seeds,
        "test": TEST,
    }


def _sweep_mean(per_clip: dict, p: str) -> np.ndarray:
    """Per clip, the fraction of sweep draws at ``p`` in which its action was right."""
    return np.nanmean(np.stack([_codes(c) for c in per_clip["sweep"][p]]), axis=0)


def decide_claims(seeds: list[dict]) -> list[dict]:
    """Every claim with a verdict, effect (points) and 95 % interval, from per-seed results."""
    first = seeds[0]["models"]
    claims = []
    subsets = largest_first(next(iter(first.values()))["subsets"])
    for better, worse, source in SUBSET_CLAIMS:
        if better not in first or worse not in first:
            continue
        for subset in subsets:
            differences = _paired(seeds, better, worse, lambda c, s=subset: _codes(c["subsets"][s]))
            claims.append(
                _claim(
                    f"{model_label(better)} more accurate than {model_label(worse)} on {subset}",
                    source,
                    differences,
                    (better, worse),
                    subset,
                )
            )
    if "student" in first and "baseline" in first:
        for p in SWEEP_POINTS:
            if p not in first["student"]["per_clip"]["sweep"]:
                continue

            def drop(c, p=p):  # accuracy kept at p relative to p = 0, per clip (negative: lost)
                return _sweep_mean(c, p) - _sweep_mean(c, "0.0")

            claims.append(
                _claim(
                    f"KARMMA_S loses less accuracy than the Baseline when sensors drop out with p = {p}",
                    "paper",
                    _paired(seeds, "student", "baseline", drop),
                    ("student", "baseline"),
                    f"p = {p}",
                )
            )
    if "student" in first and "teacher" in first:
        full = subsets[0]
        claims.append(
            _claim(
                f"KARMMA_S more accurate than its teacher KARMMA_T on {full}",
                "paper",
                _paired(seeds, "student", "teacher", lambda c: _codes(c["subsets"][full])),
                ("student", "teacher"),
                full,
            )
        )
    return claims


#: the report's ablation (before, after, what the step adds): each step adds one thing to the model before it
ABLATION_STEPS = (
    ("baseline", "baseline_delta", "+ modality dropout and learned tokens"),
    ("baseline_delta", "student", "+ distillation"),
)


def ablation(seeds: list[dict]) -> list[dict]:
    """What each step of Baseline -> Baseline w/ δ -> KARMMA_S adds: per step, the paired effect
    (action top-1 points, 95 % interval over seeds and clips) on every subset and at every
    dropout rate of the sweep. ``seeds``: one results.json per seed (one is allowed)."""
    first = seeds[0]["models"]
    rows = []
    for before, after, adds in ABLATION_STEPS:
        if before not in first or after not in first:
            continue
        conditions = [(s, lambda c, s=s: _codes(c["subsets"][s])) for s in largest_first(first[after]["subsets"])]
        conditions += [
            (f"dropout p = {p}", lambda c, p=p: _sweep_mean(c, p)) for p in first[after]["per_clip"].get("sweep", {})
        ]
        for condition, select in conditions:
            effect = paired_bootstrap(_paired(seeds, after, before, select))
            rows.append(
                {
                    "step": f"{model_label(before)} → {model_label(after)} ({adds})",
                    "condition": condition,
                    "effect": round(effect.effect, 2),
                    "ci": [round(effect.low, 2), round(effect.high, 2)],
                    "verdict": effect.verdict,
                    "clips": effect.clips,
                    "seeds": effect.seeds,
                }
            )
    return rows


def ablation_table(rows: list[dict]) -> str:
    """Markdown: one row per condition (subset or dropout rate), one column per step."""
    steps = list(dict.fromkeys(r["step"] for r in rows))
    conditions = list(dict.fromkeys(r["condition"] for r in rows))
    cell = {(r["step"], r["condition"]): r for r in rows}
    lines = ["| condition | clips | " + " | ".join(steps) + " |", "|---" * (len(steps) + 2) + "|"]
    for condition in conditions:
        found = [cell.get((step, condition)) for step in steps]
        clips = next((r["clips"] for r in found if r), 0)
        texts = ["" if r is None else f"{r['effect']:+.1f} [{r['ci'][0]:+.1f}, {r['ci'][1]:+.1f}]" for r in found]
        lines.append(f"| {condition} | {clips} | " + " | ".join(texts) + " |")
    return "\n".join(lines)


def _mean_over_seeds(values: list[dict]) -> dict:
    """``{metric: mean, metric_ci95: half-width}`` of numeric entries present in every seed."""
    out = {}
    for key, value in values[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and all(key in v for v in values):
            mean, half = seed_interval([v[key] for v in values])
            out[key] = mean
            if not key.endswith("_std") and key not in ("samples", "std"):
                out[f"{key}_ci95"] = half
        elif key == "samples":
            out[key] = sum(v.get(key, 0) for v in values)
    return out


def aggregate_seeds(per_seed: dict[int, dict]) -> dict:
    """One ``results.json`` over seeds (see the module docstring); ``per_seed`` maps seed -> results."""
    seeds = [per_seed[s] for s in sorted(per_seed)]
    names = list(seeds[0]["models"])
    models = {}
    for name in names:
        runs = [s["models"][name] for s in seeds if name in s["models"]]
        first = runs[0]
        model = {
            k: v for k, v in first.items() if k not in ("subsets", "sweep", "per_clip", "confusion", "tail", "unseen")
        }
        model["clips"] = sum(r["clips"] for r in runs)
        if all("availability" in r for r in runs):  # clips per modality, summed over seeds like the clips
            model["availability"] = {k: sum(r["availability"][k] for r in runs) for k in first["availability"]}
        model["source"] = first.get("source")  # the first seed's run: the report draws its training curves
        model["sources"] = [r.get("source") for r in runs]
        model["subsets"] = {s: _mean_over_seeds([r["subsets"][s] for r in runs]) for s in first["subsets"]}
        model["sweep"] = {p: _mean_over_seeds([r["sweep"][p] for r in runs]) for p in first["sweep"]}
        for extra in ("tail", "unseen"):
            if all(extra in r for r in runs):
                model[extra] = _mean_over_seeds([r[extra] for r in runs])
        model["confusion"] = _summed_confusion([r.get("confusion", {}) for r in runs])
        models[name] = model
    return {
        "models": models,
        **({"ceilings": seeds[0]["ceilings"]} if "ceilings" in seeds[0] else {}),  # the data's, equal for every seed
        "settings": {**seeds[0].get("settings", {}), "seeds_aggregated": sorted(per_seed)},
        "claims": decide_claims(seeds),
        "ablation": ablation(seeds),
        "seeds": {str(s): per_seed[s] for s in sorted(per_seed)},
    }


def _summed_confusion(confusions: list[dict]) -> dict:
    total: dict[str, dict[tuple[int, int], int]] = {}
    for confusion in confusions:
        for head, cells in confusion.items():
            for true, predicted, count in cells:
                key = (true, predicted)
                total.setdefault(head, {})[key] = total.setdefault(head, {}).get(key, 0) + count
    return {head: [[t, p, c] for (t, p), c in sorted(cells.items())] for head, cells in total.items()}


def claims_table(claims: list[dict]) -> str:
    """Markdown: one row per claim, its verdict, the effect in points and its 95 % interval."""
    lines = [
        "| claim | source | verdict | effect (points) | 95 % interval | clips scored (seeds) |",
        "|---|---|---|---|---|---|",
    ]
    for c in claims:
        verdict = {"holds": "**holds**", "does not hold": "**does not hold**"}.get(c["verdict"], c["verdict"])
        lines.append(
            f"| {c['claim']} | {c['source']} | {verdict} | {c['effect']:+.2f} | "
            f"[{c['ci'][0]:+.2f}, {c['ci'][1]:+.2f}] | {c['clips']} ({c['seeds']}) |"
        )
    return "\n".join(lines)
