"""``karmma export``, ``karmma predict`` (single and streaming) and their one-line errors."""

import json
import os

import numpy as np
import pytest

from karmma.cli import main
from karmma.data.synth import write_mp4

pytestmark = pytest.mark.e2e  # exports and predicts through the command line (ONNX export, video decoding)


def _one_line_error(capsys, argv, pattern):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"karmma {argv[0]}: error:"), err
    assert pattern in err, err


def test_export_writes_every_form(student_file, tmp_path, capsys):
    from karmma.artifacts import load_model

    out = tmp_path / "again.safetensors"
    assert main(["export", str(student_file), "--safetensors", str(out)]) == 0
    model, info = load_model(out)
    assert info.config["stage"] == "student" and model.modalities == ["V", "F", "A"]
    assert info.classes and info.preparation  # class names and preparation travel in the file
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not safetensors' owner-only 0600: exports are shared
    capsys.readouterr()
    _one_line_error(capsys, ["export", str(student_file)], "nothing to write")
    teacher_like = tmp_path / "weights.safetensors"
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(teacher_like))
    _one_line_error(capsys, ["export", str(teacher_like), "--onnx", str(tmp_path / "x.onnx")], "not a karmma student")


def test_export_takes_a_run_folder_and_refuses_a_teacher(trained_runs, tmp_path, capsys):
    from karmma.artifacts import load_model

    _, results = trained_runs
    out = tmp_path / "student.safetensors"
    assert main(["export", results["student"]["run"], "--safetensors", str(out)]) == 0
    model, info = load_model(out)
    assert info.config["stage"] == "student" and info.classes is not None
    capsys.readouterr()
    _one_line_error(
        capsys,
        ["export", results["teacher"]["run"], "--safetensors", str(tmp_path / "t.safetensors")],
        "not a karmma student (a 'teacher' model",
    )
    from karmma.cli import build_parser

    assert "export-student" not in build_parser().format_help()  # one export command, the forms are flags


