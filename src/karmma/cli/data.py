"""``karmma synth``, ``prepare``, ``data inspect`` and ``benchmark data``: making, checking and timing datasets
(karmma.data, karmma.benchmark)."""

from __future__ import annotations

import argparse
import json
import sys

from karmma.cli.arguments import (
    NON_NEGATIVE_INT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    PRESET_HELP,
    command_parser,
    number,
)
from karmma.io import write_json
from karmma.train_config import PRESET_NAMES


def add_synth(commands) -> None:
    synth = command_parser(
        commands,
        "synth",
        "generate SynthKitchen recordings (MP4 with audio + EPIC-format annotations)",
        "  karmma synth synth-raw --seed 0 --size quick\n  karmma synth --ceilings\n",
        "The recordings are rendered procedurally: nothing is downloaded. Prepare them\nnext with 'karmma prepare'.",
    )
    synth.add_argument("out", nargs="?", help="output folder (not with --ceilings)")
    synth.add_argument(
        "--ceilings",
        action="store_true",
        help="print the information ceiling of every modality subset (the Bayes-optimal top-1, computed "
        "from the generative model) and write nothing",
    )
    synth.add_argument(
        "--seed", type=int, default=0, help="random seed; another seed gives disjoint recordings (default %(default)s)"
    )
    synth.add_argument(
        "--size",
        choices=["quick", "default"],
        default="quick",
        help="number of participants, videos and actions: quick (small) or default (the default demo's); default %(default)s",
    )
    synth.add_argument(
        "--layout",
        choices=["epic", "ssv2"],
        default="epic",
        help="EPIC-KITCHENS (V, F, A) or Something-Something v2 with Something-Else boxes (V, F, D); default %(default)s",
    )
    synth.add_argument("--workers", type=POSITIVE_INT, default=2, help="rendering processes (default %(default)s)")


def synth_command(args: argparse.Namespace) -> int:
    import time

    from karmma.data.synth import synthesize, synthesize_ssv2
    from karmma.data.synth_world import ceiling_table

    if args.ceilings:
        print(ceiling_table())
        return 0
    if args.out is None:
        raise ValueError("karmma synth: give an output folder (or --ceilings)")
    start = time.perf_counter()
    generate = synthesize_ssv2 if args.layout == "ssv2" else synthesize
    summary = generate(args.out, seed=args.seed, size=args.size, workers=args.workers)
    print(
        f"SynthKitchen ({args.size}, seed {args.seed}): {summary['videos']} recordings "
        f"({summary['without_audio']} without audio), {summary['segments']} action segments in "
        f"{time.perf_counter() - start:.1f} s -> {args.out}\n"
        f"next: karmma prepare {args.out} PREPARED --flow dis --short-side 64",
        file=sys.stderr,
    )
    return 0


def add_prepare(commands) -> None:
    prep = command_parser(
        commands,
        "prepare",
        "raw videos -> RGB frames, optical flow and 24 kHz audio (EPIC layout)",
        "  karmma prepare synth-raw synth-prepared --flow dis --short-side 64\n",
        "Parallel and resumable: videos already prepared are skipped. Annotation files\n"
        "found beside the videos are copied to OUT/annotations.",
    )
    prep.add_argument("src", help="folder with the videos (searched recursively) and annotation files")
    prep.add_argument("out", help="output folder (EPIC layout)")
    prep.add_argument(
        "--flow",
        choices=["tvl1", "dis"],
        default="tvl1",
        help="optical flow: tvl1 (as EPIC-KITCHENS ships, slow) or dis (OpenCV DIS, fast); default %(default)s",
    )
    prep.add_argument("--fps", type=POSITIVE_FLOAT, help="frame rate of the extracted frames (default: the video's)")
    prep.add_argument(
        "--short-side",
        type=number(int, 8),
        default=256,
        help="resize frames to this short side in pixels (default %(default)s)",
    )
    prep.add_argument(
        "--flow-stride",
        choices=["epic-id", "fps"],
        default="epic-id",
        help="how far apart the frames of a flow pair are: epic-id (2 frames for 2018-style EPIC ids like P01_01, "
        "else 1; as EPIC-KITCHENS ships) or fps (about 1/30 s apart, whatever the name); recorded with the frames "
        "and applied by 'karmma predict'; default %(default)s",
    )
    prep.add_argument(
        "--workers", type=POSITIVE_INT, default=2, help="videos prepared in parallel (default %(default)s)"
    )
    prep.add_argument("--json", metavar="FILE", help="also write the summary (counts, time per step) as JSON")


