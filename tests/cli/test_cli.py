import argparse
import errno
import json
import shlex
from pathlib import Path

import pytest

from karmma.cli import build_parser, main


@pytest.mark.e2e
def test_benchmark_tiny_writes_json_and_plot(tmp_path):
    out, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    code = main(
        [
            "benchmark",
            "model",
            "--preset",
            "tiny",
            "--json",
            str(out),
            "--plot",
            str(plot),
            "--repeats",
            "1",
            "--warmup",
            "0",
        ]
    )
    assert code == 0
    results = json.loads(out.read_text())
    assert results["preset"] == "tiny"
    assert set(results["models"]) == {"teacher", "student"}
    subsets = results["models"]["student"]["subsets"]
    assert list(subsets) == ["V+F+A", "V+F", "V+A", "F+A", "V", "F", "A"]
    for row in subsets.values():
        assert set(row) == {"gflops", "params_m", "peak_mem_mb", "latency_ms", "latency_ms_min", "latency_ms_max"}
        assert all(v > 0 for v in row.values())
        assert row["latency_ms_min"] <= row["latency_ms"] <= row["latency_ms_max"]
    teacher = results["models"]["teacher"]["subsets"]
    assert teacher["V+F+A"]["gflops"] > teacher["V"]["gflops"] > subsets["V"]["gflops"]
    assert plot.stat().st_size > 10_000


def test_benchmark_rejects_unknown_modality(tmp_path, capsys):
    code = main(["benchmark", "model", "--json", str(tmp_path / "x.json"), "--modalities", "V,X", "--repeats", "1"])
    assert code == 2
    assert "no modality ['X']" in capsys.readouterr().err


def _subcommands(parser: argparse.ArgumentParser, prefix: str = "karmma"):
    """(command line, parser) for every (nested) subcommand."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix} {name}", sub
                yield from _subcommands(sub, f"{prefix} {name}")


def test_every_command_help_has_an_example_and_every_option_a_description():
    commands = list(_subcommands(build_parser()))
    assert len(commands) >= 17  # 12 commands + data inspect + benchmark model / data / training / deploy
    for command, parser in commands:
        text = parser.format_help()
        assert "example:\n  " + command in text, f"{command} --help has no example starting with {command!r}"
        assert "``" not in text, f"{command} --help shows reStructuredText backquotes"
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction) or action.dest == "help":
                continue
            assert action.help, f"{command}: {'/'.join(action.option_strings) or action.dest} has no help text"


def test_help_examples_parse(capsys):
    """Every example line in every --help is a command the real parser accepts."""
    parser = build_parser()
    for _, sub in _subcommands(parser):
        example = sub.epilog.split("example:\n", 1)[1].replace("\\\n", " ")
        for line in example.strip().splitlines():
            words = shlex.split(line, comments=True)
            assert words[0] == "karmma", line
            parser.parse_args(words[1:])  # raises SystemExit on an unknown option


def test_every_command_has_a_function_and_every_function_a_command():
    from karmma.cli import COMMANDS

    leaves = {
        command.removeprefix("karmma ")
        for command, parser in _subcommands(build_parser())
        if not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)
    }
    assert leaves == set(COMMANDS)


def test_benchmark_is_one_command_with_four_measurements():
    parser = build_parser()
    assert {a.dest for a in parser._actions if isinstance(a, argparse._SubParsersAction)} == {"command"}
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert not [name for name in top.choices if name.startswith("benchmark-")]  # the old names are gone
    assert set(dict(_subcommands(top.choices["benchmark"], "benchmark"))) == {
        "benchmark model",
        "benchmark data",
        "benchmark training",
        "benchmark deploy",
    }
    assert set(dict(_subcommands(top.choices["data"], "data"))) == {"data inspect"}


def test_parsing_mirrors_the_library_names():
    """The CLI keeps its own copy of the training benchmarks (parsing must not import Lightning);
    the preset names it reads from the torch-free train_config."""
    from karmma.cli import arguments, benchmark
    from karmma.train_config import PRESET_NAMES
    from karmma.training.bench import TRAINING_BENCHMARKS

    assert arguments.TRAINING_BENCHMARKS == TRAINING_BENCHMARKS
    assert set(benchmark.MODEL_LATENCY_RUNS) == set(PRESET_NAMES) and set(benchmark.DEPLOY_LATENCY_RUNS) == {
        *PRESET_NAMES,
        "export",
    }


def test_the_cli_is_a_package_of_modules_of_at_most_300_lines():
    """One module per area, each command's arguments beside its function: none grows past 300 lines."""
    import karmma.cli

    assert hasattr(karmma.cli, "__path__"), f"karmma.cli is one module ({karmma.cli.__file__}), not a package"
    modules = sorted(Path(karmma.cli.__path__[0]).glob("*.py"))
    assert len(modules) >= 5, [m.name for m in modules]
    lines = {module.name: len(module.read_text().splitlines()) for module in modules}
    assert not {name: n for name, n in lines.items() if n > 300}, lines


