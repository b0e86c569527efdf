"""What a prediction is: the top classes and actions of a clip (:class:`Prediction`), what it
reports besides them (:class:`InputReport`) and one window of a stream or live session
(:class:`WindowPrediction`).

Plain results with no model code: the recognizer, the stream and the live session all make
them, so they sit below the three and none of those imports another for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Prediction:
    """Top-k classes per head and top-k actions (joint over the heads), with probabilities.

    Attributes:
        heads: per head, ``[(class name, probability)]`` best first.
        actions: ``[{head: class name, ..., "probability": p}]`` best first; the
            probability of an action is the product of its heads' probabilities.
        modalities: the modalities the prediction used.
        missing: modalities not used, with the reason.
        timings_ms: milliseconds per step (``decode``, ``rgb``, ``flow``, ``spectrogram``, ``model``).
        segment: the ``(start, stop)`` seconds of the video predicted (None: inputs were given).
        flow_stride: frames between the two frames of each flow pair (None: no flow computed).
    """

    heads: dict[str, list[tuple[str, float]]]
    actions: list[dict]
    modalities: list[str]
    missing: dict[str, str] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    segment: tuple[float, float] | None = None
    flow_stride: int | None = None

    @property
    def top(self) -> dict:
        """The best action, e.g. ``{"verb": "lift", "noun": "cup", "probability": 0.8}``."""
        return self.actions[0]

    def to_dict(self) -> dict:
        return {
            **({"segment": [round(t, 3) for t in self.segment]} if self.segment else {}),
            **({"flow_stride": self.flow_stride} if self.flow_stride else {}),
            "modalities": self.modalities,
            "missing": self.missing,
            "actions": self.actions,
            "heads": {
                h: [{"class": name, "probability": round(p, 6)} for name, p in top] for h, top in self.heads.items()
            },
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }

    def format_table(self) -> str:
        names = list(self.heads)
        lines = [
            (f"segment {self.segment[0]:.2f}-{self.segment[1]:.2f} s: " if self.segment else "")
            + f"modalities used: {'+'.join(self.modalities)}"
            + (f" (flow pairs {self.flow_stride} frame(s) apart)" if self.flow_stride else "")
            + "".join(f"; {k} not used ({why})" for k, why in self.missing.items())
        ]
        header = f"{'rank':>4s}  " + "  ".join(f"{h:16s}" for h in names) + "  probability"
        lines += [header, "-" * len(header)]
        for rank, action in enumerate(self.actions, 1):
            lines.append(
                f"{rank:4d}  " + "  ".join(f"{action[h]:16s}" for h in names) + f"  {action['probability']:.3f}"
            )
        if self.timings_ms:
            lines.append("time: " + ", ".join(f"{k} {v:.1f} ms" for k, v in self.timings_ms.items()))
        return "\n".join(lines)


@dataclass
class InputReport:
    """What a prediction reports besides its inputs: the modalities not used and why, the
    milliseconds per step, the segment (s) and the flow stride (None: none computed)."""

    missing: dict[str, str]
    timings_ms: dict[str, float]
    segment: tuple[float, float] | None = None
    flow_stride: int | None = None


@dataclass
class WindowPrediction:
    """The prediction of one window ``[start, end]`` s; ``prediction`` is None when no modality covered
    it (a live :class:`~karmma.deploy.session.Session` with every sensor silent), ``unused`` then says why."""

    index: int
    start: float  # seconds
    end: float
    prediction: Prediction | None
    dropped: list[str] = field(default_factory=list)
    unused: dict[str, str] = field(default_factory=dict)

    @property
    def modalities(self) -> list[str]:
        return self.prediction.modalities if self.prediction else []

    @property
    def missing(self) -> dict[str, str]:
        return self.prediction.missing if self.prediction else self.unused

    def to_dict(self) -> dict:
        window = {"window": self.index, "start": round(self.start, 3), "end": round(self.end, 3)}
        if self.prediction is None:
            return {**window, "modalities": [], "missing": self.unused, "actions": [], "heads": {}}
        return {**window, **self.prediction.to_dict()}

    def format_line(self) -> str:
        p = self.prediction
        notes = ", ".join(f"{k} {why}" for k, why in self.missing.items())
        span = f"[{self.start:7.2f} - {self.end:7.2f} s]"
        if p is None:
            return f"{span} {'-':7s} no prediction  [not used: {notes}]"
        action = " ".join(v for k, v in p.top.items() if k != "probability")
        return f"{span} {'+'.join(p.modalities):7s} {action} ({p.top['probability']:.2f})" + (
            f"  [not used: {notes}]" if notes else ""
        )
