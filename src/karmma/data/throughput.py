"""``karmma benchmark data``: how fast the loader feeds a model, and where the time goes.

* :func:`loader_clips_per_s`: clips/s of a real ``DataLoader`` (``collate_clips``)
  over a dataset, per modality subset and number of worker processes.
* :func:`stage_breakdown`: milliseconds per clip of each pipeline stage
  (JPEG decode, crop/resize, flow de-quantisation, log-mel, collation), run
  in this process on one thread, as one loader worker runs it.
* :func:`bare_decode_ms`: the decoder libraries alone (PIL, OpenCV,
  torchvision) on the frame files of the same clips: the limit the
  pipeline's decode stage is compared with.
* :func:`finish_ms`: making the model's float inputs from a batch
  (:func:`~karmma.data.transforms.finish_inputs`) on this CPU: where a
  GPU run does it on the GPU, a CPU-only run pays it in the training process.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

from karmma.data.dataset import ClipDataset, collate_clips, input_dtype
from karmma.data.sampling import segment_frame_numbers
from karmma.data.sources import FlowSource, FrameSource
from karmma.data.timing import record_stages, stage
from karmma.data.transforms import finish_inputs
from karmma.data.views import ClipSample
from karmma.modalities import IMAGE_MODALITIES


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch CPU threads (a loader worker has one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def loader_clips_per_s(
    dataset: ClipDataset, workers: int, batch_size: int, batches: int, seed: int = 0
) -> dict[str, float]:
    """Clips/s of a ``DataLoader`` drawing ``batches`` random batches (with replacement) after one
    untimed batch that starts the workers: ``{"wall": clips/s, "cpu": clips per CPU-second}``.

    ``cpu`` counts every batch (the first too) against the CPU time of the processes that load
    them (this one with ``workers=0``, else the workers): what a loader with cores to itself
    would deliver. With ``workers=0`` torch uses one thread, as in a worker process.
    """
    sampler = RandomSampler(
        dataset, replacement=True, num_samples=(batches + 1) * batch_size, generator=torch.Generator().manual_seed(seed)
    )
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate_clips, drop_last=True
    )
    clips, all_clips, start = 0, 0, None
    cpu_start = _loading_cpu_seconds(workers)
    with torch_threads(1 if workers == 0 else torch.get_num_threads()):
        iterator = iter(loader)
        for i, batch in enumerate(iterator):
            if i == 0:  # the clock starts when the warm-up batch has arrived
                start = time.perf_counter()
            else:
                clips += len(batch["ids"])
            all_clips += len(batch["ids"])
        wall = time.perf_counter() - start if start is not None else 0.0
        del iterator  # joins the workers, so their CPU time is counted
    if clips == 0:
        raise ValueError("no batch was timed: ask for at least one measured batch")
    return {"wall": clips / wall, "cpu": all_clips / (_loading_cpu_seconds(workers) - cpu_start)}


def _loading_cpu_seconds(workers: int) -> float:
    """CPU seconds so far of this process (``workers=0``) or of its finished child processes."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF if workers == 0 else resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stage_breakdown(dataset: ClipDataset, clips: int, batch_size: int, seed: int = 0) -> dict[str, dict[str, float]]:
    """Milliseconds per clip of every pipeline stage (plus ``collate`` and ``other``: sampling,
    checks, the rest), ``{"wall": {...}, "cpu": {...}}``, over ``clips`` random clips loaded in
    this process on one thread, in batches as a loader worker loads them."""
    rng = random.Random(seed)
    indices = [rng.randrange(len(dataset)) for _ in range(clips)]
    with torch_threads(1), record_stages() as totals:
        wall, cpu = time.perf_counter(), time.thread_time()
        for first in range(0, clips, batch_size):
            keys = indices[first : first + batch_size]
            # as a DataLoader fetches a batch: at once when the dataset can (ClipDataset.__getitems__)
            items = dataset.__getitems__(keys) if hasattr(dataset, "__getitems__") else [dataset[i] for i in keys]
            with stage("collate"):
                collate_clips(items)
        elapsed = {"wall": time.perf_counter() - wall, "cpu": time.thread_time() - cpu}
    result = {}
    for column, clock in (("wall", 0), ("cpu", 1)):
        ms = {name: 1000 * seconds[clock] / clips for name, seconds in totals.items()}
        ms["other"] = max(0.0, 1000 * elapsed[column] / clips - sum(ms.values()))
        ms["total"] = 1000 * elapsed[column] / clips
        result[column] = {name: round(value, 2) for name, value in ms.items()}
    return result


