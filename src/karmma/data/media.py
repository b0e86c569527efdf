"""Media readers: JPEG frames, flow JPEG pairs, videos and audio.

Every reader either returns a complete, finite tensor or raises
:class:`MediaError` naming the file: a corrupt or truncated JPEG (also one
whose picture data libjpeg reports as corrupt while still decoding it), a
video with too few frames, an audio file with no audio track. Datasets turn a
``MediaError`` into "modality unreadable" for that sample (counted and
logged), never into a garbage tensor.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:  # the readers that return tensors import torch themselves: deployment runs without it
    import torch

#: EPIC/TSN flow JPEGs map [-bound, bound] pixels linearly to [0, 255].
FLOW_BOUND = 20.0


log = logging.getLogger("karmma.data")

#: libjpeg's warnings about damaged picture data ("Corrupt JPEG data: 291 extraneous bytes before
#: marker 0xd9", "... bad Huffman code", "Premature end of JPEG file"): the image comes back anyway,
#: garbage from where the data broke
CORRUPT_JPEG_WARNINGS = ("Corrupt JPEG data", "Premature end of JPEG file")


class MediaError(RuntimeError):
    """A media file is missing, corrupt or truncated; the message names it."""


class _StderrCatcher:
    """Catches what C code writes to stderr (fd 2) while it runs: libjpeg prints its warnings there
    itself, and OpenCV neither sees nor returns them. Holds a lock, since fd 2 is shared by the
    process's threads; a forked loader worker starts with its own file and lock."""

    def __init__(self):
        self._file = None
        self._lock = threading.Lock()

    def run(self, function, *args):
        """``(function(*args), what it wrote to stderr)``."""
        with self._lock:
            if self._file is None:
                self._file = tempfile.TemporaryFile()
            fd = self._file.fileno()
            start = os.lseek(fd, 0, os.SEEK_CUR)  # fd 2 will write from here: this fd's offset
            if start > 1 << 20:  # emptied now and then, not on every call (a syscall saved per image)
                os.ftruncate(fd, 0)
                start = os.lseek(fd, 0, os.SEEK_SET)
            sys.stderr.flush()  # Python's pending text goes to the real stderr, not here
            saved = os.dup(2)
            os.dup2(fd, 2)
            try:
                result = function(*args)
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            end = os.lseek(fd, 0, os.SEEK_CUR)
            return result, os.pread(fd, end - start, start).decode(errors="replace") if end > start else ""


_stderr = _StderrCatcher()
os.register_at_fork(after_in_child=_stderr.__init__)


def read_image(path: str | Path, mode: str = "RGB") -> np.ndarray:
    """One image as ``[H, W, 3]`` (RGB) or ``[H, W]`` (L) uint8, decoded by OpenCV (libjpeg-turbo
    for JPEGs, straight into the array); truncated or corrupt files raise, as does a JPEG whose
    picture data libjpeg warns is corrupt (its warning is the message, not raw stderr)."""
    try:
        data = np.fromfile(path, np.uint8)
    except FileNotFoundError:
        raise MediaError(f"{path}: file not found") from None
    except OSError as error:
        raise MediaError(f"{path}: unreadable image ({error})") from None
    flags = (cv2.IMREAD_COLOR_RGB if mode == "RGB" else cv2.IMREAD_GRAYSCALE) | cv2.IMREAD_IGNORE_ORIENTATION
    image, printed = _stderr.run(cv2.imdecode, data, flags) if len(data) else (None, "")
    printed = " ".join(printed.split())
    if image is None:  # OpenCV returns nothing for truncated or corrupt data
        raise MediaError(f"{path}: unreadable image (truncated or not an image{'; ' + printed if printed else ''})")
    if any(warning in printed for warning in CORRUPT_JPEG_WARNINGS):
        raise MediaError(f"{path}: corrupt image data ({printed[:200]})")
    if printed:  # a codec's other remarks (e.g. an unknown JFIF revision): kept, with the file they are about
        log.warning("%s: %s", path, printed[:200])
    return image


