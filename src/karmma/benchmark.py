"""Resource measurements: FLOPs, parameters, peak memory and latency of a forward pass
(``karmma benchmark model``), and data loading against a training step (``karmma benchmark data``).

The other two measurements of ``karmma benchmark`` live with what they measure:
``training/bench.py`` (``benchmark training``) and ``deploy/latency.py`` (``benchmark deploy``).

FLOPs are counted with :class:`torch.utils.flop_counter.FlopCounterMode`
(2 FLOPs per multiply-add; convolutions, matmuls and attention). FLOPs and
peak memory are traced on the ``meta`` device (shapes only, no compute), so
even the paper-size teacher is measured in seconds; latency is measured for
real on the chosen device.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from karmma.availability import availability_for_subset
from karmma.io import atomic_savefig
from karmma.modalities import all_subsets, subset_name
from karmma.models.karmma import KARMMA

aten = torch.ops.aten


# On CPU, scaled_dot_product_attention runs a fused kernel that torch's FLOP
# counter does not know (it would count attention as 0 FLOPs); it has the
# same cost as the other fused attention kernels.
def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_EXTRA_FLOP_FORMULAS = {aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop}


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of calling ``fn()`` (2 per multiply-add), attention included."""
    with FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOP_FORMULAS) as counter:
        fn()
    return counter.get_total_flops()


class PeakMemory(TorchDispatchMode):
    """Peak bytes of live tensor storage while active.

    Storages of ``existing`` tensors (parameters, inputs) count from the
    start; every storage created by an operation counts until it is freed.
    Works on any device, ``meta`` included.
    """

    def __init__(self, existing: Sequence[torch.Tensor] = ()):
        super().__init__()
        self._live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.current = 0
        self._track(existing)
        self.peak = self.current

    def _track(self, tensors) -> None:
        for t in tensors:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                ref = StorageWeakRef(storage)
                if ref.cdata not in self._live:
                    self._live[ref.cdata] = (ref, storage.nbytes())
                    self.current += storage.nbytes()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for key, (ref, nbytes) in list(self._live.items()):
            if ref.expired():
                self.current -= nbytes
                del self._live[key]
        self._track(tree_leaves(out))
        self.peak = max(self.peak, self.current)
        return out


def measure_latency(fn: Callable[[], object], repeats: int, warmup: int, device: torch.device) -> float:
    """Median wall time of ``fn()`` in milliseconds."""
    return statistics.median(latency_samples(fn, repeats, warmup, device))


def latency_samples(fn: Callable[[], object], repeats: int, warmup: int, device: torch.device) -> list[float]:
    """Wall times of ``repeats`` calls of ``fn()`` in milliseconds, after ``warmup`` untimed calls."""
    times = []
    for i in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1000)
    return times


def active_parameters(model: KARMMA, present: Sequence[str]) -> list[torch.Tensor]:
    """Parameters a forward pass with modalities ``present`` uses (absent extractors excluded)."""
    skipped = {id(p) for k in model.modalities if k not in present for p in model.extractors[k].parameters()}
    return [p for p in model.parameters() if id(p) not in skipped]


@dataclass
class BenchmarkSettings:
    repeats: int
    warmup: int
    device: str = "cpu"