def test_predict_table_and_json(onnx_student, synth_videos, capsys):
    raw, _ = synth_videos
    video = next(raw.rglob("*.MP4"))
    assert main(["predict", str(onnx_student), str(video), "--top-k", "2", "--start", "0.5", "--end", "2.0"]) == 0
    table = capsys.readouterr().out
    assert "modalities used: V+F+A" in table and "verb" in table and "noun" in table
    assert main(["predict", str(onnx_student), str(video), "--json", "--modalities", "V,F"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["modalities"] == ["V", "F"] and result["missing"] == {"A": "not requested"}
    assert (
        result["backend"] == "onnx"
        and len(result["actions"]) == 5
        and set(result["timings_ms"]) >= {"decode", "flow", "model"}
    )


def test_predict_without_audio_track_runs_without_a(student_file, tmp_path, capsys):
    frames = np.random.default_rng(0).integers(0, 255, (30, 96, 128, 3), dtype=np.uint8)
    silent = tmp_path / "silent.mp4"
    write_mp4(silent, frames, 24, None)
    assert main(["predict", str(student_file), str(silent), "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["modalities"] == ["V", "F"] and result["missing"] == {"A": "no audio track"}
    assert "has no audio track; predicted without A" in captured.err


def test_predict_bad_inputs_give_one_line_errors(onnx_student, student_file, synth_videos, tmp_path, capsys):
    video = str(next(synth_videos[0].rglob("*.MP4")))
    _one_line_error(capsys, ["predict", str(onnx_student), str(tmp_path / "nope.mp4")], "input not found")
    garbage = tmp_path / "broken.mp4"
    garbage.write_bytes(b"this is not a video" * 100)
    _one_line_error(capsys, ["predict", str(onnx_student), str(garbage)], "undecodable video")
    _one_line_error(capsys, ["predict", str(tmp_path / "missing.onnx"), video], "model not found")
    not_onnx = tmp_path / "model.onnx"
    not_onnx.write_bytes(b"\x00" * 64)
    _one_line_error(capsys, ["predict", str(not_onnx), video], "not a readable ONNX model")
    text = tmp_path / "model.ckpt"
    text.write_text("hello")
    _one_line_error(capsys, ["predict", str(text), video], "unreadable or truncated checkpoint")
    _one_line_error(capsys, ["predict", str(onnx_student), video, "--modalities", "V,D"], "not trained on modality D")
    _one_line_error(capsys, ["predict", str(onnx_student), video, "--modalities", "X"], "not trained on modality X")
    _one_line_error(
        capsys, ["predict", str(tmp_path), video], "nor a training run folder (no checkpoints/); export a run first"
    )


def test_predict_runs_a_training_run_folder(trained_runs, synth_videos, capsys):
    video = str(next(synth_videos[0].rglob("*.MP4")))
    _, results = trained_runs
    assert main(["predict", results["student"]["run"], video, "--json", "--top-k", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["backend"] != "onnx" and len(result["actions"]) == 2


def _damaged_export(student_file, out, change):
    """A copy of the student export whose tensors / metadata went through ``change(state, metadata)``."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(student_file), framework="pt") as f:
        metadata = dict(f.metadata())
        state = {k: f.get_tensor(k) for k in f.keys()}
    change(state, metadata)
    save_file(state, str(out), metadata=metadata)
    return out


def test_broken_student_exports_give_one_line_errors(student_file, synth_videos, tmp_path, capsys):
    video = str(next(synth_videos[0].rglob("*.MP4")))

    def nan_weight(state, metadata):
        key = next(k for k, v in state.items() if v.is_floating_point())
        state[key] = state[key].clone().fill_(float("nan"))

    nan = _damaged_export(student_file, tmp_path / "nan.safetensors", nan_weight)
    _one_line_error(capsys, ["predict", str(nan), video, "--json"], "holds NaN or infinite values")
    _one_line_error(capsys, ["evaluate", str(nan), "--out", str(tmp_path / "r.json")], "holds NaN or infinite values")
    missing = _damaged_export(student_file, tmp_path / "missing.safetensors", lambda s, m: s.pop(next(iter(s))))
    _one_line_error(capsys, ["predict", str(missing), video], "weights do not match the model")

    def other_heads(state, metadata):
        info = json.loads(metadata["karmma_deploy"])
        info["heads"] = {h: n + 1 for h, n in info["heads"].items()}
        metadata["karmma_deploy"] = json.dumps(info)

    wrong = _damaged_export(student_file, tmp_path / "heads.safetensors", other_heads)
    _one_line_error(capsys, ["predict", str(wrong), video], "weights do not match the model")


def test_non_finite_model_outputs_are_an_error(student_file, synth_videos):
    """Finite weights can still overflow: a prediction never reports NaN probabilities."""
    from karmma.deploy.recognizer import Recognizer

    recognizer = Recognizer.load(student_file)
    recognizer.runner.logits = lambda inputs, availability: {
        h: np.full((1, n), np.nan, dtype=np.float32) for h, n in recognizer.info.heads.items()
    }
    video = next(synth_videos[0].rglob("*.MP4"))
    with pytest.raises(ValueError, match="non-finite .* scores"):
        recognizer.predict_file(video, ["V"])


def test_stream_with_sensor_failures(onnx_student, synth_videos, capsys):
    video = str(next(synth_videos[0].rglob("*.MP4")))
    argv = [
        "predict",
        str(onnx_student),
        video,
        "--stream",
        "--json",
        "--window",
        "1.0",
        "--hop",
        "0.5",
        "--drop-sensors",
        "0.5",
        "--drop-seconds",
        "1.0",
        "--seed",
        "3",
    ]
    assert main(argv) == 0
    windows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(windows) >= 5 and [w["window"] for w in windows] == list(range(len(windows)))
    assert all(b["start"] - a["start"] == pytest.approx(0.5, abs=0.05) for a, b in zip(windows, windows[1:]))
    used = [tuple(w["modalities"]) for w in windows]
    assert all(u for u in used) and len(set(used)) > 1  # failures change the modalities over time
    for w in windows:
        assert set(w["modalities"]) | set(w["missing"]) == {"V", "F", "A"}
        assert all(why == "sensor failure" for k, why in w["missing"].items())
    assert main(argv) == 0
    assert [json.loads(line)["modalities"] for line in capsys.readouterr().out.splitlines()] == [list(u) for u in used]
    assert main(["predict", str(onnx_student), video, "--stream", "--window", "1.0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith("[") and "V+F+A" in line for line in lines)


def test_benchmark_deploy_times_an_existing_export(onnx_student, tmp_path, capsys):
    out = tmp_path / "latency.json"
    assert (
        main(
            [
                "benchmark",
                "deploy",
                "--model",
                str(onnx_student),
                "--repeats",
                "2",
                "--warmup",
                "0",
                "--clip-seconds",
                "0.5",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())["model"]
    assert result["backend"] == "OnnxRunner" and set(result["subsets"]) == {"V+F+A", "V+F", "V+A", "F+A", "V", "F", "A"}
    assert all(row["model_ms"] > 0 for row in result["subsets"].values())
    assert "| V+F+A |" in capsys.readouterr().out


# An interpreter where the training packages cannot be imported: the light install (pyproject.toml's
# core dependencies) simulated in the test venv; `make test-light` checks a real one.
WITHOUT_TRAINING_PACKAGES = """
import importlib.abc, json, sys
from karmma.cli import TRAINING_PACKAGES, main
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in TRAINING_PACKAGES:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Absent())
code = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in TRAINING_PACKAGES)
print(json.dumps({"exit": code, "loaded": loaded}), file=sys.stderr)
"""


def _without_training_packages(*argv):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_TRAINING_PACKAGES, *map(str, argv)], capture_output=True, text=True, timeout=300
    )
    *messages, status = done.stderr.strip().splitlines()
    return done.stdout, messages, json.loads(status)


def test_predict_on_onnx_needs_no_training_package(synth_videos, onnx_student, student_file, tmp_path, capsys):
    raw, _ = synth_videos
    clip = next(raw.rglob("*.MP4"))
    split = tmp_path / "student-onnx"
    assert main(["export", str(student_file), "--onnx-split", str(split)]) == 0
    for model in (onnx_student, split):
        out, messages, status = _without_training_packages("predict", model, clip, "--json")
        assert status == {"exit": 0, "loaded": []}, messages
        capsys.readouterr()
        assert main(["predict", str(model), str(clip), "--json"]) == 0  # in this process, torch loaded
        light, full = json.loads(out), json.loads(capsys.readouterr().out)
        assert light["modalities"] == ["V", "F", "A"] and light["backend"] == full["backend"]
        assert light["actions"] == full["actions"] and light["heads"] == full["heads"]
    out, messages, status = _without_training_packages("predict", student_file, clip)
    assert status["exit"] == 2 and len(messages) == 1, messages
    assert "needs the full install (torch is not installed" in messages[0] and "pip install '.[train]'" in messages[0]