def read_jpegs(paths: Sequence[str | Path], mode: str = "RGB", out: np.ndarray | None = None) -> np.ndarray:
    """Image files -> ``[N, H, W, 3]`` (RGB) or ``[N, H, W]`` (L) uint8, written into ``out`` when
    given; each distinct file is decoded once."""
    first: dict[str | Path, int] = {}
    for i, path in enumerate(paths):
        if path in first:  # a short segment samples the same frame several times
            out[i] = out[first[path]]
            continue
        image = read_image(path, mode)
        if out is None:
            out = np.empty((len(paths), *image.shape), np.uint8)
        if out.shape[1:3] != image.shape[:2]:
            raise MediaError(
                f"{path}: {image.shape[1]}x{image.shape[0]} pixels, unlike the clip's other frames ({out.shape[2]}x{out.shape[1]})"
            )
        out[i] = image
        first[path] = i
    return out


def read_rgb_frames(paths: Sequence[str | Path]) -> torch.Tensor:
    """JPEG frames -> ``[T, 3, H, W]`` uint8, stored channels-last (as decoded; the fast layout for resizing)."""
    import torch

    return torch.from_numpy(read_jpegs(paths, "RGB")).permute(0, 3, 1, 2)


def decode_flow(u: np.ndarray | torch.Tensor, v: np.ndarray | torch.Tensor, bound: float = FLOW_BOUND) -> torch.Tensor:
    """Quantised flow images (uint8) -> flow in pixels ``[..., 2, H, W]``."""
    import torch

    flow = torch.stack([torch.as_tensor(u), torch.as_tensor(v)], dim=-3).float()
    return flow / 255.0 * (2 * bound) - bound


def encode_flow(flow: np.ndarray, bound: float = FLOW_BOUND) -> tuple[np.ndarray, np.ndarray]:
    """Flow ``[H, W, 2]`` in pixels -> (u, v) uint8 images, clipped to ``[-bound, bound]``."""
    quantised = np.round((np.clip(flow, -bound, bound) + bound) / (2 * bound) * 255.0).astype(np.uint8)
    return quantised[..., 0], quantised[..., 1]


def read_quantised_flow(u_paths: Sequence[str | Path], v_paths: Sequence[str | Path]) -> torch.Tensor:
    """Pairs of grayscale flow JPEGs -> quantised flow ``[T, 2, H, W]`` uint8 (:func:`decode_flow` gives pixels)."""
    import torch

    if len(u_paths) != len(v_paths) or not u_paths:
        raise MediaError(f"{(u_paths or v_paths or ['flow'])[0]}: {len(u_paths)} u but {len(v_paths)} v flow frames")
    u = read_jpegs(u_paths, "L")
    flow = np.empty((u.shape[0], 2, *u.shape[1:]), np.uint8)
    flow[:, 0] = u
    read_jpegs(v_paths, "L", out=flow[:, 1])
    return torch.from_numpy(flow)


def read_video_frames(path: str | Path, frame_numbers: Sequence[int]) -> torch.Tensor:
    """Decode the given 1-based frame numbers of a video -> ``[T, 3, H, W]`` uint8 (channels-last)."""
    import av
    import torch

    wanted = sorted(set(frame_numbers))
    found: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path}: no video stream")
            for number, frame in enumerate(container.decode(video=0), start=1):
                if number in wanted:
                    found[number] = frame.to_ndarray(format="rgb24")
                if number >= wanted[-1]:
                    break
    except FileNotFoundError:
        raise MediaError(f"{path}: file not found") from None
    except av.FFmpegError as error:
        raise MediaError(f"{path}: undecodable video ({error})") from None
    if len(found) < len(wanted):
        raise MediaError(f"{path}: video ends before frame {wanted[-1]} (decoded {len(found)} of {len(wanted)} frames)")
    shapes = {found[n].shape for n in wanted}
    if len(shapes) > 1:
        raise MediaError(f"{path}: frames of different sizes {sorted(shapes)}")
    frames = np.stack([found[n] for n in frame_numbers])
    return torch.from_numpy(frames).permute(0, 3, 1, 2)  # channels-last, as decoded


