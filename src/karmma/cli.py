"""The karmma command line: one subcommand per pipeline step (see build_parser)."""

from __future__ import annotations

import argparse
import errno
import json
import math
import sys
from pathlib import Path

from karmma.configuration import MAX_SEED
from karmma.io import write_json
from karmma.modalities import parse_subset, subset_name
from karmma.train_config import PRESET_NAMES

# ---- argument ranges, checked at parse time ---------------------------------------------


def _number(kind, low=None, high=None, low_open=False, high_open=False, what=""):
    """An argparse ``type`` accepting ``kind`` values in a range, e.g. ``_number(int, 1)`` for >= 1."""

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


POSITIVE_INT = _number(int, 1)
NON_NEGATIVE_INT = _number(int, 0)
SEED = _number(int, 0, MAX_SEED)
POSITIVE_FLOAT = _number(float, 0, low_open=True)
NON_NEGATIVE_FLOAT = _number(float, 0)


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


def _probabilities(text: str) -> tuple[float, ...]:
    """``"0,0.1,0.5"`` -> probabilities in [0, 1]."""
    parse = _number(float, 0, 1)
    values = tuple(parse(p) for p in text.split(",") if p.strip())
    if not values:
        raise argparse.ArgumentTypeError("expected comma-separated probabilities, e.g. 0,0.25,0.5")
    return values


# A mirror of a library name, kept here so that parsing does not import Lightning
# (tests/test_cli.py checks that it equals karmma.training.bench.TRAINING_BENCHMARKS).
TRAINING_BENCHMARKS = ("cache", "distill", "steps")

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


