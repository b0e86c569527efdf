"""Atomic writes: a failed write keeps the previous file and leaves no temporary behind."""

import errno

import pytest

from karmma.io import atomic_open, atomic_path, atomic_savefig, atomic_write_text, write_json


def test_atomic_write_replaces_the_file(tmp_path):
    path = tmp_path / "sub" / "results.json"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]


def test_a_write_failing_midway_keeps_the_previous_version(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    path.write_text('{"previous": 1}')

    class FullDisk:
        def __init__(self, real):
            self.real = real

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.real.close()

        def write(self, data):
            self.real.write(data[: len(data) // 2])  # half of it reaches the disk, then ENOSPC
            raise OSError(errno.ENOSPC, "No space left on device")

    real_open = open
    monkeypatch.setattr(
        "builtins.open",
        lambda file, mode="r", *a, **k: (
            FullDisk(real_open(file, mode, *a, **k)) if "w" in mode else real_open(file, mode, *a, **k)
        ),
    )
    with pytest.raises(OSError, match="No space left"):
        atomic_write_text(path, '{"new": "a longer text than before"}')
    monkeypatch.undo()
    assert path.read_text() == '{"previous": 1}'
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_write_json_writes_one_json_document_atomically(tmp_path):
    path = tmp_path / "sub" / "results.json"
    path.parent.mkdir()
    path.write_text("old")
    assert write_json(path, {"models": {"student": [1, 2.5]}}) == path
    assert path.read_text() == '{\n "models": {\n  "student": [\n   1,\n   2.5\n  ]\n }\n}\n'
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]


def test_atomic_path_removes_the_temporary_when_the_writer_raises(tmp_path):
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="writer died"):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("writer died")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.ckpt"]


def test_atomic_open_writes_csv_rows(tmp_path):
    import csv

    with atomic_open(tmp_path / "video_info.csv", newline="") as f:
        csv.writer(f).writerows([["video_id", "duration"], ["P01_01", "1.0"]])
    assert (tmp_path / "video_info.csv").read_text().splitlines() == ["video_id,duration", "P01_01,1.0"]
    with pytest.raises(ValueError, match="mode 'w' or 'wb'"):
        with atomic_open(tmp_path / "x", "a"):
            pass


def test_atomic_savefig_keeps_the_format_of_the_suffix(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1])
    atomic_savefig(fig, tmp_path / "curves.png")
    plt.close(fig)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]
