"""``karmma data benchmark``: how fast the loader feeds a model, and where the time goes.

* :func:`loader_clips_per_s`: clips/s of a real ``DataLoader`` (``collate_clips``)
  over a dataset, per modality subset and number of worker processes.
* :func:`stage_breakdown`: milliseconds per clip of each pipeline stage
  (JPEG decode, crop/resize, flow de-quantisation, log-mel, collation), run
  in this process on one thread, as one loader worker runs it.
* :func:`bare_decode_ms`: the decoder libraries alone (PIL, OpenCV,
  torchvision) on the frame files of the same clips: the limit the
  pipeline's decode stage is compared with.
"""

from __future__ import annotations

import random
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

from karmma.data.dataset import ClipDataset, ClipSample, collate_clips
from karmma.data.sampling import segment_frame_numbers
from karmma.data.sources import FlowSource, FrameSource
from karmma.data.timing import record_stages, stage


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch CPU threads (a loader worker has one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def loader_clips_per_s(dataset: ClipDataset, workers: int, batch_size: int, batches: int, seed: int = 0) -> float:
    """Clips/s of a ``DataLoader`` drawing ``batches`` random batches (with replacement, after
    one untimed batch that starts the workers). With ``workers=0`` torch uses one thread,
    as in a worker process."""
    sampler = RandomSampler(dataset, replacement=True, num_samples=(batches + 1) * batch_size,
                            generator=torch.Generator().manual_seed(seed))
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate_clips, drop_last=True)
    clips, start = 0, None
    with torch_threads(1 if workers == 0 else torch.get_num_threads()):
        for i, batch in enumerate(loader):
            if i == 1:
                start = time.perf_counter()
            if i >= 1:
                clips += len(batch["ids"])
    if start is None or clips == 0:
        raise ValueError("no batch was timed: ask for at least one measured batch")
    return clips / (time.perf_counter() - start)


def stage_breakdown(dataset: ClipDataset, clips: int, batch_size: int, seed: int = 0) -> dict[str, float]:
    """Milliseconds per clip of every pipeline stage (plus ``collate`` and ``other``: sampling,
    checks, the rest), over ``clips`` random clips loaded in this process on one thread."""
    rng = random.Random(seed)
    indices = [rng.randrange(len(dataset)) for _ in range(clips)]
    with torch_threads(1), record_stages() as totals:
        start = time.perf_counter()
        for first in range(0, clips, batch_size):
            keys = indices[first : first + batch_size]
            # as a DataLoader fetches a batch: at once when the dataset can (ClipDataset.__getitems__)
            items = dataset.__getitems__(keys) if hasattr(dataset, "__getitems__") else [dataset[i] for i in keys]
            with stage("collate"):
                collate_clips(items)
        wall = time.perf_counter() - start
    result = {name: 1000 * seconds / clips for name, seconds in totals.items()}
    result["other"] = max(0.0, 1000 * wall / clips - sum(result.values()))
    result["total"] = 1000 * wall / clips
    return {name: round(ms, 2) for name, ms in result.items()}


def _decoders() -> dict[str, Callable[[Path, str], object]]:
    """Each library's plainest decode of one JPEG file to pixels (``mode``: RGB or L)."""
    import cv2
    from PIL import Image
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    def pil(path: Path, mode: str):
        with Image.open(path) as image:
            return image.convert(mode) if image.mode != mode else image.load()

    def opencv(path: Path, mode: str):
        return cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR_RGB if mode == "RGB" else cv2.IMREAD_GRAYSCALE)

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


def bare_decode_ms(samples: Sequence[ClipSample], frames: int, clips: int, seed: int = 0) -> dict[str, dict[str, float]]:
    """``{decoder: {"V": ms, "F": ms}}`` per clip: decoding the clips' frame files with the library alone.

    The files are those of the centre view of ``clips`` random samples
    (``frames`` RGB frames, ``2 * frames`` flow images); nothing else is done."""
    import warnings

    import cv2

    rng = random.Random(seed)
    chosen = [samples[rng.randrange(len(samples))] for _ in range(clips)]
    files = [clip_files(s, frames) for s in chosen]
    results: dict[str, dict[str, float]] = {}
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
                    start = time.perf_counter()
                    for path in paths:
                        decode(path, mode)
                    results[name][key] = round(1000 * (time.perf_counter() - start) / clips, 2)
    finally:
        cv2.setNumThreads(cv2_threads)
    return results


def benchmark_loader(
    samples: Sequence[ClipSample],
    shapes: Mapping[str, tuple[int, ...]],
    subsets: Sequence[Sequence[str]],
    workers: Sequence[int],
    batch_size: int,
    batches: int,
    breakdown_clips: int = 0,
    log: Callable[[str], None] = print,
) -> dict:
    """Loader clips/s per subset and worker count, then (``breakdown_clips > 0``) the stage
    breakdown of the whole clip and the decoder libraries' speed on the same kind of files."""
    result: dict = {"batch_size": batch_size, "batches": batches, "clips_per_s": {}}
    for subset in subsets:
        name = "+".join(subset)
        dataset = ClipDataset(samples, {k: shapes[k] for k in subset}, train=True)
        result["clips_per_s"][name] = {}
        for count in workers:
            rate = loader_clips_per_s(dataset, count, batch_size, batches)
            result["clips_per_s"][name][str(count)] = round(rate, 2)
            log(f"loader {name:8s} {count} worker(s): {rate:7.2f} clips/s ({batches} batches of {batch_size})")
    if breakdown_clips:
        everything = [k for k in shapes]
        dataset = ClipDataset(samples, dict(shapes), train=True)
        stages = stage_breakdown(dataset, breakdown_clips, batch_size)
        result["breakdown_ms_per_clip"] = {"modalities": "+".join(everything), "clips": breakdown_clips, "stages": stages}
        log(f"stages ({'+'.join(everything)}, ms per clip over {breakdown_clips} clips, 1 thread): "
            + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))
        frames = next(s[0] for k, s in shapes.items() if k in ("V", "F"))
        bare = bare_decode_ms(dataset.samples, frames, breakdown_clips)
        result["bare_decode_ms_per_clip"] = bare
        for decoder, ms in bare.items():
            log(f"bare {decoder:11s} decode, ms per clip: " + ", ".join(f"{k} {v:.1f}" for k, v in ms.items()))
    return result
