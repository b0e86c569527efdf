"""``karmma evaluate``, ``karmma report`` and ``karmma dropout-study``: scoring models (karmma.evaluation)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from karmma.cli.arguments import NON_NEGATIVE_INT, POSITIVE_INT, checkpoint_option, command_parser, number
from karmma.modalities import parse_subset


def _probabilities(text: str) -> tuple[float, ...]:
    """``"0,0.1,0.5"`` -> probabilities in [0, 1]."""
    parse = number(float, 0, 1)
    values = tuple(parse(p) for p in text.split(",") if p.strip())
    if not values:
        raise argparse.ArgumentTypeError("expected comma-separated probabilities, e.g. 0,0.25,0.5")
    return values


def add_evaluate(commands) -> None:
    from karmma.evaluation.submission import SupervisionLevels

    evaluate = command_parser(
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
    checkpoint_option(evaluate, "which checkpoint of a run folder")
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


def evaluate_command(args: argparse.Namespace) -> int:
    from karmma.devices import resolve_device
    from karmma.evaluation.evaluate import EvaluationSettings, evaluate_models, load_for_evaluation

    settings = EvaluationSettings(
        split=args.split,
        probabilities=args.p or EvaluationSettings.probabilities,
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
    given = {k: v for k, v in zip(("pt", "tl", "td"), (args.sls_pt, args.sls_tl, args.sls_td)) if v is not None}
    levels = None
    if args.submission:
        from karmma.evaluation.submission import SupervisionLevels, check_submission_path

        check_submission_path(args.submission)  # before the evaluation, not after it
        if len(args.models) != 1:
            raise ValueError(f"--submission writes one model's scores, got {len(args.models)} models")
        levels = SupervisionLevels(**given)
    elif given:
        raise ValueError("--sls-pt / --sls-tl / --sls-td describe a --submission: give one")
    if not args.out and not args.submission:
        raise ValueError("nothing to write: give --out RESULTS.json and/or --submission OUT.zip")
    device = resolve_device(args.device)
    models = [load_for_evaluation(m, n, args.set, args.checkpoint, device) for m, n in zip(args.models, names)]
    evaluate_models(
        models,
        settings,
        args.out,
        submission=args.submission,
        levels=levels,
        log=lambda line: print(line, file=sys.stderr),
    )
    return 0


def add_report(commands) -> None:
    report = command_parser(
        commands,
        "report",
        "Markdown report + figures from a folder with results.json (and benchmark.json)",
        "  karmma report karmma-demo       # rewrites karmma-demo/report.md and its figures\n",
        "Training curves are read from the run folders named in results.json.",
    )
    report.add_argument("folder", help="folder with results.json; report.md and the PNG figures are written there")


def report_command(args: argparse.Namespace) -> int:
    from karmma.evaluation.report import write_report

    path = write_report(args.folder)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def add_dropout_study(commands) -> None:
    study = command_parser(
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
    checkpoint_option(study, "which checkpoint of each teacher run to score")


def dropout_study_command(args: argparse.Namespace) -> int:
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
