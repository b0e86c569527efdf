"""Check the README's code blocks: every karmma command line must parse with the real
argument parser, and every config it trains from must load with its overrides.

    python scripts/readme_blocks.py [README.md]     # prints each checked command; exit 1 on the first bad one

tests/test_readme.py runs the same checks (and the cheap blocks on a quick demo).
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

CONFIG_COMMANDS = ("train", "extract", "dropout-study", "benchmark training")


def code_blocks(markdown: str) -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block, in order."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", markdown, flags=re.S | re.M)]


def karmma_commands(code: str) -> list[list[str]]:
    """The argument lists of every ``karmma ...`` (``VENV/bin/karmma ...``, ``-m karmma.cli ...``) command in a shell block."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        if line.lstrip().startswith("#"):  # a comment line (it may hold ';' or an apostrophe)
            continue
        for piece in re.split(r";|&&|\|\||\bdo\b|\bdone\b", line):
            words = shlex.split(piece, comments=True)
            if "karmma.cli" in words:
                words = words[words.index("karmma.cli") :]
            if words and (words[0] == "karmma.cli" or Path(words[0]).name == "karmma"):  # also .venv-light/bin/karmma
                commands.append(words[1:])
    return commands


def check_command(args: list[str]) -> None:
    """Raise SystemExit / ValueError when ``karmma ARGS`` would be rejected before doing any work."""
    from karmma.cli import build_parser

    parsed = build_parser().parse_args(args)
    command = parsed.command + (f" {parsed.subcommand}" if getattr(parsed, "subcommand", None) else "")
    if command in CONFIG_COMMANDS:
        from karmma.configuration import load_config
        from karmma.train_config import TrainConfig

        load_config(TrainConfig, parsed.config, [o for o in parsed.overrides if "$" not in o])
    if command == "weights":  # [fetch] CONFIG... KEY=VALUE...
        from karmma.configuration import load_config
        from karmma.train_config import TrainConfig

        items = parsed.items[1:] if parsed.items[:1] == ["fetch"] else parsed.items
        overrides = [o for o in items if "=" in o and "$" not in o]
        for config in (item for item in items if "=" not in item):
            load_config(TrainConfig, config, overrides)


def main(path: str = "README.md") -> int:
    checked = 0
    for language, code in code_blocks(Path(path).read_text()):
        if language not in ("bash", "sh"):
            continue
        for args in karmma_commands(code):
            print("karmma " + " ".join(args))
            check_command(args)
            checked += 1
    print(f"{checked} karmma command(s) parse", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
