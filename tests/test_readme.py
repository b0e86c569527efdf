"""The README (and docs/epic.md) as a newcomer pastes it: every karmma command parses with the
real parser, configs load with their overrides, one command convention, outputs git-ignored; the
"After the demo" block runs as written after the Quick start's quick demo, and what the README says
about it holds for that run."""

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from readme_blocks import check_command, code_blocks, karmma_commands  # noqa: E402

README = (ROOT / "README.md").read_text()
SHELL_BLOCKS = [code for language, code in code_blocks(README) if language == "bash"]
# what the README's commands write, relative to the repository root
README_OUTPUTS = (
    "karmma-demo",
    "karmma-demo-quick",
    "synth-raw",
    "synth-prepared",
    "synth-pretrain-raw",
    "synth-pretrain-prepared",
    "teacher-cache",
    "runs",
    "results",
    "student-onnx",
    "student.onnx",
    "student.safetensors",
    "benchmark.json",
    "benchmark.png",
    "dropout-study",
)


@pytest.mark.parametrize("document", ["README.md", "docs/epic.md"])
def test_every_karmma_command_parses_and_its_config_loads(document):
    commands = [
        args
        for language, code in code_blocks((ROOT / document).read_text())
        if language == "bash"
        for args in karmma_commands(code)
    ]
    assert len(commands) >= 10
    for args in commands:
        check_command(args)  # SystemExit (argparse) or ValueError (config) on anything wrong


def test_the_checker_rejects_a_bad_command():
    with pytest.raises(SystemExit):
        check_command(["predict", "student-onnx", "clip.mp4", "--topk", "5"])
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['epoch'\]"):
        check_command(["train", str(ROOT / "configs/synthkitchen/baseline.yaml"), "optim.epoch=3"])


def test_one_command_convention_and_one_name_per_path():
    text = "\n".join(SHELL_BLOCKS)
    assert "source .venv/bin/activate" in SHELL_BLOCKS[0]
    assert ".venv/bin/karmma" not in text and "$K " not in text
    for placeholder in ("PREPARED", "SYNTH ", "CACHE", "PRE_P", "FILE", "D/prepared"):
        assert placeholder not in text, placeholder


def test_readme_outputs_are_git_ignored():
    ignored = {line.strip() for line in (ROOT / ".gitignore").read_text().splitlines()}
    for output in README_OUTPUTS:
        assert output in README, f"{output} is no longer in the README: update README_OUTPUTS"
        assert f"/{output}/" in ignored or f"/{output}" in ignored, f"{output} is not in .gitignore"


def after_the_demo_block() -> str:
    return next(code for code in SHELL_BLOCKS if "karmma export" in code and "karmma predict" in code)


def quick_demo_times() -> tuple[str, str]:
    """The quick demo's time as the README's Quick start and `karmma demo --help` state it."""
    from karmma.cli import build_parser

    pattern = r"karmma demo --quick .*?(\d+(?:\.\d+)? (?:s|min)\b)"
    readme = re.search(pattern, SHELL_BLOCKS[0])
    demo_help = next(
        action.choices["demo"]
        for action in build_parser()._actions
        if isinstance(getattr(action, "choices", None), dict) and "demo" in action.choices
    )
    stated = re.search(pattern, demo_help.epilog)
    assert readme and stated, "the Quick start or `karmma demo --help` no longer states the quick demo's time"
    return readme.group(1), stated.group(1)


def test_the_quick_demo_has_one_time_and_the_next_block_reads_its_folder():
    from karmma.demo import default_demo_folder

    readme_time, help_time = quick_demo_times()
    assert readme_time == help_time, f"the README says {readme_time}, karmma demo --help {help_time}"
    assert ["demo", "--quick"] in karmma_commands(SHELL_BLOCKS[0])  # without --out: its default folder
    quick = default_demo_folder(quick=True)
    for args in karmma_commands(after_the_demo_block()):
        assert not any(a.startswith("karmma-demo/") for a in args), args  # the default demo's folder
    assert f"head -60 {quick}/report.md" in after_the_demo_block()


