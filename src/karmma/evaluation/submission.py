"""The EPIC-KITCHENS-100 action-recognition challenge export (``karmma evaluate --submission``).

The format, as the challenge publishes it:

* `epic-kitchens/C1-Action-Recognition <https://github.com/epic-kitchens/C1-Action-Recognition>`_,
  ``utils/challenge.py`` (``make_action_recognition_submission``, ``write_submission_file``)
  and ``create_submission.py``: a zip holding one flat ``test.json`` with ``"version": "0.2"``,
  ``"challenge": "action_recognition"``, the self-reported supervision levels ``sls_pt``,
  ``sls_tl``, ``sls_td`` (integers 0-5, defined in `epic-kitchens/SLS
  <https://github.com/epic-kitchens/SLS>`_) and ``"results"``: per ``narration_id``, ``"verb"``
  scores for all 97 classes and ``"noun"`` scores for all 300, keyed by the class id as a string;
* `epic-kitchens/epic-kitchens-55-lib <https://github.com/epic-kitchens/epic-kitchens-55-lib>`_,
  ``docs/source/submission_format.md``: each entry may add exactly 100 ``"action"`` scores keyed
  ``"<verb_class>,<noun_class>"``; without them the server makes its own from a softmax of the
  verb and noun scores.

Scores are what ``karmma evaluate`` scores: per clip the softmax of each head averaged over the
evaluation views (:class:`~karmma.evaluation.evaluate.ClipScores`). The 100 action scores are
the best ``p(verb) * p(noun)`` products, the rule :mod:`karmma.evaluation.metrics` ranks actions
by (the heads are independent given the clip). They are written because the server's fallback
would apply a softmax to scores that already are probabilities, which ranks pairs by
``p(verb) + p(noun)``: the same top-1 action, possibly other top-5 ones than ``evaluate`` scored.
"""

from __future__ import annotations

import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from karmma.io import atomic_path

if TYPE_CHECKING:  # light at import: the CLI's parser reads SupervisionLevels' defaults
    from karmma.evaluation.evaluate import ClipScores

VERSION = "0.2"
CHALLENGE = "action_recognition"
HEADS = {"verb": 97, "noun": 300}  # EPIC-KITCHENS-100's class lists
ACTIONS = 100
MEMBER = "test.json"  # the one file of the zip, whatever the split
LEVELS = range(6)


@dataclass(frozen=True)
class SupervisionLevels:
    """The challenge's self-reported supervision levels (epic-kitchens/SLS), 0-5 each.

    The defaults describe karmma's shipped EPIC-100 recipe: ``pt`` 2, extractors pre-trained on
    public image and video data (ImageNet ResNet-18, Kinetics-400 Swin3D); ``tl`` 3, trained
    on the segments' start and stop times and their verb / noun classes; ``td`` 3, the
    training split only (validation selects the checkpoint). Train on train + validation and
    say ``td`` 4 (the official ``create_submission.py`` defaults to 2, 3, 4).
    """

    pt: int = 2
    tl: int = 3
    td: int = 3

    def __post_init__(self):
        for name in ("pt", "tl", "td"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value not in LEVELS:
                raise ValueError(f"sls_{name} must be an integer from 0 to 5, got {value!r}")


def check_submission_path(path: str | Path) -> Path:
    """``path`` as the submission to write: a ``.zip`` that does not exist yet (never overwritten)."""
    path = Path(path)
    if path.suffix.lower() != ".zip":
        raise ValueError(f"--submission {path}: the challenge takes a .zip file")
    if path.exists():
        raise ValueError(
            f"--submission {path} exists: karmma does not overwrite a submission; remove it or name another"
        )
    return path


def check_heads(heads: dict[str, int], source: str) -> None:
    """A model whose heads are not EPIC-KITCHENS-100's 97 verbs and 300 nouns cannot be submitted."""
    if dict(heads) != HEADS:
        raise ValueError(
            f"{source}: --submission writes the EPIC-KITCHENS-100 format (verb 97, noun 300 classes); "
            f"the model's heads are {dict(heads)}"
        )


def score_text(score: float) -> str:
    """A finite score as a JSON float with 9 significant digits: a float32 exactly, in about half
    the text of a float64's repr (the test split's ``test.json`` holds 13 k clips x 497 scores)."""
    text = f"{score:.9g}"
    return text if "." in text or "e" in text else text + ".0"  # 1 -> 1.0: a float, as the official writer's


def scores_object(keys: list[str], scores: list[float]) -> str:
    """The JSON text ``{"key": score, ...}``."""
    return "{" + ", ".join(f'"{key}": {score_text(score)}' for key, score in zip(keys, scores)) + "}"


def write_submission(
    path: str | Path, scores: ClipScores, levels: SupervisionLevels = SupervisionLevels(), chunk: int = 256
) -> Path:
    """Write ``scores`` (every clip of its split) as the challenge's zip; returns ``path``.

    ``test.json`` is streamed into the zip entry by entry (for the test split's 13,092 clips
    it is a string of about 150 MB), through a temporary file renamed at the end.
    """
    from karmma.evaluation.metrics import top_pairs

    path = check_submission_path(path)
    heads = {head: probs.shape[1] for head, probs in scores.probabilities.items()}
    check_heads(heads, str(path))
    if scores.unscored:
        raise ValueError(
            f"--submission: {len(scores.unscored)} clip(s) of the {scores.split} split have no score "
            f"(none of {'+'.join(scores.modalities)} readable, e.g. {scores.unscored[0]}); the challenge "
            "needs every narration_id: provide their media or choose other --modalities"
        )
    for head, probs in scores.probabilities.items():
        bad = (~probs.isfinite().all(dim=1)).nonzero().flatten().tolist()
        if bad:
            raise ValueError(
                f"--submission: the {head} scores of clip {scores.ids[bad[0]]} are not finite (NaN or inf)"
            )
    header = {"version": VERSION, "challenge": CHALLENGE, "sls_pt": levels.pt, "sls_tl": levels.tl, "sls_td": levels.td}
    verb, noun = scores.probabilities["verb"].float(), scores.probabilities["noun"].float()
    verb_keys, noun_keys = [str(c) for c in range(HEADS["verb"])], [str(c) for c in range(HEADS["noun"])]
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=5) as archive:
            member_info = zipfile.ZipInfo(MEMBER, date_time=time.localtime()[:6])
            member_info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(member_info, "w", force_zip64=True) as member:
                member.write((json.dumps(header)[:-1] + ', "results": {').encode())
                for start in range(0, len(scores.ids), chunk):
                    rows = slice(start, start + chunk)
                    best_verbs, best_nouns, best = (t.tolist() for t in top_pairs(verb[rows], noun[rows], ACTIONS))
                    entries = []
                    for i, (clip_id, verb_row, noun_row) in enumerate(
                        zip(scores.ids[rows], verb[rows].tolist(), noun[rows].tolist())
                    ):
                        actions = [f"{v},{n}" for v, n in zip(best_verbs[i], best_nouns[i])]
                        entries.append(
                            f'{json.dumps(clip_id)}: {{"verb": {scores_object(verb_keys, verb_row)}, '
                            f'"noun": {scores_object(noun_keys, noun_row)}, '
                            f'"action": {scores_object(actions, best[i])}}}'
                        )
                    member.write(((", " if start else "") + ", ".join(entries)).encode())
                member.write(b"}}")
    return path
