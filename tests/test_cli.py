import argparse
import json
import shlex

import pytest

from karmma.cli import build_parser, main


def test_benchmark_tiny_writes_json_and_plot(tmp_path):
    out, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    code = main(["benchmark", "--preset", "tiny", "--json", str(out), "--plot", str(plot), "--repeats", "1", "--warmup", "0"])
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
    code = main(["benchmark", "--json", str(tmp_path / "x.json"), "--modalities", "V,X", "--repeats", "1"])
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
    assert len(commands) >= 17  # 15 commands + data inspect / data benchmark
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
    for command, sub in _subcommands(parser):
        example = sub.epilog.split("example:\n", 1)[1].replace("\\\n", " ")
        for line in example.strip().splitlines():
            words = shlex.split(line, comments=True)
            assert words[0] == "karmma", line
            parser.parse_args(words[1:])  # raises SystemExit on an unknown option


def test_top_level_help_is_plain_text(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "``" not in out and out.splitlines()[2].startswith("karmma: ")
    assert "karmma demo --quick" in out
