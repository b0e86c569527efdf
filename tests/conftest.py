from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from karmma.configuration import load_config
from karmma.presets import tiny_preset
from karmma.train_config import TrainConfig
from shared_data import SHARED, shared_data_required, shared_folder


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real annotation files: skipped without them on a plain clone, failed without them in CI."""
    return shared_folder(SHARED, shared_data_required())


#: Fixtures that synthesise and prepare a SynthKitchen set (MP4s, audio, optical flow): minutes on
#: 2 cores. A test that uses one, directly or through another fixture (``trained_runs`` trains on
#: one), is end to end: ``make test`` runs it, ``make test-fast`` does not.
DATA_MAKING_FIXTURES = {"make_synth_set"}


@pytest.hookimpl(tryfirst=True)  # before -m "not e2e" deselects
def pytest_collection_modifyitems(items):
    for item in items:
        if DATA_MAKING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny():
    return tiny_preset()


def synthesize_and_prepare(tmp_path_factory, name: str, seed: int, videos_per_participant: int) -> tuple[Path, Path]:
    """``(raw, prepared)``: a tiny SynthKitchen set (2 participants, 3 actions per video) in the EPIC layout."""
    from karmma.data.prepare import PrepareSettings, prepare
    from karmma.data.synth import SynthSize, synthesize

    raw = tmp_path_factory.mktemp(f"{name}_raw")
    size = SynthSize(
        participants=2, validation_participants=1, videos_per_participant=videos_per_participant, actions_per_video=3
    )
    synthesize(raw, seed=seed, size=size, workers=2, progress=False)
    prepared = tmp_path_factory.mktemp(f"{name}_prepared")
    summary = prepare(raw, prepared, PrepareSettings(flow="dis", short_side=64), workers=2, progress=False)
    assert summary["prepared"] == 2 * videos_per_participant and not summary["failed"], summary
    return raw, prepared


@pytest.fixture(scope="session")
def make_synth_set(tmp_path_factory):
    """``make_synth_set(name, seed, videos_per_participant) -> (raw, prepared)``."""
    return lambda *args, **kwargs: synthesize_and_prepare(tmp_path_factory, *args, **kwargs)


@pytest.fixture(scope="session")
def synth_prepared(make_synth_set) -> Path:
    """A tiny SynthKitchen recording set, prepared into the EPIC layout (4 videos, 12 segments)."""
    return make_synth_set("synth", seed=3, videos_per_participant=2)[1]


@pytest.fixture
def prepared_copy(synth_prepared, tmp_path) -> Path:
    """A private copy of the prepared tree, for tests that damage files."""
    import shutil

    return Path(shutil.copytree(synth_prepared, tmp_path / "prepared"))


CONFIGS = Path(__file__).resolve().parents[1] / "src" / "karmma" / "configs" / "synthkitchen"


def tiny_config(stage: str, root: Path, runs: Path, *overrides: str) -> TrainConfig:
    """A SynthKitchen config of ``stage`` shrunk for tests: 2 epochs, small batches, no workers."""
    return load_config(
        TrainConfig,
        CONFIGS / f"{stage}.yaml",
        [
            f"data.root={root}",
            f"trainer.runs={runs}",
            "optim.epochs=2",
            "optim.batch_size=4",
            "trainer.workers=0",
            "trainer.progress=false",
            *overrides,
        ],
    )


@pytest.fixture(scope="session")
def make_config():
    return tiny_config


@pytest.fixture(scope="session")
def trained_runs(synth_prepared, tmp_path_factory):
    """unimodal V/F/A -> teacher -> student, each 2 short epochs on the tiny SynthKitchen set."""
    from karmma.training.run import train

    runs = tmp_path_factory.mktemp("runs")
    results = {}
    for key in ("V", "F", "A"):
        results[f"unimodal_{key}"] = train(
            tiny_config("unimodal", synth_prepared, runs, f"unimodal_modality={key}", f"trainer.name=unimodal_{key}")
        )
    extractors = [f"extractors.{k}={results[f'unimodal_{k}']['best']}" for k in ("V", "F", "A")]
    results["teacher"] = train(tiny_config("teacher", synth_prepared, runs, *extractors))
    results["student"] = train(tiny_config("student", synth_prepared, runs, f"teacher={results['teacher']['best']}"))
    return runs, results


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory) -> Path:
    """The quick demo, seed 0, as the README's Quick start runs it (``karmma demo --quick``), into a
    folder named as its default output folder; shared by tests/test_demo.py and tests/test_readme.py.
    ``--out`` is absolute: the demo's loader workers may come from a fork server started in another
    working directory (a newcomer's shell has one working directory throughout)."""
    from karmma.cli import main
    from karmma.demo import default_demo_folder

    out = tmp_path_factory.mktemp("newcomer") / default_demo_folder(quick=True)
    assert main(["demo", "--quick", "--no-progress", "--out", str(out), "--debug"]) == 0
    return out


# ---- test media made with PyAV (variable frame rate, rotated, truncated, short audio) ----------

LEVELS_PER_FRAME = 3  # the VFR test video's frame i has brightness 3 * i (decoding may be 1 level off)


def write_vfr_video(path: Path, gaps_ms: list[int], size=(64, 48)) -> list[int]:
    """An H.264 MP4 (1 ms time base) whose frame ``i`` is shown at ``sum(gaps_ms[:i])`` ms and
    has brightness ``LEVELS_PER_FRAME * i`` (so a decoded picture tells its timestamp); returns
    the timestamps (ms). At most 85 frames."""
    import av

    times = list(np.cumsum([0, *gaps_ms]))
    assert len(times) * LEVELS_PER_FRAME < 256
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"qp": "0"}  # lossless: the brightness must survive
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(
                np.full((size[1], size[0], 3), LEVELS_PER_FRAME * i, np.uint8), format="rgb24"
            )
            frame.pts, frame.time_base = int(t), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return [int(t) for t in times]