def prepare_command(args: argparse.Namespace) -> int:
    from karmma.data.prepare import PrepareSettings, prepare

    settings = PrepareSettings(flow=args.flow, fps=args.fps, short_side=args.short_side, flow_stride=args.flow_stride)
    summary = prepare(args.src, args.out, settings, workers=args.workers)
    steps = summary["step_seconds"]
    total = sum(steps.values()) or 1.0
    print(
        f"prepared {summary['prepared']} video(s), skipped {summary['skipped']} already done, "
        f"{len(summary['failed'])} failed; {summary['without_audio']} without an audio track\n"
        f"{summary['frames']} RGB frames and {summary['flow_frames']} flow frames in {summary['wall_seconds']} s "
        f"({summary['frames_per_second']} frames/s with {args.workers} worker(s))\n"
        "worker time per step: "
        + ", ".join(f"{k} {v:.1f} s ({100 * v / total:.0f} %)" for k, v in steps.items())
        + (f"; dominant: {summary['dominant_step']}" if summary["dominant_step"] else "")
        + f"\nrecipe (recorded in {args.out}/.prepared, carried by the models trained on it): {settings.describe()}",
        file=sys.stderr,
    )
    for video, error in summary["failed"].items():
        print(f"  failed {video}: {error}", file=sys.stderr)
    if args.json:
        write_json(args.json, summary)
    return 1 if summary["failed"] else 0


def add_data(commands) -> argparse._SubParsersAction:
    """``karmma data TOOL``: the dataset tools (today one, ``inspect``); returns the subparsers they are added to."""
    data = command_parser(
        commands,
        "data",
        "dataset tools: inspect a dataset (its size, classes, availability and problems)",
        "  karmma data inspect karmma-demo/prepared/main\n",
    )
    return data.add_subparsers(dest="subcommand", required=True, metavar="TOOL")


def add_inspect(tools) -> None:
    inspect = command_parser(
        tools,
        "inspect",
        "size, classes, availability per modality and problems of a dataset",
        "  karmma data inspect karmma-demo/prepared/main --deep\n",
    )
    inspect.add_argument("dataset", help="a prepared folder or a YAML config")
    inspect.add_argument("--deep", action="store_true", help="decode every clip (finds unreadable files; slower)")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.add_argument(
        "--workers", type=NON_NEGATIVE_INT, default=2, help="processes decoding clips with --deep (default %(default)s)"
    )


def inspect_command(args: argparse.Namespace) -> int:
    from karmma.data.inspect import format_inspection, inspect_dataset, load_dataset_config

    result = inspect_dataset(load_dataset_config(args.dataset), deep=args.deep, workers=args.workers)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_inspection(result))
    return 0


def _worker_counts(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (argparse names the option when this fails)."""
    try:
        counts = [int(w) for w in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected worker counts like 0,1,2, got {text!r}") from None
    if any(c < 0 for c in counts):
        raise argparse.ArgumentTypeError(f"worker counts must be >= 0, got {text!r}")
    return counts


def add_benchmark_data(measurements) -> None:
    dbench = command_parser(
        measurements,
        "data",
        "clips/s of data loading vs the student's training step",
        "  karmma benchmark data karmma-demo/prepared/main --preset tiny --workers 0,2 --each --breakdown 32\n",
        "If loading is slower than training, training is input-bound: add --workers,\n"
        "lower the frame size with 'karmma prepare --short-side', or use a feature cache.",
    )
    dbench.add_argument("dataset", help="a prepared folder or a YAML config")
    dbench.add_argument("--preset", choices=PRESET_NAMES, default="tiny", help=PRESET_HELP)
    dbench.add_argument(
        "--workers",
        type=_worker_counts,
        default=[2],
        help="loader worker processes; several (e.g. 0,1,2) are measured one after the other (default 2)",
    )
    dbench.add_argument("--batch-size", type=POSITIVE_INT, default=16, help="clips per batch (default %(default)s)")
    dbench.add_argument(
        "--batches",
        type=POSITIVE_INT,
        default=10,
        help="measured loader batches, after one warm-up batch (default %(default)s)",
    )
    dbench.add_argument("--each", action="store_true", help="also time each modality alone")
    dbench.add_argument(
        "--breakdown",
        type=NON_NEGATIVE_INT,
        default=0,
        metavar="CLIPS",
        help="also time each pipeline stage over CLIPS clips, and the bare JPEG decoders on the same files",
    )
    dbench.add_argument(
        "--repeats",
        type=POSITIVE_INT,
        default=1,
        help="report the best of this many passes of each loader figure (default %(default)s)",
    )
    dbench.add_argument(
        "--steps",
        type=NON_NEGATIVE_INT,
        default=10,
        help="measured training steps, after two warm-up steps; 0: no training step (default %(default)s)",
    )
    dbench.add_argument("--json", metavar="FILE", help="also write the result as JSON")


def benchmark_data_command(args: argparse.Namespace) -> int:
    from karmma.benchmark import benchmark_data_loading

    result = benchmark_data_loading(
        args.dataset,
        args.preset,
        args.workers,
        args.batch_size,
        args.batches,
        args.each,
        args.breakdown,
        args.repeats,
        args.steps,
    )
    if args.json:
        write_json(args.json, result)
    return 0