def _decoders() -> dict[str, Callable[[Path, str], object]]:
    """Each library's plainest decode of one JPEG file to pixels (``mode``: RGB or L)."""
    import cv2
    from PIL import Image
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    def pil(path: Path, mode: str):
        with Image.open(path) as image:
            return image.convert(mode) if image.mode != mode else image.load()

    def opencv(path: Path, mode: str):
        return cv2.imdecode(
            np.fromfile(path, np.uint8), cv2.IMREAD_COLOR_RGB if mode == "RGB" else cv2.IMREAD_GRAYSCALE
        )

    def torchvision(path: Path, mode: str):
        return decode_jpeg(read_file(str(path)), mode=ImageReadMode.RGB if mode == "RGB" else ImageReadMode.GRAY)

    return {"PIL": pil, "OpenCV": opencv, "torchvision": torchvision}


def clip_files(sample: ClipSample, frames: int) -> dict[str, list[Path]]:
    """The frame files of a clip's centre view: ``{"V": rgb JPEGs, "F": u and v JPEGs}``
    (for frame-folder sources; videos are left out)."""
    numbers = segment_frame_numbers(sample.start_frame, sample.stop_frame, frames, train=False)
    files: dict[str, list[Path]] = {}
    if isinstance(sample.sources.get("V"), FrameSource):
        files["V"] = [sample.sources["V"].path(n) for n in numbers]
    if isinstance(sample.sources.get("F"), FlowSource):
        source = sample.sources["F"]
        for n in numbers:  # the video's last flow frame may be absent: the previous one, as FlowSource.load does
            while n > 1 and not source.paths(n)[0].is_file():
                n -= source.stride
            files.setdefault("F", []).extend(source.paths(n))
    return files


def bare_decode_ms(
    samples: Sequence[ClipSample], frames: int, clips: int, seed: int = 0
) -> dict[str, dict[str, dict[str, float]]]:
    """``{decoder: {"V": {"wall": ms, "cpu": ms}, "F": ...}}`` per clip: decoding the clips' frame
    files with the library alone.

    The files are those of the centre view of ``clips`` random samples
    (``frames`` RGB frames, ``2 * frames`` flow images); nothing else is done."""
    import warnings

    import cv2

    rng = random.Random(seed)
    chosen = [samples[rng.randrange(len(samples))] for _ in range(clips)]
    files = [clip_files(s, frames) for s in chosen]
    results: dict = {}
    cv2_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with torch_threads(1), warnings.catch_warnings():
            # torchvision's image decoding is deprecated (in favour of torchcodec); still worth comparing
            warnings.simplefilter("ignore", DeprecationWarning)
            for name, decode in _decoders().items():
                results[name] = {}
                for key, mode in (("V", "RGB"), ("F", "L")):
                    paths = [p for f in files for p in f.get(key, [])]
                    if not paths:
                        continue
                    decode(paths[0], mode)  # warm-up: library initialisation
                    wall, cpu = time.perf_counter(), time.thread_time()
                    for path in paths:
                        decode(path, mode)
                    results[name][key] = {
                        "wall": round(1000 * (time.perf_counter() - wall) / clips, 2),
                        "cpu": round(1000 * (time.thread_time() - cpu) / clips, 2),
                    }
    finally:
        cv2.setNumThreads(cv2_threads)
    return results


def fresh_memory_ms(
    shapes: Mapping[str, tuple[int, ...]], batch_size: int, repeats: int = 3, dtypes: Mapping | None = None
) -> dict[str, float]:
    """``{"wall": ms, "cpu": ms}`` per clip to get and fill a new batch of ``shapes`` (in ``dtypes``
    per key, float32 when None): the floor of handing the inputs over in new memory (the OS zeroes
    every fresh page)."""
    best = {"wall": float("inf"), "cpu": float("inf")}
    dtypes = dtypes or {}
    with torch_threads(1):
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.thread_time()
            for key, shape in shapes.items():
                torch.empty((batch_size, *shape), dtype=dtypes.get(key, torch.float32)).fill_(0)
            best["wall"] = min(best["wall"], 1000 * (time.perf_counter() - wall) / batch_size)
            best["cpu"] = min(best["cpu"], 1000 * (time.thread_time() - cpu) / batch_size)
    return {k: round(v, 2) for k, v in best.items()}


