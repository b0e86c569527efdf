"""Annotation files, read as they are published, validated strictly.

Every problem stops loading with an :class:`AnnotationError` naming the file
and line (``path:line: message``): an unknown or missing column, a class id
outside the class list, a timestamp that is not ``HH:MM:SS.ff`` (NaN, a sign),
a stop before the start, a duplicated id.

* EPIC-KITCHENS-100: ``EPIC_100_{train,validation}.csv`` (labelled),
  ``EPIC_100_test_timestamps.csv`` (unlabelled), ``EPIC_100_{verb,noun}_classes.csv``,
  ``EPIC_100_tail_{verbs,nouns}.csv`` and ``EPIC_100_unseen_participant_ids_validation.csv``.
* Something-Something v2: ``labels.json`` (template -> class id as a string)
  and the split JSON files (``id``, ``template`` with brackets, ``placeholders``).
"""

from __future__ import annotations

import csv
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

EPIC_TIMESTAMP_COLUMNS = (
    "narration_id",
    "participant_id",
    "video_id",
    "narration_timestamp",
    "start_timestamp",
    "stop_timestamp",
    "start_frame",
    "stop_frame",
)
EPIC_LABEL_COLUMNS = ("narration", "verb", "verb_class", "noun", "noun_class", "all_nouns", "all_noun_classes")


class AnnotationError(ValueError):
    """An annotation file is malformed; the message starts with ``file:line``."""

    def __init__(self, path: str | Path, line: int | None, message: str):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