def resolve_device(device: str, option: str = "--device") -> str:
    """``auto`` -> cuda when a GPU is there, else cpu; an explicit device must exist here."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ValueError(f"{option} {device!r}: not a torch device (use auto, cpu, cuda or cuda:N)") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{option} {device}: no CUDA GPU is available on this machine; use {option} cpu (or auto)")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(
                f"{option} {device}: this machine has {torch.cuda.device_count()} GPU(s) (cuda:0 .. cuda:{torch.cuda.device_count() - 1})"
            )
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{option} {device}: MPS is not available on this machine; use {option} cpu")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise ValueError(
            f"{option} {device!r}: unsupported device type {parsed.type!r} (use auto, cpu, cuda or cuda:N)"
        )
    return device


def _benchmark_model(args: argparse.Namespace) -> int:
    import torch

    from karmma.benchmark import benchmark_preset_resources, plot_benchmark

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


def _synth(args: argparse.Namespace) -> int:
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


def _prepare(args: argparse.Namespace) -> int:
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


def _inspect(args: argparse.Namespace) -> int:
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


def _benchmark_data(args: argparse.Namespace) -> int:
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


def _train(args: argparse.Namespace) -> int:
    from karmma.configuration import load_config
    from karmma.train_config import TrainConfig
    from karmma.training.run import train

    config = load_config(TrainConfig, args.config, args.overrides)
    result = train(config, force_new=args.force_new)

    def top1(entry: dict | None) -> str:
        if not entry:
            return "not validated"
        scores = ", ".join(
            f"{k.split('/')[-1]} {v:.2f}" for k, v in sorted(entry["metrics"].items()) if k.endswith("top1")
        )
        return f"epoch {entry['epoch']}: {scores}"

    print(
        f"{config.stage}: best checkpoint (checkpoints/best.ckpt) {top1(result['best_checkpoint'])}\n"
        f"last epoch {top1(result['last_epoch'])}\nrun folder: {result['run']}",
        file=sys.stderr,
    )
    return 0


def _extract(args: argparse.Namespace) -> int:
    from karmma.configuration import load_config
    from karmma.train_config import TrainConfig
    from karmma.training.cache import extract_teacher_cache

    config = load_config(TrainConfig, args.config, args.overrides)
    rank, world = (args.rank, args.world_size) if args.world_size else (None, None)
    summary = extract_teacher_cache(
        config,
        rank,
        world,
        batch_size=args.batch_size,
        allow_random_extractors=args.allow_random_extractors,
        teacher_checkpoint=args.logits,
    )
    for split in ("train", "validation"):
        info = summary[split]
        print(f"{split}: wrote {info['written']} of {info['rows']} rows -> {info['file']}", file=sys.stderr)
    if args.logits:
        print(f"teacher logits of {args.logits} written for {summary['logits']} cached rows", file=sys.stderr)
    return 0


def _weights(args: argparse.Namespace) -> int:
    from karmma.configs import shipped_configs
    from karmma.configuration import load_config
    from karmma.train_config import TrainConfig
    from karmma.weight_files import config_display_name, config_weight_files, fetch_weight_files, weights_table

    fetch = args.items[:1] == ["fetch"]
    items = args.items[1:] if fetch else args.items
    configs = [item for item in items if "=" not in item] or ([] if fetch else shipped_configs())
    overrides = [item for item in items if "=" in item]
    if fetch and len(configs) != 1:
        raise ValueError("karmma weights fetch takes one CONFIG (and KEY=VALUE overrides)")
    if args.base_url and not fetch:
        raise ValueError("--base-url is for 'karmma weights fetch CONFIG'")
    listed = []
    for path in configs:
        name = config_display_name(path)
        listed.append((name, config_weight_files(load_config(TrainConfig, path, overrides), name)))
    if not fetch:
        print(weights_table(listed, overrides), end="")
        return 0
    unpublished = fetch_weight_files(listed[0][1], args.base_url, report=lambda line: print(line, file=sys.stderr))
    if unpublished:
        print(f"{len(unpublished)} file(s) above no one publishes: make them as said, then re-run", file=sys.stderr)
    return 0


def _benchmark_training(args: argparse.Namespace) -> int:
    from karmma.configuration import load_config
    from karmma.train_config import TrainConfig
    from karmma.training.bench import benchmark_training

    result = benchmark_training(args.what, load_config(TrainConfig, args.config, args.overrides), args.cache_workers)
    print(json.dumps(result, indent=2))
    if args.json:
        write_json(args.json, result)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from karmma.evaluation.evaluate import (
        EvaluationSettings,
        evaluate_with_scores,
        load_for_evaluation,
        settings_record,
        unique_names,
    )

    probabilities = args.p or EvaluationSettings.probabilities
    settings = EvaluationSettings(
        split=args.split,
        probabilities=probabilities,
        seeds=args.seeds,
        batch_size=args.batch_size,
        workers=args.workers,
        num_clips=args.clips,
        num_crops=args.crops,
        modalities=tuple(parse_subset(args.modalities)) if args.modalities else None,
    )
    names = args.names.split(",") if args.names else [""] * len(args.models)
    if len(names) != len(args.models):
        raise ValueError(f"--names gives {len(names)} names for {len(args.models)} models")
    levels = [args.sls_pt, args.sls_tl, args.sls_td]
    if args.submission:
        from karmma.evaluation.submission import SupervisionLevels, check_heads, check_submission_path

        check_submission_path(args.submission)  # before the evaluation, not after it
        if len(args.models) != 1:
            raise ValueError(f"--submission writes one model's scores, got {len(args.models)} models")
        levels = SupervisionLevels(**{k: v for k, v in zip(("pt", "tl", "td"), levels) if v is not None})
    elif any(level is not None for level in levels):
        raise ValueError("--sls-pt / --sls-tl / --sls-td describe a --submission: give one")
    if not args.out and not args.submission:
        raise ValueError("nothing to write: give --out RESULTS.json and/or --submission OUT.zip")
    device = resolve_device(args.device)
    loaded = [load_for_evaluation(m, n, args.set, args.checkpoint) for m, n in zip(args.models, names)]
    if args.submission:
        check_heads(loaded[0].model.heads, loaded[0].source)
    for evaluated in loaded:
        evaluated.model.to(device)
    for name, evaluated in zip(unique_names([m.name for m in loaded]), loaded):
        evaluated.name = name
    results = {"models": {}, "settings": settings_record(settings)}
    for evaluated in loaded:
        result, scores = evaluate_with_scores(evaluated, settings)
        results["models"][evaluated.name] = result
        if not result["labelled"]:
            print(f"{evaluated.name}: {result['note']} ({len(scores.ids)} clips predicted)", file=sys.stderr)
        else:
            full = result["subsets"][subset_name(result["modalities"])]
            print(f"{evaluated.name}: action top-1 {full['action_top1']:.2f} on the full set", file=sys.stderr)
        if args.submission:
            from karmma.evaluation.submission import write_submission

            write_submission(args.submission, scores, levels)
            print(
                f"wrote {args.submission}: {len(scores.ids)} narration ids of the {scores.split} split, "
                f"modalities {subset_name(scores.modalities)}, sls {levels.pt}/{levels.tl}/{levels.td} (pt/tl/td)",
                file=sys.stderr,
            )
    if args.out:
        out = Path(args.out)
        write_json(out, results)
        print(f"wrote {out}", file=sys.stderr)
    return 0


def _report(args: argparse.Namespace) -> int:
    from karmma.evaluation.report import write_report

    path = write_report(args.folder)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from karmma.demo import default_demo_folder, run_demo

    seeds = args.seeds if args.seeds is not None else (args.seed,)
    report = run_demo(
        args.out or default_demo_folder(args.quick),
        quick=args.quick,
        seeds=seeds,
        progress=not args.no_progress,
        workers=args.workers,
        tune=tuple(args.tune),
    )
    print(
        f"done: {report}\nresults: {report.parent / 'results.json'}, student: {report.parent / 'student.safetensors'}",
        file=sys.stderr,
    )
    return 0


def _dropout_study(args: argparse.Namespace) -> int:
    from karmma.configuration import load_config
    from karmma.evaluation.dropout_study_report import plot_dropout_study, study_table
    from karmma.experiments.dropout_study import run_dropout_study
    from karmma.train_config import TrainConfig

    config = load_config(TrainConfig, args.config, args.overrides)
    rates = list(args.rates)
    study = run_dropout_study(config, rates, args.out, args.checkpoint)
    plot_dropout_study(study, Path(args.out) / "dropout_study.png")
    print(study_table(study), file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    from karmma.artifacts import load_model, save_student
    from karmma.deploy.onnx_export import export_onnx, export_split_onnx
    from karmma.stages import STUDENT_STAGES

    if not (args.safetensors or args.onnx or args.onnx_split):
        raise ValueError("nothing to write: give --safetensors, --onnx and/or --onnx-split")
    model, info = load_model(args.student, stages=STUDENT_STAGES)
    written = []
    if args.safetensors:
        written.append(save_student(model, info, args.safetensors))
    if args.onnx:
        written.append(export_onnx(model, info, args.onnx))
    if args.onnx_split:
        written.append(export_split_onnx(model, info, args.onnx_split))
    for path in written:
        size = sum(p.stat().st_size for p in path.rglob("*")) if path.is_dir() else path.stat().st_size
        print(f"wrote {path} ({size / 2**20:.2f} MB)", file=sys.stderr)
    recipe = info.preparation.describe() if info.preparation else "unknown (predict will assume one, with a warning)"
    print(f"frame recipe carried by the export: {recipe}", file=sys.stderr)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from karmma.data.media import MediaError
    from karmma.deploy.recognizer import Recognizer
    from karmma.deploy.rosbag import is_bag

    try:
        recognizer = Recognizer.load(
            args.model, threads=args.threads, flow=args.flow, short_side=args.short_side, flow_stride=args.flow_stride
        )
        modalities = parse_subset(args.modalities) if args.modalities else None
        if args.image_topic or args.audio_topic or is_bag(args.input):
            return _predict_bag(args, recognizer, modalities)
        if args.stream:
            return _predict_stream(args, recognizer, modalities)
        if args.drop_sensors:
            raise ValueError("--drop-sensors simulates sensor failures over time: use it with --stream")
        prediction = recognizer.predict_file(args.input, modalities, args.start, args.end, args.top_k)
    except MediaError as error:  # unreadable video: one line, like the other errors
        raise ValueError(str(error)) from None
    if args.json:
        print(
            json.dumps(
                {"input": args.input, "model": args.model, "backend": recognizer.backend, **prediction.to_dict()}
            )
        )
    else:
        print(prediction.format_table())
    if "A" in prediction.missing and prediction.missing["A"] == "no audio track":
        print(f"note: {args.input} has no audio track; predicted without A", file=sys.stderr)
    return 0


def _predict_stream(args: argparse.Namespace, recognizer, modalities) -> int:
    from karmma.deploy.stream import SensorFailures, stream_predictions

    failures = None
    if args.drop_sensors:
        failures = SensorFailures(
            recognizer.file_modalities(modalities), args.drop_sensors, args.drop_seconds, args.seed
        )
    for window in stream_predictions(recognizer, args.input, modalities, args.window, args.hop, failures, args.top_k):
        print(json.dumps(window.to_dict()) if args.json else window.format_line(), flush=True)
    return 0


def _predict_bag(args: argparse.Namespace, recognizer, modalities) -> int:
    from karmma.deploy.rosbag import AudioFormat, bag_predictions, is_bag

    if not is_bag(args.input):
        raise ValueError(
            f"--image-topic and --audio-topic read ROS 2 bags; {args.input} is not one "
            "(a .mcap or .db3 file, or a folder with metadata.yaml)"
        )
    for flag, value in (("--start", args.start), ("--end", args.end), ("--drop-sensors", args.drop_sensors or None)):
        if value is not None:
            raise ValueError(f"{flag} does not apply to a ROS 2 bag (its sensors' own gaps are the missing modalities)")
    windows = bag_predictions(
        recognizer,
        args.input,
        args.image_topic,
        args.audio_topic,
        AudioFormat.parse(args.audio_format) if args.audio_format else None,
        args.window,
        args.hop,
        modalities=modalities,
        fps=args.fps,
        tolerance=args.tolerance,
        top_k=args.top_k,
    )
    for window in windows:
        print(json.dumps(window.to_dict()) if args.json else window.format_line(), flush=True)
    return 0


def _benchmark_deploy(args: argparse.Namespace) -> int:
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


def _command(commands, name: str, summary: str, example: str, details: str = "") -> argparse.ArgumentParser:
    """A subcommand whose --help shows the summary, optional details and an example."""
    description = summary[0].upper() + summary[1:] + "." + (f"\n\n{details}" if details else "")
    return commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog="example:\n" + example,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _checkpoint_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--checkpoint best|last`` of the commands that score run folders."""
    parser.add_argument(
        "--checkpoint",
        default="best",
        choices=("best", "last"),
        help=f"{what}: best (chosen on validation) or last (the last epoch; "
        "use it where the scored split is also the selection split)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="karmma",
        description=DESCRIPTION,
        epilog=FIRST_STEPS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    preset_help = "model sizes: paper (Swin3D-B teacher, 32 x 224 x 224 clips) or tiny (CPU-sized); default %(default)s"

    demo = _command(
        commands,
        "demo",
        "the whole method on embedded SynthKitchen data: synth, train all stages, evaluate, report",
        "  karmma demo --quick     # writes karmma-demo-quick/: 4.5 min on a 2-core CPU (README, Quick start)\n"
        "  karmma demo             # writes karmma-demo/: about 14 min on a 2-core CPU\n",
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
        help="fewer clips and epochs (48 training clips instead of 240); accuracies stay near chance",
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
        help="also train the student (or STAGE) once per value and score each on validation only "
        "(OUT/tuning.json, a report section); repeatable, e.g. loss.distill_weight=0,0.3,1",
    )
    demo.add_argument(
        "--workers",
        type=POSITIVE_INT,
        default=2,
        help="processes for synthesis/preparation and data loading (default %(default)s)",
    )
    demo.add_argument("--no-progress", action="store_true", help="one line per stage instead of a progress bar")

    synth = _command(
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

    prep = _command(
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
        type=_number(int, 8),
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

    data = _command(
        commands,
        "data",
        "dataset tools: inspect a dataset (its size, classes, availability and problems)",
        "  karmma data inspect karmma-demo/prepared/main\n",
    )
    data_commands = data.add_subparsers(dest="subcommand", required=True, metavar="TOOL")
    inspect = _command(
        data_commands,
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
    train = _command(
        commands,
        "train",
        "train a stage: unimodal, teacher, student, baseline, baseline_masked or baseline_delta",
        "  karmma train configs/synthkitchen/baseline.yaml data.root=karmma-demo/prepared/main optim.epochs=2\n",
        "The stage comes from the config. The run folder is trainer.runs/trainer.name\n"
        "(default runs/<stage>); re-running the same command resumes from last.ckpt.",
    )
    train.add_argument("config", help="YAML config (shipped ones are in configs/<dataset>/)")
    train.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides, e.g. optim.lr=3e-4 data.root=/data (an unknown key is an error listing the valid ones)",
    )
    train.add_argument(
        "--force-new",
        action="store_true",
        help="start over when the run folder holds a run (it is moved into replaced-<time>/, not deleted)",
    )

    extract = _command(
        commands,
        "extract",
        "cache the teacher's frozen extractor tokens (HDF5, sharded, resumable)",
        "  karmma extract configs/synthkitchen/teacher.yaml data.root=karmma-demo/prepared/main cache.path=teacher-cache \\\n"
        "      extractors.V=karmma-demo/runs/unimodal_V/checkpoints/best.ckpt \\\n"
        "      extractors.F=karmma-demo/runs/unimodal_F/checkpoints/best.ckpt \\\n"
        "      extractors.A=karmma-demo/runs/unimodal_A/checkpoints/best.ckpt\n",
        "Every extractor of the teacher needs its weights (extractors.<M> or pretrained.<M>).\n"
        "Then train the teacher with the same config and cache.path: only its fusion runs;\n"
        "a reader refuses a cache made for another config (clip recipe, modalities, data,\n"
        "extractors, teacher checkpoint), naming the key.",
    )
    extract.add_argument("config", help="the teacher's YAML config (with cache.path)")
    extract.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. cache.path=/data/cache"
    )
    extract.add_argument(
        "--rank",
        type=NON_NEGATIVE_INT,
        default=0,
        help="this shard, with --world-size (default: from torchrun/SLURM, else 0)",
    )
    extract.add_argument(
        "--world-size",
        type=NON_NEGATIVE_INT,
        default=0,
        help="number of shards (default: from torchrun/SLURM; else the shards already in cache.path, "
        "all completed by this process, or 1)",
    )
    extract.add_argument(
        "--batch-size", type=POSITIVE_INT, default=8, help="clips per extractor batch (default %(default)s)"
    )
    extract.add_argument(
        "--logits",
        metavar="TEACHER_CKPT",
        help="also cache this trained teacher's logits (for students with teacher_logits=cache); "
        "one process, after every shard is written",
    )
    extract.add_argument(
        "--allow-random-extractors",
        action="store_true",
        help="cache the tokens of extractors that no extractors.<M> / pretrained.<M> initialises "
        "(random; for tests and timing only): without it such a config is refused",
    )

    weights = _command(
        commands,
        "weights",
        "list the weight files configs need (where karmma looks, present or missing, SHA-256); fetch torchvision's",
        "  karmma weights                                          # every shipped config\n"
        "  karmma weights configs/epic100/teacher.yaml configs/epic100/student.yaml\n"
        "  karmma weights fetch configs/epic100/teacher.yaml       # downloads what torchvision publishes\n",
        "Lists, per config, every file a run of it reads: extractor weights (a torchvision\n"
        "name means its file in $TORCH_HOME/hub/checkpoints/, a path the file itself) and the\n"
        "karmma checkpoints it names (extractors.<M>, teacher), with where a run looks,\n"
        "whether the file is there and its SHA-256. KEY=VALUE overrides apply as in 'train'.\n"
        "'fetch' downloads the missing files torchvision publishes into that cache, checks\n"
        "the SHA-256 prefix in torchvision's file name, and leaves no file on a truncated\n"
        "download or another hash; it names the files no one publishes (the teacher's F and\n"
        "A extractors) and the command of docs/epic.md that makes them. Only 'fetch' uses\n"
        "the network.",
    )
    weights.add_argument(
        "items",
        nargs="*",
        metavar="[fetch] CONFIG|KEY=VALUE",
        help="'fetch' first to download; YAML configs (default: every shipped one) and config overrides",
    )
    weights.add_argument(
        "--base-url",
        metavar="URL",
        help="fetch from URL/<file name> instead of torchvision's address (a mirror, or a local server in tests)",
    )

    evaluate = _command(
        commands,
        "evaluate",
        "accuracy on every modality subset and along the missing-modality sweep",
        "  karmma evaluate karmma-demo/runs/teacher karmma-demo/runs/student --names teacher,student --out results/results.json\n"
        "  karmma evaluate runs/epic100_student --split test --set data.test=EPIC_100_test_timestamps.csv "
        "--submission results/test.zip\n",
        "Scores verb / noun / action top-1 and top-5 on every non-empty modality subset,\n"
        "along the random-dropout sweep and on the EPIC tail / unseen splits when their\n"
        "class files exist. Read the result with 'karmma report'. A split without labels\n"
        "(EPIC_100_test_timestamps.csv) is predicted, not scored; --submission writes the\n"
        "EPIC-KITCHENS-100 challenge file (docs/epic.md, 'Submitting to the challenge').",
    )
    evaluate.add_argument("models", nargs="+", help="run folders, .ckpt checkpoints or exported student .safetensors")
    evaluate.add_argument(
        "--out", help="results JSON to write (on a split without labels: the top-5 predictions per clip, no accuracy)"
    )
    evaluate.add_argument(
        "--names", default="", help="comma-separated model names, one per model (default: each model's stage)"
    )
    evaluate.add_argument(
        "--split",
        default=None,
        choices=("train", "validation", "test"),
        help="split to score (default: the official validation set: 'test' for epic_star, "
        "whose 'validation' is the 10 %% held out of training, else 'validation')",
    )
    _checkpoint_option(evaluate, "which checkpoint of a run folder")
    evaluate.add_argument(
        "--p",
        type=_probabilities,
        default=None,
        help="sweep drop probabilities, comma-separated (default 0.0,0.1,...,0.9)",
    )
    evaluate.add_argument(
        "--seeds", type=POSITIVE_INT, default=3, help="sweep seeds; mean and spread are reported (default %(default)s)"
    )
    evaluate.add_argument("--batch-size", type=POSITIVE_INT, default=32, help="clips per batch (default %(default)s)")
    evaluate.add_argument(
        "--workers", type=NON_NEGATIVE_INT, default=2, help="data loader processes (default %(default)s)"
    )
    evaluate.add_argument(
        "--clips", type=POSITIVE_INT, default=None, help="temporal views per segment (default: the training config's)"
    )
    evaluate.add_argument(
        "--crops",
        type=int,
        choices=(1, 3),
        default=None,
        help="spatial views per clip: 1 or 3 (default: the training config's)",
    )
    evaluate.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda, cuda:1, ...")
    evaluate.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override the stored training config, e.g. --set data.root=/new/place (repeatable)",
    )
    evaluate.add_argument(
        "--modalities",
        help="the modalities of the predictions and of --submission, e.g. V+F (default: all the model has; "
        "each clip uses those of them it has)",
    )
    evaluate.add_argument(
        "--submission",
        metavar="OUT.zip",
        help="also write the EPIC-KITCHENS-100 action-recognition challenge file (test.json in a zip: "
        "verb and noun scores of every narration_id, the top-100 actions); one model, never overwritten",
    )
    from karmma.evaluation.submission import SupervisionLevels

    sls = (
        ("pt", "pre-training: 2 = public image and video data (ImageNet, Kinetics)"),
        ("tl", "training labels: 3 = start/stop times and classes"),
        ("td", "training data: 3 = the training split; 4 = train + validation"),
    )
    for level, meaning in sls:
        evaluate.add_argument(
            f"--sls-{level}",
            type=int,
            choices=range(6),
            metavar="0-5",
            default=None,
            help=f"supervision level of --submission (github.com/epic-kitchens/SLS), {meaning} "
            f"(default {getattr(SupervisionLevels(), level)})",
        )

    report = _command(
        commands,
        "report",
        "Markdown report + figures from a folder with results.json (and benchmark.json)",
        "  karmma report karmma-demo       # rewrites karmma-demo/report.md and its figures\n",
        "Training curves are read from the run folders named in results.json.",
    )
    report.add_argument("folder", help="folder with results.json; report.md and the PNG figures are written there")

    study = _command(
        commands,
        "dropout-study",
        "train the teacher at several modality-dropout rates; accuracy per subset",
        "  karmma dropout-study configs/synthkitchen/teacher.yaml data.root=karmma-demo/prepared/main \\\n"
        "      cache.path=karmma-demo/cache extractors.V=karmma-demo/runs/unimodal_V/checkpoints/best.ckpt \\\n"
        "      extractors.F=karmma-demo/runs/unimodal_F/checkpoints/best.ckpt \\\n"
        "      extractors.A=karmma-demo/runs/unimodal_A/checkpoints/best.ckpt --rates 0,0.5 --out dropout-study\n",
    )
    study.add_argument("config", help="a teacher config (best with cache.path: only the fusion trains)")
    study.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. data.root=/data")
    study.add_argument(
        "--rates",
        type=_probabilities,
        default=(0.0, 0.25, 0.5, 0.75),
        help="modality-dropout probabilities to train with, comma-separated (default 0,0.25,0.5,0.75)",
    )
    study.add_argument("--out", required=True, help="folder for dropout_study.json and .png")
    _checkpoint_option(study, "which checkpoint of each teacher run to score")

    exp = _command(
        commands,
        "export",
        "a trained student as safetensors, one ONNX graph and/or split ONNX graphs",
        "  karmma export karmma-demo-quick/runs/student --onnx-split student-onnx --safetensors student.safetensors\n",
        "The split form (one graph per extractor plus a fusion graph) skips the\n"
        "extractors of missing sensors; 'karmma predict' runs it.",
    )
    exp.add_argument(
        "student",
        help="a student / baseline / baseline_masked / baseline_delta run folder or checkpoint (.ckpt) or exported .safetensors",
    )
    exp.add_argument("--safetensors", metavar="OUT", help="write the weights with config, class names and frame recipe")
    exp.add_argument(
        "--onnx", metavar="OUT", help="write one ONNX graph taking every modality input and the availability mask"
    )
    exp.add_argument(
        "--onnx-split", metavar="DIR", help="write one ONNX graph per extractor plus a fusion graph to DIR"
    )

    pred = _command(
        commands,
        "predict",
        "predict the action in a video with a trained student",
        "  karmma predict student-onnx karmma-demo-quick/recordings/main/P07/videos/P07_01.MP4 --start 0.4 --end 1.4\n"
        "  karmma predict student-onnx karmma-demo-quick/recordings/main/P07/videos/P07_01.MP4 --stream --drop-sensors 0.3\n"
        "  karmma predict student-onnx robot.mcap --image-topic /camera/image_raw/compressed --audio-topic /audio/audio\n",
        "Frames, flow and audio are computed from the video by the frame recipe the model\n"
        "records (flow method, short side, flow stride rule), as for its training data.\n"
        "A modality whose media end before the segment does is not used (0.1 s tolerated).\n"
        "With --stream, one prediction per sliding window; --drop-sensors simulates\n"
        "failing sensors. A ROS 2 bag gives one prediction per window; a sensor whose\n"
        "messages stop is missing.",
    )
    pred.add_argument("model", help="a .onnx graph, split-ONNX folder, .safetensors or .ckpt student")
    pred.add_argument(
        "input",
        help="a video file; with --stream also - (a video stream on stdin) or a camera index; "
        "or a ROS 2 bag (.mcap, .db3 or its folder) with --image-topic / --audio-topic",
    )
    pred.add_argument("--modalities", help="which of V, F, A to use, e.g. V,F (default: all the model has)")
    pred.add_argument(
        "--top-k",
        type=POSITIVE_INT,
        default=5,
        help="number of most likely actions, verbs and nouns printed (default %(default)s)",
    )
    pred.add_argument("--json", action="store_true", help="machine-readable output (one JSON object per line)")
    pred.add_argument("--start", type=NON_NEGATIVE_FLOAT, help="segment start in seconds (default: the beginning)")
    pred.add_argument("--end", type=POSITIVE_FLOAT, help="segment end in seconds (default: the end)")
    pred.add_argument(
        "--flow",
        choices=["dis", "tvl1"],
        help="optical flow method, for a model that records no frame recipe (default: the recorded one; must agree)",
    )
    pred.add_argument(
        "--short-side",
        type=_number(int, 8),
        help="frame short side in pixels, for a model that records no frame recipe (default: the recorded one)",
    )
    pred.add_argument(
        "--flow-stride",
        type=POSITIVE_INT,
        metavar="FRAMES",
        help="frames between the two frames of each flow pair, for a model that records no frame recipe "
        "(default: the recorded rule, evaluated on the video as karmma prepare did)",
    )
    pred.add_argument("--threads", type=POSITIVE_INT, help="CPU threads for the model (default: the runtime's choice)")
    pred.add_argument("--stream", action="store_true", help="one prediction per sliding window")
    pred.add_argument(
        "--window",
        type=POSITIVE_FLOAT,
        default=2.0,
        help="window length in seconds, with --stream (default %(default)s)",
    )
    pred.add_argument(
        "--hop",
        type=POSITIVE_FLOAT,
        default=1.0,
        help="seconds between window starts, with --stream (default %(default)s)",
    )
    pred.add_argument(
        "--drop-sensors",
        type=_number(float, 0, 1, high_open=True),
        default=0.0,
        metavar="RATE",
        help="simulate sensor failures (--stream): each modality is down this fraction of the time",
    )
    pred.add_argument(
        "--drop-seconds",
        type=POSITIVE_FLOAT,
        default=3.0,
        help="mean length of a sensor failure in seconds (default %(default)s)",
    )
    pred.add_argument("--seed", type=int, default=0, help="seed of the sensor-failure simulation (default %(default)s)")
    bag = pred.add_argument_group("ROS 2 bags (pip install 'karmma[ros]')")
    bag.add_argument(
        "--image-topic",
        metavar="TOPIC",
        help="camera topic: sensor_msgs/msg/Image (rgb8, bgr8, mono8) or CompressedImage",
    )
    bag.add_argument(
        "--audio-topic", metavar="TOPIC", help="microphone topic: audio_common_msgs/msg/AudioData or AudioDataStamped"
    )
    bag.add_argument(
        "--audio-format",
        metavar="FORMAT:RATE[:CHANNELS]",
        help="raw PCM layout of the audio topic, e.g. S16LE:16000:1 (default: from the bag's AudioInfo topic)",
    )
    bag.add_argument(
        "--fps", type=POSITIVE_FLOAT, help="frame rate of the grid frames are placed on (default: measured from stamps)"
    )
    bag.add_argument(
        "--tolerance",
        type=POSITIVE_FLOAT,
        default=0.25,
        metavar="SECONDS",
        help="a sensor silent for longer than this within a window is missing there (default %(default)s)",
    )

    bench = _command(
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
    bench_commands = bench.add_subparsers(dest="subcommand", required=True, metavar="WHAT")
    model = _command(
        bench_commands,
        "model",
        "GFLOPs, parameters, peak memory and latency of teacher and student on every modality subset",
        "  karmma benchmark model --preset tiny --json benchmark.json --plot benchmark.png\n",
        "GFLOPs at batch 1 (2 FLOPs per multiply-add); latency is the median of --repeats runs.",
    )
    model.add_argument("--preset", choices=PRESET_NAMES, default="tiny", help=preset_help)
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

    dbench = _command(
        bench_commands,
        "data",
        "clips/s of data loading vs the student's training step",
        "  karmma benchmark data karmma-demo/prepared/main --preset tiny --workers 0,2 --each --breakdown 32\n",
        "If loading is slower than training, training is input-bound: add --workers,\n"
        "lower the frame size with 'karmma prepare --short-side', or use a feature cache.",
    )
    dbench.add_argument("dataset", help="a prepared folder or a YAML config")
    dbench.add_argument("--preset", choices=PRESET_NAMES, default="tiny", help=preset_help)
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

    btrain = _command(
        bench_commands,
        "training",
        "teacher cache speed-up, distillation step cost, or data wait vs compute",
        "  karmma benchmark training distill configs/synthkitchen/student.yaml data.root=karmma-demo/prepared/main \\\n"
        "      teacher_logits=cache cache.path=karmma-demo/cache\n"
        "  karmma benchmark training steps configs/synthkitchen/baseline.yaml data.root=karmma-demo/prepared/main\n",
        "cache: one teacher epoch with live extractors against one from the feature cache.\n"
        "distill: a student training step with cached teacher logits against a Baseline step.\n"
        "steps: one epoch of a student-sized stage split into waiting for data and computing,\n"
        "decoding media live against views decoded once into memory (cache.decode_once).",
    )
    btrain.add_argument(
        "what",
        choices=TRAINING_BENCHMARKS,
        help="cache: teacher cache speed-up; distill: distillation step cost; "
        "steps: a student-sized stage's data wait vs compute, live vs decoded once",
    )
    btrain.add_argument(
        "config", help="teacher config with cache.path (cache) or student config with teacher_logits=cache (distill)"
    )
    btrain.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. data.root=/data")
    btrain.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    btrain.add_argument(
        "--cache-workers",
        type=NON_NEGATIVE_INT,
        default=0,
        help="loader workers reading the cache (cache benchmark; default %(default)s)",
    )

    bdep = _command(
        bench_commands,
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
    return parser


# command -> the function that runs it; build_parser defines each command's arguments.
COMMANDS = {
    "demo": _demo,
    "synth": _synth,
    "prepare": _prepare,
    "data inspect": _inspect,
    "train": _train,
    "extract": _extract,
    "weights": _weights,
    "evaluate": _evaluate,
    "report": _report,
    "dropout-study": _dropout_study,
    "export": _export,
    "predict": _predict,
    "benchmark model": _benchmark_model,
    "benchmark data": _benchmark_data,
    "benchmark training": _benchmark_training,
    "benchmark deploy": _benchmark_deploy,
}


#: What ``pip install '.[train]'`` adds to the light install (pyproject.toml): a command that
#: imports one of these in the light install is told to install the full package.
TRAINING_PACKAGES = (
    "torch",
    "torchvision",
    "lightning",
    "safetensors",
    "h5py",
    "matplotlib",
    "tqdm",
    "tensorboard",
    "onnx",
    "onnxscript",
)
FULL_INSTALL = "make setup, or pip install '.[train]' in the repository"


def describe_error(error: BaseException) -> tuple[str, bool]:
    """One line for an error, and whether it is an expected failure (bad input, I/O, device).

    Expected: bad configs / arguments / annotations / checkpoints (``ValueError``s),
    unreadable media, I/O errors (a missing file, a full or read-only disk), an
    unavailable device or out of memory, a command run in the light install that
    needs the full one. Anything else is a bug in karmma."""
    from karmma.data.media import MediaError

    name = type(error).__name__
    if isinstance(error, ModuleNotFoundError) and (error.name or "").split(".")[0] in TRAINING_PACKAGES:
        return (
            f"this needs the full install ({error.name} is not installed; the light install runs "
            f"'karmma predict' on ONNX exports only): {FULL_INSTALL}",
            True,
        )
    if isinstance(error, OSError) and error.errno is not None and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        hint = {
            errno.ENOSPC: "free disk space or write somewhere else",
            errno.EDQUOT: "disk quota exceeded: free space or write somewhere else",
            errno.EROFS: "the file system is read-only: choose a writable output folder",
            errno.EACCES: "permission denied: choose a folder you can write to (or fix its permissions)",
            errno.EPERM: "operation not permitted: choose a folder you can write to",
            errno.ENOENT: "check the path",
            errno.ENOTDIR: "a path component is a file, not a folder",
            errno.EISDIR: "a folder where a file was expected",
        }.get(error.errno, "")
        message = f"{where}{error.strerror}" + (f" ({hint})" if hint else "")
        return message, True
    message = str(error)
    if "Original Traceback" in message:  # re-raised from a DataLoader worker: keep the last line
        message = [line for line in message.splitlines() if line.strip()][-1].strip()
    message = " ".join(message.split()) or name
    if name == "OutOfMemoryError":
        return f"out of memory ({message[:200]}): use a smaller optim.batch_size / --batch-size", True
    if name == "MisconfigurationException":  # Lightning: e.g. trainer.accelerator=gpu without a GPU
        return f"{message} (check the trainer.* settings)", True
    expected = isinstance(error, (ValueError, OSError, MediaError))
    return message, expected


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


if __name__ == "__main__":
    sys.exit(main())
