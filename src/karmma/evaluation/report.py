"""``karmma report DIR``: a Markdown report with PNG figures, built only from result files.

Reads ``DIR/results.json`` (``karmma evaluate``), and when present
``DIR/benchmark.json`` (``karmma benchmark --json``), ``DIR/dropout_study.json``
(``karmma dropout-study``) and the run folders ``DIR/runs/*/metrics.json``.
Writes ``DIR/report.md``, ``sweep.png``, ``resources.png``, ``training.png``.
Every number in the report is read from those files.
"""

from __future__ import annotations

import json
from pathlib import Path

from karmma.io import atomic_savefig, atomic_write_text
from karmma.modalities import largest_first, parse_subset

MODEL_LABELS = {"teacher": "KARMMA_T", "baseline": "Baseline", "baseline_delta": "Baseline w/ δ", "student": "KARMMA_S"}
COMPARED = ("baseline", "baseline_delta", "student")
FAR_BELOW = 5.0  # "far below" on a single-modality subset: at least this many points lower, or under half


def _label(name: str) -> str:
    return MODEL_LABELS.get(name, name)


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def subset_table(results: dict, metric: str = "action_top1") -> str:
    """Rows: subsets (largest first); columns: models; the best student-sized model per row in bold."""
    models = results["models"]
    subsets = largest_first({s for m in models.values() for s in m["subsets"]})
    names = list(models)
    lines = ["| subset | " + " | ".join(_label(n) for n in names) + " |", "|---" * (len(names) + 1) + "|"]
    for subset in subsets:
        values = {n: models[n]["subsets"].get(subset, {}).get(metric) for n in names}
        contenders = [v for n, v in values.items() if n != "teacher" and v is not None]
        best = max(contenders) if contenders else None
        cells = []
        for n in names:
            v = values[n]
            text = _fmt(v)
            cells.append(f"**{text}**" if v is not None and n != "teacher" and v == best else text)
        lines.append(f"| {subset} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sweep_table(results: dict) -> str:
    models = results["models"]
    ps = list(next(iter(models.values()))["sweep"])
    lines = ["| p | " + " | ".join(_label(n) for n in models) + " |", "|---" * (len(models) + 1) + "|"]
    for p in ps:
        cells = []
        for m in models.values():
            e = m["sweep"].get(p)
            cells.append("–" if e is None else f"{e['action_top1']:.2f} ± {e['std']:.2f}")
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def check_claims(results: dict) -> list[tuple[str, bool | None, str]]:
    """The paper's qualitative claims on these results: (claim, holds (None: cannot tell), evidence)."""
    models = results["models"]
    if not all(n in models for n in COMPARED):
        return [("claims", None, f"needs models {', '.join(COMPARED)}; results have {', '.join(models)}")]
    b, d, s = (models[n] for n in COMPARED)
    full = max(s["subsets"], key=lambda k: len(parse_subset(k)))
    claims = []

    def acc(model, subset):
        return model["subsets"].get(subset, {}).get("action_top1")

    fb, fd, fs = acc(b, full), acc(d, full), acc(s, full)
    claims.append((f"KARMMA_S ≥ Baseline w/ δ ≥ Baseline on the full set ({full})", fs >= fd >= fb,
                   f"{fs:.2f} / {fd:.2f} / {fb:.2f}"))
    subsets = [k for k in s["subsets"] if all(acc(m, k) is not None for m in (b, d, s))]
    ordered = [k for k in subsets if acc(s, k) >= acc(d, k) >= acc(b, k)]
    claims.append((f"the same order on at least 5 of the {len(subsets)} subsets", len(ordered) >= min(5, len(subsets)),
                   f"holds on {len(ordered)}: {', '.join(ordered) or 'none'}"))
    beats = [k for k in subsets if acc(s, k) >= max(acc(d, k), acc(b, k))]
    claims.append(("KARMMA_S at least as accurate as both baselines on every subset (KARMMA.md)", len(beats) == len(subsets),
                   f"on {len(beats)} of {len(subsets)}: {', '.join(beats) or 'none'}"))
    singles = [k for k in subsets if len(parse_subset(k)) == 1]
    far = [k for k in singles if acc(d, k) - acc(b, k) >= FAR_BELOW or acc(b, k) < acc(d, k) / 2]
    claims.append((f"on every single-modality subset the Baseline falls far below Baseline w/ δ (≥ {FAR_BELOW:g} points lower, or under half)",
                   len(far) == len(singles),
                   ", ".join(f"{k}: {acc(b, k):.2f} vs {acc(d, k):.2f}" for k in singles)))
    share = {}
    for name, m in (("student", s), ("baseline", b)):
        zero = m["sweep"]["0.0"]["action_top1"]
        share[name] = {p: (e["action_top1"] / zero if zero else 0.0) for p, e in m["sweep"].items()}
    high = [p for p in share["student"] if float(p) >= 0.3 and p in share["baseline"]]
    better = [p for p in high if share["student"][p] > share["baseline"][p]]
    claims.append(("along the sweep KARMMA_S keeps a larger share of its p = 0 accuracy than the Baseline at every p ≥ 0.3",
                   len(better) == len(high),
                   ", ".join(f"p={p}: {share['student'][p]:.0%} vs {share['baseline'][p]:.0%}" for p in high)))
    above = [p for p in high if s["sweep"][p]["action_top1"] > b["sweep"][p]["action_top1"]]
    claims.append(("along the sweep KARMMA_S is more accurate than the Baseline at every p ≥ 0.3 (absolute accuracy)",
                   len(above) == len(high),
                   ", ".join(f"p={p}: {s['sweep'][p]['action_top1']:.2f} vs {b['sweep'][p]['action_top1']:.2f}" for p in high)))
    if "teacher" in models:
        t = acc(models["teacher"], max(models["teacher"]["subsets"], key=lambda k: len(parse_subset(k))))
        claims.append(("the teacher's full-set accuracy, reported next to them (the paper's teacher is below its students)",
                       None, f"KARMMA_T {t:.2f} vs KARMMA_S {fs:.2f}"))
    return claims


def plot_sweep(results: dict, path: Path) -> None:
    """Fig. 4 of the paper: action top-1 versus the test-time drop probability (absolute and relative)."""
    plt = _pyplot()
    fig, (absolute, relative) = plt.subplots(1, 2, figsize=(11, 4))
    for name, m in results["models"].items():
        ps = [float(p) for p in m["sweep"]]
        mean = [e["action_top1"] for e in m["sweep"].values()]
        std = [e["std"] for e in m["sweep"].values()]
        line = absolute.errorbar(ps, mean, yerr=std, marker="o", capsize=3, label=_label(name))
        zero = mean[0] or float("nan")
        relative.plot(ps, [v / zero * 100 for v in mean], marker="o", color=line[0].get_color(), label=_label(name))
    absolute.set(xlabel="drop probability p per modality (test time)", ylabel="action top-1 (%)", title="accuracy under random sensor dropouts")
    relative.set(xlabel="drop probability p per modality (test time)", ylabel="% of its p = 0 accuracy", title="share of accuracy kept")
    for ax in (absolute, relative):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)


