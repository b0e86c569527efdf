"""The karmma command line: one subcommand per pipeline step.

Each module of this package holds one area's commands, every command's arguments
(``add_<command>``) beside the function that runs it (``<command>_command``); this file
holds the table of commands and ``main``. Parsing imports no torch: heavy imports are
inside the command functions.
"""

from __future__ import annotations

import argparse
import sys

from karmma.cli import benchmark, data, demo, deploy, evaluation, training
from karmma.cli.errors import TRAINING_PACKAGES, describe_error

__all__ = ["COMMANDS", "TRAINING_PACKAGES", "build_parser", "describe_error", "main"]

DESCRIPTION = """\
karmma: egocentric action recognition that keeps working when sensors fail.

Trains a multimodal teacher (RGB video V, optical flow F, audio A, object
detections D), distils it into a light student that accepts any subset of
its modalities, evaluates every model on every subset, and deploys the
student (ONNX). Run 'karmma COMMAND --help' for one command's options and an
example."""

FIRST_STEPS = """\
first steps:
  karmma demo --quick           # the whole pipeline on embedded data, writes karmma-demo-quick/
  karmma demo --help            # what it does and writes
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="karmma",
        description=DESCRIPTION,
        epilog=FIRST_STEPS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo.add_demo(commands)
    data.add_synth(commands)
    data.add_prepare(commands)
    data.add_inspect(data.add_data(commands))
    training.add_train(commands)
    training.add_extract(commands)
    training.add_weights(commands)
    evaluation.add_evaluate(commands)
    evaluation.add_report(commands)
    evaluation.add_dropout_study(commands)
    deploy.add_export(commands)
    deploy.add_predict(commands)
    measurements = benchmark.add_benchmark(commands)
    benchmark.add_benchmark_model(measurements)
    data.add_benchmark_data(measurements)
    training.add_benchmark_training(measurements)
    benchmark.add_benchmark_deploy(measurements)
    return parser


# command -> the function that runs it; build_parser defines each command's arguments.
COMMANDS = {
    "demo": demo.demo_command,
    "synth": data.synth_command,
    "prepare": data.prepare_command,
    "data inspect": data.inspect_command,
    "train": training.train_command,
    "extract": training.extract_command,
    "weights": training.weights_command,
    "evaluate": evaluation.evaluate_command,
    "report": evaluation.report_command,
    "dropout-study": evaluation.dropout_study_command,
    "export": deploy.export_command,
    "predict": deploy.predict_command,
    "benchmark model": benchmark.benchmark_model_command,
    "benchmark data": data.benchmark_data_command,
    "benchmark training": training.benchmark_training_command,
    "benchmark deploy": benchmark.benchmark_deploy_command,
}


def main(argv: list[str] | None = None) -> int:
    """Run one command. Expected failures print one line ``karmma CMD: error: ...`` and exit 2;
    an unexpected one prints one line and exits 1; ``--debug`` shows the traceback instead."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("lightning.pytorch").propagate = False  # Lightning prints through its own handler
    parser = build_parser()
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error (anywhere on the line)"
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    args = parser.parse_args([a for a in argv if a != "--debug"])
    args.debug = debug
    command = args.command + (f" {args.subcommand}" if getattr(args, "subcommand", None) else "")
    try:
        return COMMANDS[command](args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"karmma {command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the one place that turns errors into one line
        if args.debug:
            raise
        message, expected = describe_error(error)
        if expected:
            print(f"karmma {command}: error: {message}", file=sys.stderr)
            return 2
        print(
            f"karmma {command}: internal error ({type(error).__name__}): {message[:300]}; "
            "re-run with --debug for the traceback and report it",
            file=sys.stderr,
        )
        return 1
