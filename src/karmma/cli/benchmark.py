"""``karmma benchmark``: a model's resources and deployed latency here (karmma.benchmark,
karmma.deploy.latency); ``benchmark data`` is in cli/data.py, ``benchmark training`` in cli/training.py."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from karmma.cli.arguments import (
    NON_NEGATIVE_INT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    PRESET_HELP,
    command_parser,
)
from karmma.io import write_json
from karmma.modalities import parse_subset
from karmma.train_config import PRESET_NAMES

# Latency runs (timed repeats, untimed warm-up runs) when --repeats / --warmup are not given,
# per preset: a paper-size teacher forward pass takes about a minute on a CPU, a tiny one
# milliseconds. The help texts are written from these tables.
MODEL_LATENCY_RUNS = {"tiny": (20, 3), "paper": (1, 0)}  # karmma benchmark model
DEPLOY_LATENCY_RUNS = {"tiny": (30, 5), "paper": (2, 1), "export": (30, 5)}  # karmma benchmark deploy (export: --model)


def _latency_runs(args: argparse.Namespace, defaults: tuple[int, int]) -> tuple[int, int]:
    """``(repeats, warmup)``: --repeats / --warmup where given, else ``defaults``."""
    repeats, warmup = defaults
    return (repeats if args.repeats is None else args.repeats, warmup if args.warmup is None else args.warmup)


def _per_preset(table: dict[str, tuple[int, int]], column: int) -> str:
    """Help text of a default taken from a latency table, e.g. ``20 tiny, 1 paper``."""
    return ", ".join(f"{runs[column]} {name}" for name, runs in table.items() if name in PRESET_NAMES)


def add_benchmark(commands) -> argparse._SubParsersAction:
    """``karmma benchmark WHAT``: one command, four measurements; returns the subparsers they are added to."""
    bench = command_parser(
        commands,
        "benchmark",
        "measure a model's resources, data loading, training speed or deployed latency",
        "  karmma benchmark model --preset tiny --json benchmark.json --plot benchmark.png\n"
        "  karmma benchmark data karmma-demo/prepared/main --preset tiny\n"
        "  karmma benchmark training steps configs/synthkitchen/baseline.yaml data.root=karmma-demo/prepared/main\n"
        "  karmma benchmark deploy --presets tiny --repeats 10\n",
        "model: GFLOPs, parameters, peak memory and latency of teacher and student per subset.\n"
        "data: clips/s of data loading vs the student's training step (is training input-bound?).\n"
        "training: teacher cache speed-up, distillation step cost, or data wait vs compute.\n"
        "deploy: student latency, eager PyTorch vs ONNX Runtime, with pre-processing.",
    )
    return bench.add_subparsers(dest="subcommand", required=True, metavar="WHAT")


def add_benchmark_model(measurements) -> None:
    model = command_parser(
        measurements,
        "model",
        "GFLOPs, parameters, peak memory and latency of teacher and student on every modality subset",
        "  karmma benchmark model --preset tiny --json benchmark.json --plot benchmark.png\n",
        "GFLOPs at batch 1 (2 FLOPs per multiply-add); latency is the median of --repeats runs.",
    )
    model.add_argument("--preset", choices=PRESET_NAMES, default="tiny", help=PRESET_HELP)
    model.add_argument("--json", required=True, metavar="FILE", help="where to write the results (JSON)")
    model.add_argument("--plot", metavar="FILE", help="also draw the teacher/student bars to this PNG")
    model.add_argument("--modalities", help="modalities of the models, e.g. V,F,A (default) or V,F,D")
    model.add_argument(
        "--models",
        nargs="+",
        choices=["teacher", "student"],
        default=["teacher", "student"],
        help="which models to measure (default: both)",
    )
    model.add_argument(
        "--repeats", type=POSITIVE_INT, help=f"latency runs per subset (default: {_per_preset(MODEL_LATENCY_RUNS, 0)})"
    )
    model.add_argument(
        "--warmup", type=NON_NEGATIVE_INT, help=f"untimed runs first (default: {_per_preset(MODEL_LATENCY_RUNS, 1)})"
    )
    model.add_argument(
        "--device", default="cpu", help="torch device for latency, e.g. cpu or cuda (default %(default)s)"
    )
    model.add_argument("--threads", type=POSITIVE_INT, help="CPU threads for torch (default: torch's choice)")


def benchmark_model_command(args: argparse.Namespace) -> int:
    import torch

    from karmma.benchmark import benchmark_preset_resources, plot_benchmark
    from karmma.devices import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    modalities = parse_subset(args.modalities) if args.modalities else None
    print(
        f"benchmark model: preset {args.preset}, device {args.device}, {torch.get_num_threads()} CPU threads",
        file=sys.stderr,
    )
    repeats, warmup = _latency_runs(args, MODEL_LATENCY_RUNS[args.preset])
    results = benchmark_preset_resources(
        args.preset, modalities, args.models, repeats, warmup, resolve_device(args.device)
    )
    print(
        f"modalities {'+'.join(results['modalities'])}, heads {results['heads']}, latency = median of "
        f"{results['latency_repeats']} run(s) after {results['latency_warmup']} warm-up run(s)",
        file=sys.stderr,
    )
    write_json(args.json, results)
    print(f"wrote {args.json}", file=sys.stderr)
    if args.plot:
        plot_benchmark(results, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def add_benchmark_deploy(measurements) -> None:
    bdep = command_parser(
        measurements,
        "deploy",
        "student latency: eager PyTorch vs ONNX Runtime per subset, with pre-processing",
        "  karmma benchmark deploy --presets tiny --repeats 10\n"
        "  karmma benchmark deploy --model student-onnx --repeats 10\n",
    )
    bdep.add_argument(
        "--presets", nargs="+", choices=PRESET_NAMES, default=["tiny"], help="student sizes to time (default: tiny)"
    )
    bdep.add_argument(
        "--model",
        metavar="EXPORT",
        help="time this export instead (.onnx, split-ONNX folder, .safetensors, .ckpt or run folder)",
    )
    bdep.add_argument("--modalities", default="V,F,A", help="modalities of the student (default %(default)s)")
    bdep.add_argument(
        "--repeats",
        type=POSITIVE_INT,
        help=f"timed runs per subset (default: {_per_preset(DEPLOY_LATENCY_RUNS, 0)}, "
        f"{DEPLOY_LATENCY_RUNS['export'][0]} with --model)",
    )
    bdep.add_argument(
        "--warmup",
        type=NON_NEGATIVE_INT,
        help=f"untimed runs first (default: {_per_preset(DEPLOY_LATENCY_RUNS, 1)}, "
        f"{DEPLOY_LATENCY_RUNS['export'][1]} with --model)",
    )
    bdep.add_argument("--video", help="video for the pre-processing columns (default: a synthetic 16:9 clip)")
    bdep.add_argument(
        "--clip-seconds",
        type=POSITIVE_FLOAT,
        default=2.0,
        help="clip length whose pre-processing is timed (default %(default)s)",
    )
    bdep.add_argument("--threads", type=POSITIVE_INT, help="CPU threads for torch (ONNX Runtime uses its default)")
    bdep.add_argument("--json", metavar="FILE", help="also write the results as JSON")


def benchmark_deploy_command(args: argparse.Namespace) -> int:
    import torch

    from karmma.deploy.latency import benchmark_export, benchmark_student_latency, format_table

    if args.threads:
        torch.set_num_threads(args.threads)
    modalities = parse_subset(args.modalities)
    video = Path(args.video) if args.video else None
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    results = {}
    if args.model:  # an existing export instead of random students of the presets
        runs = _latency_runs(args, DEPLOY_LATENCY_RUNS["export"])
        results["model"] = benchmark_export(Path(args.model), *runs, video, args.clip_seconds, log=log)
        print(format_table(results["model"]) + "\n")
    for preset in [] if args.model else args.presets:
        runs = _latency_runs(args, DEPLOY_LATENCY_RUNS[preset])
        results[preset] = benchmark_student_latency(preset, modalities, *runs, video, args.clip_seconds, log=log)
        print(format_table(results[preset]) + "\n")
    if args.json:
        write_json(args.json, results)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
