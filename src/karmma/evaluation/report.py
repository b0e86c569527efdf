"""karmma report DIR: a Markdown report with PNG figures, built only from result files.

Reads DIR/results.json (karmma evaluate), and when present DIR/benchmark.json
(karmma benchmark model --json), DIR/dropout_study.json (karmma dropout-study) and
the training logs (metrics.json) of the run folders named in results.json
(models.<name>.source) or found under DIR/runs/. Writes DIR/report.md with
sweep.png, per_class.png, training.png, resources.png and dropout_study.png.
Every number in the report is read from those files; the text explains what
the models are and how much the numbers can be trusted, for a reader who
never saw the code. The claims are decided in :mod:`karmma.evaluation.claims`;
this module renders them.
"""

from __future__ import annotations

import json
from pathlib import Path

from karmma.evaluation.chance import (
    chance_levels,
    class_totals,
    counted_clips,
    counted_model,
    result_heads,
    row_clips,
)
from karmma.evaluation.claims import (
    ABLATION_STEPS,
    NO_VERDICT,
    SWEEP_CONDITION,
    TEST,
    ablation_rows,
    ablation_step,
    check_claims,
    claims_at_chance,
)
from karmma.evaluation.model_labels import model_description, model_label
from karmma.evaluation.paper import (
    PaperMatch,
    beside,
    match_paper,
    paper_resources,
    paper_value,
    reported_models,
    resource_paper_note,
)
from karmma.evaluation.statistics import wilson_interval
from karmma.io import atomic_savefig, atomic_write_text
from karmma.modalities import MODALITY_NAMES, MODALITY_ORDER, largest_first, largest_subset, order_keys

STRATEGIES = {  # the ``missing_modality`` of each model (docs/method.md, "Missing modalities")
    "learned": "learned modality + position tokens stand in",
    "mask": "left out of attention and of the average (ours)",
    "zeros": "a zero input, run through its extractor and fused like any other (the paper's Baseline)",
}
PER_CLASS_ROWS = 15  # the most frequent classes shown per head (EPIC has 97 verbs and 300 nouns)
METHOD_DOC = "docs/method.md in the karmma repository"


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    """Save a figure as PNG through a temporary name (a crash never leaves half a file)."""
    atomic_savefig(fig, path, dpi=110)


# ---------------------------------------------------------------- what the numbers mean


def wilson_half_width(accuracy: float, clips: int) -> float:
    """Half the width (percentage points) of the 95 % Wilson binomial interval of ``accuracy`` (%) on ``clips`` clips."""
    low, high = wilson_interval(accuracy, clips)
    return (high - low) / 2


def interval(row: dict, metric: str, model: dict) -> float | None:
    """The one ± the report gives ``row[metric]`` (a row of ``model``'s results), in every table and
    paragraph: the 95 % t half-width over seeds (``<metric>_ci95``) where results.json has it, else
    the 95 % Wilson half-width on the clips the row scored."""
    value = row.get(metric)
    if value is None:
        return None
    if f"{metric}_ci95" in row:
        return row[f"{metric}_ci95"]
    return wilson_half_width(value, row_clips(row, model))


def _with_interval(text: str, half: float | None) -> str:
    return text if half is None else f"{text} ± {half:.1f}"


def model_table(results: dict) -> str:
    lines = [
        "| model | name in results.json | what it is | a missing modality at test time | checkpoint |",
        "|---|---|---|---|---|",
    ]
    for name, model in results["models"].items():
        description = model_description(name) or f"a model evaluated under the name `{name}` (no description known)"
        strategy = model.get("missing_modality")
        lines.append(
            f"| {model_label(name)} | `{name}` | {description} | {STRATEGIES.get(strategy, strategy or '–')} | "
            f"{model.get('selection', '–')} |"
        )
    return "\n".join(lines)


def trust_section(results: dict) -> list[str]:
    """Clip counts, chance levels and the binomial noise they imply."""
    models = results["models"]
    first = next(iter(models.values()))
    clips = first["clips"]
    availability = ", ".join(f"{k} {v}" for k, v in first.get("availability", {}).items())
    lines = [
        f"Each model is scored on the same **{clips} clips** of the `{first['split']}` split"
        + (f" (clips that have each modality: {availability})" if availability else "")
        + ". "
        "A subset row counts only the clips that have every one of its modalities (`samples` in results.json).",
        "",
    ]
    levels = chance_levels(results)
    if levels:
        lines += [
            "**Chance levels** (%): what a model that learned nothing would score"
            + (f", counted on the {counted} clips of the split" if (counted := counted_clips(results)) else "")
            + ". A number whose 95 % interval reaches the larger of the two is *at chance*: no evidence that "
            "the model learned anything; a claim below gets no verdict where every model it compares is at chance.",
            "",
            "| metric | classes | uniform random guess | always the most frequent class of this split |",
            "|---|---|---|---|",
        ]
        heads = result_heads(results)
        classes = {h: str(n) for h, n in heads.items()}
        if "verb" in heads and "noun" in heads:
            classes["action"] = f"{heads['verb']} verbs × {heads['noun']} nouns = {heads['verb'] * heads['noun']}"
        elif len(heads) == 1:
            classes["action"] = next(iter(classes.values()))
        for metric, (uniform, majority) in levels.items():
            head = metric.rsplit("_", 1)[0]
            lines.append(f"| {metric.replace('_', ' ')} | {classes[head]} | {uniform:.2f} | {_fmt(majority)} |")
        lines.append("")
    examples = []
    for name, model in models.items():
        row = model["subsets"].get(largest_subset(model["subsets"]), {})
        if row.get("action_top1") is not None:
            value = _with_interval(f"{row['action_top1']:.1f}", interval(row, "action_top1", model))
            examples.append(f"{model_label(name)} {value} ({row_clips(row, model)} clips)")
    seeded = bool(results.get("seeds"))
    lines += [
        f"**Noise.** With {clips} clips, one clip is {100 / clips:.1f} points of accuracy. "
        + (
            "Every ± in the tables below is the 95 % t-interval over seeds of the mean beside it. "
            if seeded
            else "Every ± in the tables below is the 95 % binomial (Wilson) interval of the number beside it, "
            "computed on the clips that number scored (the *clips* column of its row). "
        )
        + f"For scale, the Wilson half-width on {clips} clips is ± {wilson_half_width(50, clips):.1f} points at 50 %, "
        f"± {wilson_half_width(20, clips):.1f} at 20 % and ± {wilson_half_width(5, clips):.1f} at 5 %"
        + (f"; the action top-1 with every modality present: {', '.join(examples)}" if examples else "")
        + ". "
        "A difference between two models smaller than these half-widths is not evidence that one is better.",
        "",
    ]
    return lines


