"""The ``karmma`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from karmma.modalities import parse_subset


def _benchmark(args: argparse.Namespace) -> int:
    import torch

    from karmma.benchmark import BenchmarkSettings, benchmark_model, plot_benchmark
    from karmma.presets import EPIC_HEADS, SSV2_HEADS, build_student, build_teacher, get_preset

    preset = get_preset(args.preset)
    modalities = parse_subset(args.modalities) if args.modalities else list(preset.default_modalities)
    heads = SSV2_HEADS if "D" in modalities and "A" not in modalities else EPIC_HEADS
    big = args.preset == "paper"
    settings = BenchmarkSettings(
        repeats=args.repeats if args.repeats is not None else (1 if big else 20),
        warmup=args.warmup if args.warmup is not None else (0 if big else 3),
        device=args.device,
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"benchmark: preset {preset.name}, modalities {'+'.join(modalities)}, heads {heads}, device {args.device}, "
        f"latency = median of {settings.repeats} run(s) after {settings.warmup} warm-up run(s), "
        f"{torch.get_num_threads()} CPU threads",
        file=sys.stderr,
    )
    results = {
        "preset": preset.name,
        "device": args.device,
        "modalities": modalities,
        "heads": heads,
        "latency_repeats": settings.repeats,
        "latency_warmup": settings.warmup,
        "threads": torch.get_num_threads(),
        "models": {},
    }
    builders = {"teacher": build_teacher, "student": build_student}
    for name in args.models:
        torch.manual_seed(0)
        results["models"][name] = benchmark_model(
            lambda: builders[name](preset, heads, modalities), settings, label=name
        )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}", file=sys.stderr)
    if args.plot:
        plot_benchmark(results, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="karmma", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    bench = commands.add_parser(
        "benchmark",
        help="GFLOPs, parameters, peak memory and latency of teacher and student on every modality subset",
    )
    bench.add_argument("--preset", choices=["paper", "tiny"], default="tiny")
    bench.add_argument("--json", required=True, help="where to write the results (JSON)")
    bench.add_argument("--plot", help="also draw the teacher/student bars to this PNG")
    bench.add_argument("--modalities", help="modalities of the models, e.g. V,F,A (default) or V,F,D")
    bench.add_argument("--models", nargs="+", choices=["teacher", "student"], default=["teacher", "student"])
    bench.add_argument("--repeats", type=int, help="latency runs per subset (default: 20 tiny, 1 paper)")
    bench.add_argument("--warmup", type=int, help="untimed runs first (default: 3 tiny, 0 paper)")
    bench.add_argument("--device", default="cpu", help="torch device for latency, e.g. cpu or cuda")
    bench.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    bench.set_defaults(run=_benchmark)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"karmma {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
