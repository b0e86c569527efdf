"""Training-step throughput of the paper preset on a GPU, against the card's peak, and the loader against it.

Measures, at batch 16 in bf16 autocast (as ``trainer.precision=auto`` trains on a GPU):

* ``teacher_cache``: a teacher step from cached extractor tokens (only the fusion trains),
* ``student``: a student step (all extractors train; cross-entropy + distillation KL to given
  teacher logits), ``baseline``: the same architecture with cross-entropy only,
* ``extract``: the frozen teacher's extractors alone, inference (what ``karmma extract`` runs),

each as eager / channels-last / ``torch.compile`` / both: clips/s, ms per step, peak GPU
memory, and model FLOP utilisation (MFU) = FLOPs per step (forward and backward, counted
with ``karmma.benchmark.count_flops`` on the meta device) / step time / the card's peak
bf16 rate. Then, with ``--data`` (EPIC-layout frames, e.g. from ``scripts/make_epic_frames.py``),
the loader's clips/s with each ``--workers`` count, alone and copying batches to the GPU.

Usage (on the GPU machine; each call stays well under 10 minutes):
    python scripts/make_epic_frames.py /tmp/epic --videos 4
    python scripts/gpu_throughput.py --variants eager,channels_last --data /tmp/epic --workers 4,8,16 --json gpu_eager.json
    python scripts/gpu_throughput.py --variants compile,compile+channels_last --json gpu_compile.json
    python scripts/gpu_throughput.py --smoke     # tiny preset, a few steps, any device: checks the script
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import torch

from karmma.availability import availability_for_subset
from karmma.benchmark import count_flops
from karmma.losses import distillation_kl, info_nce, multihead_cross_entropy
from karmma.presets import EPIC_HEADS, build_baseline, build_student, build_teacher, get_preset

#: Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from NVIDIA's data sheets; matched in order
#: against ``torch.cuda.get_device_name()``.
PEAK_BF16_TFLOPS = [
    ("H200 NVL", 835.0),
    ("H200", 989.4),
    ("H100 NVL", 835.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.4),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("A10G", 70.0),
    ("RTX 4090", 165.2),
]
STAGES = ("teacher_cache", "student", "baseline", "extract")
VARIANTS = ("eager", "channels_last", "compile", "compile+channels_last")


def peak_tflops(device: torch.device, override: float | None) -> tuple[str, float | None]:
    """The card's name and its dense bf16 peak (None when unknown and not given)."""
    if device.type != "cuda":
        return "cpu", override
    name = torch.cuda.get_device_name(device)
    if override:
        return name, override
    return name, next((peak for key, peak in PEAK_BF16_TFLOPS if key.lower() in name.lower()), None)


def to_channels_last(model: torch.nn.Module) -> None:
    """Convolution weights channels-last (4-D) / channels-last-3d (5-D), in place."""
    for parameter in model.parameters():
        if parameter.dim() == 4:
            parameter.data = parameter.data.contiguous(memory_format=torch.channels_last)
        elif parameter.dim() == 5:
            parameter.data = parameter.data.contiguous(memory_format=torch.channels_last_3d)


