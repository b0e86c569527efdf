"""``karmma demo``: the whole method on the embedded SynthKitchen dataset, on a laptop CPU.

The paper's regime (docs/method.md, "Training stages"), per seed:

1. synthesise two disjoint SynthKitchen sets (MP4 + EPIC-format annotations):
   one to pre-train extractors, one for everything else, whose participants
   are split into train, validation (checkpoint selection) and test (every
   reported number);
2. prepare both (frames, DIS flow, 24 kHz audio);
3. pre-train extractors of both sizes on the first set, one unimodal run per
   modality and size: the teacher's (frozen in the teacher) and the student's
   (where the student and all three baselines start);
4. cache the frozen extractors' tokens, train the teacher from the cache, and
   cache its logits for distillation;
5. train the Baseline (the paper's), the Masked Baseline (ours), the Baseline
   w/ δ and distil the student (on the views its teacher's logits are cached
   for, decoded once into memory: ``cache.decode_once``), all from the same
   pre-trained extractors;
6. evaluate all five on the test participants, on every modality subset and
   along the dropout sweep.

Which models steps 5 and 6 train and compare, and in what order, is the stage
table :data:`karmma.train_config.STAGE_SPECS` (its ``demo`` records).

Then, once: benchmark teacher and student resources, aggregate the seeds
(``--seeds``: means, 95 % intervals, a verdict per claim), export the student
and write the report.

Stage output goes to ``OUT/logs/<stage>.log``; the terminal shows one
progress bar for the whole pipeline with an estimate of the time left.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from karmma.data.synth import SynthSize
from karmma.io import write_json
from karmma.modalities import VIDEO_MODALITIES
from karmma.train_config import STAGE_SPECS, stage_names, stage_spec

#: the models each seed's pipeline trains and compares, in the stage table's order
DEMO_MODELS = tuple(spec.name for spec in STAGE_SPECS if spec.demo)
#: those of the student's architecture: one recipe, trained after the teacher (``--tune`` tunes them)
STUDENT_SIZED = tuple(name for name in DEMO_MODELS if stage_spec(name).model == "student")
#: the stages ``--tune`` can sweep: the teacher (trained from its cached features) and the student-sized models
TUNABLE = ("teacher", *STUDENT_SIZED)
#: part of a demo folder's identity: a folder written by a demo with other stages (or other seeds for its
#: training steps: version 8 gave each step its own seed slot; version 9 normalises the teacher's audio
#: input; version 10 trains KARMMA_S and the Baseline w/ δ with modality dropout 0.1, not 0.3; version 11
#: records each finished stage's fingerprint in stages.json; version 12 pre-trains RGB at lr 0.001 and audio at
#: 0.002 for 8 epochs) is not reused
DEMO_VERSION = 12


@dataclass(frozen=True)
class DemoPlan:
    """Sizes and epochs of one demo flavour. ``seconds`` are rough per-stage costs on a
    2-core CPU, used only to weight the progress bar."""

    data: SynthSize  # the fusion / distillation recordings: train, validation and test participants
    pretrain_data: SynthSize  # disjoint recordings that pre-train the extractors of both sizes
    # pre-training epochs per modality, for the extractors of both sizes (the teacher's, and the
    # student-sized ones every student-sized model starts from)
    unimodal_epochs: dict[str, int]
    # pre-training learning rate per modality (both sizes): RGB learns fastest at a higher rate than flow
    unimodal_lr: dict[str, float]
    teacher_epochs: int
    student_epochs: int  # student and the three baselines
    sweep_seeds: int
    train_views: int = 4  # augmented views per training clip: the teacher's cache and the decoded views
    short_side: int = 64  # pixels of the prepared frames' and flow's short side (karmma prepare --short-side)
    overrides: tuple[str, ...] = ()  # applied to every training stage
    seconds: dict[str, float] = field(default_factory=dict)


PLANS = {
    "quick": DemoPlan(
        # 120 / 40 / 80 fusion clips (train / validation / test), 300 / 20 pre-training clips: what about three
        # minutes on a 2-core CPU allow with clips of 4 x 32 x 32 (overrides, below)
        data=SynthSize(
            participants=12,
            validation_participants=2,
            test_participants=4,
            videos_per_participant=2,
            actions_per_video=10,
        ),
        pretrain_data=SynthSize(
            participants=16, validation_participants=1, videos_per_participant=2, actions_per_video=10
        ),
        # RGB carries most of what a quick run can learn: it gets the epochs the three minutes leave (as in the
        # default plan); audio stays at chance in 2 epochs (and stayed in 4, in a candidate with 220 pre-training
        # clips). Teacher lr 0.001 kept on validation (seeds 0-2, mean best-epoch action top-1 32.5 / 30.8 /
        # 30.8 % at 0.001 / 0.003 / 0.01; 40 clips a seed)
        unimodal_epochs={"V": 32, "F": 8, "A": 2},
        unimodal_lr={"V": 0.001, "F": 0.001, "A": 0.002},
        teacher_epochs=40,
        student_epochs=8,
        sweep_seeds=2,
        train_views=2,
        # 4 frames of 32 x 32, not the default's 8 x 64 x 64: on the default demo's pre-training recordings
        # (seed 0, 8 epochs, validation action top-1 of 60 clips, wall time with start-up) the student-sized RGB
        # extractor learned more per epoch in less time: 8 x 64 x 64 18 % in 19 s, 8 x 32 x 32 27 % in
        # 13 s, 4 x 32 x 32 28 % in 11 s (flow loses verb with 4 frames, 58 -> 47 %). Frames prepared at 32
        # pixels, not 64: writing 4x the JPEGs made `prepare` wait on the disk (15-39 s a seed). Session 16,
        # docs/evaluation.md
        overrides=("clip.size=32", "clip.frames=4"),
        short_side=32,
        seconds={  # karmma demo --quick on a quiet 2-core CPU (session 16: 162 s wall)
            "synth": 17,
            "prepare": 15,
            "unimodal": 0.9,  # per epoch of a teacher-sized extractor
            "extract": 2.7,
            "teacher": 14,
            "train": 6.8,
            "evaluate": 5,
            "benchmark": 3.2,
            "report": 1.1,
        },
    ),
    "default": DemoPlan(
        data=SynthSize(
            participants=32,
            validation_participants=4,
            test_participants=20,
            videos_per_participant=3,
            actions_per_video=10,
        ),
        # Pre-training data outnumber the fusion set's, as Kinetics does EPIC's: on 144 clips (20 epochs) the
        # student-sized flow extractor reached 58 % verb top-1 on validation, where 240 clips gave 78 % in 12.
        # More clips for fewer epochs costs about the same steps; every stage is compute-bound.
        pretrain_data=SynthSize(
            participants=16, validation_participants=2, videos_per_participant=3, actions_per_video=10
        ),
        # Chosen on the pre-training recordings' own validation participants (docs/evaluation.md, "Knobs"):
        # V and F underfit (training CE = validation CE) and keep learning with more epochs (seed 0, best
        # validation CE teacher-sized V 2.70 / 1.84 and student-sized V 2.08 / 1.67 at 40 / 80 epochs,
        # F 3.89 / 3.46 and 3.64 / 3.27 at 12 / 24); V gets 64 and F 24, what 15 minutes a seed leave on a
        # 2-core CPU (4.7 s an epoch for the two V extractors). A: 4 since its input is normalised
        # (validation cross-entropy flat from epoch 3 of 6, seed 31) at lr 0.0005; 8 at 0.002 (seeds 0 and 1, best
        # validation CE of both sizes 0.03-0.21 lower than at 4 epochs, for about 40 s a seed).
        unimodal_epochs={"V": 64, "F": 24, "A": 8},
        # chosen on the pre-training recordings' validation participants at the shipped epochs (best validation
        # CE, seeds 0 and 1): V at 0.001 (teacher-sized 1.77 / 2.17 / 3.89 at lr 0.001 / 0.002 / 0.004 on
        # seed 0; at 8 epochs 0.002 had won, seed 31); F keeps 0.0005 (teacher-sized 3.46 / 3.90 / 4.26 at
        # 0.0005 / 0.001 / 0.002, student-sized 3.27 / 3.27 / 3.30); A 0.002 (lower than 0.0005 for both
        # sizes on both seeds). docs/evaluation.md, "Knobs"
        unimodal_lr={"V": 0.001, "F": 0.0005, "A": 0.002},
        teacher_epochs=40,
        # the four student-sized models were still improving at 12 (seed 31's validation participants, best
        # epoch's action top-1: KARMMA_S 22 % in 12 epochs, 36 % in 24 at epoch 17; docs/evaluation.md, "Knobs")
        student_epochs=24,
        sweep_seeds=3,
        seconds={  # karmma demo --seeds 0,1,2 on a quiet 2-core CPU (session 12; docs/evaluation.md's stage table)
            "synth": 44,
            "prepare": 38,
            "unimodal": 3.0,  # per epoch of a teacher-sized RGB or flow extractor (V: 190 s over 64 epochs)
            "extract": 22,
            "teacher": 24,
            "train": 50,
            "evaluate": 48,
            "benchmark": 3,
            "report": 2,
        },
    ),
}


#: run-name prefix of the extractors pre-trained for each model size: ``unimodal_V``, ``unimodal_student_V``
UNIMODAL_RUN_PREFIXES = {"teacher": "unimodal_", "student": "unimodal_student_"}


def main_data(prepared_main: Path) -> list[str]:
    """The overrides that point a run at the main recordings, test split included."""
    return [f"data.root={prepared_main}", "data.test=EPIC_100_test.csv"]


#: where ``karmma demo`` writes without ``--out``, per flavour: a folder holds one flavour (run_demo refuses
#: the other), so the quick demo must not default to the default demo's folder
DEMO_FOLDERS = {"quick": "karmma-demo-quick", "default": "karmma-demo"}


def default_demo_folder(quick: bool) -> str:
    """The output folder of ``karmma demo [--quick]`` without ``--out``."""
    return DEMO_FOLDERS["quick" if quick else "default"]


@dataclass
class Stage:
    name: str
    seconds: float
    run: Callable[[], None]
    refresh: bool = False  # run again whenever an earlier stage ran (the report: new tuning runs)
    # what the stage's output depends on: a hash of its settings (a training run's resolved config) and of
    # the fingerprints of the stages it reads. A finished stage whose fingerprint differs runs again.
    fingerprint: str = ""
    output: Path | None = None  # moved aside (nothing is deleted) before the stage runs again with other settings
    root: Path | None = None  # the seed folder ``output`` lies in


def stage_fingerprint(settings, needs: list[Stage], root: Path) -> str:
    """A short hash of ``settings`` (JSON-able) and of the fingerprints of the stages ``needs``. Paths under
    the seed's folder ``root`` (absolute, as :func:`run_demo` makes it) count relative to it, so a moved or
    copied folder keeps its fingerprints."""
    text = json.dumps(
        {"settings": settings, "needs": [stage.fingerprint for stage in needs]}, sort_keys=True, default=str
    )
    return hashlib.sha256(text.replace(f"{root}{os.sep}", f"<seed folder>{os.sep}").encode()).hexdigest()[:16]


def move_to_replaced(path: Path, root: Path) -> Path | None:
    """Move ``path`` (a stage's earlier output, under ``root``) to ``root/replaced/<time>/<the same relative
    path>``, out of the way of the stages that read it; None if it does not exist. Nothing is deleted."""
    if not path.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = root / "replaced" / stamp / path.relative_to(root)
    for n in itertools.count(2):  # two moves of one path within a second
        if not target.exists():
            break
        target = root / "replaced" / f"{stamp}-{n}" / path.relative_to(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    path.rename(target)
    return target


class DemoError(ValueError):
    """A demo stage failed or the output folder holds another demo; the message names the log."""


@contextlib.contextmanager
def _output_to(log_path: Path):
    """Send everything a stage prints (stdout, stderr, Lightning's logging) to its log file."""
    import lightning.pytorch  # noqa: F401  (its log handler must bind to the real stdout, not to a stage's log)

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        handlers = [
            h
            for name in ("lightning.pytorch", "lightning.fabric", "")
            for h in logging.getLogger(name).handlers
            if type(h) is logging.StreamHandler
        ]
        streams = [h.stream for h in handlers]
        for handler in handlers:
            handler.stream = log
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield
        finally:
            for handler, stream in zip(handlers, streams):
                handler.stream = stream


def _stage_config(config_name: str, overrides: list[str]):
    """A shipped SynthKitchen config with the demo's overrides."""
    from karmma.configs import config_path
    from karmma.configuration import load_config
    from karmma.train_config import TrainConfig

    return load_config(TrainConfig, config_path("synthkitchen", config_name), overrides)


def _train_stage(config_name: str, overrides: list[str]) -> dict:
    from karmma.training.run import train

    return train(_stage_config(config_name, overrides))


def stage_overrides(root: Path, plan: DemoPlan, seed: int, workers: int = 2) -> dict[str, tuple[str, list[str]]]:
    """Every training stage of one seed's pipeline: ``{run name: (shipped config, the demo's overrides)}``.

    The four student-sized models share one recipe (data, views, epochs, learning rates,
    initialisation); the keys that define each comparison come from their shipped configs
    (tests/test_demo.py checks that the resolved pairs differ only there)."""
    prepared, runs, cache = root / "prepared", root / "runs", root / "cache"
    common = [
        f"trainer.runs={runs}",
        f"trainer.seed={seed}",
        f"trainer.workers={workers}",
        "trainer.progress=false",
        f"cache.train_views={plan.train_views}",
        *plan.overrides,
    ]
    data = main_data(prepared / "main")
    configs = {}
    for size, prefix in UNIMODAL_RUN_PREFIXES.items():
        for m in VIDEO_MODALITIES:
            configs[f"{prefix}{m}"] = (
                "unimodal",
                [
                    f"data.root={prepared / 'pretrain'}",
                    f"unimodal_modality={m}",
                    f"unimodal_size={size}",
                    f"trainer.name={prefix}{m}",
                    *common,
                    f"optim.epochs={plan.unimodal_epochs[m]}",
                    f"optim.lr={plan.unimodal_lr[m]}",
                ],
            )
    extractors = [f"extractors.{m}={runs / f'unimodal_{m}' / 'checkpoints' / 'best.ckpt'}" for m in VIDEO_MODALITIES]
    configs["teacher"] = (
        "teacher",
        [f"cache.path={cache}", *extractors, *data, *common, f"optim.epochs={plan.teacher_epochs}"],
    )
    # the paper's regime: every student-sized model starts from the same pre-trained extractors
    student_init = [
        f"pretrained.{m}={runs / f'unimodal_student_{m}' / 'checkpoints' / 'best.ckpt'}" for m in VIDEO_MODALITIES
    ]
    shared = [*data, *common, *student_init, f"optim.epochs={plan.student_epochs}"]
    # the student reads its teacher's logits for the very views all four decode once (cache.decode_once)
    teacher = [
        f"teacher={runs / 'teacher' / 'checkpoints' / 'best.ckpt'}",
        "teacher_logits=cache",
        f"cache.path={cache}",
    ]
    for name in STUDENT_SIZED:
        configs[name] = (name, [*shared, *(teacher if stage_spec(name).distillation else [])])
    return configs


def demo_stages(
    root: Path,
    plan: DemoPlan,
    seed: int,
    workers: int = 2,
    out: Path | None = None,
    knobs: tuple[Knob, ...] = (),
    tune_by: str = "best-epoch",
) -> list[Stage]:
    """One seed's pipeline as a list of stages; each writes only under ``root`` (``out``, the
    demo folder, is what results.json's paths are relative to). ``knobs`` add one training
    run per value, scored on validation only (``tuning.json``) by ``tune_by`` (:data:`TUNING_METRICS`)."""
    from karmma.data.prepare import PrepareSettings, prepare
    from karmma.data.synth import synthesize

    out = out or root
    raw, prepared, runs = root / "recordings", root / "prepared", root / "runs"
    configs = stage_overrides(root, plan, seed, workers)
    teacher_ckpt = runs / "teacher" / "checkpoints" / "best.ckpt"
    cache = root / "cache"  # the teacher's frozen tokens for every view, then its logits (extract, teacher)
    temperature = _stage_config(*configs["student"]).loss.temperature  # at which the report reads the teacher's logits
    settings = PrepareSettings(flow="dis", short_side=plan.short_side)

    def synth_stage():
        synthesize(raw / "pretrain", seed=seed + 100, size=plan.pretrain_data, workers=workers, progress=False)
        synthesize(raw / "main", seed=seed, size=plan.data, workers=workers, progress=False)

    def prepare_stage():
        for name in ("pretrain", "main"):
            summary = prepare(raw / name, prepared / name, settings, workers=workers, progress=False)
            if summary.get("failed"):
                raise DemoError(f"preparing {raw / name} failed for {summary['failed']} video(s); see {root / 'logs'}")

    def training_stage(run: tuple[str, list[str]]):
        return lambda: _train_stage(*run)

    def extract_stage():
        from karmma.training.cache import extract_teacher_cache

        extract_teacher_cache(_stage_config(*configs["teacher"]), rank=0, world_size=1, progress=False)

    def teacher_stage():
        from karmma.training.cache import cache_teacher_logits
        from karmma.training.run import train

        config = _stage_config(*configs["teacher"])
        train(config)
        cache_teacher_logits(config, teacher_ckpt)

    def tuning_value(name: str, key: str, value: str) -> tuple[str, list[str]]:
        """The training run of one value of a knob of the stage ``name`` (the teacher or a student-sized one)."""
        config_name, overrides = configs[name]
        return config_name, [*overrides, f"{key}={value}", f"trainer.name={tuning_run(name, key, value)}"]

    def evaluate_stage():
        from karmma.data.synth_world import information_ceilings
        from karmma.evaluation.evaluate import EvaluationSettings, evaluate_models, load_for_evaluation
        from karmma.training.cache import teacher_logit_statistics

        # checkpoints were chosen on validation; every reported number is on the test participants
        settings = EvaluationSettings(split="test", seeds=plan.sweep_seeds, workers=workers, progress=False)
        extra = {
            # what the data allows at best, per subset, computed from SynthKitchen's generative model
            "ceilings": information_ceilings(VIDEO_MODALITIES),
            # what the student distils: the teacher's accuracy and soft-label entropy at the student's temperature
            "teacher_logits": teacher_logit_statistics(cache, temperature),
            "extractors": evaluate_extractors(runs, prepared / "main", workers),
        }
        models = [load_for_evaluation(runs / name, name) for name in DEMO_MODELS]
        # sources relative to the demo folder: the same results.json for any --out
        evaluate_models(models, settings, root / "results.json", extra=extra, relative_to=out)

    def tuning_stage():
        sweep = (plan.sweep_seeds, workers) if tune_by == "sweep" else None
        write_json(runs / "tuning.json", tuning_results(runs, knobs, own, sweep))

    s = plan.seconds
    stages: dict[str, Stage] = {}

    def add(name: str, seconds: float, run: Callable[[], None], settings, needs=(), output: Path | None = None):
        fingerprint = stage_fingerprint(settings, [stages[n] for n in needs], root)
        stages[name] = Stage(name, seconds, run, fingerprint=fingerprint, output=output, root=root)

    def run_settings(config_name: str, overrides: list[str]) -> dict:
        """A training run's resolved config, less what does not change its result (workers, progress bars)."""
        from karmma.configuration import flatten, to_dict
        from karmma.training.run import RESUMABLE_CHANGES

        config = flatten(to_dict(_stage_config(config_name, overrides)))
        return {key: value for key, value in config.items() if key not in RESUMABLE_CHANGES}

    def student_needs(name: str) -> list[str]:
        return [f"unimodal_student_{m}" for m in VIDEO_MODALITIES] + (
            ["teacher"] if stage_spec(name).distillation else []
        )

    def tuned_needs(name: str) -> list[str]:  # what a tuning run of the stage ``name`` reads
        return ["extract"] if name == "teacher" else student_needs(name)

    sizes = {"pretrain": dataclasses.asdict(plan.pretrain_data), "main": dataclasses.asdict(plan.data)}
    add("synth", s["synth"], synth_stage, {**sizes, "seed": seed}, output=raw)
    add("prepare", s["prepare"], prepare_stage, dataclasses.asdict(settings), ["synth"], output=prepared)
    for prefix, share in (("unimodal_", 1), ("unimodal_student_", 0.5)):  # the student-sized ones cost about half
        for m in VIDEO_MODALITIES:
            name = f"{prefix}{m}"
            seconds = s["unimodal"] * plan.unimodal_epochs[m] * share
            add(name, seconds, training_stage(configs[name]), run_settings(*configs[name]), ["prepare"], runs / name)
    teacher_extractors = [f"unimodal_{m}" for m in VIDEO_MODALITIES]
    teacher = run_settings(*configs["teacher"])  # the cache is extracted with the teacher's config
    add("extract", s["extract"], extract_stage, teacher, teacher_extractors, cache)
    add("teacher", s["teacher"], teacher_stage, teacher, ["extract"], runs / "teacher")
    for name in STUDENT_SIZED:
        run = configs[name]
        add(name, s["train"], training_stage(run), run_settings(*run), student_needs(name), runs / name)
    evaluated = [*DEMO_MODELS, *(f"{p}{m}" for p in UNIMODAL_RUN_PREFIXES.values() for m in VIDEO_MODALITIES)]
    evaluation = {
        "split": "test",
        "sweep seeds": plan.sweep_seeds,
        "models": list(DEMO_MODELS),
        "logits at T": temperature,
    }
    add("evaluate", s["evaluate"], evaluate_stage, evaluation, evaluated, root / "results.json")

    # a value the stage already trains with is its own run: scored from it, not trained again
    own = {knob: own_value(knob, _stage_config(*configs[knob.stage])) for knob in knobs}
    tuned = []
    for knob in knobs:
        for value in knob.values:
            if value != own[knob]:
                run_name = tuning_run(knob.stage, knob.key, value)
                run = tuning_value(knob.stage, knob.key, value)
                tuned.append(f"tune/{run_name}")
                needs = tuned_needs(knob.stage)
                add(tuned[-1], s["train"], training_stage(run), run_settings(*run), needs, runs / run_name)
    if knobs:
        scored = [*tuned, *(knob.stage for knob in knobs)]
        # one stage whatever the knobs (they are in its fingerprint): tuning.json holds the latest --tune's
        add("tune", 1, tuning_stage, {"knobs": [k.text for k in knobs], "by": tune_by}, scored)
    return list(stages.values())


def evaluate_extractors(runs: Path, main: Path, workers: int = 2) -> dict:
    """``{size: {modality: metrics}}`` of every pre-trained extractor on the test participants of the
    prepared recordings ``main`` (each was pre-trained on other recordings): its unimodal run (the
    extractor with the small fusion and heads it was pre-trained with), on the clips that have its
    modality, averaged over the evaluation views like every model. What an extractor reaches
    against its modality's information ceiling is what the fusion models can build on (the
    report compares the two)."""
    from karmma.evaluation.evaluate import EvaluationSettings, evaluate_model, load_for_evaluation

    settings = EvaluationSettings(split="test", probabilities=(0.0,), seeds=1, workers=workers, progress=False)
    extractors: dict[str, dict] = {}
    for size, prefix in UNIMODAL_RUN_PREFIXES.items():
        for m in VIDEO_MODALITIES:
            extractor = load_for_evaluation(runs / f"{prefix}{m}", f"{prefix}{m}", overrides=main_data(main))
            result = evaluate_model(extractor, settings)
            extractors.setdefault(size, {})[m] = result["subsets"][m]
    return extractors


#: config sections the demo sets itself in every run (data, run folders, seed, caches, initial
#: weights): a tuned value there would not tune the model, and could break the pipeline
DEMO_SECTIONS = ("data", "trainer", "cache", "pretrained", "extractors")
#: keys only a distilling stage reads
DISTILLATION_KEYS = ("loss.distill_weight", "loss.temperature")


@dataclass(frozen=True)
class Knob:
    """A hyper-parameter swept on validation (``--tune``): ``[STAGE:]KEY=V1,V2,...``.

    Checked when made, so that a bad knob fails before the demo's first stage."""

    stage: str
    key: str
    values: tuple[str, ...]
    written: str = ""  # as the user wrote it, for messages (default: :attr:`text`)

    @property
    def text(self) -> str:
        return f"{self.stage}:{self.key}={','.join(self.values)}"

    def __post_init__(self):
        where = f"--tune {self.written or self.text!r}"
        if self.stage not in TUNABLE:
            raise ValueError(f"{where}: the stage must be one of {', '.join(TUNABLE)}, got {self.stage!r}")
        if "." not in self.key or len(self.values) < 2:
            raise ValueError(
                f"{where}: expected [STAGE:]SECTION.KEY=V1,V2,... with at least two distinct values, "
                "e.g. loss.distill_weight=0,0.3,1"
            )
        if self.key.split(".")[0] in DEMO_SECTIONS:
            raise ValueError(
                f"{where}: {self.key} is set by the demo itself (data, run folders, seed, caches and initial "
                f"weights: sections {', '.join(DEMO_SECTIONS)}); tune a model or training setting, e.g. loss.distill_weight"
            )
        if self.key in DISTILLATION_KEYS and not stage_spec(self.stage).distillation:
            raise ValueError(f"{where}: {self.stage} is trained without distillation, so {self.key} changes nothing")
        if self.stage == "teacher" and self.key.split(".")[0] == "clip":
            raise ValueError(
                f"{where}: the teacher trains on its cached features, whose views were extracted once with its "
                "clip settings; tune its loss or optim"
            )
        settings: dict = {}  # each value as the config reads it: 0.3 and 0.30 are one value
        for value in self.values:  # an unknown key or a bad value fails now, not after the pipeline
            try:
                config = _stage_config(
                    self.stage, [f"{self.key}={value}", f"trainer.name={tuning_run(self.stage, self.key, value)}"]
                )
            except ValueError as error:
                raise ValueError(f"{where}: {error}") from None
            setting = config_setting(config, self.key)
            if repr(setting) in settings:
                raise ValueError(
                    f"{where}: {settings[repr(setting)]!r} and {value!r} are the same value of {self.key} ({setting!r})"
                )
            settings[repr(setting)] = value


def config_setting(config, key: str):
    """The value of a dotted ``key`` (``loss.distill_weight``) in a resolved config, as a plain value."""
    from karmma.configuration import to_dict

    setting = to_dict(config)
    for part in key.split("."):
        setting = setting[part]
    return setting


def parse_knob(text: str) -> Knob:
    """``"loss.distill_weight=0,0.3,1"`` (the student's) or ``"baseline:loss.modality_dropout=0.3,0.5"``."""
    head, _, listed = text.partition("=")
    stage, _, key = head.rpartition(":")
    values = tuple(v.strip() for v in listed.split(",") if v.strip())
    return Knob(stage or "student", key, values, written=text)


def tuning_run(stage: str, key: str, value: str) -> str:
    """Run folder name of one tuning value: ``tune_student_loss.distill_weight=0.3``."""
    return f"tune_{stage}_{key}={value}"


def own_value(knob: Knob, config) -> str | None:
    """The value of ``knob`` (as written) that the stage's own ``config`` already has, if any."""
    setting = config_setting(config, knob.key)
    for value in knob.values:
        if config_setting(_stage_config(knob.stage, [f"{knob.key}={value}"]), knob.key) == setting:
            return value
    return None


#: what ``--tune-by`` scores each value by (all on the validation participants): its key in tuning.json, and in words
TUNING_METRICS = {
    "best-epoch": ("val/action_top1", "the best epoch's validation action top-1, the one checkpoint selection uses"),
    "sweep": (
        "val/sweep_action_top1",
        "validation action top-1 of the selected checkpoint averaged over the dropout sweep (p = 0, 0.1, ... 0.9), "
        "for knobs of robustness such as the dropout rate",
    ),
}


def tuning_results(
    runs: Path, knobs: tuple[Knob, ...], own: dict[Knob, str | None] | None = None, sweep: tuple[int, int] | None = None
) -> dict:
    """``{knob text: {value: metrics}}``: the best validation metrics of every tuning run (what
    checkpoint selection sees; no test clip). ``own[knob]``, the value the stage trains with, is
    read from the stage's own run. ``sweep`` (sweep seeds, workers): each run's selected checkpoint
    is also scored along the dropout sweep on validation (``val/sweep_action_top1``)."""
    own = own or {}

    def run(knob: Knob, value: str) -> Path:
        return runs / (knob.stage if value == own.get(knob) else tuning_run(knob.stage, knob.key, value))

    def metrics(folder: Path) -> dict:
        scores = json.loads((folder / "result.json").read_text())["best_checkpoint"]["metrics"]
        if sweep:
            from karmma.evaluation.evaluate import EvaluationSettings, evaluate_model, load_for_evaluation

            settings = EvaluationSettings(split="validation", seeds=sweep[0], workers=sweep[1], progress=False)
            rates = evaluate_model(load_for_evaluation(folder), settings)["sweep"].values()
            scores = {**scores, "val/sweep_action_top1": sum(r["action_top1"] for r in rates) / len(rates)}
        return scores

    return {knob.text: {value: metrics(run(knob, value)) for value in knob.values} for knob in knobs}


def aggregate_tuning(per_seed: dict[int, dict], tune_by: str = "best-epoch") -> dict:
    """Tuning results of every seed -> ``{"split", "by", "metric", "seeds", "knobs": {knob: {value: {KEY:
    mean over seeds, "per_seed": {seed: value}}}}}`` (KEY: ``tune_by``'s, :data:`TUNING_METRICS`), the value
    with the best mean marked ``chosen``."""
    key, described = TUNING_METRICS[tune_by]
    knobs = {}
    for knob in next(iter(per_seed.values())):
        values = {}
        for value in per_seed[min(per_seed)][knob]:
            scores = {str(seed): results[knob][value][key] for seed, results in per_seed.items()}
            values[value] = {key: round(sum(scores.values()) / len(scores), 2), "per_seed": scores}
        chosen = max(values, key=lambda v: values[v][key])
        knobs[knob] = {"values": values, "chosen": chosen}
    return {
        "split": "validation",
        "by": tune_by,
        "key": key,
        "metric": described,
        "seeds": sorted(per_seed),
        "knobs": knobs,
    }


def final_stages(
    out: Path, roots: dict[int, Path], plan: DemoPlan, tuned: bool = False, tune_by: str = "best-epoch"
) -> list[Stage]:
    """After every seed: the resource benchmark, results over seeds, the exported student, the report."""
    benchmark = {"preset": "tiny", "models": ["teacher", "student"], "repeats": 10, "warmup": 2}

    def benchmark_stage():
        from karmma.benchmark import benchmark_preset_resources

        results = benchmark_preset_resources(
            benchmark["preset"], list(VIDEO_MODALITIES), benchmark["models"], benchmark["repeats"], benchmark["warmup"]
        )
        write_json(out / "benchmark.json", results)

    def report_stage():
        from karmma.artifacts import load_model, save_student
        from karmma.evaluation.claims import aggregate_seeds
        from karmma.evaluation.report import write_report

        first = roots[min(roots)]
        if len(roots) > 1:
            per_seed = {seed: json.loads((root / "results.json").read_text()) for seed, root in roots.items()}
            write_json(out / "results.json", aggregate_seeds(per_seed))
        if tuned:
            per_seed = {seed: json.loads((root / "runs" / "tuning.json").read_text()) for seed, root in roots.items()}
            write_json(out / "tuning.json", aggregate_tuning(per_seed, tune_by))
        else:  # an earlier --tune's table, whose runs may not match what has run since: not in this report
            move_to_replaced(out / "tuning.json", out)
        student, info = load_model(
            first / "runs" / "student" / "checkpoints" / "best.ckpt", stages=stage_names("student")
        )
        save_student(student, info, out / "student.safetensors")
        write_report(out)

    s = plan.seconds
    return [
        Stage("benchmark", s["benchmark"], benchmark_stage, fingerprint=stage_fingerprint(benchmark, [], out)),
        Stage("report", s["report"], report_stage, refresh=True),
    ]


def identity_differences(previous: dict, identity: dict, shown: int = 4) -> list[str]:
    """The dotted keys in which two demo folders' ``demo.json`` differ (``plan.unimodal_epochs.V``), at
    most ``shown`` of them and a count of the rest: a plan that changed between karmma versions
    otherwise reads as the same flavour, seeds and version."""
    from karmma.configuration import flatten

    old, new = flatten(previous), flatten(identity)
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    return keys[:shown] + ([f"{len(keys) - shown} more"] if len(keys) > shown else [])


def run_demo(
    out: str | Path,
    quick: bool = False,
    seeds: tuple[int, ...] = (0,),
    progress: bool = True,
    workers: int = 2,
    tune: tuple[Knob, ...] = (),
    tune_by: str = "best-epoch",
) -> Path:
    """Run (or finish) the demo under ``out`` for every seed; returns the report path.

    One seed writes everything into ``out``; several write one pipeline each into
    ``out/seed_<s>/`` and ``out/results.json`` holds the results over seeds
    (means, 95 % intervals, per-seed results and the claims' verdicts). ``tune``
    adds, per seed, one training run per value of each knob, scored on
    validation only, by ``tune_by`` (:data:`TUNING_METRICS`); ``out/tuning.json`` holds them (mean over seeds)."""
    from karmma.configuration import MAX_SEED
    from karmma.training.run import RunFolderError, RunLock

    out = Path(out).resolve()  # stage fingerprints count paths relative to it
    seeds = tuple(dict.fromkeys(seeds))
    if not seeds:
        raise DemoError("--seeds needs at least one seed")
    for seed in seeds:  # every value is checked before the first stage, not minutes into the pipeline
        if not (isinstance(seed, int) and 0 <= seed <= MAX_SEED):
            raise DemoError(f"--seeds: seed {seed} is outside 0..{MAX_SEED}")
    if workers < 1:
        raise DemoError(f"--workers must be >= 1, got {workers}")
    if tune_by not in TUNING_METRICS:
        raise DemoError(f"--tune-by must be one of {', '.join(TUNING_METRICS)}, got {tune_by!r}")
    if tune_by != "best-epoch" and not tune:
        raise DemoError(f"--tune-by {tune_by} scores --tune's runs: give at least one --tune")
    tuned = [f"{knob.stage}:{knob.key}" for knob in tune]
    twice = next((name for name in tuned if tuned.count(name) > 1), None)
    if twice:
        raise DemoError(f"--tune: {twice} is tuned twice; list all its values in one --tune")
    flavour = "quick" if quick else "default"
    plan = PLANS[flavour]
    settings = {k: v for k, v in dataclasses.asdict(plan).items() if k != "seconds"}  # progress weights do not matter
    identity = json.loads(
        json.dumps({"version": DEMO_VERSION, "flavour": flavour, "seeds": list(seeds), "plan": settings})
    )
    out.mkdir(parents=True, exist_ok=True)
    # one process writes a demo folder: a second `karmma demo` on it would interleave its stages and results
    try:
        lock = RunLock(out, what="demo folder", advice="wait for it to finish, or use another --out").acquire()
    except RunFolderError as error:
        raise DemoError(str(error)) from None
    try:
        return _run_stages(out, identity, plan, seeds, workers, tune, tune_by, progress)
    finally:
        lock.release()


def _run_stages(
    out: Path,
    identity: dict,
    plan: DemoPlan,
    seeds: tuple[int, ...],
    workers: int,
    tune: tuple[Knob, ...],
    tune_by: str,
    progress: bool,
) -> Path:
    """:func:`run_demo`'s work once its arguments are checked and it holds ``out``: refuse a folder of
    other settings (``identity``), then run every stage not yet done under the same settings."""
    from tqdm import tqdm

    marker = out / "demo.json"
    if marker.is_file():
        previous = json.loads(marker.read_text())
        if previous != identity:
            raise DemoError(
                f"{out} holds a demo with other settings ({previous.get('flavour')}, seeds {previous.get('seeds', previous.get('seed'))}, "
                f"version {previous.get('version', 1)}; differs in {', '.join(identity_differences(previous, identity))}); "
                "use another --out"
            )
    write_json(marker, identity)
    done_file = out / "stages.json"
    done = json.loads(done_file.read_text()) if done_file.is_file() else {}

    roots = {seed: out if len(seeds) == 1 else out / f"seed_{seed}" for seed in seeds}
    stages = []
    for seed, root in roots.items():
        for stage in demo_stages(root, plan, seed, workers, out, knobs=tune, tune_by=tune_by):
            if len(seeds) > 1:
                stage.name = f"seed_{seed}/{stage.name}"
            stages.append(stage)
    stages += final_stages(out, roots, plan, tuned=bool(tune), tune_by=tune_by)
    bar = tqdm(
        total=sum(st.seconds for st in stages),
        desc="karmma demo",
        disable=not progress,
        bar_format="{desc}{percentage:3.0f}%|{bar}| [{elapsed} elapsed, about {remaining} left]",
        file=sys.stderr,
    )
    ran = False
    for stage in stages:
        entry = done.get(stage.name)  # seconds None: started, not finished (interrupted or failed)
        stale = entry is not None and entry["fingerprint"] != stage.fingerprint
        if entry is not None and not stale and entry["seconds"] is not None and not (stage.refresh and ran):
            bar.update(stage.seconds)
            continue
        ran = True
        if stale:  # its settings (or a stage it reads) changed since it ran: its output is stale
            moved = move_to_replaced(stage.output, stage.root) if stage.output else None
            aside = f"; its earlier output is now in {moved}" if moved else ""
            tqdm.write(f"{stage.name}: settings changed since it ran, running it again{aside}", file=sys.stderr)
        # recorded before it runs, so that an interrupted stage resumes only under the same settings
        done[stage.name] = {"seconds": None, "fingerprint": stage.fingerprint}
        write_json(done_file, done)
        bar.set_description(f"karmma demo ({stage.name})")
        log_path = out / "logs" / f"{stage.name}.log"
        start = time.perf_counter()
        try:
            with _output_to(log_path):
                stage.run()
        except Exception as error:
            bar.close()
            with open(log_path, "a") as log:
                traceback.print_exc(file=log)
            raise DemoError(f"demo stage {stage.name} failed: {error} (log: {log_path})") from error
        done[stage.name] = {"seconds": round(time.perf_counter() - start, 1), "fingerprint": stage.fingerprint}
        write_json(done_file, done)
        bar.update(stage.seconds)
        if not progress:
            print(f"{stage.name}: {done[stage.name]['seconds']:.1f} s", file=sys.stderr)
    bar.close()
    return out / "report.md"