def benchmark_model(
    build: Callable[[], KARMMA],
    settings: BenchmarkSettings,
    subsets: Sequence[Sequence[str]] | None = None,
    label: str = "model",
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> dict:
    """Measure ``build()``'s model at batch 1 on every subset of its modalities.

    Returns ``{"subsets": {"V+F": {"gflops", "params_m", "peak_mem_mb", "latency_ms"}}}``.
    """
    device = torch.device(settings.device)
    with torch.device("meta"):
        meta_model = build().eval()
    model = build().eval().to(device)
    subsets = subsets or all_subsets(model.modalities)
    results = {}
    for present in subsets:
        name = subset_name(present, model.modalities)
        availability = availability_for_subset(present, model.modalities)
        meta_inputs = {k: v.to("meta") for k, v in model.example_inputs(1).items() if k in present}
        with torch.no_grad():
            flops = count_flops(lambda: meta_model(meta_inputs, availability))
            existing = active_parameters(meta_model, present) + list(meta_model.buffers()) + list(meta_inputs.values())
            with PeakMemory(existing=existing) as memory:
                meta_model(meta_inputs, availability)
        inputs = {k: v.to(device) for k, v in model.example_inputs(1).items() if k in present}
        with torch.inference_mode():
            times = latency_samples(lambda: model(inputs, availability), settings.repeats, settings.warmup, device)
        results[name] = {
            "gflops": round(flops / 1e9, 3),
            "params_m": round(sum(p.numel() for p in active_parameters(model, present)) / 1e6, 3),
            "peak_mem_mb": round(memory.peak / 2**20, 1),
            "latency_ms": round(statistics.median(times), 2),  # median; min and max show the spread
            "latency_ms_min": round(min(times), 2),
            "latency_ms_max": round(max(times), 2),
        }
        r = results[name]
        log(
            f"{label:8s} {name:8s} {r['gflops']:9.3f} GFLOPs {r['params_m']:8.2f} M params "
            f"{r['peak_mem_mb']:9.1f} MB peak {r['latency_ms']:10.1f} ms (median of {settings.repeats})"
        )
    return {"subsets": results}


def model_heads(modalities: Sequence[str]) -> dict[str, int]:
    """The classification heads a benchmark gives the models: SSv2's with boxes (D) and no audio, else EPIC's."""
    from karmma.presets import EPIC_HEADS, SSV2_HEADS

    return dict(SSV2_HEADS if "D" in modalities and "A" not in modalities else EPIC_HEADS)


def benchmark_preset_resources(
    preset_name: str,
    modalities: Sequence[str] | None = None,
    models: Sequence[str] = ("teacher", "student"),
    repeats: int = 20,
    warmup: int = 3,
    device: str = "cpu",
    heads: dict[str, int] | None = None,
) -> dict:
    """``benchmark_model`` for the teacher and/or student of a preset (``karmma benchmark model``).

    ``modalities`` default to the preset's, ``heads`` to :func:`model_heads`; latency is the median
    of ``repeats`` runs after ``warmup`` untimed ones. Returns the layout of ``karmma benchmark model --json``."""
    from karmma.presets import build_student, build_teacher, get_preset

    preset = get_preset(preset_name)
    modalities = list(modalities or preset.default_modalities)
    heads = dict(heads or model_heads(modalities))
    settings = BenchmarkSettings(repeats=repeats, warmup=warmup, device=device)
    results = {
        "preset": preset.name,
        "device": settings.device,
        "modalities": modalities,
        "heads": heads,
        "latency_repeats": settings.repeats,
        "latency_warmup": settings.warmup,
        "threads": torch.get_num_threads(),
        "models": {},
    }
    builders = {"teacher": build_teacher, "student": build_student}
    for name in models:
        torch.manual_seed(0)
        results["models"][name] = benchmark_model(
            lambda: builders[name](preset, heads, modalities), settings, label=name
        )
    return results


def _readable(value: float) -> str:
    """A bar label without scientific notation: 1020 -> '1,020', 3.14159 -> '3.14', 0.0123 -> '0.012'."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value >= 0.01 else f"{value:.2g}"


def plot_benchmark(results: dict, path: str) -> None:
    """Teacher and student bars per subset (GFLOPs, peak memory, latency with its min-max range)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    models = results["models"]
    subsets = list(next(iter(models.values()))["subsets"])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    repeats = results.get("latency_repeats", "?")
    metrics = [
        ("gflops", "GFLOPs"),
        ("peak_mem_mb", "peak memory (MB)"),
        ("latency_ms", f"latency (ms, log scale): median, line = min-max of {repeats} run(s)"),
    ]
    width = 0.8 / len(models)
    for ax, (metric, title) in zip(axes, metrics):
        for i, (name, model) in enumerate(models.items()):
            rows = [model["subsets"].get(s, {}) for s in subsets]
            values = [r.get(metric, 0.0) for r in rows]
            positions = [x + (i - (len(models) - 1) / 2) * width for x in range(len(subsets))]
            spread = None
            if (
                metric == "latency_ms"
                and all("latency_ms_min" in r for r in rows)
                and any(r["latency_ms_max"] > r["latency_ms_min"] for r in rows)
            ):
                spread = [
                    [v - r["latency_ms_min"] for v, r in zip(values, rows)],
                    [r["latency_ms_max"] - v for v, r in zip(values, rows)],
                ]
            bars = ax.bar(positions, values, width, yerr=spread, capsize=2, label=name)
            ax.bar_label(bars, labels=[_readable(v) for v in values], fontsize=7, rotation=90, padding=2)
        ax.set_xticks(range(len(subsets)), subsets, rotation=30)
        ax.set_title(title, fontsize=10)
        ax.margins(y=0.25)
        if metric == "latency_ms":
            ax.set_yscale("log")  # one slow outlier run must not flatten every other bar
            # plain labels at 1, 2, 5 x 10^k (every digit within one decade) and none at the minor
            # ticks (matplotlib's default writes "2x10^1, 6x10^0" there)
            low, high = ax.get_ylim()
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if high / low >= 10 else range(1, 10)))
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _readable(v) if v else "0"))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", ncol=len(labels), frameon=False)
    fig.suptitle(
        f"KARMMA resources per modality subset (preset {results['preset']}, batch 1, {results['device']})", x=0.4
    )
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)


