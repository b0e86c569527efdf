"""The ``karmma`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from karmma.modalities import parse_subset, subset_name


def _benchmark(args: argparse.Namespace) -> int:
    import torch

    from karmma.benchmark import BenchmarkSettings, benchmark_preset, plot_benchmark
    from karmma.presets import EPIC_HEADS, SSV2_HEADS, get_preset

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
    results = benchmark_preset(preset, heads, modalities, args.models, settings)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}", file=sys.stderr)
    if args.plot:
        plot_benchmark(results, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _synth(args: argparse.Namespace) -> int:
    import time

    from karmma.data.synth import synthesize, synthesize_ssv2

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

    settings = PrepareSettings(flow=args.flow, fps=args.fps, short_side=args.short_side)
    summary = prepare(args.src, args.out, settings, workers=args.workers)
    steps = summary["step_seconds"]
    total = sum(steps.values()) or 1.0
    print(
        f"prepared {summary['prepared']} video(s), skipped {summary['skipped']} already done, "
        f"{len(summary['failed'])} failed; {summary['without_audio']} without an audio track\n"
        f"{summary['frames']} RGB frames and {summary['flow_frames']} flow frames in {summary['wall_seconds']} s "
        f"({summary['frames_per_second']} frames/s with {args.workers} worker(s))\n"
        "worker time per step: " + ", ".join(f"{k} {v:.1f} s ({100 * v / total:.0f} %)" for k, v in steps.items())
        + (f"; dominant: {summary['dominant_step']}" if summary["dominant_step"] else ""),
        file=sys.stderr,
    )
    for video, error in summary["failed"].items():
        print(f"  failed {video}: {error}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
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


def _data_benchmark(args: argparse.Namespace) -> int:
    import torch

    from karmma.benchmark import train_step_throughput
    from karmma.data.config import dataset_heads, load_split
    from karmma.data.inspect import load_dataset_config
    from karmma.data.throughput import benchmark_loader
    from karmma.presets import build_student, get_preset

    config = load_dataset_config(args.dataset)
    preset = get_preset(args.preset)
    modalities = [k for k in config.modalities if k in preset.student]
    shapes = {k: preset.student[k].input_shape for k in modalities}
    workers = args.workers
    subsets = [[k] for k in modalities] + [modalities] if args.each and len(modalities) > 1 else [modalities]
    samples = load_split(config, "train")
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    loading = benchmark_loader(samples, shapes, subsets, workers, args.batch_size, args.batches, args.breakdown, args.repeats, log)
    result = {"dataset": config.root, "preset": preset.name, "modalities": modalities, "input_shapes": shapes,
              "workers": workers, "threads": torch.get_num_threads(), **loading}
    whole = loading["clips_per_s"]["+".join(modalities)]
    if args.steps:
        torch.manual_seed(0)
        model = build_student(preset, dataset_heads(config), modalities)
        training = train_step_throughput(model, args.batch_size, steps=args.steps)
        result["train_clips_per_s"] = round(training, 1)
        result["input_bound"] = {w: rate < training for w, rate in whole.items()}
        log(f"{preset.name} student training step: {training:.1f} clips/s ({args.steps} steps, {torch.get_num_threads()} threads) -> "
            + "; ".join(f"{w} worker(s): " + ("training would be INPUT-BOUND" if rate < training else "loading keeps up")
                        for w, rate in whole.items()))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(args.json).with_name(Path(args.json).name + ".tmp")
        temporary.write_text(json.dumps(result, indent=2) + "\n")
        temporary.replace(args.json)
    return 0


def _train(args: argparse.Namespace) -> int:
    from karmma.configuration import load_config
    from karmma.training.config import TrainConfig
    from karmma.training.run import train

    config = load_config(TrainConfig, args.config, args.overrides)
    result = train(config)
    metrics = ", ".join(f"{k.split('/')[-1]} {v:.2f}" for k, v in sorted(result["metrics"].items()) if k.endswith("top1"))
    print(f"{config.stage}: {metrics}\nrun folder: {result['run']}", file=sys.stderr)
    return 0


def _extract(args: argparse.Namespace) -> int:
    import torch

    from karmma.configuration import load_config
    from karmma.data.config import dataset_heads
    from karmma.training.cache import distributed_rank, extract_features
    from karmma.training.config import TrainConfig
    from karmma.training.module import build_stage_model

    config = load_config(TrainConfig, args.config, args.overrides)
    if config.stage != "teacher":
        raise ValueError(f"karmma extract caches the teacher's frozen extractors: the config's stage is {config.stage!r}, not 'teacher'")
    if not config.cache.path:
        raise ValueError("set cache.path (the cache folder) in the config or as an override")
    rank, world = (args.rank, args.world_size) if args.world_size else distributed_rank()
    model = build_stage_model(config, dataset_heads(config.data))
    if torch.cuda.is_available():
        model = model.cuda(rank % torch.cuda.device_count())
    summary = extract_features(config, model, rank, world, batch_size=args.batch_size)
    for split, info in summary.items():
        print(f"{split}: wrote {info['written']} of {info['rows']} rows -> {info['file']}", file=sys.stderr)
    if args.logits:
        from karmma.training.cache import write_teacher_logits
        from karmma.training.module import load_teacher

        teacher = load_teacher(args.logits, config, dataset_heads(config.data))
        rows = write_teacher_logits(config.cache.path, teacher)
        print(f"teacher logits of {args.logits} written for {rows} cached rows", file=sys.stderr)
    return 0


def _benchmark_training(args: argparse.Namespace) -> int:
    from karmma.configuration import load_config
    from karmma.training.bench import benchmark_cache, benchmark_distillation
    from karmma.training.config import TrainConfig

    config = load_config(TrainConfig, args.config, args.overrides)
    result = benchmark_cache(config, args.cache_workers) if args.what == "cache" else benchmark_distillation(config)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _export_student(args: argparse.Namespace) -> int:
    from karmma.training.export import export_student

    path = export_student(args.checkpoint, args.out)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MB)", file=sys.stderr)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from karmma.evaluation.evaluate import EvaluationSettings, evaluate_models, load_for_evaluation, unique_names

    probabilities = tuple(float(p) for p in args.p.split(",")) if args.p else EvaluationSettings.probabilities
    settings = EvaluationSettings(
        split=args.split, probabilities=probabilities, seeds=args.seeds, batch_size=args.batch_size,
        workers=args.workers, num_clips=args.clips, num_crops=args.crops,
    )
    names = args.names.split(",") if args.names else [""] * len(args.models)
    if len(names) != len(args.models):
        raise ValueError(f"--names gives {len(names)} names for {len(args.models)} models")
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    loaded = [load_for_evaluation(m, n, args.set) for m, n in zip(args.models, names)]
    for evaluated in loaded:
        evaluated.model.to(device)
    for name, evaluated in zip(unique_names([m.name for m in loaded]), loaded):
        evaluated.name = name
    results = evaluate_models(loaded, settings)
    for name, result in results["models"].items():
        full = result["subsets"][subset_name(result["modalities"])]
        print(f"{name}: action top-1 {full['action_top1']:.2f} on the full set", file=sys.stderr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _report(args: argparse.Namespace) -> int:
    from karmma.evaluation.report import write_report

    path = write_report(args.folder)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from karmma.demo import run_demo

    report = run_demo(args.out, quick=args.quick, seed=args.seed, progress=not args.no_progress, workers=args.workers)
    print(f"done: {report}\nresults: {report.parent / 'results.json'}, student: {report.parent / 'student.safetensors'}", file=sys.stderr)
    return 0


def _dropout_study(args: argparse.Namespace) -> int:
    from karmma.configuration import load_config
    from karmma.evaluation.dropout_study import plot_dropout_study, run_dropout_study, study_table
    from karmma.training.config import TrainConfig

    config = load_config(TrainConfig, args.config, args.overrides)
    rates = [float(r) for r in args.rates.split(",")]
    study = run_dropout_study(config, rates, args.out)
    plot_dropout_study(study, Path(args.out) / "dropout_study.png")
    print(study_table(study), file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    from karmma.deploy.onnx_export import export_onnx, export_split_onnx
    from karmma.deploy.student import load_torch_student, save_safetensors

    if not (args.safetensors or args.onnx or args.onnx_split):
        raise ValueError("nothing to write: give --safetensors, --onnx and/or --onnx-split")
    model, info = load_torch_student(args.student)
    written = []
    if args.safetensors:
        written.append(save_safetensors(model, info, args.safetensors))
    if args.onnx:
        written.append(export_onnx(model, info, args.onnx))
    if args.onnx_split:
        written.append(export_split_onnx(model, info, args.onnx_split))
    for path in written:
        size = sum(p.stat().st_size for p in path.rglob("*")) if path.is_dir() else path.stat().st_size
        print(f"wrote {path} ({size / 2**20:.2f} MB)", file=sys.stderr)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from karmma.data.media import MediaError
    from karmma.deploy.recognizer import Recognizer

    try:
        recognizer = Recognizer.load(args.model, threads=args.threads, flow=args.flow, short_side=args.short_side)
        modalities = parse_subset(args.modalities) if args.modalities else None
        if args.stream:
            return _predict_stream(args, recognizer, modalities)
        if args.drop_sensors:
            raise ValueError("--drop-sensors simulates sensor failures over time: use it with --stream")
        prediction = recognizer.predict_file(args.input, modalities, args.start, args.end, args.top_k)
    except MediaError as error:  # unreadable video: one line, like the other errors
        raise ValueError(str(error)) from None
    if args.json:
        print(json.dumps({"input": args.input, "model": args.model, "backend": recognizer.backend, **prediction.to_dict()}))
    else:
        print(prediction.format_table())
    if "A" in prediction.missing and prediction.missing["A"] == "no audio track":
        print(f"note: {args.input} has no audio track; predicted without A", file=sys.stderr)
    return 0


def _predict_stream(args: argparse.Namespace, recognizer, modalities) -> int:
    from karmma.deploy.stream import SensorFailures, stream_predictions

    failures = None
    if args.drop_sensors:
        failures = SensorFailures(recognizer.file_modalities(modalities), args.drop_sensors, args.drop_seconds, args.seed)
    for window in stream_predictions(recognizer, args.input, modalities, args.window, args.hop, failures, args.top_k):
        print(json.dumps(window.to_dict()) if args.json else window.format_line(), flush=True)
    return 0


def _benchmark_deploy(args: argparse.Namespace) -> int:
    import torch

    from karmma.deploy.latency import benchmark_preset, format_table

    if args.threads:
        torch.set_num_threads(args.threads)
    modalities = parse_subset(args.modalities)
    results = {}
    for preset in args.presets:
        big = preset == "paper"
        repeats = args.repeats if args.repeats is not None else (2 if big else 30)
        warmup = args.warmup if args.warmup is not None else (1 if big else 5)
        log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
        results[preset] = benchmark_preset(preset, modalities, repeats, warmup, Path(args.video) if args.video else None, args.clip_seconds, log=log)
        print(format_table(results[preset]) + "\n")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
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

    synth = commands.add_parser("synth", help="generate SynthKitchen recordings (MP4 + EPIC-format annotations)")
    synth.add_argument("out", help="output folder")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--size", choices=["quick", "default"], default="quick")
    synth.add_argument("--layout", choices=["epic", "ssv2"], default="epic",
                       help="EPIC-KITCHENS (V, F, A) or Something-Something v2 with Something-Else boxes (V, F, D)")
    synth.add_argument("--workers", type=int, default=2)
    synth.set_defaults(run=_synth)

    prep = commands.add_parser("prepare", help="raw videos -> RGB frames, optical flow and 24 kHz audio (EPIC layout)")
    prep.add_argument("src", help="folder with the videos (searched recursively) and annotation files")
    prep.add_argument("out", help="output folder (EPIC layout)")
    prep.add_argument("--flow", choices=["tvl1", "dis"], default="tvl1", help="TV-L1 (official, slow) or DIS (fast)")
    prep.add_argument("--fps", type=float, help="frame rate of the extracted frames (default: the video's)")
    prep.add_argument("--short-side", type=int, default=256, help="resize frames to this short side (default 256)")
    prep.add_argument("--workers", type=int, default=2)
    prep.add_argument("--json", help="also write the summary as JSON")
    prep.set_defaults(run=_prepare)

    train = commands.add_parser("train", help="train a stage: unimodal, teacher, student, baseline or baseline_delta")
    train.add_argument("config", help="YAML config (see configs/)")
    train.add_argument("overrides", nargs="*", help="key.subkey=value overrides, e.g. optim.lr=3e-4 data.root=/data")
    train.set_defaults(run=_train)

    extract = commands.add_parser("extract", help="cache the teacher's frozen extractor tokens (HDF5, sharded, resumable)")
    extract.add_argument("config", help="the teacher's YAML config (with cache.path)")
    extract.add_argument("overrides", nargs="*")
    extract.add_argument("--rank", type=int, default=0, help="this shard (default: from torchrun/SLURM)")
    extract.add_argument("--world-size", type=int, default=0, help="number of shards")
    extract.add_argument("--batch-size", type=int, default=8)
    extract.add_argument("--logits", metavar="TEACHER_CKPT", help="also cache this trained teacher's logits (for students with teacher_logits=cache)")
    extract.set_defaults(run=_extract)

    btrain = commands.add_parser("benchmark-training", help="teacher cache speed-up, or distillation step cost")
    btrain.add_argument("what", choices=["cache", "distill"])
    btrain.add_argument("config", help="teacher config with cache.path (cache) or student config with teacher_logits=cache (distill)")
    btrain.add_argument("overrides", nargs="*")
    btrain.add_argument("--json", help="also write the result as JSON")
    btrain.add_argument("--cache-workers", type=int, default=0, help="loader workers reading the cache (cache benchmark)")
    btrain.set_defaults(run=_benchmark_training)

    export = commands.add_parser("export-student", help="a trained student alone, as safetensors with its config")
    export.add_argument("checkpoint", help="a student / baseline / baseline_delta checkpoint")
    export.add_argument("out", help="output .safetensors file")
    export.set_defaults(run=_export_student)

    evaluate = commands.add_parser("evaluate", help="accuracy on every modality subset and along the missing-modality sweep")
    evaluate.add_argument("models", nargs="+", help="run folders, .ckpt checkpoints or exported student .safetensors")
    evaluate.add_argument("--out", required=True, help="results JSON")
    evaluate.add_argument("--names", default="", help="comma-separated model names (default: each model's stage)")
    evaluate.add_argument("--split", default="validation", choices=("train", "validation", "test"))
    evaluate.add_argument("--p", default="", help="sweep drop probabilities (default 0.0,0.1,...,0.9)")
    evaluate.add_argument("--seeds", type=int, default=3, help="sweep seeds (mean and spread reported)")
    evaluate.add_argument("--batch-size", type=int, default=32)
    evaluate.add_argument("--workers", type=int, default=2)
    evaluate.add_argument("--clips", type=int, default=None, help="temporal views (default: the training config's)")
    evaluate.add_argument("--crops", type=int, default=None, help="spatial views: 1 or 3 (default: the training config's)")
    evaluate.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda, cuda:1, ...")
    evaluate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                          help="override the stored training config, e.g. --set data.root=/new/place")
    evaluate.set_defaults(run=_evaluate)

    report = commands.add_parser("report", help="Markdown report + figures from a folder with results.json (and benchmark.json, runs/)")
    report.add_argument("folder")
    report.set_defaults(run=_report)

    demo = commands.add_parser("demo", help="the whole method on embedded SynthKitchen data: synth, train all stages, evaluate, report")
    demo.add_argument("--out", default="karmma-demo", help="output folder (re-running reuses finished stages)")
    demo.add_argument("--quick", action="store_true", help="a smaller, shorter run (about 3 minutes on 2 CPU cores)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--workers", type=int, default=2, help="processes for synthesis/preparation and data loading")
    demo.add_argument("--no-progress", action="store_true", help="one line per stage instead of a progress bar")
    demo.set_defaults(run=_demo)

    study = commands.add_parser("dropout-study", help="train the teacher at several modality-dropout rates; accuracy per subset")
    study.add_argument("config", help="a teacher config (best with cache.path: only the fusion trains)")
    study.add_argument("overrides", nargs="*", help="key.subkey=value")
    study.add_argument("--rates", default="0,0.25,0.5,0.75")
    study.add_argument("--out", required=True, help="folder for dropout_study.json and .png")
    study.set_defaults(run=_dropout_study)

    exp = commands.add_parser("export", help="a trained student as safetensors, one ONNX graph and/or split ONNX graphs")
    exp.add_argument("student", help="a student / baseline / baseline_delta run folder or checkpoint (.ckpt) or exported .safetensors")
    exp.add_argument("--safetensors", metavar="OUT", help="write the weights with config, class names and preparation settings")
    exp.add_argument("--onnx", metavar="OUT", help="write one ONNX graph taking every modality input and the availability mask")
    exp.add_argument("--onnx-split", metavar="DIR", help="write one ONNX graph per extractor plus a fusion graph to DIR")
    exp.set_defaults(run=_export)

    pred = commands.add_parser("predict", help="predict the action in a video with a trained student")
    pred.add_argument("model", help="a .onnx graph, split-ONNX folder, .safetensors or .ckpt student")
    pred.add_argument("input", help="a video file; with --stream also - (a video stream on stdin) or a camera index")
    pred.add_argument("--modalities", help="which of V, F, A to use, e.g. V,F (default: all the model has)")
    pred.add_argument("--top-k", type=int, default=5)
    pred.add_argument("--json", action="store_true", help="machine-readable output (one JSON object per line)")
    pred.add_argument("--start", type=float, help="segment start in seconds (default: the beginning)")
    pred.add_argument("--end", type=float, help="segment end in seconds (default: the end)")
    pred.add_argument("--flow", choices=["dis", "tvl1"], help="optical flow method (default: the training data's, else dis)")
    pred.add_argument("--short-side", type=int, help="frame short side (default: the training data's)")
    pred.add_argument("--threads", type=int, help="CPU threads for the model")
    pred.add_argument("--stream", action="store_true", help="one prediction per sliding window")
    pred.add_argument("--window", type=float, default=2.0, help="window length in seconds (--stream)")
    pred.add_argument("--hop", type=float, default=1.0, help="seconds between window starts (--stream)")
    pred.add_argument("--drop-sensors", type=float, default=0.0, metavar="RATE",
                      help="simulate sensor failures (--stream): each modality is down this fraction of the time")
    pred.add_argument("--drop-seconds", type=float, default=3.0, help="mean length of a sensor failure in seconds")
    pred.add_argument("--seed", type=int, default=0, help="seed of the sensor-failure simulation")
    pred.set_defaults(run=_predict)

    bdep = commands.add_parser("benchmark-deploy", help="student latency: eager PyTorch vs ONNX Runtime per subset, with pre-processing")
    bdep.add_argument("--presets", nargs="+", choices=["tiny", "paper"], default=["tiny"])
    bdep.add_argument("--modalities", default="V,F,A", help="modalities of the student (default V,F,A)")
    bdep.add_argument("--repeats", type=int, help="timed runs per subset (default: 30 tiny, 2 paper)")
    bdep.add_argument("--warmup", type=int, help="untimed runs first (default: 5 tiny, 1 paper)")
    bdep.add_argument("--video", help="video for the pre-processing columns (default: a synthetic 16:9 clip)")
    bdep.add_argument("--clip-seconds", type=float, default=2.0, help="clip length whose pre-processing is timed")
    bdep.add_argument("--threads", type=int, help="CPU threads for torch (ONNX Runtime uses its default)")
    bdep.add_argument("--json", help="also write the results as JSON")
    bdep.set_defaults(run=_benchmark_deploy)

    data = commands.add_parser("data", help="dataset tools")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    inspect = data_commands.add_parser("inspect", help="size, classes, availability per modality and problems of a dataset")
    inspect.add_argument("dataset", help="a prepared folder or a YAML config")
    inspect.add_argument("--deep", action="store_true", help="decode every clip (finds unreadable files)")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.add_argument("--workers", type=int, default=2)
    inspect.set_defaults(run=_inspect)
    dbench = data_commands.add_parser("benchmark", help="clips/s of data loading vs the student's training step")
    dbench.add_argument("dataset", help="a prepared folder or a YAML config")
    dbench.add_argument("--preset", choices=["paper", "tiny"], default="tiny")
    dbench.add_argument("--workers", type=_worker_counts, default=[2], help="loader worker processes; several: 0,1,2 (one run each)")
    dbench.add_argument("--batch-size", type=int, default=16)
    dbench.add_argument("--batches", type=int, default=10, help="measured loader batches (after one warm-up batch)")
    dbench.add_argument("--each", action="store_true", help="also time each modality alone")
    dbench.add_argument("--breakdown", type=int, default=0, metavar="CLIPS",
                        help="also time each pipeline stage over CLIPS clips, and the bare JPEG decoders on the same files")
    dbench.add_argument("--repeats", type=int, default=1, help="report the best of this many passes of each loader figure")
    dbench.add_argument("--steps", type=int, default=10, help="measured training steps (after two warm-up steps); 0: no training step")
    dbench.add_argument("--json", help="also write the result as JSON")
    dbench.set_defaults(run=_data_benchmark)
    return parser


def main(argv: list[str] | None = None) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("lightning.pytorch").propagate = False  # Lightning prints through its own handler
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as error:  # ConfigError, CheckpointError, AnnotationError are ValueErrors
        print(f"karmma {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
