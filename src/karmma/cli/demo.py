"""``karmma demo``: the whole pipeline on SynthKitchen (karmma.demo.run_demo)."""

from __future__ import annotations

import argparse
import sys

from karmma.cli.arguments import POSITIVE_INT, SEED, command_parser


def _seed_list(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> ``(0, 1, 2)``: distinct seeds in 0 .. MAX_SEED."""
    seeds = tuple(SEED(part) for part in text.split(",") if part.strip())
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct seeds separated by commas, got {text!r}")
    return seeds


def _knob(text: str):
    """``[STAGE:]KEY=V1,V2,...`` -> a demo tuning knob (checked against the stage's config)."""
    from karmma.demo import parse_knob

    try:
        return parse_knob(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_demo(commands) -> None:
    demo = command_parser(
        commands,
        "demo",
        "the whole method on embedded SynthKitchen data: synth, train all stages, evaluate, report",
        "  karmma demo --quick     # writes karmma-demo-quick/: about 3 min on a 2-core CPU (README, Quick start)\n"
        "  karmma demo             # writes karmma-demo/: 15 min on a fast 2-core CPU, more on a slower one (README)\n",
        "Synthesises SynthKitchen recordings (nothing is downloaded), prepares them,\n"
        "pre-trains the teacher's extractors, trains the teacher, distils the student,\n"
        "trains the three baselines, evaluates every model on every modality subset and\n"
        "writes OUT/report.md, results.json, benchmark.json and student.safetensors.\n"
        "Re-running with the same --out reuses finished stages; stage logs are in OUT/logs/.",
    )
    demo.add_argument(
        "--out",
        help="output folder (default karmma-demo, with --quick karmma-demo-quick: the two never share one; "
        "re-running reuses finished stages)",
    )
    demo.add_argument(
        "--quick",
        action="store_true",
        help="fewer clips and epochs, clips of 4 x 32 x 32 (120 training clips instead of 240): learns, but little",
    )
    seed = demo.add_mutually_exclusive_group()
    seed.add_argument(
        "--seed",
        type=SEED,
        default=0,
        help="seed of the synthetic data, initialisation and dropout draws (default %(default)s)",
    )
    seed.add_argument(
        "--seeds",
        type=_seed_list,
        metavar="S,S,...",
        help="run the whole pipeline once per seed (each in OUT/seed_<s>/) and report means, 95 %% "
        "intervals and a verdict per claim of the paper, e.g. 0,1,2",
    )
    demo.add_argument(
        "--tune",
        type=_knob,
        action="append",
        default=[],
        metavar="[STAGE:]KEY=V1,V2,...",
        help="also train the student (or STAGE: teacher or another student-sized model) once per value and "
        "score each on validation only "
        "(OUT/tuning.json, a report section; the value the stage already has is scored from its own run); "
        "repeatable, e.g. loss.distill_weight=0,0.3,1",
    )
    demo.add_argument(
        "--tune-by",
        choices=("best-epoch", "sweep"),
        default="best-epoch",
        help="what --tune scores each value by, on validation: the best epoch's action top-1 (default), or the "
        "selected checkpoint's action top-1 averaged over the dropout sweep (for robustness knobs such as "
        "loss.modality_dropout)",
    )
    demo.add_argument(
        "--workers",
        type=POSITIVE_INT,
        default=2,
        help="processes for synthesis/preparation and data loading (default %(default)s)",
    )
    demo.add_argument("--no-progress", action="store_true", help="one line per stage instead of a progress bar")


def demo_command(args: argparse.Namespace) -> int:
    from karmma.demo import default_demo_folder, run_demo

    seeds = args.seeds if args.seeds is not None else (args.seed,)
    report = run_demo(
        args.out or default_demo_folder(args.quick),
        quick=args.quick,
        seeds=seeds,
        progress=not args.no_progress,
        workers=args.workers,
        tune=tuple(args.tune),
        tune_by=args.tune_by,
    )
    print(
        f"done: {report}\nresults: {report.parent / 'results.json'}, student: {report.parent / 'student.safetensors'}",
        file=sys.stderr,
    )
    return 0
