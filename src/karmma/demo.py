"""``karmma demo``: the whole method on the embedded SynthKitchen dataset, on a laptop CPU.

Stages (each reused when re-run with the same ``--out``):

1. synthesise two disjoint SynthKitchen sets (MP4 + EPIC-format annotations):
   one to pre-train the teacher's unimodal extractors, one for everything else;
2. prepare both (frames, DIS flow, 24 kHz audio);
3. pre-train the teacher's extractors, one unimodal run per modality;
4. cache the frozen extractors' tokens, train the teacher from the cache, and
   cache its logits for distillation;
5. distil the student; train the Baseline (the paper's), the Masked Baseline
   (ours) and the Baseline w/ δ;
6. evaluate all five on every modality subset and along the dropout sweep;
7. benchmark teacher and student resources; export the student; write the report.

Stage output goes to ``OUT/logs/<stage>.log``; the terminal shows one
progress bar for the whole pipeline with an estimate of the time left.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from karmma.io import atomic_write_text
from karmma.data.synth import SynthSize

DEMO_MODELS = ("teacher", "baseline", "baseline_masked", "baseline_delta", "student")
#: part of a demo folder's identity: a folder written by a demo with other stages is not reused
DEMO_VERSION = 2


@dataclass(frozen=True)
class DemoPlan:
    """Sizes and epochs of one demo flavour. ``seconds`` are rough per-stage costs on a
    2-core CPU, used only to weight the progress bar."""

    data: SynthSize
    pretrain_data: SynthSize
    unimodal_epochs: int
    teacher_epochs: int
    student_epochs: int  # student and the three baselines
    sweep_seeds: int
    overrides: tuple[str, ...] = ()  # applied to every training stage
    seconds: dict[str, float] = field(default_factory=dict)


PLANS = {
    "quick": DemoPlan(
        data=SynthSize(participants=6, validation_participants=2, videos_per_participant=2, actions_per_video=8),
        pretrain_data=SynthSize(participants=4, validation_participants=1, videos_per_participant=2, actions_per_video=8),
        unimodal_epochs=2, teacher_epochs=4, student_epochs=3, sweep_seeds=2,
        seconds={"synth": 12, "prepare": 12, "unimodal": 7, "extract": 15, "teacher": 5, "train": 10, "evaluate": 8,
                 "benchmark": 10, "report": 3},
    ),
    "default": DemoPlan(
        data=SynthSize(participants=12, validation_participants=4, videos_per_participant=3, actions_per_video=10),
        pretrain_data=SynthSize(participants=8, validation_participants=2, videos_per_participant=3, actions_per_video=8),
        # 15 student epochs keep the default demo within 15 minutes on 2 CPU cores (20 took 16 min);
        # the teacher trains from its cache, so its epochs are cheap
        unimodal_epochs=8, teacher_epochs=40, student_epochs=15, sweep_seeds=3,
        seconds={"synth": 36, "prepare": 62, "unimodal": 42, "extract": 61, "teacher": 70, "train": 150, "evaluate": 14,
                 "benchmark": 9, "report": 2},
    ),
}


@dataclass
class Stage:
    name: str
    seconds: float
    run: Callable[[], None]


class DemoError(ValueError):
    """A demo stage failed or the output folder holds another demo; the message names the log."""


@contextlib.contextmanager
def _output_to(log_path: Path):
    """Send everything a stage prints (stdout, stderr, Lightning's logging) to its log file."""
    import lightning.pytorch  # noqa: F401  (its log handler must bind to the real stdout, not to a stage's log)

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        handlers = [h for name in ("lightning.pytorch", "lightning.fabric", "")
                    for h in logging.getLogger(name).handlers if type(h) is logging.StreamHandler]
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
    from karmma.training.config import TrainConfig

    return load_config(TrainConfig, config_path("synthkitchen", config_name), overrides)


def _train_stage(config_name: str, overrides: list[str]) -> dict:
    from karmma.training.run import train

    return train(_stage_config(config_name, overrides))


def demo_stages(out: Path, plan: DemoPlan, seed: int, workers: int = 2) -> list[Stage]:
    """The pipeline as a list of stages; each writes only under ``out``."""
    from karmma.data.prepare import PrepareSettings, prepare
    from karmma.data.synth import synthesize

    raw, prepared, runs, cache = out / "recordings", out / "prepared", out / "runs", out / "cache"
    common = [f"trainer.runs={runs}", f"trainer.seed={seed}", f"trainer.workers={workers}", "trainer.progress=false", *plan.overrides]
    data = [f"data.root={prepared / 'main'}"]
    extractors = [f"extractors.{m}={runs / f'unimodal_{m}' / 'checkpoints' / 'best.ckpt'}" for m in "VFA"]
    teacher_config = ["cache.path=" + str(cache), *extractors, *data, *common, f"optim.epochs={plan.teacher_epochs}"]
    teacher_ckpt = runs / "teacher" / "checkpoints" / "best.ckpt"
    settings = PrepareSettings(flow="dis", short_side=64)

    def synth_stage():
        synthesize(raw / "pretrain", seed=seed + 100, size=plan.pretrain_data, workers=workers, progress=False)
        synthesize(raw / "main", seed=seed, size=plan.data, workers=workers, progress=False)

    def prepare_stage():
        for name in ("pretrain", "main"):
            summary = prepare(raw / name, prepared / name, settings, workers=workers, progress=False)
            if summary.get("failed"):
                raise DemoError(f"preparing {raw / name} failed for {summary['failed']} video(s); see {out / 'logs'}")

    def unimodal_stage(modality: str):
        return lambda: _train_stage("unimodal", [
            f"data.root={prepared / 'pretrain'}", f"unimodal_modality={modality}", f"trainer.name=unimodal_{modality}",
            *common, f"optim.epochs={plan.unimodal_epochs}"])

    def extract_stage():
        from karmma.data.config import dataset_heads
        from karmma.training.cache import extract_features
        from karmma.training.module import build_stage_model

        config = _stage_config("teacher", teacher_config)
        extract_features(config, build_stage_model(config, dataset_heads(config.data)), progress=False)

    def teacher_stage():
        from karmma.data.config import dataset_heads
        from karmma.training.cache import write_teacher_logits
        from karmma.training.module import load_teacher
        from karmma.training.run import train

        config = _stage_config("teacher", teacher_config)
        train(config)
        write_teacher_logits(cache, load_teacher(str(teacher_ckpt), config, dataset_heads(config.data)))

    def student_stage(name: str):
        extra = [f"teacher={teacher_ckpt}", "teacher_logits=cache", f"cache.path={cache}"] if name == "student" else []
        return lambda: _train_stage(name, [*data, *common, *extra, f"optim.epochs={plan.student_epochs}"])

    def evaluate_stage():
        from karmma.evaluation.evaluate import EvaluationSettings, evaluate_models, load_for_evaluation

        settings = EvaluationSettings(seeds=plan.sweep_seeds, workers=workers, progress=False)
        results = evaluate_models([load_for_evaluation(runs / name, name) for name in DEMO_MODELS], settings)
        for result in results["models"].values():
            result["source"] = str(Path(result["source"]).relative_to(out))  # the same file for any --out
        _write_json(out / "results.json", results)

    def benchmark_stage():
        from karmma.benchmark import BenchmarkSettings, benchmark_preset
        from karmma.presets import EPIC_HEADS, get_preset

        preset = get_preset("tiny")
        results = benchmark_preset(preset, EPIC_HEADS, ["V", "F", "A"], ["teacher", "student"], BenchmarkSettings(repeats=10, warmup=2))
        _write_json(out / "benchmark.json", results)

    def report_stage():
        from karmma.evaluation.report import write_report
        from karmma.training.export import export_student

        export_student(runs / "student" / "checkpoints" / "best.ckpt", out / "student.safetensors")
        write_report(out)

    s = plan.seconds
    return [
        Stage("synth", s["synth"], synth_stage),
        Stage("prepare", s["prepare"], prepare_stage),
        *(Stage(f"unimodal_{m}", s["unimodal"], unimodal_stage(m)) for m in "VFA"),
        Stage("extract", s["extract"], extract_stage),
        Stage("teacher", s["teacher"], teacher_stage),
        *(Stage(name, s["train"], student_stage(name)) for name in ("student", "baseline", "baseline_masked", "baseline_delta")),
        Stage("evaluate", s["evaluate"], evaluate_stage),
        Stage("benchmark", s["benchmark"], benchmark_stage),
        Stage("report", s["report"], report_stage),
    ]


def _write_json(path: Path, value: dict) -> None:
    atomic_write_text(path, json.dumps(value, indent=1) + "\n")


def run_demo(out: str | Path, quick: bool = False, seed: int = 0, progress: bool = True, workers: int = 2) -> Path:
    """Run (or finish) the demo pipeline under ``out``; returns the report path."""
    from tqdm import tqdm

    out = Path(out)
    flavour = "quick" if quick else "default"
    plan = PLANS[flavour]
    settings = {k: v for k, v in dataclasses.asdict(plan).items() if k != "seconds"}  # progress weights do not matter
    identity = json.loads(json.dumps({"version": DEMO_VERSION, "flavour": flavour, "seed": seed, "plan": settings}))
    marker = out / "demo.json"
    if marker.is_file():
        previous = json.loads(marker.read_text())
        if previous != identity:
            raise DemoError(
                f"{out} holds a demo with other settings ({previous.get('flavour')}, seed {previous.get('seed')}, "
                f"version {previous.get('version', 1)}); use another --out"
            )
    out.mkdir(parents=True, exist_ok=True)
    _write_json(marker, identity)
    done_file = out / "stages.json"
    done = json.loads(done_file.read_text()) if done_file.is_file() else {}

    stages = demo_stages(out, plan, seed, workers)
    bar = tqdm(total=sum(st.seconds for st in stages), desc="karmma demo", disable=not progress,
               bar_format="{desc}{percentage:3.0f}%|{bar}| [{elapsed} elapsed, about {remaining} left]", file=sys.stderr)
    for stage in stages:
        if stage.name in done:
            bar.update(stage.seconds)
            continue
        bar.set_description(f"karmma demo ({stage.name})")
        start = time.perf_counter()
        try:
            with _output_to(out / "logs" / f"{stage.name}.log"):
                stage.run()
        except Exception as error:
            bar.close()
            with open(out / "logs" / f"{stage.name}.log", "a") as log:
                traceback.print_exc(file=log)
            raise DemoError(f"demo stage {stage.name} failed: {error} (log: {out / 'logs' / f'{stage.name}.log'})") from error
        done[stage.name] = round(time.perf_counter() - start, 1)
        _write_json(done_file, done)
        bar.update(stage.seconds)
        if not progress:
            print(f"{stage.name}: {done[stage.name]:.1f} s", file=sys.stderr)
    bar.close()
    return out / "report.md"