def inputs_channels_last(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Clips ``[B, T, C, H, W]`` stored with C last; spectrograms ``[B, 1, F, T]`` channels-last."""
    out = {}
    for key, x in inputs.items():
        if x.dim() == 5:
            out[key] = x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
        elif x.dim() == 4:
            out[key] = x.contiguous(memory_format=torch.channels_last)
        else:
            out[key] = x
    return out


class Stage:
    """One kind of step: its model, inputs and the function a timed step calls."""

    def __init__(self, name: str, preset, batch: int, device: torch.device, modalities=("V", "F", "A")):
        self.name, self.batch, self.device = name, batch, device
        builders = {
            "teacher_cache": build_teacher,
            "extract": build_teacher,
            "student": build_student,
            "baseline": build_baseline,
        }
        self.build = lambda: builders[name](preset, EPIC_HEADS, list(modalities))
        torch.manual_seed(0)
        with torch.device("meta") if device.type == "meta" else contextlib.nullcontext():
            self.model = self.build().to(device)
        self.availability = availability_for_subset(list(modalities), list(modalities), batch).to(device)
        self.targets = {h: torch.randint(0, n, (batch,), device=device) for h, n in EPIC_HEADS.items()}
        self.teacher_logits = {h: torch.randn(batch, n, device=device) for h, n in EPIC_HEADS.items()}
        self.inputs = self._inputs(self.model, device)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        fused = device.type == "cuda"
        self.optimizer = (
            torch.optim.AdamW(trainable, lr=1e-4, fused=fused, foreach=None if fused else True)
            if name != "extract"
            else None
        )

    def _inputs(self, model, device) -> dict[str, torch.Tensor]:
        if self.name == "teacher_cache":  # cached extractor tokens [B, N_m, C_m]
            return {
                k: torch.randn(self.batch, s.num_tokens, s.token_dim, device=device) for k, s in model.specs.items()
            }
        return {k: v.to(device) for k, v in model.example_inputs(self.batch).items()}

    def loss(self, model, inputs, on=None) -> torch.Tensor:
        """The stage's training loss; ``on="meta"`` uses meta copies of the labels (FLOP counting)."""
        move = (lambda t: t.to(on)) if on else (lambda t: t)
        availability = move(self.availability)
        targets = {h: move(t) for h, t in self.targets.items()}
        if self.name == "teacher_cache":
            out = model.fuse(inputs, availability)
            loss = multihead_cross_entropy(out.logits, targets)
            # InfoNCE branches on the mask's values, which meta tensors lack; its FLOPs are a few millions
            return loss if on == "meta" else loss + info_nce(out.modality_features, availability, model.modalities)
        out = model(inputs, availability)
        loss = multihead_cross_entropy(out.logits, targets)
        if self.name == "student":
            loss = loss + distillation_kl(out.logits, {h: move(t) for h, t in self.teacher_logits.items()})
        return loss

    def step(self, model, inputs) -> None:
        """One training step (forward, loss, backward, AdamW), or for ``extract`` one frozen forward."""
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16)
        if self.name == "extract":
            with torch.inference_mode(), autocast:
                model.extract(inputs, self.availability)
            return
        with autocast:
            loss = self.loss(model, inputs)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def flops(self) -> int:
        """FLOPs of one step (forward + backward; optimizer excluded), counted on the meta device."""
        with torch.device("meta"):
            model = self.build()
        meta = {k: v.to("meta") for k, v in self.inputs.items()}
        if self.name == "extract":
            with torch.no_grad():
                return count_flops(lambda: model.extract(meta, self.availability.to("meta")))
        return count_flops(lambda: self.loss(model, meta, on="meta").backward())


def time_steps(stage: Stage, model, inputs, steps: int, warmup: int) -> tuple[float, float]:
    """(seconds per step over ``steps`` timed steps, seconds of the warm-up incl. compilation)."""
    sync = torch.cuda.synchronize if stage.device.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    for _ in range(warmup):
        stage.step(model, inputs)
    sync()
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        stage.step(model, inputs)
    sync()
    return (time.perf_counter() - start) / steps, warm


def measure_stage(stage: Stage, variants: list[str], steps: int, warmup: int, peak: float | None, log) -> dict:
    flops = stage.flops()
    result = {"flops_per_step": flops, "gflops_per_clip": round(flops / stage.batch / 1e9, 1), "variants": {}}
    log(f"{stage.name}: {flops / 1e9:.1f} GFLOPs per step of {stage.batch} clips")
    for variant in variants:  # eager and compile first: channels-last converts the weights in place
        if "channels_last" in variant:
            to_channels_last(stage.model)
        model = torch.compile(stage.model) if variant.startswith("compile") else stage.model
        inputs = inputs_channels_last(stage.inputs) if "channels_last" in variant else stage.inputs
        if stage.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(stage.device)
        try:
            seconds, warm = time_steps(stage, model, inputs, steps, warmup)
        except torch.cuda.OutOfMemoryError:
            result["variants"][variant] = {"error": "out of memory"}
            log(f"  {variant:22s} out of memory")
            continue
        except Exception as error:  # e.g. a compiler failure: report it and go on with the other variants
            result["variants"][variant] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"}
            log(f"  {variant:22s} failed: {result['variants'][variant]['error']}")
            continue
        row = {
            "clips_per_s": round(stage.batch / seconds, 2),
            "ms_per_step": round(1000 * seconds, 2),
            "warmup_s": round(warm, 1),
            "peak_memory_gib": round(torch.cuda.max_memory_allocated(stage.device) / 2**30, 2)
            if stage.device.type == "cuda"
            else None,
            "achieved_tflops": round(flops / seconds / 1e12, 2),
            "mfu": round(flops / seconds / (peak * 1e12), 4) if peak else None,
        }
        result["variants"][variant] = row
        log(
            f"  {variant:22s} {row['clips_per_s']:8.2f} clips/s {row['ms_per_step']:9.1f} ms/step "
            f"peak {row['peak_memory_gib']} GiB, {row['achieved_tflops']} TFLOP/s, MFU {row['mfu']} (warm-up {row['warmup_s']} s)"
        )
    return result


