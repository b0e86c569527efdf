"""``karmma train``, ``extract``, ``weights`` and ``benchmark training``: training a stage, its feature cache,
its weight files and its speed (karmma.training, karmma.weight_files)."""

from __future__ import annotations

import argparse
import json
import sys

from karmma.cli.arguments import NON_NEGATIVE_INT, POSITIVE_INT, TRAINING_BENCHMARKS, command_parser
from karmma.io import write_json
from karmma.train_config import stage_names


def add_train(commands) -> None:
    train = command_parser(
        commands,
        "train",
        f"train a stage: {', '.join(stage_names()[:-1])} or {stage_names()[-1]}",
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


def train_command(args: argparse.Namespace) -> int:
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


def add_extract(commands) -> None:
    extract = command_parser(
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


def extract_command(args: argparse.Namespace) -> int:
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


def add_weights(commands) -> None:
    weights = command_parser(
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
        "the network. Exit status 1 while a file a run reads is missing (after 'fetch': one\n"
        "that no one publishes), so a script can check before a long run.",
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


def weights_command(args: argparse.Namespace) -> int:
    from karmma.configs import shipped_configs
    from karmma.configuration import load_config
    from karmma.train_config import TrainConfig
    from karmma.weight_files import (
        config_display_name,
        config_weight_files,
        fetch_weight_files,
        missing_files,
        weights_table,
    )

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
        # exit 1 when a run of a listed config would stop for a missing file: a check for scripts
        missing = sum(len(missing_files(files)) for _, files in listed)
        if missing:
            print(f"{missing} file(s) a run reads are missing or not set (above)", file=sys.stderr)
        return 1 if missing else 0
    unpublished = fetch_weight_files(listed[0][1], args.base_url, report=lambda line: print(line, file=sys.stderr))
    if unpublished:
        print(f"{len(unpublished)} file(s) above no one publishes: make them as said, then re-run", file=sys.stderr)
    return 1 if unpublished else 0


def add_benchmark_training(measurements) -> None:
    btrain = command_parser(
        measurements,
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


def benchmark_training_command(args: argparse.Namespace) -> int:
    from karmma.configuration import load_config
    from karmma.train_config import TrainConfig
    from karmma.training.bench import benchmark_training

    result = benchmark_training(args.what, load_config(TrainConfig, args.config, args.overrides), args.cache_workers)
    print(json.dumps(result, indent=2))
    if args.json:
        write_json(args.json, result)
    return 0