def read_json(path: Path):
    """The JSON value in annotation file ``path``; invalid JSON is an :class:`AnnotationError` at its line."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise AnnotationError(path, error.lineno, f"invalid JSON: {error.msg}") from None


@dataclass(frozen=True)
class Segment:
    """One labelled (or test) action segment of a long video.

    Frame numbers are the 1-based numbers of the RGB frame files, inclusive.
    ``labels`` maps a head name to a class id (empty for test segments).
    """

    id: str
    video_id: str
    participant_id: str
    start_frame: int
    stop_frame: int
    start_time: float
    stop_time: float
    labels: dict[str, int] = field(default_factory=dict)
    narration: str = ""


TIMESTAMP = re.compile(r"(\d+):([0-5]?\d):([0-5]?\d(?:\.\d*)?)")


def parse_timestamp(text: str) -> float:
    """``"00:01:02.50"`` -> 62.5 seconds; ``ValueError`` for anything else (signs, NaN, ``inf``, 61 s)."""
    match = TIMESTAMP.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a timestamp HH:MM:SS.ff")
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def epic_timestamp(seconds: float) -> str:
    """62.5 -> ``"00:01:02.50"`` (the inverse of :func:`parse_timestamp`, to the hundredth of a second)."""
    hours, rest = divmod(round(seconds * 100), 360_000)
    minutes, hundredths = divmod(rest, 6000)
    return f"{hours:02d}:{minutes:02d}:{hundredths // 100:02d}.{hundredths % 100:02d}"


def row_timestamp(row: dict, column: str, path: Path, line: int) -> float:
    """The timestamp in ``row[column]``, or an :class:`AnnotationError` naming the file, line and column."""
    try:
        return parse_timestamp(row[column])
    except (AttributeError, ValueError):
        raise AnnotationError(path, line, f"{column} {row[column]!r} is not a timestamp HH:MM:SS.ff") from None


def read_class_list(path: str | Path) -> list[str]:
    """An EPIC class CSV (``id,key,instances,category``) -> class keys indexed by id."""
    path = Path(path)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"id", "key"} <= set(reader.fieldnames):
            raise AnnotationError(path, 1, f"a class list needs columns 'id' and 'key', found {reader.fieldnames}")
        keys: list[str] = []
        for row in reader:
            try:
                class_id = int(row["id"])
            except ValueError:
                raise AnnotationError(path, reader.line_num, f"class id {row['id']!r} is not an integer") from None
            if class_id != len(keys):
                raise AnnotationError(
                    path, reader.line_num, f"class ids must be 0, 1, 2, ...; expected {len(keys)}, got {class_id}"
                )
            keys.append(row["key"])
    if not keys:
        raise AnnotationError(path, None, "the class list is empty")
    return keys


def _read_column(path: str | Path, column: str) -> list[str]:
    """The values of ``column`` in a CSV with a header row (empty lines skipped)."""
    path = Path(path)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or column not in reader.fieldnames:
            raise AnnotationError(path, 1, f"expected a column {column!r}, found {reader.fieldnames}")
        return [row[column].strip() for row in reader if (row[column] or "").strip()]


def read_epic_tail_classes(path: str | Path, head: str) -> set[int]:
    """``EPIC_100_tail_{verbs,nouns}.csv`` (one column, ``verb`` or ``noun``) -> the tail class ids."""
    values = _read_column(path, head)
    try:
        return {int(v) for v in values}
    except ValueError:
        raise AnnotationError(path, None, f"{head} class ids must be integers, got {values[:5]}") from None


def read_epic_unseen_participants(path: str | Path) -> set[str]:
    """``EPIC_100_unseen_participant_ids_*.csv`` (column ``participant_id``) -> the participant ids."""
    return set(_read_column(path, "participant_id"))


def read_epic_segments(
    path: str | Path, num_classes: dict[str, int] | None = None, require_labels: bool | None = None
) -> list[Segment]:
    """Read an EPIC-KITCHENS-100 annotation CSV.

    Args:
        path: a labelled CSV (train/validation, 15 columns) or the test
            timestamps CSV (8 columns).
        num_classes: ``{"verb": 97, "noun": 300}`` to check class ids against.
        require_labels: insist on (True) or forbid (False) the label columns;
            ``None`` accepts either.
    """
    path = Path(path)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        unknown = [c for c in columns if c not in EPIC_TIMESTAMP_COLUMNS + EPIC_LABEL_COLUMNS]
        if unknown:
            raise AnnotationError(path, 1, f"unknown column(s) {unknown}")
        missing = [c for c in EPIC_TIMESTAMP_COLUMNS if c not in columns]
        labelled = "verb_class" in columns or "noun_class" in columns
        if labelled:
            missing += [c for c in ("verb_class", "noun_class") if c not in columns]
        if missing:
            raise AnnotationError(path, 1, f"missing column(s) {missing}")
        if require_labels is not None and labelled != require_labels:
            raise AnnotationError(
                path,
                1,
                "expected labelled segments (verb_class, noun_class)"
                if require_labels
                else "expected a test file without labels",
            )
        segments: list[Segment] = []
        first_line: dict[str, int] = {}
        for row in reader:
            line = reader.line_num
            segment = _epic_row(row, path, line, labelled, num_classes)
            if segment.id in first_line:
                raise AnnotationError(
                    path, line, f"duplicated narration_id {segment.id!r} (first on line {first_line[segment.id]})"
                )
            first_line[segment.id] = line
            segments.append(segment)
    return segments


def _epic_row(row: dict, path: Path, line: int, labelled: bool, num_classes: dict[str, int] | None) -> Segment:
    def integer(column: str) -> int:
        try:
            return int(row[column])
        except (TypeError, ValueError):
            raise AnnotationError(path, line, f"{column} {row[column]!r} is not an integer") from None

    start_time, stop_time = (
        row_timestamp(row, "start_timestamp", path, line),
        row_timestamp(row, "stop_timestamp", path, line),
    )
    start_frame, stop_frame = integer("start_frame"), integer("stop_frame")
    if start_frame < 1:
        raise AnnotationError(path, line, f"start_frame {start_frame} < 1 (frame numbers are 1-based)")
    if stop_frame < start_frame:
        raise AnnotationError(path, line, f"stop_frame {stop_frame} is before start_frame {start_frame}")
    if stop_time < start_time:
        raise AnnotationError(
            path, line, f"stop_timestamp {row['stop_timestamp']} is before start_timestamp {row['start_timestamp']}"
        )
    labels = {}
    if labelled:
        for head in ("verb", "noun"):
            class_id = integer(f"{head}_class")
            limit = (num_classes or {}).get(head)
            if class_id < 0 or (limit is not None and class_id >= limit):
                raise AnnotationError(
                    path, line, f"{head}_class {class_id} is outside the class list (0..{(limit or 1) - 1})"
                )
            labels[head] = class_id
    return Segment(
        id=row["narration_id"],
        video_id=row["video_id"],
        participant_id=row["participant_id"],
        start_frame=start_frame,
        stop_frame=stop_frame,
        start_time=start_time,
        stop_time=stop_time,
        labels=labels,
        narration=row.get("narration") or "",
    )


def split_train_validation(
    segments: list[Segment], validation_fraction: float = 0.1, seed: int = 0, by: str = "segment"
) -> tuple[list[Segment], list[Segment]]:
    """The Epic-Kitchens* protocol: a seeded split of the official training set.

    ``by="segment"`` (default, the paper's 90 % / 10 %) shuffles segments;
    ``by="video"`` keeps every segment of a video on the same side, so
    validation videos are unseen (about ``validation_fraction`` of segments).
    The split depends only on the ids and the seed, not on the file order.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    if by not in ("segment", "video"):
        raise ValueError(f"split by 'segment' or 'video', got {by!r}")
    unit = (lambda s: s.id) if by == "segment" else (lambda s: s.video_id)
    units = sorted({unit(s) for s in segments})
    random.Random(seed).shuffle(units)
    if by == "segment":
        validation_units = set(units[: round(len(units) * validation_fraction)])
    else:
        counts: dict[str, int] = {}
        for s in segments:
            counts[unit(s)] = counts.get(unit(s), 0) + 1
        validation_units, taken = set(), 0
        for u in units:
            if taken >= validation_fraction * len(segments):
                break
            validation_units.add(u)
            taken += counts[u]
    train = [s for s in segments if unit(s) not in validation_units]
    validation = [s for s in segments if unit(s) in validation_units]
    return train, validation


# --- Something-Something v2 -------------------------------------------------


def read_ssv2_labels(path: str | Path) -> dict[str, int]:
    """``labels.json``: template (without brackets) -> class id (stored as a string)."""
    path = Path(path)
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise AnnotationError(path, None, "expected an object mapping templates to class ids")
    labels = {}
    for template, class_id in raw.items():
        try:
            labels[template] = int(class_id)
        except (TypeError, ValueError):
            raise AnnotationError(path, None, f"class id {class_id!r} of {template!r} is not an integer") from None
    if sorted(labels.values()) != list(range(len(labels))):
        raise AnnotationError(path, None, "class ids must be exactly 0 .. N-1")
    return labels


def ssv2_template_class(template: str) -> str:
    """``"Putting [something] on [something]"`` -> ``"Putting something on something"``."""
    return template.replace("[", "").replace("]", "")


def read_ssv2_split(path: str | Path, labels: dict[str, int] | None) -> list[Segment]:
    """An SSv2 split JSON -> one :class:`Segment` per video (whole video, head ``action``).

    ``labels=None`` reads a test list (ids only). Entry ``i`` is reported as
    ``entry i`` since JSON files are often on a single line.
    """
    path = Path(path)
    entries = read_json(path)
    if not isinstance(entries, list):
        raise AnnotationError(
            path,
            None,
            f"expected a JSON list of {{'id': ..., 'template': ...}} objects, got a {type(entries).__name__}",
        )
    segments, seen = [], {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise AnnotationError(
                path, None, f"entry {i} is a {type(entry).__name__}, expected an object with 'id' and 'template'"
            )
        if "id" not in entry:
            raise AnnotationError(path, None, f"entry {i} has no 'id'")
        video_id = str(entry["id"])
        if video_id in seen:
            raise AnnotationError(
                path, None, f"entry {i}: duplicated id {video_id!r} (first at entry {seen[video_id]})"
            )
        seen[video_id] = i
        segment_labels = {}
        if labels is not None:
            if "template" not in entry:
                raise AnnotationError(path, None, f"entry {i} (id {video_id}) has no 'template'")
            if not isinstance(entry["template"], str):
                raise AnnotationError(path, None, f"entry {i} (id {video_id}): 'template' must be a string")
            name = ssv2_template_class(entry["template"])
            if name not in labels:
                raise AnnotationError(
                    path, None, f"entry {i} (id {video_id}): template {name!r} is not in the label list"
                )
            segment_labels = {"action": labels[name]}
        segments.append(
            Segment(
                id=video_id,
                video_id=video_id,
                participant_id="",
                start_frame=1,
                stop_frame=-1,
                start_time=0.0,
                stop_time=-1.0,
                labels=segment_labels,
                narration=entry.get("label", ""),
            )
        )
    return segments