def measure_loader(data: str, preset, batch: int, workers: list[int], batches: int, device: torch.device, log) -> dict:
    """Loader clips/s with each worker count: alone, and feeding the GPU (pinned memory, copy to the
    device, the uint8 V/F finished into the model's floats there)."""
    from torch.utils.data import DataLoader, RandomSampler

    from karmma.data.config import load_split
    from karmma.data.dataset import ClipDataset, collate_clips
    from karmma.data.inspect import load_dataset_config
    from karmma.data.throughput import loader_clips_per_s
    from karmma.data.transforms import finish_inputs

    config = load_dataset_config(data)
    shapes = {k: preset.student[k].input_shape for k in ("V", "F", "A")}
    dataset = ClipDataset(load_split(config, "train"), shapes, train=True)
    result = {"cpu_cores": os.cpu_count(), "batch_size": batch, "batches": batches, "workers": {}}
    for count in workers:
        rates = loader_clips_per_s(dataset, count, batch, batches)
        alone = rates["wall"]
        fed = None
        if device.type == "cuda":
            sampler = RandomSampler(dataset, replacement=True, num_samples=(batches + 1) * batch)
            loader = DataLoader(
                dataset,
                batch_size=batch,
                sampler=sampler,
                num_workers=count,
                collate_fn=collate_clips,
                pin_memory=True,
                drop_last=True,
            )
            clips, start = 0, None
            for i, loaded in enumerate(loader):
                on_device = finish_inputs(loaded, device)
                torch.cuda.synchronize(device)
                if i == 0:
                    start = time.perf_counter()
                else:
                    clips += len(loaded["ids"])
                del on_device
            fed = clips / (time.perf_counter() - start)
        result["workers"][str(count)] = {
            "clips_per_s": round(alone, 2),
            "clips_per_cpu_s": round(rates["cpu"], 2),
            "to_gpu_clips_per_s": round(fed, 2) if fed else None,
            "per_worker": round(alone / max(count, 1), 2),
        }
        log(
            f"loader {count:3d} worker(s): {alone:8.2f} clips/s" + (f", {fed:8.2f} clips/s onto the GPU" if fed else "")
        )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny preset, 2 steps: checks the script (CPU is fine)")
    parser.add_argument("--preset", default=None, help="paper (default) or tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant (default 10; smoke 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; smoke 1)")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--peak-tflops", type=float, help="the card's dense bf16 peak, when it is not in the table")
    parser.add_argument("--data", help="EPIC-layout folder for the loader measurement")
    parser.add_argument("--workers", default="", help="loader worker counts, e.g. 4,8,16 (default: all cores)")
    parser.add_argument("--loader-batches", type=int, default=8)
    parser.add_argument(
        "--flops-only", action="store_true", help="only count each stage's FLOPs per step (meta device, seconds)"
    )
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731

    preset = get_preset(args.preset or ("tiny" if args.smoke else "paper"))
    steps = args.steps or (2 if args.smoke else 10)
    warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 3)
    device = torch.device(args.device)
    stages = [s for s in args.stages.split(",") if s]
    variants = [v for v in args.variants.split(",") if v]
    unknown = [s for s in stages if s not in STAGES] + [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown stage/variant {unknown}; stages: {', '.join(STAGES)}; variants: {', '.join(VARIANTS)}")
    card, peak = peak_tflops(device, args.peak_tflops)
    log(
        f"{card} (peak bf16 {peak} TFLOP/s), preset {preset.name}, batch {args.batch_size}, {steps} timed steps after {warmup}, "
        f"torch {torch.__version__}"
    )
    results = {
        "device": card,
        "peak_bf16_tflops": peak,
        "preset": preset.name,
        "batch_size": args.batch_size,
        "steps": steps,
        "warmup": warmup,
        "torch": torch.__version__,
        "stages": {},
    }
    for name in stages:
        stage = Stage(name, preset, args.batch_size, torch.device("meta") if args.flops_only else device)
        if args.flops_only:
            flops = stage.flops()
            results["stages"][name] = {
                "flops_per_step": flops,
                "gflops_per_clip": round(flops / args.batch_size / 1e9, 1),
            }
            log(
                f"{name}: {flops / 1e9:.1f} GFLOPs per step of {args.batch_size} clips ({flops / args.batch_size / 1e9:.1f} per clip)"
            )
            continue
        results["stages"][name] = measure_stage(stage, variants, steps, warmup, peak, log)
        del stage
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if args.data:
        workers = [int(w) for w in args.workers.split(",") if w] or [os.cpu_count() or 1]
        results["loader"] = measure_loader(
            args.data, preset, args.batch_size, workers, args.loader_batches, device, log
        )
        demand = max(
            (v.get("clips_per_s", 0) for v in results["stages"].get("student", {}).get("variants", {}).values()),
            default=0,
        )
        if demand:
            best_worker = max(v["per_worker"] for v in results["loader"]["workers"].values())
            results["loader"]["student_demand_clips_per_s"] = demand
            results["loader"]["workers_needed"] = round(demand / best_worker, 1)
            log(
                f"the student step consumes {demand:.1f} clips/s: about {demand / best_worker:.1f} loader workers at "
                f"{best_worker:.2f} clips/s each"
            )
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(results, indent=2) + "\n")
        temporary.replace(path)
        log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
