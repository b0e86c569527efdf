"""The dropout study's table and figure, for ``karmma report`` and ``karmma dropout-study``: accuracy
per test subset against the teacher's training modality-dropout rate (paper Fig. 5).
:mod:`karmma.experiments.dropout_study` runs the study (trains and scores the teachers)."""

from __future__ import annotations

from pathlib import Path

from karmma.io import atomic_savefig
from karmma.modalities import largest_first


def _subsets(study: dict) -> list[str]:
    return largest_first(next(iter(study["rates"].values()))["subsets"])


def study_split(study: dict) -> str | None:
    """The split the study's teachers were scored on (None in files written before it was recorded)."""
    splits = {entry.get("split") for entry in study["rates"].values()}
    return splits.pop() if len(splits) == 1 else None


def study_table(study: dict, metric: str = "action_top1") -> str:
    """Rows: the training rates, after one row of the clips each subset scored; columns: test subsets."""
    subsets = _subsets(study)
    first = next(iter(study["rates"].values()))["subsets"]
    clips = [str(first[s].get("samples", "–")) for s in subsets]
    lines = [
        "| training p | " + " | ".join(subsets) + " |",
        "|---" * (len(subsets) + 1) + "|",
        "| *clips scored* | " + " | ".join(clips) + " |",
    ]
    for rate, entry in study["rates"].items():
        values = [entry["subsets"][s].get(metric) for s in subsets]
        lines.append(f"| {rate} | " + " | ".join("–" if v is None else f"{v:.2f}" for v in values) + " |")
    return "\n".join(lines)


#: one look per subset line, so lines with equal values stay visible (markers and dashes differ)
SUBSET_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
SUBSET_DASHES = ("-", "--", "-.", ":")


def plot_dropout_study(study: dict, path: str | Path, metric: str = "action_top1", chance: float | None = None) -> None:
    """Accuracy per test subset against the teacher's training dropout rate; ``chance`` (%) draws a line.
    Each subset has its own colour, marker and dash, and is shifted a little along x, so a line
    never hides another with the same values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = [float(r) for r in study["rates"]]
    subsets = _subsets(study)
    step = min((b - a for a, b in zip(sorted(rates), sorted(rates)[1:])), default=1.0)
    offset = 0.06 * step / max(len(subsets) - 1, 1)
    fig, ax = plt.subplots(figsize=(8.5, 4))
    for i, subset in enumerate(subsets):
        values = [e["subsets"][subset].get(metric) for e in study["rates"].values()]
        shift = (i - (len(subsets) - 1) / 2) * offset
        ax.plot(
            [r + shift for r in rates],
            [float("nan") if v is None else v for v in values],
            marker=SUBSET_MARKERS[i % len(SUBSET_MARKERS)],
            linestyle=SUBSET_DASHES[i % len(SUBSET_DASHES)],
            markersize=5,
            label=subset,
        )
    if chance is not None:
        ax.axhline(chance, color="0.35", linestyle=":", linewidth=1.2, label="chance (uniform guess)")
    split = study_split(study)
    clips = max(e.get("samples", 0) for e in next(iter(study["rates"].values()))["subsets"].values())
    scored = f"the {split} split" + (f" ({clips} clips)" if clips else "") if split else "a split not recorded"
    ax.set(
        xlabel="teacher training modality-dropout p",
        ylabel="action top-1 (%)",
        title=f"teacher accuracy per modality subset given, on {scored}",
    )
    ax.set_xticks(rates)
    ax.set_ylim(0, max(ax.get_ylim()[1], 1.0) * 1.08)
    ax.grid(alpha=0.3)
    ax.legend(
        fontsize=8, title="modalities given", loc="upper left", bbox_to_anchor=(1.01, 1)
    )  # beside the axes: covers no data
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
