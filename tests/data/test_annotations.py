import json

import pytest

from karmma.data.annotations import (
    AnnotationError,
    read_class_list,
    read_epic_segments,
    read_epic_tail_classes,
    read_epic_unseen_participants,
    read_ssv2_labels,
    read_ssv2_split,
    split_train_validation,
    ssv2_template_class,
)
from karmma.data.boxes import boxes_tensor, read_something_else

HEADER = "narration_id,participant_id,video_id,narration_timestamp,start_timestamp,stop_timestamp,start_frame,stop_frame,narration,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes\n"
ROW = "P01_01_{i},P01,P01_01,00:00:01.0,00:00:01.00,00:00:02.00,{start},{stop},take plate,take,{verb},plate,2,['plate'],[2]\n"
CLASSES = {"verb": 97, "noun": 300}


def test_epic_validation_counts(shared_data):
    epic = shared_data / "epic-kitchens-100"
    verbs = read_class_list(epic / "EPIC_100_verb_classes.csv")
    nouns = read_class_list(epic / "EPIC_100_noun_classes.csv")
    assert len(verbs) == 97 and len(nouns) == 300 and verbs[0] == "take" and nouns[0] == "tap"
    segments = read_epic_segments(epic / "EPIC_100_validation.csv", {"verb": 97, "noun": 300}, require_labels=True)
    assert len(segments) == 9668
    assert len({s.video_id for s in segments}) == 138
    first = segments[0]
    assert (first.id, first.start_frame, first.stop_frame, first.labels) == ("P01_11_0", 1, 113, {"verb": 0, "noun": 2})
    assert first.stop_time == pytest.approx(1.89)


def test_epic_training_format_and_test_timestamps(shared_data):
    epic = shared_data / "epic-kitchens-100"
    train = read_epic_segments(epic / "EPIC_100_uda_source_train.csv", CLASSES, require_labels=True)
    assert len(train) == 16115 and all(s.labels for s in train)
    test = read_epic_segments(epic / "EPIC_100_test_timestamps.csv", require_labels=False)
    assert len(test) > 13000 and not test[0].labels
    with pytest.raises(AnnotationError, match="expected labelled"):
        read_epic_segments(epic / "EPIC_100_test_timestamps.csv", require_labels=True)


def test_epic_tail_classes_and_unseen_participants(shared_data, tmp_path):
    epic = shared_data / "epic-kitchens-100"
    verbs = read_epic_tail_classes(epic / "EPIC_100_tail_verbs.csv", "verb")
    nouns = read_epic_tail_classes(epic / "EPIC_100_tail_nouns.csv", "noun")
    assert (len(verbs), len(nouns)) == (86, 228) and {10, 12} <= verbs and 56 in nouns
    assert read_epic_unseen_participants(epic / "EPIC_100_unseen_participant_ids_validation.csv") == {"P18", "P32"}
    wrong = tmp_path / "EPIC_100_tail_verbs.csv"
    wrong.write_text("noun\n3\n")
    with pytest.raises(AnnotationError, match=r"EPIC_100_tail_verbs.csv:1: expected a column 'verb'"):
        read_epic_tail_classes(wrong, "verb")
    wrong.write_text("verb\nten\n")
    with pytest.raises(AnnotationError, match=r"EPIC_100_tail_verbs.csv: verb class ids must be integers"):
        read_epic_tail_classes(wrong, "verb")