def annotation_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def seconds(timestamp: str) -> float:
    hours, minutes, rest = timestamp.split(":")
    return 3600 * int(hours) + 60 * int(minutes) + float(rest)


@pytest.mark.e2e  # runs the quick demo (shared with tests/test_demo.py)
def test_after_the_demo_block_runs_as_written_after_the_quick_demo(quick_demo):
    """The block pasted into a shell in a folder where the Quick start's `karmma demo --quick` ran,
    and what the README says about its output checked against that run (no fixed labels:
    SynthKitchen may change)."""
    from karmma.data.synth import participant_splits
    from karmma.demo import PLANS, default_demo_folder

    block = after_the_demo_block()
    assert quick_demo.name == default_demo_folder(quick=True)
    here = quick_demo.parent  # the newcomer's repository root
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-e", "-c", block], cwd=here, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (here / "student-onnx" / "fusion.onnx").is_file() and (here / "student.safetensors").is_file()
    report = (quick_demo / "report.md").read_text().splitlines()
    assert done.stdout.startswith("\n".join(report[:60]))  # head -60 of the demo's report

    # "P07 is a test participant: no model trained on its recordings or was chosen on them"
    segment, stream = [args for args in karmma_commands(block) if args[0] == "predict"]
    video = Path(segment[2])
    participant = video.parent.parent.name
    annotations = quick_demo / "recordings" / "main" / "annotations"
    grep = re.search(rf"grep ({video.stem}) \S+/(EPIC_100_\w+\.csv)", block)
    assert grep and grep.group(2) == "EPIC_100_test.csv", "the grep shows another video's or split's annotations"
    actions = [row for row in annotation_rows(annotations / "EPIC_100_test.csv") if row["video_id"] == video.stem]
    assert actions, f"{video.stem} has no annotated action in the run's test split"
    for split in ("train", "validation"):
        rows = annotation_rows(annotations / f"EPIC_100_{split}.csv")
        assert participant not in {row["participant_id"] for row in rows}, f"{participant} is in {split}"
    # "--start 0.4 --end 1.4: the first second of the first one" (of the annotated actions the grep printed)
    start, end = (float(segment[segment.index(flag) + 1]) for flag in ("--start", "--end"))
    first = actions[0]
    assert seconds(first["start_timestamp"]) <= start < end <= seconds(first["stop_timestamp"]), (
        f"README predicts {start}-{end} s of {video.stem}, whose first annotated action in this run is "
        f"{first['start_timestamp']}-{first['stop_timestamp']} ({first['narration']}): update the README"
    )
    assert f"{first['start_timestamp']},{first['stop_timestamp']},{first['narration']}" in done.stdout  # the grep
    # the first predict: the five most likely actions of that segment, with the modalities it used
    table = rf"segment {start:.2f}-{end:.2f} s: modalities used: V\+F\+A.*\nrank .*\n-+\n(?: +\d+ .*\n){{5}}"
    table = re.search(table, done.stdout)
    assert table, done.stdout[-3000:]
    # the stream: one line per 2 s window, each saying which modalities it used, sensors failing at times
    windows = re.findall(r"^\[ *[\d.]+ - *[\d.]+ s\] (V\+F\+A|V\+F|V\+A|F\+A|V|F|A) ", done.stdout, flags=re.M)
    assert len(windows) >= 5 and "V+F+A" in windows and set(windows) != {"V+F+A"}
    assert "--stream" in stream and "--drop-sensors" in stream

    # "the same block with karmma-demo for karmma-demo-quick and P13 for P07 (a test participant there)"
    swap = re.search(r"`(P\d\d)` for `(P\d\d)` \(a\s+test participant there\)", README)
    assert swap and swap.group(2) == participant
    assert participant_splits(PLANS["quick"].data)[participant] == "test"
    assert participant_splits(PLANS["default"].data)[swap.group(1)] == "test"