def video_frame_count(path: str | Path) -> tuple[int, float, tuple[int, int]]:
    """``(frames, fps, (width, height))`` of a video, counting frames by decoding."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            count = sum(1 for _ in container.decode(video=0))
            return count, fps, (stream.codec_context.width, stream.codec_context.height)
    except (IndexError, av.FFmpegError, FileNotFoundError) as error:
        raise MediaError(f"{path}: unreadable video ({error})") from None


def crop_or_pad(samples: np.ndarray, offset: int, length: int) -> np.ndarray:
    """Samples ``[offset, offset + length)`` of a signal, zero-padded outside it."""
    out = np.zeros(length, dtype=np.float32)
    lo, hi = max(offset, 0), min(offset + length, len(samples))
    if hi > lo:
        out[lo - offset : hi - offset] = samples[lo:hi]
    return out


def read_wav(path: str | Path, start: float, duration: float, sample_rate: int) -> np.ndarray:
    """Mono float32 samples of a PCM WAV in ``[start, start + duration)`` seconds, zero-padded."""
    try:
        with wave.open(str(path), "rb") as f:
            if f.getframerate() != sample_rate:
                raise MediaError(f"{path}: sample rate {f.getframerate()} Hz, expected {sample_rate} Hz")
            width, channels, total = f.getsampwidth(), f.getnchannels(), f.getnframes()
            if width not in (2, 4):
                raise MediaError(f"{path}: unsupported {8 * width}-bit PCM (16 or 32-bit expected)")
            first = int(round(start * sample_rate))
            length = int(round(duration * sample_rate))
            lo, hi = min(max(first, 0), total), min(max(first + length, 0), total)
            f.setpos(lo)
            raw = f.readframes(hi - lo)
    except FileNotFoundError:
        raise MediaError(f"{path}: file not found") from None
    except (wave.Error, EOFError) as error:
        raise MediaError(f"{path}: unreadable WAV ({error})") from None
    dtype = np.int16 if width == 2 else np.int32
    data = np.frombuffer(raw, dtype=dtype)
    if len(data) != (hi - lo) * channels:
        raise MediaError(f"{path}: truncated WAV (header promises {total} frames)")
    data = data.reshape(-1, channels).mean(axis=1) / float(np.iinfo(dtype).max)
    return crop_or_pad(data.astype(np.float32), first - lo, length)


def read_hdf5_audio(path: str | Path, dataset: str, start: float, duration: float, sample_rate: int) -> np.ndarray:
    """Samples from an HDF5 file holding one 1-D dataset per video (float samples at ``sample_rate``)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if dataset not in f:
                raise MediaError(f"{path}: no audio dataset {dataset!r}")
            samples = f[dataset]
            rate = samples.attrs.get("sample_rate", sample_rate)
            if int(rate) != sample_rate:
                raise MediaError(f"{path}[{dataset}]: sample rate {rate} Hz, expected {sample_rate} Hz")
            first = int(round(start * sample_rate))
            length = int(round(duration * sample_rate))
            lo, hi = min(max(first, 0), len(samples)), min(max(first + length, 0), len(samples))
            data = np.asarray(samples[lo:hi], dtype=np.float32)
    except FileNotFoundError:
        raise MediaError(f"{path}: file not found") from None
    except OSError as error:
        raise MediaError(f"{path}: unreadable HDF5 ({error})") from None
    return crop_or_pad(data, first - lo, length)


def decode_audio_track(path: str | Path, sample_rate: int) -> np.ndarray:
    """The whole audio track of a media file as mono float32 at ``sample_rate``."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError(f"{path}: no audio track")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            chunks = []
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except FileNotFoundError:
        raise MediaError(f"{path}: file not found") from None
    except av.FFmpegError as error:
        raise MediaError(f"{path}: undecodable audio ({error})") from None
    if not chunks:
        raise MediaError(f"{path}: the audio track is empty")
    return np.concatenate(chunks).astype(np.float32)


def read_audio(
    path: str | Path, start: float, duration: float, sample_rate: int, dataset: str | None = None
) -> np.ndarray:
    """Mono samples in ``[start, start + duration)`` from a WAV, an HDF5 dataset or a video's track."""
    path = Path(path)
    if path.suffix.lower() in (".h5", ".hdf5"):
        return read_hdf5_audio(path, dataset or path.stem, start, duration, sample_rate)
    if path.suffix.lower() == ".wav":
        return read_wav(path, start, duration, sample_rate)
    samples = decode_audio_track(path, sample_rate)
    return crop_or_pad(samples, int(round(start * sample_rate)), int(round(duration * sample_rate)))