def _write(tmp_path, text, name="bad.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_unknown_column_names_file_and_line(tmp_path):
    path = _write(tmp_path, HEADER.replace("all_noun_classes", "extra") + ROW.format(i=0, start=1, stop=5, verb=0))
    with pytest.raises(AnnotationError, match=r"bad.csv:1: unknown column\(s\) \['extra'\]"):
        read_epic_segments(path)


def test_class_outside_list_names_line(tmp_path):
    text = HEADER + ROW.format(i=0, start=1, stop=5, verb=0) + ROW.format(i=1, start=1, stop=5, verb=97)
    with pytest.raises(AnnotationError, match=r"bad.csv:3: verb_class 97 is outside the class list \(0..96\)"):
        read_epic_segments(_write(tmp_path, text), CLASSES)


def test_stop_before_start_names_line(tmp_path):
    text = HEADER + ROW.format(i=0, start=10, stop=5, verb=0)
    with pytest.raises(AnnotationError, match=r"bad.csv:2: stop_frame 5 is before start_frame 10"):
        read_epic_segments(_write(tmp_path, text))


def test_duplicated_narration_id_names_both_lines(tmp_path):
    text = HEADER + ROW.format(i=0, start=1, stop=5, verb=0) + ROW.format(i=0, start=6, stop=9, verb=1)
    with pytest.raises(AnnotationError, match=r"bad.csv:3: duplicated narration_id 'P01_01_0' \(first on line 2\)"):
        read_epic_segments(_write(tmp_path, text))


def test_non_integer_frame(tmp_path):
    text = HEADER + ROW.format(i=0, start="x", stop=5, verb=0)
    with pytest.raises(AnnotationError, match=r"bad.csv:2: start_frame 'x' is not an integer"):
        read_epic_segments(_write(tmp_path, text))


@pytest.mark.parametrize("stamp", ["00:00:nan", "00:00:inf", "-00:00:01.00", "00:-1:00.00", "00:01"])
def test_timestamp_that_is_not_a_finite_time_names_line_and_column(tmp_path, stamp):
    text = HEADER + ROW.format(i=0, start=1, stop=5, verb=0).replace("00:00:02.00", stamp)
    with pytest.raises(AnnotationError, match=rf"bad.csv:2: stop_timestamp '{stamp}' is not a timestamp HH:MM:SS"):
        read_epic_segments(_write(tmp_path, text))


def test_epic_star_split_is_seeded_and_disjoint(shared_data):
    segments = read_epic_segments(shared_data / "epic-kitchens-100" / "EPIC_100_uda_source_train.csv")
    train, val = split_train_validation(segments, 0.1, seed=0)
    assert len(val) == round(0.1 * len(segments)) and len(train) + len(val) == len(segments)
    assert not {s.id for s in train} & {s.id for s in val}
    again, _ = split_train_validation(list(reversed(segments)), 0.1, seed=0)
    assert {s.id for s in again} == {s.id for s in train}  # independent of file order
    other, _ = split_train_validation(segments, 0.1, seed=1)
    assert {s.id for s in other} != {s.id for s in train}
    by_video_train, by_video_val = split_train_validation(segments, 0.1, seed=0, by="video")
    assert not {s.video_id for s in by_video_train} & {s.video_id for s in by_video_val}
    assert 0.08 < len(by_video_val) / len(segments) < 0.2


def test_ssv2_bracket_stripping_and_counts(shared_data):
    ssv2 = shared_data / "something-something-v2"
    labels = read_ssv2_labels(ssv2 / "something-something-v2-labels.json")
    assert len(labels) == 174
    assert ssv2_template_class("Putting [something] on [something]") == "Putting something on something"
    segments = read_ssv2_split(ssv2 / "something-something-v2-validation.json", labels)
    assert len(segments) == 24777
    first = segments[0]
    assert first.id == "74225"
    assert first.labels["action"] == labels["Spinning something that quickly stops spinning"]


def test_ssv2_unknown_template(tmp_path, shared_data):
    labels = read_ssv2_labels(shared_data / "something-something-v2" / "something-something-v2-labels.json")
    path = tmp_path / "split.json"
    path.write_text(json.dumps([{"id": "1", "template": "Juggling [something]", "placeholders": []}]))
    with pytest.raises(AnnotationError, match="split.json: entry 0 \\(id 1\\): template 'Juggling something'"):
        read_ssv2_split(path, labels)


def test_something_else_boxes(shared_data):
    videos = read_something_else(shared_data / "something-something-v2" / "something_else_annotations_sample.json")
    assert len(videos) == 13
    frames = videos["151201"]
    first = frames[1]
    assert [b.category for b in first] == [0, 1]  # hand first, then placeholder object 0
    hand = first[0]
    assert (hand.x1, hand.x2) == (0, pytest.approx(31.60220994475138))
    tensor = boxes_tensor(frames, [1, 2, 10_000], slots=4, width=320, height=240)
    assert tensor.shape == (3, 4, 6)
    assert tensor[0, 0].tolist() == pytest.approx(
        [0.0, 115.80110497237568 / 240, 31.60220994475138 / 320, 230.71823204419888 / 240, 1.0, 0.0]
    )
    assert tensor[0, 2].abs().sum() == 0  # empty slot
    assert tensor[2].abs().sum() == 0  # frame without annotation
    assert tensor[..., :4].min() >= 0 and tensor[..., :4].max() <= 1


@pytest.mark.parametrize(
    "content, named",
    [
        ('{"id": "1", "template": "x"}', "expected a JSON list"),
        ('["1", "2"]', "entry 0 is a str"),
        ('[{"id": "1", "template": 3}]', "'template' must be a string"),
    ],
)
def test_ssv2_json_of_the_wrong_shape_is_one_line(tmp_path, content, named):
    from karmma.data.annotations import AnnotationError, read_ssv2_split

    path = tmp_path / "train.json"
    path.write_text(content)
    with pytest.raises(AnnotationError, match=named):
        read_ssv2_split(path, {"x": 0})


def test_something_else_json_of_the_wrong_shape_is_one_line(tmp_path):
    from karmma.data.annotations import AnnotationError
    from karmma.data.boxes import read_something_else

    path = tmp_path / "boxes.json"
    path.write_text('[{"name": "0001.jpg"}]')
    with pytest.raises(AnnotationError, match="boxes.json: expected a JSON object mapping video ids"):
        read_something_else(path)


@pytest.mark.parametrize("reader", [read_ssv2_labels, lambda path: read_ssv2_split(path, None), read_something_else])
def test_invalid_json_names_the_file_and_line(tmp_path, reader):
    path = tmp_path / "annotations.json"
    path.write_text('{\n "a": 1,\n "b": \n}\n')
    with pytest.raises(AnnotationError, match=r"annotations\.json:4: invalid JSON: Expecting value"):
        reader(path)
