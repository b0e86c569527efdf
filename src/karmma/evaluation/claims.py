"""The one home of the paper's claims: decided over several seeds, checked on one seed's point
estimates, and ``results.json`` aggregated over seeds. The report (:mod:`karmma.evaluation.report`)
renders what this module decides.

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

:func:`claims_at_chance` takes the verdict from a decided claim whose models are
all at chance on the numbers it compares. With one seed, :func:`check_claims`
compares point estimates and decides nothing beyond them.
"""

from __future__ import annotations

import math

import numpy as np

from karmma.evaluation.chance import chance_rate, row_clips
from karmma.evaluation.model_labels import model_label
from karmma.evaluation.statistics import BOOTSTRAP_RESAMPLES, at_chance, paired_bootstrap, seed_interval
from karmma.modalities import largest_first, largest_subset, parse_subset

TEST = f"two-stage paired bootstrap over seeds and clips ({BOOTSTRAP_RESAMPLES} resamples), 95 % interval"
#: (better, worse, source): pairwise accuracy claims checked on every subset
SUBSET_CLAIMS = (
    ("student", "baseline", "paper"),
    ("student", "baseline_delta", "paper"),
    ("baseline_delta", "baseline", "paper"),
    ("student", "baseline_masked", "ours"),
)
SWEEP_POINTS = ("0.3", "0.5", "0.7")
#: the models the one-seed checks compare (:func:`check_claims`)
COMPARED = ("baseline", "baseline_delta", "student")
FAR_BELOW = 5.0  # "far below" on a single-modality subset: at least this many points lower, or under half
AT_CHANCE = "at chance"  # how a checked claim's evidence starts when it gets no verdict: its numbers are noise
NO_VERDICT = "no verdict"  # the verdict of a claim whose compared models are all at chance


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


def claims_at_chance(results: dict) -> list[dict]:
    """The decided claims of a several-seed results.json, with the verdict of each claim whose two
    models are both at chance on the numbers it compares replaced by no verdict (the mean over
    seeds on all the seeds' clips; claims written before ``compared`` was recorded are kept)."""
    chance = chance_rate(results)
    models = results["models"]
    out = []
    for claim in results["claims"]:
        condition, compared = claim.get("condition", ""), claim.get("compared", [])
        if chance is not None and compared and all(n in models for n in compared):
            if condition.startswith("p = "):
                rows = [(models[n], models[n]["sweep"].get(condition[4:], {})) for n in compared]
            else:
                rows = [(models[n], models[n]["subsets"].get(condition, {})) for n in compared]
            if all(
                row.get("action_top1") is not None and at_chance(row["action_top1"], row_clips(row, m), chance)
                for m, row in rows
            ):
                claim = {**claim, "verdict": f"{NO_VERDICT} (both at chance)"}
        out.append(claim)
    return out


def _checked(claim: str, holds: bool | None, evidence: str) -> dict:
    """One claim checked on point estimates: ``holds`` None where it only reports, or where every
    model it compares is at chance (then its evidence starts with ``AT_CHANCE``: no verdict)."""
    if holds is None:
        verdict = NO_VERDICT if evidence.startswith(AT_CHANCE) else "reported"
    else:
        verdict = "holds" if holds else "does not hold"
    return {"claim": claim, "verdict": verdict, "evidence": evidence}