def finish_ms(dataset: ClipDataset, batch_size: int, repeats: int = 3, seed: int = 0) -> dict[str, float]:
    """``{"wall": ms, "cpu": ms}`` per clip of :func:`finish_inputs` on one loaded batch on this
    CPU (one thread, best of ``repeats``): the float pass the loader no longer does."""
    rng = random.Random(seed)
    batch = collate_clips(dataset.__getitems__([rng.randrange(len(dataset)) for _ in range(batch_size)]))
    best = {"wall": float("inf"), "cpu": float("inf")}
    with torch_threads(1):
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.thread_time()
            finish_inputs(batch)
            best["wall"] = min(best["wall"], 1000 * (time.perf_counter() - wall) / batch_size)
            best["cpu"] = min(best["cpu"], 1000 * (time.thread_time() - cpu) / batch_size)
    return {k: round(v, 2) for k, v in best.items()}


def benchmark_loader(
    samples: Sequence[ClipSample],
    shapes: Mapping[str, tuple[int, ...]],
    subsets: Sequence[Sequence[str]],
    workers: Sequence[int],
    batch_size: int,
    batches: int,
    breakdown_clips: int = 0,
    repeats: int = 1,
    log: Callable[[str], None] = print,
) -> dict:
    """Loader clips/s per subset and worker count, then (``breakdown_clips > 0``) the stage
    breakdown of the whole clip and the decoder libraries' speed on the same kind of files.

    Each figure is the best of ``repeats`` passes (on a shared machine, the pass
    least disturbed by other processes); the breakdown is that of the fastest pass.
    """
    result: dict = {
        "batch_size": batch_size,
        "batches": batches,
        "repeats": repeats,
        "load_average_before": os.getloadavg(),
        "clips_per_s": {},
        "clips_per_cpu_s": {},
    }
    for subset in subsets:
        name = "+".join(subset)
        dataset = ClipDataset(samples, {k: shapes[k] for k in subset}, train=True)
        result["clips_per_s"][name], result["clips_per_cpu_s"][name] = {}, {}
        for count in workers:
            passes = [loader_clips_per_s(dataset, count, batch_size, batches) for _ in range(repeats)]
            rate, cpu_rate = max(p["wall"] for p in passes), max(p["cpu"] for p in passes)
            result["clips_per_s"][name][str(count)] = round(rate, 2)
            result["clips_per_cpu_s"][name][str(count)] = round(cpu_rate, 2)
            log(
                f"loader {name:8s} {count} worker(s): {rate:7.2f} clips/s, {cpu_rate:7.2f} clips per CPU-second "
                f"({batches} batches of {batch_size}, best of {repeats})"
            )
    if breakdown_clips:
        everything = [k for k in shapes]
        dataset = ClipDataset(samples, dict(shapes), train=True)
        stages = min(
            (stage_breakdown(dataset, breakdown_clips, batch_size) for _ in range(repeats)),
            key=lambda s: s["cpu"]["total"],
        )
        result["breakdown_ms_per_clip"] = {"modalities": "+".join(everything), "clips": breakdown_clips, **stages}
        for column in ("cpu", "wall"):
            log(
                f"stages, {column} ms per clip ({'+'.join(everything)}, {breakdown_clips} clips, 1 thread): "
                + ", ".join(f"{k} {v:.1f}" for k, v in stages[column].items())
            )
        frames = next(s[0] for k, s in shapes.items() if k in IMAGE_MODALITIES)
        passes = [bare_decode_ms(dataset.samples, frames, breakdown_clips) for _ in range(repeats)]
        bare = {
            name: {
                key: {column: min(p[name][key][column] for p in passes) for column in ("wall", "cpu")}
                for key in passes[0][name]
            }
            for name in passes[0]
        }
        result["bare_decode_ms_per_clip"] = bare
        result["fresh_float_memory_ms_per_clip"] = fresh = fresh_memory_ms(shapes, batch_size, repeats)
        result["fresh_memory_ms_per_clip"] = handed = fresh_memory_ms(
            shapes, batch_size, repeats, {k: input_dtype(k) for k in shapes}
        )
        log(
            f"a new batch of these inputs, filled once: float32 {fresh['cpu']:.1f} / {fresh['wall']:.1f}, "
            f"as handed over (uint8 V/F) {handed['cpu']:.1f} / {handed['wall']:.1f} ms per clip (cpu / wall)"
        )
        result["finish_ms_per_clip"] = finished = finish_ms(dataset, batch_size, repeats)
        log(
            f"finish_inputs on this CPU (the float pass a GPU run does on the GPU): "
            f"{finished['cpu']:.1f} / {finished['wall']:.1f} ms per clip (cpu / wall)"
        )
        for decoder, ms in bare.items():
            log(
                f"bare {decoder:11s} decode, ms per clip (cpu / wall): "
                + ", ".join(f"{k} {v['cpu']:.1f} / {v['wall']:.1f}" for k, v in ms.items())
            )
    result["load_average_after"] = os.getloadavg()
    return result