def write_video(
    path: Path,
    frames: np.ndarray,
    fps: int = 25,
    audio_seconds: float | None = None,
    rotation: int = 0,
    faststart: bool = True,
) -> Path:
    """An MP4 of ``frames [N, H, W, 3]`` (+ a 24 kHz AAC tone of ``audio_seconds``), with a display rotation."""
    import av

    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"} if faststart else {}) as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if rotation:
            video.set_display_rotation(rotation)
        sound = None
        if audio_seconds:
            sound = container.add_stream("aac", rate=24000)
            sound.layout = "mono"
        for image in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            tone = (0.3 * np.sin(np.arange(int(24000 * audio_seconds)) * 0.05)).astype(np.float32)
            for start in range(0, len(tone), 1024):
                chunk = av.AudioFrame.from_ndarray(tone[start : start + 1024][None], format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 24000, start
                for packet in sound.encode(chunk):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
    return path


def cut_at_packet(path: Path, out: Path, fraction: float = 0.5) -> Path:
    """A copy of ``path`` cut at the end of the packet nearest ``fraction`` of the file: a
    truncated download whose remaining packets all decode cleanly."""
    import av

    with av.open(str(path)) as container:
        ends = sorted(p.pos + p.size for p in container.demux() if p.pos is not None and p.pos >= 0 and p.size)
    data = path.read_bytes()
    cut = min(ends, key=lambda e: abs(e - fraction * len(data)))
    out.write_bytes(data[:cut])
    return out


def corrupt_jpeg_scan(path: Path, count: int = 32) -> Path:
    """Overwrite ``count`` bytes in the middle of a JPEG's entropy-coded scan data (after the SOS
    segment) with bytes that start no marker: every marker stays as it was, the picture data is
    broken (libjpeg warns "Corrupt JPEG data" and returns a picture, garbage from there on)."""
    data = bytearray(path.read_bytes())
    markers = lambda b: [(i, b[i + 1]) for i in range(len(b) - 1) if b[i] == 0xFF and b[i + 1] != 0]  # noqa: E731
    before = markers(data)
    sos = data.index(b"\xff\xda")
    start = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")
    middle = (start + len(data) - 2) // 2
    while data[middle - 1] == 0xFF:  # the byte after 0xFF is a stuffed 0 (or a marker code): keep it
        middle += 1
    assert start < middle and middle + count < len(data) - 2, f"{path}: scan data too short to corrupt"
    for i in range(middle, middle + count):
        data[i] = 0x55 if data[i] != 0x55 else 0xAA
    assert markers(data) == [(i, code) for i, code in before if not middle <= i < middle + count]
    path.write_bytes(data)
    return path


@pytest.fixture(scope="session")
def media():
    """The test-media makers above: ``media.write_vfr_video``, ``media.write_video``, ``media.cut_at_packet``,
    ``media.corrupt_jpeg_scan``,
    ``media.noise(n, h, w)`` random frames, ``media.shown_ms(image, times)`` the timestamp a VFR test frame shows."""
    from types import SimpleNamespace

    noise = lambda n, h=48, w=64, seed=0: np.random.default_rng(seed).integers(0, 255, (n, h, w, 3), dtype=np.uint8)  # noqa: E731
    return SimpleNamespace(
        write_vfr_video=write_vfr_video,
        write_video=write_video,
        cut_at_packet=cut_at_packet,
        corrupt_jpeg_scan=corrupt_jpeg_scan,
        noise=noise,
        shown_ms=lambda image, times: times[int(round(image.mean() / LEVELS_PER_FRAME))],
    )