def test_every_command_function_sits_beside_the_function_defining_its_arguments():
    """``COMMANDS["x y"]`` is ``x_y_command`` (``y_command`` for a ``data`` tool) in the module that has
    ``add_x_y`` (``add_y``)."""
    import sys

    from karmma.cli import COMMANDS

    for command, function in COMMANDS.items():
        name = command.removeprefix("data ").replace(" ", "_").replace("-", "_")
        assert function.__name__ == f"{name}_command", (command, function.__name__)
        assert hasattr(sys.modules[function.__module__], f"add_{name}"), (command, function.__module__)


def test_top_level_help_is_plain_text(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "``" not in out and out.splitlines()[2].startswith("karmma: ")
    assert "karmma demo --quick" in out


# ---- one error path: expected failures are one line and exit code 2 ------------------------


def one_line_error(capsys, code: int, *fragments: str) -> str:
    """The error of a failed command: exit code 2, no traceback, one last line ``karmma CMD: error: ...``
    naming ``fragments`` (progress lines printed before it are allowed)."""
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err, err
    line = err.splitlines()[-1]
    assert line.startswith("karmma ") and ": error: " in line and err.count(": error: ") == 1, err
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


@pytest.mark.parametrize(
    "argv, named",
    [
        (["predict", "m.onnx", "v.mp4", "--top-k", "-3"], "--top-k: must be >= 1, got -3"),
        (["evaluate", "run", "--out", "r.json", "--seeds", "0"], "--seeds: must be >= 1, got 0"),
        (["evaluate", "run", "--out", "r.json", "--p", "0,1.5"], "--p: must be >= 0 and <= 1, got 1.5"),
        (["evaluate", "run", "--out", "r.json", "--crops", "2"], "--crops: invalid choice: 2"),
        (["prepare", "a", "b", "--fps", "nan"], "--fps: expected a finite number"),
        (["prepare", "a", "b", "--workers", "0"], "--workers: must be >= 1, got 0"),
        (
            ["predict", "m.onnx", "v.mp4", "--stream", "--drop-sensors", "1"],
            "--drop-sensors: must be >= 0 and < 1, got 1",
        ),
        (["dropout-study", "c.yaml", "--out", "o", "--rates", "0,x"], "--rates: expected a number, got 'x'"),
    ],
)
def test_argument_ranges_are_checked_at_parse_time(argv, named, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err


@pytest.mark.parametrize(
    "arguments, named",
    [
        (["--seed", "4294967296"], "--seed: must be >= 0 and <= 4294967295, got 4294967296"),
        (["--seeds", "0,4294967296"], "--seeds: must be >= 0 and <= 4294967295, got 4294967296"),
        (["--tune", "data.root=a/b,c/d"], "--tune: --tune 'data.root=a/b,c/d': data.root is set by the demo itself"),
        (["--tune", "loss.distill_weight=0.3,0.30"], "'0.3' and '0.30' are the same value of loss.distill_weight"),
    ],
)
def test_demo_arguments_are_checked_before_the_demo_starts(arguments, named, tmp_path, monkeypatch, capsys):
    import karmma.demo

    def no_demo(*args, **kwargs):
        raise AssertionError("the demo started: its arguments were not checked first")

    monkeypatch.setattr(karmma.demo, "run_demo", no_demo)
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--out", str(tmp_path / "demo"), *arguments])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err


def test_yaml_syntax_error_is_one_line(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("stage: student\noptim:\n  lr: [1e-3\n")
    one_line_error(capsys, main(["train", str(config)]), f"{config}: invalid YAML at line", "column")


@pytest.mark.parametrize(
    "override, named",
    [
        ("optim.epochs=-1", "optim.epochs must be >= 1, got -1"),
        ("trainer.val_every=0", "trainer.val_every must be >= 1, got 0"),
        ("trainer.devices=0", "trainer.devices must be >= 1, got 0"),
        ("trainer.seed=4294967296", "trainer.seed must be >= 0 and <= 4294967295, got 4294967296"),
        ("pretrained.Z=/weights.pth", "pretrained.Z: not a modality key"),
        ("loss.modality_dropout=1.5", "loss.modality_dropout must be >= 0 and < 1, got 1.5"),
        ("clip.num_crops=2", "clip.num_crops must be one of 1, 3, got 2"),
        ("optim.schedule=step", "optim.schedule must be one of cosine, linear, got 'step'"),
        ("clip.audio.frames=300", "clip.audio.frames: not a setting: the model's A input"),
        ("optim.lr=[1", "override 'optim.lr=[1': the value is not valid YAML"),
    ],
)
def test_config_ranges_are_one_line_errors(override, named, tmp_path, capsys):
    code = main(["train", "src/karmma/configs/synthkitchen/student.yaml", f"data.root={tmp_path}", override])
    one_line_error(capsys, code, named)


def test_training_without_clips_is_an_error(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    code = main(
        [
            "train",
            "src/karmma/configs/synthkitchen/baseline.yaml",
            f"data.root={missing}",
            f"data.annotations={tmp_path}",
            f"trainer.runs={tmp_path / 'runs'}",
        ]
    )
    one_line_error(capsys, code)


def test_training_on_a_root_without_media_names_data_root(synth_prepared, tmp_path, capsys):
    """Annotations are there, the media are not: 0 clips is an error, not an empty run that exits 0."""
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(
        [
            "train",
            "src/karmma/configs/synthkitchen/baseline.yaml",
            f"data.root={empty}",
            f"data.annotations={synth_prepared / 'annotations'}",
            f"trainer.runs={tmp_path / 'runs'}",
            "trainer.progress=false",
            "trainer.workers=0",
        ]
    )
    one_line_error(capsys, code, "no train clips", str(empty), "data.root")


def test_unavailable_device_is_one_line(tmp_path, capsys):
    code = main(["evaluate", str(tmp_path), "--out", str(tmp_path / "r.json"), "--device", "cuda:99"])
    one_line_error(capsys, code, "--device cuda:99")


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(monkeypatch, tmp_path, capsys):
    import karmma.cli as cli

    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setitem(cli.COMMANDS, "report", broken)
    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "internal error (KeyError)" in err and "--debug" in err
    with pytest.raises(KeyError):
        main(["report", str(tmp_path), "--debug"])


def test_full_disk_keeps_the_previous_results_and_is_one_line(monkeypatch, tmp_path, capsys):
    """A write that fails (here: ENOSPC at the rename) names the file and leaves the old version."""
    import karmma.io

    out = tmp_path / "bench.json"
    out.write_text('{"old": true}\n')

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(karmma.io.os, "replace", full)
    code = main(["benchmark", "model", "--json", str(out), "--repeats", "1", "--warmup", "0", "--models", "student"])
    one_line_error(capsys, code, f"{out}: No space left on device", "free disk space")
    assert out.read_text() == '{"old": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json"]  # no temporary left behind


def test_read_only_output_folder_is_one_line(monkeypatch, tmp_path, capsys):
    from pathlib import Path

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "P01_01.MP4").touch()  # found as a video; the output folder is made before any is read
    monkeypatch.setattr(Path, "mkdir", read_only)
    code = main(["prepare", str(tmp_path / "src"), str(tmp_path / "out"), "--workers", "1"])
    one_line_error(capsys, code, "Read-only file system", "writable output folder")