def check_claims(results: dict) -> list[dict]:
    """The paper's qualitative claims on the point estimates of one seed's results:
    ``{"claim", "verdict", "evidence"}``, the verdict ``holds``, ``does not hold``, ``reported``
    (the claim only reports) or ``NO_VERDICT`` (every model it compares is at chance on every number
    it compares, :func:`karmma.evaluation.statistics.at_chance`); numbers where all compared models
    are at chance are left out of the others. Several seeds decide them: :func:`decide_claims`."""
    models = results["models"]
    if not all(n in models for n in COMPARED):
        return [_checked("claims", None, f"needs models {', '.join(COMPARED)}; results have {', '.join(models)}")]
    b, d, s = (models[n] for n in COMPARED)
    full = largest_subset(s["subsets"])
    chance = chance_rate(results)
    claims: list[tuple[str, bool | None, str]] = []

    def acc(model, subset):
        return model["subsets"].get(subset, {}).get("action_top1")

    def flat(*scored: tuple[dict, dict]) -> bool:
        """Whether every ``(model, row)`` scores at chance (row: a subset's or a dropout rate's results)."""
        return chance is not None and all(
            at_chance(row["action_top1"], row_clips(row, model), chance) for model, row in scored
        )

    def subset_rows(subset, *compared):
        return [(m, m["subsets"][subset]) for m in compared]

    def sweep_rows(p, *compared):
        return [(m, m["sweep"][p]) for m in compared]

    left_out = f"left out: every compared model at chance (≤ {chance:.2f} %, the best trivial rate)" if chance else ""
    fb, fd, fs = acc(b, full), acc(d, full), acc(s, full)
    claim = f"KARMMA_S ≥ Baseline w/ δ ≥ Baseline on the full set ({full})"
    evidence = f"{fs:.2f} / {fd:.2f} / {fb:.2f}"
    if flat(*subset_rows(full, s, d, b)):
        claims.append((claim, None, f"{AT_CHANCE}: {evidence}, each within noise of {chance:.2f} %"))
    else:
        claims.append((claim, fs >= fd >= fb, evidence))
    scored = [k for k in s["subsets"] if all(acc(m, k) is not None for m in (b, d, s))]
    subsets = [k for k in scored if not flat(*subset_rows(k, b, d, s))]
    flat_subsets = [k for k in scored if k not in subsets]
    note = f"; {', '.join(flat_subsets)} {left_out}" if flat_subsets else ""
    ordered = [k for k in subsets if acc(s, k) >= acc(d, k) >= acc(b, k)]
    beats = [k for k in subsets if acc(s, k) >= max(acc(d, k), acc(b, k))]
    if subsets:
        needed = min(5, len(subsets))  # the paper's five of seven; all of them where fewer are above chance
        claims.append(
            (
                f"the same order on at least {needed} of the {len(subsets)} subsets",
                len(ordered) >= needed,
                f"holds on {len(ordered)}: {', '.join(ordered) or 'none'}{note}",
            )
        )
        claims.append(
            (
                "KARMMA_S at least as accurate as both baselines on every subset (docs/method.md)",
                len(beats) == len(subsets),
                f"on {len(beats)} of {len(subsets)}: {', '.join(beats) or 'none'}{note}",
            )
        )
    else:
        claims.append(("the same order on at least 5 subsets", None, f"{AT_CHANCE} on every subset"))
        claims.append(
            ("KARMMA_S at least as accurate as both baselines on every subset", None, f"{AT_CHANCE} on every subset")
        )
    singles = [k for k in subsets if len(parse_subset(k)) == 1]
    far = [k for k in singles if acc(d, k) - acc(b, k) >= FAR_BELOW or acc(b, k) < acc(d, k) / 2]
    claim = f"on every single-modality subset the Baseline falls far below Baseline w/ δ (≥ {FAR_BELOW:g} points lower, or under half)"
    if singles:
        claims.append(
            (claim, len(far) == len(singles), ", ".join(f"{k}: {acc(b, k):.2f} vs {acc(d, k):.2f}" for k in singles))
        )
    else:
        claims.append((claim, None, f"{AT_CHANCE} on every single-modality subset"))
    high = [p for p in s["sweep"] if float(p) >= 0.3 and p in b["sweep"]]
    informative = [p for p in high if not flat(*sweep_rows(p, s, b))]
    claim = "along the sweep KARMMA_S keeps a larger share of its p = 0 accuracy than the Baseline at every p ≥ 0.3"
    if not informative or flat(*sweep_rows("0.0", s)) or flat(*sweep_rows("0.0", b)):
        claims.append((claim, None, f"{AT_CHANCE}: a share of an accuracy at chance says nothing"))
    else:
        share = {}
        for name, m in (("student", s), ("baseline", b)):
            zero = m["sweep"]["0.0"]["action_top1"]
            share[name] = {p: (m["sweep"][p]["action_top1"] / zero if zero else 0.0) for p in informative}
        better = [p for p in informative if share["student"][p] > share["baseline"][p]]
        claims.append(
            (
                claim,
                len(better) == len(informative),
                ", ".join(f"p={p}: {share['student'][p]:.0%} vs {share['baseline'][p]:.0%}" for p in informative),
            )
        )
    claim = "along the sweep KARMMA_S is more accurate than the Baseline at every p ≥ 0.3 (absolute accuracy)"
    if informative:
        above = [p for p in informative if s["sweep"][p]["action_top1"] > b["sweep"][p]["action_top1"]]
        evidence = ", ".join(
            f"p={p}: {s['sweep'][p]['action_top1']:.2f} vs {b['sweep'][p]['action_top1']:.2f}" for p in informative
        )
        claims.append((claim, len(above) == len(informative), evidence))
    else:
        claims.append((claim, None, f"{AT_CHANCE} at every p ≥ 0.3"))
    if "teacher" in models:
        t = acc(models["teacher"], largest_subset(models["teacher"]["subsets"]))
        claims.append(
            (
                "the teacher's full-set accuracy, reported next to them (the paper's teacher is below its students)",
                None,
                f"KARMMA_T {t:.2f} vs KARMMA_S {fs:.2f}",
            )
        )
    return [_checked(*claim) for claim in claims]