# ---------------------------------------------------------------- tables


def _each_seed(results: dict) -> dict[str, dict]:
    """Each seed's results.json by seed: those a several-seed results.json keeps under ``seeds``, else
    ``{"": results}`` (one seed)."""
    return results.get("seeds") or {"": results}


def ceiling_violations(results: dict) -> list[str]:
    """Every (model, subset, metric) whose accuracy beats the data's information ceiling by more than
    test noise: twice the 95 % Wilson half-width at the ceiling on the clips scored (about a
    Bonferroni bound over the 105 numbers of five models x seven subsets x three heads). A ceiling
    is an upper bound, so each entry means a bug in the generator, its ceilings or the scoring.
    The pre-trained extractors of every seed (``extractors``) are checked on their own modality too."""
    ceilings = results.get("ceilings", {})
    scored = [  # (who, subset, scores, the clips they were scored on)
        (name, subset, scores, row_clips(scores, model))
        for name, model in results["models"].items()
        for subset, scores in model["subsets"].items()
    ]
    for seed, seeded in _each_seed(results).items():  # each seed's pre-trained extractors
        for size, extractors in seeded.get("extractors", {}).items():
            where = f" (seed {seed})" if seed else ""
            scored += [
                (f"{m} extractor, {size}-sized{where}", m, scores, scores.get("samples") or 0)
                for m, scores in extractors.items()
            ]
    found = []
    for who, subset, scores, clips in scored:
        for metric, ceiling in ceilings.get(subset, {}).items():
            value = scores.get(metric)
            if value is not None and value > ceiling + 2 * wilson_half_width(ceiling, clips):
                found.append(f"{who} {metric} on {subset}: {value:.1f} > ceiling {ceiling:.1f} ({clips} clips)")
    return found


def _clips_cell(rows: list[tuple[dict, dict]]) -> str:
    """The clips a table row scored, from its ``(row, model)`` pairs: one number when every model
    scored the same clips, else each model's in column order."""
    counts = [row_clips(row, model) for row, model in rows if row]
    distinct = list(dict.fromkeys(counts))
    return str(distinct[0]) if len(distinct) == 1 else " / ".join(map(str, counts)) or "–"


def _model_header(names: list[str], paper: dict | None) -> list[str]:
    """Column titles: each model, followed by *paper* and *Δ* where the paper's table reports it."""
    reported = reported_models(paper)
    return [cell for n in names for cell in ([model_label(n)] + (["paper", "Δ"] if n in reported else []))]


