"""The README (and docs/epic.md) as a newcomer pastes it: every karmma command parses with the
real parser, configs load with their overrides, one command convention, outputs git-ignored.
tests/test_demo.py runs the README's "After the demo" block on a quick demo."""

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
