"""Argument types and helpers shared by the commands: ranges checked at parse time, one subcommand's help.

Parsing imports nothing heavy: ``karmma --help`` and the light install's ``predict`` load no torch.
"""

from __future__ import annotations

import argparse
import math

from karmma.configuration import MAX_SEED


def number(kind, low=None, high=None, low_open=False, high_open=False, what=""):
    """An argparse ``type`` accepting ``kind`` values in a range, e.g. ``number(int, 1)`` for >= 1."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if (low is not None and (value <= low if low_open else value < low)) or (
            high is not None and (value >= high if high_open else value > high)
        ):
            lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
            hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
            raise argparse.ArgumentTypeError(f"must be {' and '.join(x for x in (lo, hi) if x)}{what}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


POSITIVE_INT = number(int, 1)
NON_NEGATIVE_INT = number(int, 0)
SEED = number(int, 0, MAX_SEED)
POSITIVE_FLOAT = number(float, 0, low_open=True)
NON_NEGATIVE_FLOAT = number(float, 0)


# A mirror of a library name, kept here so that parsing does not import Lightning
# (tests/cli/test_cli.py checks that it equals karmma.training.bench.TRAINING_BENCHMARKS).
TRAINING_BENCHMARKS = ("cache", "distill", "steps")

PRESET_HELP = "model sizes: paper (Swin3D-B teacher, 32 x 224 x 224 clips) or tiny (CPU-sized); default %(default)s"


def command_parser(commands, name: str, summary: str, example: str, details: str = "") -> argparse.ArgumentParser:
    """A subcommand whose --help shows the summary, optional details and an example."""
    description = summary[0].upper() + summary[1:] + "." + (f"\n\n{details}" if details else "")
    return commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog="example:\n" + example,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def checkpoint_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--checkpoint best|last`` of the commands that score run folders."""
    parser.add_argument(
        "--checkpoint",
        default="best",
        choices=("best", "last"),
        help=f"{what}: best (chosen on validation) or last (the last epoch; "
        "use it where the scored split is also the selection split)",
    )