def train_step_throughput(model: KARMMA, batch_size: int, steps: int, warmup: int = 2) -> float:
    """Clips per second of full training steps (forward, cross-entropy, backward, AdamW) on random inputs."""
    import torch.nn.functional as F

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    inputs = model.example_inputs(batch_size)
    availability = torch.ones(batch_size, len(model.modalities), dtype=torch.bool)
    targets = {h: torch.randint(0, n, (batch_size,)) for h, n in model.heads.items()}
    start = None
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        out = model(inputs, availability)
        loss = sum(F.cross_entropy(out.logits[h], targets[h]) for h in targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return batch_size * steps / (time.perf_counter() - start)


def benchmark_data_loading(
    dataset: str,
    preset_name: str = "tiny",
    workers: Sequence[int] = (2,),
    batch_size: int = 16,
    batches: int = 10,
    each: bool = False,
    breakdown_clips: int = 0,
    repeats: int = 1,
    steps: int = 10,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> dict:
    """``karmma benchmark data``: loader clips/s on ``dataset``'s train split (a prepared folder or
    YAML config) against the preset student's training step; training is input-bound where
    loading is slower. Returns the layout of ``karmma benchmark data --json``."""
    from karmma.data.config import dataset_heads, load_split
    from karmma.data.inspect import load_dataset_config
    from karmma.data.throughput import benchmark_loader
    from karmma.presets import build_student, get_preset

    config = load_dataset_config(dataset)
    preset = get_preset(preset_name)
    modalities = [k for k in config.modalities if k in preset.student]
    shapes = {k: preset.student[k].input_shape for k in modalities}
    subsets = [[k] for k in modalities] + [modalities] if each and len(modalities) > 1 else [modalities]
    loading = benchmark_loader(
        load_split(config, "train"), shapes, subsets, workers, batch_size, batches, breakdown_clips, repeats, log
    )
    result = {
        "dataset": config.root,
        "preset": preset.name,
        "modalities": modalities,
        "input_shapes": shapes,
        "workers": list(workers),
        "threads": torch.get_num_threads(),
        **loading,
    }
    whole = loading["clips_per_s"]["+".join(modalities)]
    if steps:
        torch.manual_seed(0)
        model = build_student(preset, dataset_heads(config), modalities)
        training = train_step_throughput(model, batch_size, steps=steps)
        result["train_clips_per_s"] = round(training, 1)
        result["input_bound"] = {w: rate < training for w, rate in whole.items()}
        log(
            f"{preset.name} student training step: {training:.1f} clips/s ({steps} steps, {torch.get_num_threads()} threads) -> "
            + "; ".join(
                f"{w} worker(s): " + ("training would be INPUT-BOUND" if rate < training else "loading keeps up")
                for w, rate in whole.items()
            )
        )
    return result
