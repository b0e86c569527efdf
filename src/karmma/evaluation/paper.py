"""The paper's numbers beside a run's: which of the paper's data sets a ``results.json`` is on,
and the paper's value and the difference for each cell of the report's tables.

The numbers are in ``paper_results.json`` beside this module, copied from the project
specification (KARMMA.md, "The paper's numbers"); each table there names where it was copied
from. A run is matched to a data set by its data format (``data_format`` in results.json,
written by ``karmma evaluate``) and its heads (EPIC: 97 verbs, 300 nouns; SSv2: 174 actions).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PAPER_FILE = Path(__file__).with_name("paper_results.json")


@cache
def paper_results() -> dict:
    """The whole of ``paper_results.json``."""
    return json.loads(PAPER_FILE.read_text())


@dataclass(frozen=True)
class PaperMatch:
    """Which of the paper's data sets a run is on (``key`` None: none) and the report's line saying so."""

    key: str | None
    note: str

    def table(self, name: str) -> dict | None:
        """The paper's table ``name`` (``subsets``, ``sweep``, ``resources``) for this data set, or None."""
        return paper_results()["datasets"][self.key].get(name) if self.key else None


def match_paper(results: dict, heads: dict[str, int]) -> PaperMatch:
    """The paper's data set of ``results`` (a results.json whose models have ``heads``: classes per
    head), with one line for the report."""
    datasets = paper_results()["datasets"]
    if results.get("ceilings"):
        return PaperMatch(
            None,
            "SynthKitchen is this project's generated data set: the paper reports no number on it, so no table "
            "here has a column of the paper's (the *ceiling* column says what the data allow at best).",
        )
    formats = {m.get("data_format") for m in results["models"].values()}
    recorded = next(iter(formats)) if len(formats) == 1 else None
    for key, entry in datasets.items():
        if heads == entry["heads"] and recorded in (entry["data_format"], None):
            guessed = "" if recorded else " (results.json does not record its data format: matched by its heads)"
            return PaperMatch(
                key,
                f"The run is on {entry['name']}{guessed}: beside each of our numbers that the paper also reports, "
                "*paper* is the paper's number and *Δ* ours minus the paper's (points). The paper's numbers are "
                f"read from `karmma/evaluation/{PAPER_FILE.name}`, copied from {paper_results()['copied_from']}.",
            )
    known = "; ".join(
        f"{e['name'].split(' (')[0]} ({', '.join(f'{n} {h}' for h, n in e['heads'].items())})"
        for e in datasets.values()
    )
    shown = ", ".join(f"{n} {h}" for h, n in heads.items()) or "unknown heads"
    return PaperMatch(
        None,
        f"No column of the paper's numbers: the paper reports on {known}; this run has {shown}"
        + (f" (data format {recorded})" if recorded else "")
        + ".",
    )


def paper_value(table: dict | None, model: str, key: str) -> float | None:
    """The paper's number for ``model`` at ``key`` (a subset or a dropout rate) in ``table``, or None."""
    if not table:
        return None
    return table["models"].get(model, {}).get(key)


def reported_models(table: dict | None) -> list[str]:
    """The models (results.json names) that ``table`` gives numbers for."""
    return list(table["models"]) if table else []


def beside(ours: float | None, paper: float | None, digits: int = 2) -> list[str]:
    """The two cells that follow one of our numbers: the paper's and the difference (ours - paper)."""
    if paper is None:
        return ["–", "–"]
    if ours is None:
        return [f"{paper:.{digits}f}", "–"]
    return [f"{paper:.{digits}f}", f"{ours - paper:+.{digits}f}"]


def paper_resources(paper: PaperMatch, benchmark: dict) -> dict | None:
    """The paper's resource table when it describes ``benchmark``: the same data set and preset."""
    table = paper.table("resources")
    return table if table and table["preset"] == benchmark.get("preset") else None


def resource_paper_note(paper: PaperMatch, benchmark: dict) -> list[str]:
    """One line on the paper's column of the resource table, when the run is on one of its data sets."""
    if not paper.key:
        return []
    table = paper.table("resources")
    if table is None:
        return ["The paper gives resources for EPIC-KITCHENS (V, F, A) only: no column of its here.", ""]
    if paper_resources(paper, benchmark) is None:
        return [
            f"The paper's resources are for the `{table['preset']}` preset's extractors; this benchmark measured "
            f"`{benchmark.get('preset')}`: no column of the paper's (`karmma benchmark model --preset "
            f"{table['preset']}` measures the paper's sizes).",
            "",
        ]
    return [
        f"*paper*: {table['table']}; memory in GB beside ours (MB / 1024), the paper's device and measure "
        "of memory are not ours (peak of live tensors).",
        "",
    ]