def subset_table(results: dict, metric: str = "action_top1", paper: dict | None = None) -> str:
    """Rows: subsets (largest first), with the clips each scored; columns: models (± their
    :func:`interval`); the best student-sized model per row in bold; after each model the paper
    reports, the paper's number and the difference (``paper``: a table of paper_results.json, used
    when it reports ``metric``); the data's information ceiling (``ceilings`` in results.json,
    SynthKitchen) in the last column."""
    models = results["models"]
    subsets = largest_first({s for m in models.values() for s in m["subsets"]})
    names = list(models)
    paper = paper if paper and paper["metric"] == metric else None
    ceilings = results.get("ceilings", {})
    header = ["subset", "clips", *_model_header(names, paper)] + (["ceiling"] if ceilings else [])
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for subset in subsets:
        rows = {n: models[n]["subsets"].get(subset, {}) for n in names}
        values = {n: rows[n].get(metric) for n in names}
        contenders = [v for n, v in values.items() if n != "teacher" and v is not None]
        best = max(contenders) if contenders else None
        cells = [subset, _clips_cell([(rows[n], models[n]) for n in names])]
        for n in names:
            v = values[n]
            text = _fmt(v)
            bold = f"**{text}**" if v is not None and n != "teacher" and v == best else text
            cells.append(_with_interval(bold, interval(rows[n], metric, models[n])))
            if n in reported_models(paper):
                cells += beside(v, paper_value(paper, n, subset))
        if ceilings:
            cells.append(_fmt(ceilings[subset].get(metric)) if subset in ceilings else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def full_set_table(results: dict, paper: dict | None = None) -> str:
    """Every model on its full modality set, with the clips it scored: top-1 and top-5, each ± its
    :func:`interval`; the paper's action top-1 and the difference beside ours (``paper``: the
    ``subsets`` table of paper_results.json); the data's ceilings of the full set last, where results.json has them."""
    heads = [h for h in result_heads(results) if h != "action"] or ["verb", "noun"]
    columns = [f"{h}_top1" for h in heads] + ["action_top1", "action_top5"]
    paper = paper if paper and paper["metric"] in columns else None
    titles = [c.replace("_", " ") for c in columns]
    if paper:
        at = columns.index(paper["metric"]) + 1
        titles[at:at] = ["paper", "Δ"]
    ceilings = results.get("ceilings", {})
    bounded = [c for c in columns if c.endswith("_top1")]  # the Bayes-optimal top-1 of the model's full set
    if ceilings:
        titles.append("ceiling (" + " / ".join(c.removesuffix("_top1") for c in bounded) + ")")
    lines = ["| model | modalities | clips | " + " | ".join(titles) + " |", "|---" * (len(titles) + 3) + "|"]
    for name, model in results["models"].items():
        full = largest_subset(model["subsets"])
        row = model["subsets"][full]
        cells = []
        for column in columns:
            cells.append(_with_interval(_fmt(row.get(column)), interval(row, column, model)))
            if paper and column == paper["metric"]:
                cells += beside(row.get(column), paper_value(paper, name, full))
        if ceilings:
            cells.append(" / ".join(_fmt(ceilings.get(full, {}).get(c)) for c in bounded))
        lines.append(f"| {model_label(name)} | {full} | {row_clips(row, model)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sweep_table(results: dict, paper: dict | None = None) -> str:
    """Rows: the test-time drop probability p, with the clips each scored (every clip, with the
    modalities it has); columns: models, mean ± the spread of :func:`_spread_text`, and the paper's
    number and the difference where ``paper`` (the ``sweep`` table of paper_results.json) has one."""
    models = results["models"]
    names = list(models)
    ps = list(next(iter(models.values()))["sweep"])
    header = ["p", "clips", *_model_header(names, paper)]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for p in ps:
        cells = [p, _clips_cell([({"samples": m["clips"]}, m) for m in models.values() if p in m["sweep"]])]
        for name, m in models.items():
            e = m["sweep"].get(p)
            spread = e.get("action_top1_ci95", e.get("std")) if e else None
            cells.append("–" if e is None else f"{e['action_top1']:.2f} ± {spread:.2f}")
            if name in reported_models(paper):
                cells += beside(e["action_top1"] if e else None, paper_value(paper, name, p), digits=1)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sweep_population(results: dict) -> str:
    """Why the sweep's p = 0 and the 'all modalities present' rows differ: which clips each scores."""
    model = next(iter(results["models"].values()))
    full = largest_subset(model["subsets"])
    complete = model["subsets"][full].get("samples", model["clips"])
    if complete == model["clips"]:
        return (
            f"Every one of the {model['clips']} clips has every modality, so p = 0 scores the same clips as the "
            f"{full} rows above and gives the same accuracies."
        )
    lacking = [f"{model['clips'] - n} lack {k}" for k, n in model.get("availability", {}).items() if n < model["clips"]]
    return (
        f"p = 0 is not the {full} row above: the sweep scores all {model['clips']} clips with the modalities each "
        f"was recorded with ({', '.join(lacking) or 'some lack a modality'}), where the {full} rows and "
        f"'All modalities present' score only the {complete} clips that have every one. The clips that lack a "
        "modality count at p = 0 with what they have, so the two rows are different populations."
    )


def _class_name(results: dict, head: str, index: int) -> str:
    for model in results["models"].values():
        names = model.get("classes", {}).get(head)
        if names and index < len(names):
            return names[index]
    return f"class {index}"


def _frequent_classes(results: dict, head: str) -> list[tuple[int, int]]:
    """(class, clips) of ``head`` in the evaluated split, most frequent first, at most PER_CLASS_ROWS."""
    totals = class_totals(counted_model(results), head)
    return sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:PER_CLASS_ROWS]


def per_class_table(results: dict, head: str) -> str:
    """Top-1 per true class of ``head`` (full modality set), the most frequent classes first."""
    models = results["models"]
    lines = [
        f"| {head} | clips | " + " | ".join(model_label(n) for n in models) + " |",
        "|---" * (len(models) + 2) + "|",
    ]
    for cls, clips in _frequent_classes(results, head):
        cells = []
        for model in models.values():
            cells_of_class = [(g, c) for t, g, c in model.get("confusion", {}).get(head, []) if t == cls]
            total = sum(c for _, c in cells_of_class)
            right = sum(c for g, c in cells_of_class if g == cls)
            cells.append(f"{100 * right / total:.0f}" if total else "–")
        lines.append(f"| {_class_name(results, head, cls)} | {clips} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def resource_table(benchmark: dict, paper: dict | None = None) -> str:
    """Rows: subsets; per model GFLOPs, peak memory and latency; beside GFLOPs and memory the paper's
    numbers and the differences (``paper``: the ``resources`` table of paper_results.json, memory
    in GB there and here). Resources are measured on random inputs, not scored on clips."""
    models = benchmark["models"]
    subsets = list(next(iter(models.values()))["subsets"])
    reported = reported_models(paper)
    header = ["subset"]
    for n in models:
        label = model_label(n)
        header += [f"{label} GFLOPs", *(["paper", "Δ"] if n in reported else [])]
        header += [f"{label} peak MB"] + ([f"{label} peak GB", "paper", "Δ"] if n in reported else [])
        header += [f"{label} latency ms"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for subset in subsets:
        cells = [subset]
        for name, m in models.items():
            r = m["subsets"].get(subset, {})
            latency = r.get("latency_ms", float("nan"))
            spread = f" ({r['latency_ms_min']:.3g}–{r['latency_ms_max']:.3g})" if "latency_ms_min" in r else ""
            paper_row = paper_value(paper, name, subset) or {}
            cells.append(f"{r.get('gflops', float('nan')):.3f}")
            if name in reported:
                cells += beside(r.get("gflops"), paper_row.get("gflops"), digits=0)
            cells.append(f"{r.get('peak_mem_mb', float('nan')):.1f}")
            if name in reported:
                gigabytes = r["peak_mem_mb"] / 1024 if "peak_mem_mb" in r else None
                cells += [_fmt(gigabytes), *beside(gigabytes, paper_row.get("memory_gb"))]
            cells.append(f"{latency:.3g}{spread}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- claims


def verdict_text(verdict: str) -> str:
    """A claim's verdict as the report prints it: a decision in bold, no verdict in italics."""
    if verdict in ("holds", "does not hold"):
        return f"**{verdict}**"
    if verdict.startswith(NO_VERDICT):
        return f"*{NO_VERDICT}*{verdict[len(NO_VERDICT) :]}"
    return verdict


def paper_step_effect(step: str, condition: str, subsets: dict | None, sweep: dict | None) -> float | None:
    """What the paper reports for one ablation step (``step``: a row's label) under ``condition`` (a subset,
    or ``dropout p = 0.0``): the difference of its two models' accuracies in the paper's ``subsets`` or
    ``sweep`` table of paper_results.json, where it has both; None elsewhere."""
    for before, after, adds in ABLATION_STEPS:
        if step == ablation_step(before, after, adds):
            if condition.startswith(SWEEP_CONDITION):
                table, key = sweep, condition.removeprefix(SWEEP_CONDITION)
            else:
                table, key = subsets, condition
            models = (table or {}).get("models", {})
            if key in models.get(before, {}) and key in models.get(after, {}):
                return round(models[after][key] - models[before][key], 2)
    return None


def ablation_table(rows: list[dict], subsets: dict | None = None, sweep: dict | None = None) -> str:
    """Markdown: one row per condition (subset or dropout rate), one column per step; with the paper's
    ``subsets`` / ``sweep`` tables (paper_results.json), each step's column is followed by what the paper
    reports for it."""
    steps = list(dict.fromkeys(r["step"] for r in rows))
    conditions = list(dict.fromkeys(r["condition"] for r in rows))
    cell = {(r["step"], r["condition"]): r for r in rows}
    paper = {
        (step, condition): paper_step_effect(step, condition, subsets, sweep)
        for step in steps
        for condition in conditions
    }
    with_paper = [step for step in steps if any(paper[step, c] is not None for c in conditions)]
    header = [text for step in steps for text in ([step, "paper"] if step in with_paper else [step])]
    lines = ["| condition | clips | " + " | ".join(header) + " |", "|---" * (len(header) + 2) + "|"]
    for condition in conditions:
        found = [cell.get((step, condition)) for step in steps]
        clips = next((r["clips"] for r in found if r), 0)
        texts = []
        for step, r in zip(steps, found):
            texts.append("" if r is None else f"{r['effect']:+.1f} [{r['ci'][0]:+.1f}, {r['ci'][1]:+.1f}]")
            if step in with_paper:
                texts.append("" if paper[step, condition] is None else f"{paper[step, condition]:+.2f}")
        lines.append(f"| {condition} | {clips} | " + " | ".join(texts) + " |")
    return "\n".join(lines)


def claims_table(claims: list[dict]) -> str:
    """Markdown: one row per claim, its verdict, the effect in points and its 95 % interval."""
    lines = [
        "| claim | source | verdict | effect (points) | 95 % interval | clips scored (seeds) |",
        "|---|---|---|---|---|---|",
    ]
    for c in claims:
        lines.append(
            f"| {c['claim']} | {c['source']} | {verdict_text(c['verdict'])} | {c['effect']:+.2f} | "
            f"[{c['ci'][0]:+.2f}, {c['ci'][1]:+.2f}] | {c['clips']} ({c['seeds']}) |"
        )
    return "\n".join(lines)


def teacher_logits_section(results: dict) -> list[str]:
    """The teacher's logits the student distils (``teacher_logits`` of each seed's results.json):
    accuracy on the cached views and the soft labels' entropy at the distillation temperature."""
    per_seed = {
        seed: seeded["teacher_logits"] for seed, seeded in _each_seed(results).items() if seeded.get("teacher_logits")
    }
    if not per_seed:
        return []
    first = next(iter(per_seed.values()))
    heads = list(first["train"]["entropy"])
    temperature = first["train"]["temperature"]
    lines = [
        "## What the student distils: the teacher's logits",
        "",
        f"The teacher's fusion on its cached views: the distillation's training views (`train`, each clip's "
        f"augmented views) and the validation clips' evaluation views, with the entropy (nats) of its softmax at "
        f"the distillation temperature T = {temperature:g} (0: a one-hot label; "
        + ", ".join(f"{h} {first['train']['uniform_entropy'][h]:.2f}" for h in heads)
        + ": uniform). A teacher that fits its training views gives near one-hot labels there and carries little "
        "beyond the label.",
        "",
        "| seed | split | views | action top-1 | "
        + " | ".join(f"{h} top-1" for h in heads)
        + " | "
        + " | ".join(f"{h} entropy" for h in heads)
        + " |",
        "|---" * (4 + 2 * len(heads)) + "|",
    ]
    for seed, stats in per_seed.items():
        for split, row in stats.items():
            lines.append(
                f"| {seed or '-'} | {split} | {row['views']} | {row['action_top1']:.1f} | "
                + " | ".join(f"{row[f'{h}_top1']:.1f}" for h in heads)
                + " | "
                + " | ".join(f"{row['entropy'][h]:.2f}" for h in heads)
                + " |"
            )
    return [*lines, ""]


#: the share of its modality's information ceiling a pre-trained extractor is asked to reach (issue 23)
EXTRACTOR_TARGET = 0.75


def extractors_section(results: dict) -> list[str]:
    """The pre-trained extractors against their modality's information ceiling (``extractors`` of each
    seed's results.json, ``ceilings`` of the data): what the fusion models start from."""
    per_seed = [seeded["extractors"] for seeded in _each_seed(results).values() if "extractors" in seeded]
    ceilings = results.get("ceilings")
    if not per_seed or not ceilings:
        return []
    metrics = ("verb_top1", "noun_top1", "action_top1")
    ratios = ("action_top1", "verb_top1", "noun_top1")  # the last three columns, in order
    lines = [
        "## The pre-trained extractors against the data's ceilings",
        "",
        "Each extractor with the small fusion and heads it was pre-trained with, alone on its modality, on the "
        f"test clips that have it (mean over {len(per_seed)} seed(s)). The ceiling is the best any model can do "
        f"with that modality (docs/data.md); the target is {EXTRACTOR_TARGET:.0%} of it.",
        "",
        "| extractor | clips | verb top-1 | noun top-1 | action top-1 | ceiling (verb / noun / action) "
        "| action / ceiling | verb / ceiling | noun / ceiling |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size in ("teacher", "student"):
        for m in MODALITY_ORDER:
            rows = [seeded[size][m] for seeded in per_seed if m in seeded.get(size, {})]
            if not rows or m not in ceilings:
                continue
            mean = {k: sum(r[k] for r in rows) / len(rows) for k in metrics}
            ceiling = ceilings[m]
            ratio = {k: mean[k] / ceiling[k] if ceiling[k] else float("nan") for k in ratios}
            lines.append(
                f"| {m}, {size}-sized | {sum(r['samples'] for r in rows)} | "
                + " | ".join(f"{mean[k]:.1f}" for k in metrics)
                + " | "
                + " / ".join(f"{ceiling[k]:.1f}" for k in metrics)
                + " | "
                + " | ".join(f"{ratio[k]:.2f}" + ("" if ratio[k] >= EXTRACTOR_TARGET else " (below)") for k in ratios)
                + " |"
            )
    return [*lines, ""]


def ablation_section(results: dict, paper: PaperMatch | None = None) -> list[str]:
    """What each step of Baseline -> Baseline w/ δ -> KARMMA_S adds, on every subset and dropout rate;
    beside each step, what the paper reports for it where ``paper`` (the run's data set in the paper) has it."""
    rows = ablation_rows(results)
    if not rows:
        return []
    seeds = max(r["seeds"] for r in rows)
    subsets, sweep = (paper.table("subsets"), paper.table("sweep")) if paper else (None, None)
    compared = any(paper_step_effect(r["step"], r["condition"], subsets, sweep) is not None for r in rows)
    said = (
        " *paper*: the difference between the step's two models in the paper's tables (its accuracy table; "
        "at p = 0 and 0.9 its dynamic-dropout figure): one training run each, not a paired effect, so compare "
        "it with our interval, not with our point."
        if compared
        else ""
    )
    return [
        "## What each part adds (ablation)",
        "",
        "Each step adds one thing to the model before it, with everything else of the recipe shared (views, "
        "augmentation, epochs, learning rates, initialisation). Paired effect on action top-1 (points) over the "
        f"same test clips{f' and {seeds} seeds' if seeds > 1 else ''}, with its 95 % bootstrap interval; "
        "a subset row scores the clips that have its modalities, a dropout row all clips (the mean over the "
        f"sweep's draws).{said}",
        "",
        ablation_table(rows, subsets, sweep),
        "",
    ]


# ---------------------------------------------------------------- figures


def _spread_text(results: dict) -> str:
    """What the ± of the sweep means: a 95 % interval over training seeds, or the spread of the drop draws."""
    if results.get("seeds"):
        return f"95 % interval over {len(results['seeds'])} training seeds"
    return f"spread over {results.get('settings', {}).get('seeds', '?')} drop draws"


def _scored_text(results: dict) -> str:
    """Which clips a figure scores: 'the test split, 600 clips'."""
    first = next(iter(results["models"].values()))
    return f"{first['split']} split, {first['clips']} clips"


def _chance_line(ax, level: float | None, label: str, style: str = ":") -> None:
    if level is not None:
        ax.axhline(level, color="0.35", linestyle=style, linewidth=1.2, label=label)


def plot_sweep(results: dict, path: Path) -> None:
    """Fig. 4 of the paper: action top-1 versus the test-time drop probability (absolute and relative)."""
    plt = _pyplot()
    models = results["models"]
    fig, (absolute, relative) = plt.subplots(1, 2, figsize=(11, 4.6))
    offset = 0.012  # models side by side at each p, so the error bars do not hide each other
    for i, (name, m) in enumerate(models.items()):
        shift = (i - (len(models) - 1) / 2) * offset
        ps = [float(p) + shift for p in m["sweep"]]
        mean = [e["action_top1"] for e in m["sweep"].values()]
        std = [e.get("action_top1_ci95", e.get("std", 0.0)) for e in m["sweep"].values()]
        line = absolute.errorbar(ps, mean, yerr=std, marker="o", markersize=4, capsize=3, label=model_label(name))
        zero = mean[0] or float("nan")
        relative.plot(ps, [v / zero * 100 for v in mean], marker="o", markersize=4, color=line[0].get_color())
    uniform, majority = chance_levels(results).get("action_top1", (None, None))
    _chance_line(absolute, uniform, "chance (uniform guess)")
    _chance_line(absolute, majority, "always the most frequent action", "-.")
    absolute.set(
        xlabel="drop probability p per modality (test time)",
        ylabel="action top-1 (%)",
        title=f"accuracy under random sensor dropouts, {_scored_text(results)}\n(bars: {_spread_text(results)})",
    )
    absolute.set_ylim(0, absolute.get_ylim()[1] * 1.08)
    relative.set(
        xlabel="drop probability p per modality (test time)",
        ylabel="% of its own p = 0 accuracy",
        title="share of accuracy kept",
    )
    for ax in (absolute, relative):
        ax.grid(alpha=0.3)
    handles, labels = absolute.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: labels[i].startswith(("chance", "always")))  # models first
    handles, labels = [handles[i] for i in order], [labels[i] for i in order]
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.05 * ((len(labels) - 1) // 4), 1, 1))
    _save(fig, path)
    plt.close(fig)


def plot_per_class(results: dict, name: str, path: Path) -> list[str]:
    """Confusion matrices (rows: true class, normalised per row) of ``name`` for each head; returns the heads drawn."""
    plt = _pyplot()
    model = results["models"][name]
    heads = [h for h in model.get("confusion", {}) if h != "action"]
    if not heads:
        return []
    fig, axes = plt.subplots(1, len(heads), figsize=(5.2 * len(heads), 4.8), squeeze=False)
    for ax, head in zip(axes[0], heads):
        classes = [c for c, _ in _frequent_classes(results, head)]
        index = {c: i for i, c in enumerate(classes)}
        other = len(classes)  # a prediction outside the shown classes
        counts = [[0] * (len(classes) + 1) for _ in classes]
        for true, guess, count in model["confusion"][head]:
            if true in index:
                counts[index[true]][index.get(guess, other)] += count
        show_other = any(row[other] for row in counts)
        if not show_other:
            counts = [row[:-1] for row in counts]
        shares = [[100 * c / max(sum(row), 1) for c in row] for row in counts]
        image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=100)
        for i, row in enumerate(counts):
            for j, count in enumerate(row):
                if count:
                    ax.text(
                        j,
                        i,
                        str(count),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if shares[i][j] > 60 else "black",
                    )
        names = [_class_name(results, head, c) for c in classes]
        ax.set_xticks(range(len(counts[0])), names + (["other"] if show_other else []), rotation=45, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set(
            xlabel=f"predicted {head}",
            ylabel=f"true {head}",
            title=f"{head}: top-1 {model['subsets'][largest_subset(model['subsets'])].get(f'{head}_top1', 0):.1f} %",
        )
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="% of the true class's clips")
    fig.suptitle(f"{model_label(name)} on {largest_subset(model['subsets'])} (numbers: clips)")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return heads


TERM_NAMES = {"kd": "distillation KL", "info_nce": "InfoNCE"}


def distinct_colors(plt, count: int) -> list:
    """``count`` colours, no two alike: matplotlib's ten default hues, then their light tints
    (tab20 reordered), then evenly spaced hues of a continuous map beyond 20."""
    if count > 20:
        return [plt.get_cmap("turbo")(0.05 + 0.9 * i / (count - 1)) for i in range(count)]
    tab20 = plt.get_cmap("tab20").colors
    return [*tab20[0::2], *tab20[1::2]][:count]


def plot_training(runs: dict[str, list[dict]], path: Path, chance: float | None = None) -> None:
    """Per epoch of every run: cross-entropy (train and validation), the other loss terms on
    their own axis, and validation action top-1. Markers show runs of a single epoch; one
    legend below the panels (colour: run, line style: what is drawn), so it covers no data."""
    plt = _pyplot()
    from matplotlib.lines import Line2D

    fig, (ce_ax, other_ax, acc_ax) = plt.subplots(1, 3, figsize=(15, 4.8))
    colors = distinct_colors(plt, len(runs))
    term_styles: dict[str, str] = {}
    run_handles = []
    for i, (name, history) in enumerate(runs.items()):
        color = colors[i]
        epochs = [h["epoch"] for h in history]

        def series(key):
            return [h.get(key, float("nan")) for h in history]

        run_handles += ce_ax.plot(epochs, series("train/ce"), marker="o", markersize=4, color=color, label=name)
        ce_ax.plot(epochs, series("val/ce"), marker="s", markersize=4, linestyle="--", color=color)
        for term in sorted(
            {k for h in history for k in h if k.startswith("train/") and k not in ("train/ce", "train/loss")}
        ):
            style = term_styles.setdefault(term, ("-.", (0, (6, 2, 1, 2, 1, 2)), (0, (8, 2)))[len(term_styles) % 3])
            other_ax.plot(epochs, series(term), marker="o", markersize=4, color=color, linestyle=style)
        acc_ax.plot(epochs, series("val/action_top1"), marker="o", markersize=4, color=color)
    ce_ax.set(xlabel="epoch", ylabel="cross-entropy (sum over heads)", title="cross-entropy")
    other_ax.set(xlabel="epoch", ylabel="value before weighting", title="other training loss terms")
    if not term_styles:
        other_ax.text(0.5, 0.5, "no other loss terms", ha="center", va="center", transform=other_ax.transAxes)
    _chance_line(acc_ax, chance, "chance")
    acc_ax.set(xlabel="epoch", ylabel="action top-1 (%)", title="validation action top-1")
    acc_ax.set_ylim(0, max(acc_ax.get_ylim()[1], 1.0) * 1.08)
    for ax in (ce_ax, other_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    styles = [
        Line2D([], [], color="black", label="training CE"),
        Line2D([], [], color="black", linestyle="--", label="validation CE"),
    ]
    styles += [
        Line2D([], [], color="black", linestyle=style, label=TERM_NAMES.get(t.split("/", 1)[1], t.split("/", 1)[1]))
        for t, style in term_styles.items()
    ]
    if chance is not None:
        styles.append(Line2D([], [], color="0.35", linestyle=":", label="chance (uniform guess)"))
    run_columns = 4
    rows = max((len(run_handles) + run_columns - 1) // run_columns, (len(styles) + 1) // 2)
    fig.legend(
        handles=run_handles,
        loc="lower left",
        bbox_to_anchor=(0.04, 0),
        ncol=run_columns,
        fontsize=9,
        frameon=False,
        title="run",
    )
    fig.legend(
        handles=styles, loc="lower right", bbox_to_anchor=(0.96, 0), ncol=2, fontsize=9, frameon=False, title="line"
    )
    fig.tight_layout(rect=(0, 0.045 * rows + 0.06, 1, 1))
    _save(fig, path)
    plt.close(fig)


# ---------------------------------------------------------------- training runs


def _run_folder(source: str | None, folder: Path) -> Path | None:
    """The run folder of a model's ``source`` (run folder or checkpoint), relative paths tried
    against the results folder and the working directory; None for exports without logs."""
    if not source:
        return None
    path = Path(source)
    for candidate in [path] if path.is_absolute() else [folder / path, path]:
        run = candidate if candidate.is_dir() else candidate.parent
        if run.name == "checkpoints":
            run = run.parent
        if (run / "metrics.json").is_file():
            return run
    return None


def find_runs(results: dict, folder: Path) -> dict[str, Path]:
    """Training-log folders: the evaluated models' run folders (labelled with the model) and any under ``folder/runs``."""
    found: dict[Path, str] = {}
    for metrics in sorted((folder / "runs").glob("*/metrics.json")):
        found[metrics.parent.resolve()] = metrics.parent.name
    for name, model in results["models"].items():
        run = _run_folder(model.get("source"), folder)
        if run is not None:
            found[run.resolve()] = model_label(name)
    return {label: run for run, label in found.items()}


# ---------------------------------------------------------------- the report


#: how the tuning table's number was scored when tuning.json does not say (before ``--tune-by``)
TUNING_DEFAULT = "the best epoch's validation action top-1, the one checkpoint selection uses"


def tuning_section(tuning: dict) -> list[str]:
    """The ``--tune`` sweeps: validation action top-1 per value (never a test number)."""
    seeds = tuning.get("seeds", [])
    key = tuning.get("key", "val/action_top1")  # tuning.json files older than --tune-by have only this one
    metric = tuning.get("metric") if "key" in tuning else None
    column = (
        "validation action top-1, mean over the sweep" if key == "val/sweep_action_top1" else "validation action top-1"
    )
    lines = [
        "## Knobs tuned on validation (`karmma demo --tune`)",
        "",
        f"One training run per value on the validation participants, {len(seeds)} seed(s) "
        f"({', '.join(map(str, seeds))}); the number is {metric or TUNING_DEFAULT}. No test clip was used: "
        "take the chosen value into the stage's config and rerun to report it on test.",
        "",
        f"| knob | value | {column} (mean) | per seed | |",
        "|---|---|---|---|---|",
    ]
    for knob, entry in tuning["knobs"].items():
        for value, scores in entry["values"].items():
            per_seed = ", ".join(f"{v:.1f}" for v in scores["per_seed"].values())
            chosen = "best" if value == entry["chosen"] else ""
            lines.append(f"| `{knob.split('=')[0]}` | {value} | {scores[key]:.1f} | {per_seed} | {chosen} |")
    return lines + [""]


def quick_run_note(folder: Path) -> list[str]:
    """The report's first lines when ``folder`` holds a quick demo (``demo.json`` says so)."""
    marker = folder / "demo.json"
    if not marker.is_file() or json.loads(marker.read_text()).get("flavour") != "quick":
        return []
    return [
        "> **A quick run** (`karmma demo --quick`): a small data set, clips of 4 frames at 32 × 32 and a few "
        "epochs, made to show that every step runs and learns, not to measure the method: on its 60-80 test "
        "clips an accuracy's interval is about ± 10 points, and a claim whose models are all at chance gets no "
        "verdict. `karmma demo` (without `--quick`) gives numbers worth reading.",
        "",
    ]


def write_report(folder: str | Path) -> Path:
    """Write ``report.md`` and its figures into ``folder`` (which holds ``results.json``)."""
    folder = Path(folder)
    results_path = folder / "results.json"
    if not results_path.is_file():
        raise FileNotFoundError(f"{results_path} not found: run karmma evaluate ... --out {results_path} first")
    results = json.loads(results_path.read_text())
    if not results.get("models"):
        raise ValueError(f"{results_path}: no models")
    models = results["models"]
    unlabelled = [name for name, model in models.items() if model.get("labelled") is False]
    if unlabelled:
        raise ValueError(
            f"{results_path}: {', '.join(unlabelled)} scored a split without labels (predictions only, no "
            "accuracy): nothing to report; evaluate a labelled split for a report, or submit the predictions"
        )
    first = next(iter(models.values()))
    modalities = order_keys(k for m in models.values() for k in m.get("modalities", []))
    heads = result_heads(results)
    paper = match_paper(results, heads)
    sources = ["`results.json` (karmma evaluate)"] + [
        f"`{f}`" for f in ("benchmark.json", "dropout_study.json") if (folder / f).is_file()
    ]
    lines = [
        "# KARMMA report",
        "",
        *quick_run_note(folder),
        f"{len(models)} models that recognise actions in egocentric (first-person) video were scored on the "
        f"`{first['split']}` split, {first['clips']} clips × {first['views']} view(s), with every combination of "
        "their input modalities removed at test time, as when sensors fail: "
        + ", ".join(f"{k} = {MODALITY_NAMES.get(k, k)}" for k in modalities)
        + ". "
        + (
            "An action is a (verb, noun) pair, scored by the product of the verb and noun probabilities. "
            if {"verb", "noun"} <= set(heads)
            else ""
        )
        + "Accuracies are top-1 in percent unless a column says otherwise.",
        "",
        f"The method, and every choice the paper leaves open, is described in {METHOD_DOC}. "
        f"Every number below is read from {', '.join(sources)} and the training logs; rerun `karmma report` to rebuild it.",
        "",
        paper.note,
        "",
        "## The models",
        "",
        model_table(results),
        "",
        "## How much to trust these numbers",
        "",
        *trust_section(results),
        "## All modalities present",
        "",
        full_set_table(results, paper.table("subsets")),
        "",
        (
            "± is the 95 % t-interval of the mean over seeds. "
            if results.get("seeds")
            else "± is the 95 % binomial half-width. "
        )
        + "Top-5, calibration error (ECE) and the tail / unseen splits are in results.json.",
        "",
        "## Accuracy on every modality subset",
        "",
        "Rows: the modalities given to the model at test time. Best of the student-sized models per row in bold "
        "(the teacher is shown for reference)."
        + (
            " *ceiling*: the top-1 of the Bayes-optimal classifier that sees exactly what the subset's sensors "
            "render, computed from SynthKitchen's generative model (docs/data.md); no model can beat it beyond noise."
            if results.get("ceilings")
            else ""
        ),
        "",
        *(
            [f"**Above a ceiling beyond noise** (a bug: a ceiling is an upper bound): {'; '.join(violations)}.", ""]
            if (violations := ceiling_violations(results))
            else []
        ),
        "### Action top-1",
        "",
        subset_table(results, "action_top1", paper.table("subsets")),
        "",
    ]
    for head in heads:
        if head != "action":
            lines += [f"### {head.capitalize()} top-1", "", subset_table(results, f"{head}_top1"), ""]
    if paper.key and len(heads) > 1:
        lines += ["The paper reports action top-1 only: the verb and noun tables have no column of its.", ""]
    lines += ["## The paper's claims on these results", ""]
    if results.get("claims"):
        lines += [
            f"Each claim is decided over {len(results.get('seeds', {}))} seeds (each seed its own data, "
            f"initialisation and dropout draws) on the same test clips for both models: {TEST}. "
            "The effect is the difference in action top-1 (points); **holds** means the interval lies above "
            "zero, **does not hold** below zero, *inconclusive* that it contains zero; *no verdict* where both models "
            "are at chance on the numbers compared.",
            "",
            claims_table(claims_at_chance(results)),
            "",
        ]
    else:
        lines += [
            "One seed: these checks compare point estimates and decide nothing (`karmma demo --seeds 0,1,2` "
            "decides them with intervals).",
            "",
        ]
        for claim in check_claims(results):
            lines.append(f"- {claim['claim']}: {verdict_text(claim['verdict'])} ({claim['evidence']})")
        lines += [
            "",
            "Read each verdict against the noise above: with few clips a claim can hold or fail by one clip.",
            "",
        ]

    lines += ablation_section(results, paper)
    lines += teacher_logits_section(results)
    lines += extractors_section(results)

    featured = next((n for n in ("student", *models) if models.get(n, {}).get("confusion")), None)
    if any(m.get("confusion") for m in models.values()):
        lines += ["## Per class (all modalities present)", ""]
        drawn = plot_per_class(results, featured, folder / "per_class.png")
        for head in [h for h in heads if h in counted_model(results)["confusion"]]:
            shown = len(_frequent_classes(results, head))
            lines += [
                f"Top-1 (%) per true {head}, the {shown} most frequent of the split"
                + (f" (of {heads[head]} classes)" if heads.get(head, 0) > shown else "")
                + ":",
                "",
                per_class_table(results, head),
                "",
            ]
        if drawn:
            lines += [
                f"Confusion matrices of {model_label(featured)} (rows: true class; colour: share of its clips; "
                "numbers: clips); the other models' counts are under `confusion` in results.json.",
                "",
                "![per class](per_class.png)",
                "",
            ]

    lines += [
        f"## Random sensor dropouts (paper Fig. 4), mean ± {_spread_text(results)}",
        "",
        "Each modality of each clip is dropped with probability p (at least one is kept); "
        "the right panel divides by each model's own accuracy at p = 0.",
        "",
        "![sweep](sweep.png)",
        "",
        sweep_table(results, paper.table("sweep")),
        "",
        sweep_population(results),
        "",
    ]
    if paper.table("sweep"):
        lines += [
            "The paper gives the sweep as a figure; its numbers here are the end points read from it "
            f"({paper.table('sweep')['table']}).",
            "",
        ]
    plot_sweep(results, folder / "sweep.png")

    benchmark_path = folder / "benchmark.json"
    if benchmark_path.is_file():
        from karmma.benchmark import plot_benchmark

        benchmark = json.loads(benchmark_path.read_text())
        plot_benchmark(benchmark, str(folder / "resources.png"))
        repeats = benchmark.get("latency_repeats", "?")
        lines += [
            f"## Resources (preset `{benchmark['preset']}`, batch 1, {benchmark['device']})",
            "",
            "GFLOPs of one forward pass (2 FLOPs per multiply-add); peak memory of its live tensors; latency: "
            f"median of {repeats} runs (min–max in brackets, {benchmark.get('threads', '?')} CPU threads). "
            "A wide min–max range means other work on the machine: compare latencies only where it is narrow. "
            "Missing modalities' extractors are skipped, so smaller subsets cost less. "
            "Measured on random inputs of the preset's shapes: no clip is scored.",
            "",
            "![resources](resources.png)",
            "",
            *resource_paper_note(paper, benchmark),
            resource_table(benchmark, paper_resources(paper, benchmark)),
            "",
        ]

    study_path = folder / "dropout_study.json"
    if study_path.is_file():
        from karmma.evaluation.dropout_study_report import plot_dropout_study, study_split, study_table

        study = json.loads(study_path.read_text())
        plot_dropout_study(
            study, folder / "dropout_study.png", chance=chance_levels(results).get("action_top1", (None,))[0]
        )
        lines += [
            "## Training modality-dropout rate of the teacher (paper Fig. 5)",
            "",
            "One teacher trained per modality-dropout rate, each scored on every subset of the "
            + (f"`{study_split(study)}` split" if study_split(study) else "split its file does not record")
            + " (the clips of each subset in the first row).",
            "",
            "![dropout study](dropout_study.png)",
            "",
            study_table(study),
            "",
        ]

    tuning_path = folder / "tuning.json"
    if tuning_path.is_file():
        lines += tuning_section(json.loads(tuning_path.read_text()))

    runs = {label: json.loads((run / "metrics.json").read_text()) for label, run in find_runs(results, folder).items()}
    runs = {label: history for label, history in runs.items() if history}
    if runs:
        plot_training(runs, folder / "training.png", chance_levels(results).get("action_top1", (None,))[0])
        lines += [
            "## Training curves",
            "",
            "Cross-entropy is comparable across runs; the other loss terms (distillation KL for the student, "
            "InfoNCE for the teacher) have their own axis and are shown before weighting. "
            "The checkpoint evaluated above is the epoch with the best validation action top-1 (best.ckpt).",
            "",
            "![training](training.png)",
            "",
            "| run | epochs | best validation action top-1 (epoch) | last epoch |",
            "|---|---|---|---|",
        ]
        for label, history in runs.items():
            scored = [h for h in history if h.get("val/action_top1") is not None]
            best = max(scored, key=lambda h: h["val/action_top1"], default=None)
            best_text = f"{best['val/action_top1']:.2f} ({best['epoch']})" if best else "–"
            last = f"{scored[-1]['val/action_top1']:.2f}" if scored else "–"
            lines.append(f"| {label} | {len(history)} | {best_text} | {last} |")
        lines.append("")
    path = folder / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path