def plot_training(runs: dict[str, list[dict]], path: Path) -> None:
    """Training loss and validation action top-1 per epoch of every run."""
    plt = _pyplot()
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for name, history in runs.items():
        epochs = [h["epoch"] for h in history]
        loss_ax.plot(epochs, [h.get("train/loss", float("nan")) for h in history], label=name)
        acc_ax.plot(epochs, [h.get("val/action_top1", float("nan")) for h in history], label=name)
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="training loss")
    acc_ax.set(xlabel="epoch", ylabel="action top-1 (%)", title="validation action top-1")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)


def resource_table(benchmark: dict) -> str:
    models = benchmark["models"]
    subsets = list(next(iter(models.values()))["subsets"])
    header = "| subset | " + " | ".join(f"{_label(n)} GFLOPs | {_label(n)} peak MB" for n in models) + " |"
    lines = [header, "|---" * (2 * len(models) + 1) + "|"]
    for subset in subsets:
        cells = []
        for m in models.values():
            r = m["subsets"].get(subset, {})
            cells += [f"{r.get('gflops', float('nan')):.3f}", f"{r.get('peak_mem_mb', float('nan')):.1f}"]
        lines.append(f"| {subset} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(folder: str | Path) -> Path:
    """Write ``report.md`` and its figures into ``folder`` (which holds ``results.json``)."""
    folder = Path(folder)
    results_path = folder / "results.json"
    if not results_path.is_file():
        raise FileNotFoundError(f"{results_path} not found: run karmma evaluate ... --out {results_path} first")
    results = json.loads(results_path.read_text())
    if not results.get("models"):
        raise ValueError(f"{results_path}: no models")
    settings = results.get("settings", {})
    first = next(iter(results["models"].values()))
    lines = [
        "# KARMMA report",
        "",
        f"Split `{first['split']}`, {first['clips']} clips × {first['views']} view(s); action top-1 (%). "
        f"Generated by `karmma report` from `results.json`"
        + (", `benchmark.json`" if (folder / "benchmark.json").is_file() else "") + " and the run folders.",
        "",
        "## Accuracy on every modality subset",
        "",
        "Best of the three student-sized models per subset in bold (the teacher is shown for reference).",
        "",
        subset_table(results),
        "",
        "## The paper's claims on these results",
        "",
    ]
    for claim, holds, evidence in check_claims(results):
        verdict = "reported" if holds is None else ("**holds**" if holds else "**does not hold**")
        lines.append(f"- {claim}: {verdict} ({evidence})")
    lines += [
        "",
        f"## Random sensor dropouts (paper Fig. 4), mean ± spread over {settings.get('seeds', '?')} seeds",
        "",
        "![sweep](sweep.png)",
        "",
        sweep_table(results),
        "",
    ]
    plot_sweep(results, folder / "sweep.png")

    benchmark_path = folder / "benchmark.json"
    if benchmark_path.is_file():
        from karmma.benchmark import plot_benchmark

        benchmark = json.loads(benchmark_path.read_text())
        plot_benchmark(benchmark, str(folder / "resources.png"))
        lines += [f"## Resources (preset `{benchmark['preset']}`, batch 1, {benchmark['device']})", "",
                  "![resources](resources.png)", "", resource_table(benchmark), ""]

    study_path = folder / "dropout_study.json"
    if study_path.is_file():
        from karmma.evaluation.dropout_study import plot_dropout_study, study_table

        study = json.loads(study_path.read_text())
        plot_dropout_study(study, folder / "dropout_study.png")
        lines += ["## Training modality-dropout rate of the teacher (paper Fig. 5)", "", "![dropout study](dropout_study.png)", "",
                  study_table(study), ""]

    runs = {}
    for metrics in sorted((folder / "runs").glob("*/metrics.json")):
        runs[metrics.parent.name] = json.loads(metrics.read_text())
    if runs:
        plot_training(runs, folder / "training.png")
        lines += ["## Training curves", "", "![training](training.png)", "",
                  "| run | epochs | best validation action top-1 |", "|---|---|---|"]
        for name, history in runs.items():
            best = max((h.get("val/action_top1", float("nan")) for h in history), default=float("nan"))
            lines.append(f"| {name} | {len(history)} | {best:.2f} |")
        lines.append("")
    path = folder / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path
