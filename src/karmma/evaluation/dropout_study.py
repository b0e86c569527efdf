"""The dropout study's table and figure: accuracy per test subset against the teacher's
training modality-dropout rate (paper Fig. 5). :mod:`karmma.experiments.dropout_study` runs it."""

from __future__ import annotations

from pathlib import Path

from karmma.io import atomic_savefig
from karmma.modalities import largest_first


def _subsets(study: dict) -> list[str]:
    return largest_first(next(iter(study["rates"].values()))["subsets"])


def study_table(study: dict, metric: str = "action_top1") -> str:
    subsets = _subsets(study)
    lines = ["| training p | " + " | ".join(subsets) + " |", "|---" * (len(subsets) + 1) + "|"]
    for rate, entry in study["rates"].items():
        values = [entry["subsets"][s].get(metric) for s in subsets]
        lines.append(f"| {rate} | " + " | ".join("–" if v is None else f"{v:.2f}" for v in values) + " |")
    return "\n".join(lines)


def plot_dropout_study(study: dict, path: str | Path, metric: str = "action_top1", chance: float | None = None) -> None:
    """Accuracy per test subset against the teacher's training dropout rate; ``chance`` (%) draws a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = [float(r) for r in study["rates"]]
    fig, ax = plt.subplots(figsize=(8.5, 4))
    for subset in _subsets(study):
        values = [e["subsets"][subset].get(metric) for e in study["rates"].values()]
        ax.plot(rates, [float("nan") if v is None else v for v in values], marker="o", label=subset)
    if chance is not None:
        ax.axhline(chance, color="0.35", linestyle=":", linewidth=1.2, label="chance (uniform guess)")
    ax.set(
        xlabel="teacher training modality-dropout p",
        ylabel="action top-1 (%)",
        title="teacher accuracy per test subset",
    )
    ax.set_xticks(rates)
    ax.set_ylim(0, max(ax.get_ylim()[1], 1.0) * 1.08)
    ax.grid(alpha=0.3)
    ax.legend(
        fontsize=8, title="test subset", loc="upper left", bbox_to_anchor=(1.01, 1)
    )  # beside the axes: covers no data
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