#: the report's ablation (before, after, what the step adds): each step adds one thing to the model before it
ABLATION_STEPS = (
    ("baseline", "baseline_delta", "+ modality dropout and learned tokens"),
    ("baseline_delta", "student", "+ distillation"),
)


#: an ablation row's condition at a dropout rate of the sweep: ``dropout p = 0.3``
SWEEP_CONDITION = "dropout p = "


def ablation_step(before: str, after: str, adds: str) -> str:
    """An ablation row's step label: ``Baseline → Baseline w/ δ (+ modality dropout and learned tokens)``."""
    return f"{model_label(before)} → {model_label(after)} ({adds})"


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
            (f"{SWEEP_CONDITION}{p}", lambda c, p=p: _sweep_mean(c, p))
            for p in first[after]["per_clip"].get("sweep", {})
        ]
        for condition, select in conditions:
            effect = paired_bootstrap(_paired(seeds, after, before, select))
            rows.append(
                {
                    "step": ablation_step(before, after, adds),
                    "condition": condition,
                    "effect": round(effect.effect, 2),
                    "ci": [round(effect.low, 2), round(effect.high, 2)],
                    "verdict": effect.verdict,
                    "clips": effect.clips,
                    "seeds": effect.seeds,
                }
            )
    return rows


def ablation_rows(results: dict) -> list[dict]:
    """The ablation of a results.json: the rows :func:`aggregate_seeds` recorded, else those of its
    one seed's per-clip scores ([] without them)."""
    rows = results.get("ablation")
    if rows is None and all(m.get("per_clip") for m in results["models"].values()):
        rows = ablation([results])
    return rows or []


def _mean_over_seeds(values: list[dict]) -> dict:
    """``{metric: mean, metric_ci95: half-width}`` of numeric entries present in every seed."""
    out = {}
    for key, value in values[0].items():
        if key == "samples":  # clips scored: summed over seeds, like a model's clips
            out[key] = sum(v.get(key, 0) for v in values)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and all(key in v for v in values):
            mean, half = seed_interval([v[key] for v in values])
            out[key] = mean
            if not key.endswith("_std") and key != "std":
                out[f"{key}_ci95"] = half
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
