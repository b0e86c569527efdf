"""``karmma benchmark training``: the training-speed claims, each measured in one run.

* ``cache``: one teacher epoch (forward, loss, backward, AdamW) with live frozen
  extractors reading media, against one epoch from the feature cache.
* ``distill``: a student step with cached teacher logits against a Baseline
  step on the same in-memory batches (so data loading is excluded).
* ``steps``: where a student-sized stage's training step goes, waiting for
  data or computing (forward, loss, backward, AdamW), one epoch decoding media
  live against one epoch from views decoded once (``cache.decode_once``).
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import torch
from torch.utils.data import DataLoader

from karmma.data.loader import make_loader
from karmma.train_config import TrainConfig, stage_names, stage_spec
from karmma.training.cache import CachedFeatures, CachedTeacherViews, collate_features, collate_with_teacher_logits
from karmma.training.module import KarmmaModule
from karmma.training.run import clip_dataset, stage_datasets


def _epoch_seconds(module: KarmmaModule, loader: DataLoader) -> tuple[float, int]:
    optimizer = _optimizer(module)
    module.train()
    steps = 0
    start = time.perf_counter()
    for batch in loader:
        _train_step(module, optimizer, batch)
        steps += 1
    return time.perf_counter() - start, steps


def _optimizer(module: KarmmaModule) -> torch.optim.Optimizer:
    """AdamW over the trained parameters, one fused update as in training."""
    return torch.optim.AdamW([p for p in module.model.parameters() if p.requires_grad], lr=1e-4, foreach=True)


def _train_step(module: KarmmaModule, optimizer: torch.optim.Optimizer, batch) -> None:
    """One optimisation step of ``module`` on ``batch``, outside a Trainer (no logging)."""
    module.log = module.log_dict = lambda *a, **k: None
    loss = module.training_step(batch, 0)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def benchmark_cache(config: TrainConfig, cache_workers: int = 0) -> dict:
    """Teacher epoch from live extractors vs from the cache, same config and data.

    Each side runs with its best loader setting: live media decoding with
    ``trainer.workers`` processes, the cache read in-process by default
    (``cache_workers``; starting worker processes costs more than reading HDF5).
    """
    if not stage_spec(config.stage).frozen_extractors or not config.cache.path:
        raise ValueError("the cache benchmark needs the teacher config with cache.path (after karmma extract)")
    live_config = dataclasses.replace(config, cache=dataclasses.replace(config.cache, path=""))
    live = KarmmaModule(live_config)
    clips = clip_dataset(config, live, "train")
    live_loader = make_loader(clips, config.optim.batch_size, config.trainer.seed, True, config.trainer.workers)
    cached = KarmmaModule(config)
    features = CachedFeatures(config, "train", cached.modalities, config.cache.in_memory)
    cached_loader = make_loader(
        features, config.optim.batch_size, config.trainer.seed, True, cache_workers, collate=collate_features
    )
    live_seconds, steps = _epoch_seconds(live, live_loader)
    # the first cached epoch also reads the shards (into memory, when they fit); later ones only train
    first_seconds, _ = _epoch_seconds(cached, cached_loader)
    cached_seconds, _ = _epoch_seconds(cached, cached_loader)
    features.close()
    return {
        "what": "one teacher epoch (train split)",
        "clips": len(clips),
        "batch_size": config.optim.batch_size,
        "live_workers": config.trainer.workers,
        "cache_workers": cache_workers,
        "cache_in_memory": features.in_memory,
        "steps": steps,
        "live_seconds": round(live_seconds, 3),
        "cached_first_epoch_seconds": round(first_seconds, 3),
        "cached_seconds": round(cached_seconds, 3),
        "speedup": round(live_seconds / cached_seconds, 1),
        "speedup_first_epoch": round(live_seconds / first_seconds, 1),
    }


def benchmark_distillation(config: TrainConfig, batches: int = 8, repeats: int = 5) -> dict:
    """Median step time: student with cached teacher logits vs Baseline, same batches in memory."""
    if not stage_spec(config.stage).distillation or config.teacher_logits != "cache" or not config.cache.path:
        raise ValueError("the distillation benchmark needs the student config with teacher_logits=cache and cache.path")
    student = KarmmaModule(config)
    baseline = KarmmaModule(dataclasses.replace(config, stage="baseline"))
    student_no_dropout = KarmmaModule(
        dataclasses.replace(config, loss=dataclasses.replace(config.loss, modality_dropout=0.0))
    )
    clips = clip_dataset(config, student, "train", fixed_views=True)
    views = CachedTeacherViews(clips, config)
    loader = make_loader(
        views, config.optim.batch_size, config.trainer.seed, True, 0, collate=collate_with_teacher_logits
    )
    memory = [batch for _, batch in zip(range(batches), loader)]
    views.close()
    models = {"baseline": baseline, "student": student, "student_no_dropout": student_no_dropout}
    optimizers = {name: _optimizer(m) for name, m in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for repeat in range(repeats):
        for batch in memory:
            for name, module in models.items():  # interleaved, so load changes hit all three alike
                module.train()
                start = time.perf_counter()
                _train_step(module, optimizers[name], batch)
                if repeat > 0:  # the first pass is warm-up
                    times[name].append(time.perf_counter() - start)
    timings = {name: statistics.median(values) for name, values in times.items()}
    return {
        "what": "median training step on the same in-memory batches",
        "batch_size": config.optim.batch_size,
        "steps_timed": batches * (repeats - 1),
        "baseline_ms": round(1000 * timings["baseline"], 2),
        "student_cached_logits_ms": round(1000 * timings["student"], 2),
        "student_no_dropout_ms": round(1000 * timings["student_no_dropout"], 2),
        "ratio": round(timings["student"] / timings["baseline"], 3),
        "ratio_no_dropout": round(timings["student_no_dropout"] / timings["baseline"], 3),
    }


def _epoch_split(module: KarmmaModule, loader: DataLoader) -> dict:
    """One epoch: seconds waiting for the next batch vs computing the step."""
    optimizer = _optimizer(module)
    module.train()
    wait = compute = 0.0
    steps = 0
    batches = iter(loader)
    mark = time.perf_counter()
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            break
        arrived = time.perf_counter()
        wait += arrived - mark
        _train_step(module, optimizer, batch)
        mark = time.perf_counter()
        compute += mark - arrived
        steps += 1
    total = wait + compute
    return {
        "steps": steps,
        "data_wait_s": round(wait, 3),
        "compute_s": round(compute, 3),
        "data_wait_share": round(wait / total, 3) if total else None,
        "step_ms": round(1000 * total / max(steps, 1), 1),
    }


def benchmark_steps(config: TrainConfig) -> dict:
    """A student-sized stage's epoch with live decoding vs decoded once, split into data wait and compute."""
    if stage_spec(config.stage).model != "student":
        raise ValueError(
            f"the steps benchmark is for the student-sized stages ({', '.join(stage_names('student'))}), "
            f"not {config.stage}"
        )
    module = KarmmaModule(config)
    batch, seed, workers = config.optim.batch_size, config.trainer.seed, config.trainer.workers
    result = {
        "what": "one training epoch: waiting for data vs computing",
        "stage": config.stage,
        "batch_size": batch,
        "workers": workers,
        "threads": torch.get_num_threads(),
    }
    for name, decode_once in (("live", False), ("decoded_once", True)):
        stage_config = dataclasses.replace(config, cache=dataclasses.replace(config.cache, decode_once=decode_once))
        start = time.perf_counter()
        train_set, _, collate, _ = stage_datasets(stage_config, module, verbose=False)
        prepared = time.perf_counter() - start
        result[name] = {
            **_epoch_split(module, make_loader(train_set, batch, seed, True, workers, collate=collate)),
            "setup_s": round(prepared, 3),
        }
        if hasattr(train_set, "close"):
            train_set.close()
    result["clips"] = len(train_set)
    result["compute_bound_speedup"] = round(
        (result["live"]["data_wait_s"] + result["live"]["compute_s"])
        / (result["decoded_once"]["data_wait_s"] + result["decoded_once"]["compute_s"]),
        2,
    )
    return result


TRAINING_BENCHMARKS = ("cache", "distill", "steps")


def benchmark_training(what: str, config: TrainConfig, cache_workers: int = 0) -> dict:
    """``karmma benchmark training WHAT``: one of :data:`TRAINING_BENCHMARKS` on ``config``."""
    if what == "cache":
        return benchmark_cache(config, cache_workers)
    if what == "distill":
        return benchmark_distillation(config)
    if what == "steps":
        return benchmark_steps(config)
    raise ValueError(f"unknown training benchmark {what!r}; choose one of {', '.join(TRAINING_BENCHMARKS)}")
