"""SynthKitchen: an embedded egocentric-style dataset generated on the fly.

``karmma synth OUT --seed S --size quick`` writes real recordings
(``OUT/P01/videos/P01_101.MP4``: H.264 video, AAC mono audio at 24 kHz) and
EPIC-KITCHENS-100 annotation files (``OUT/annotations/``), so ``karmma
prepare`` and the EPIC dataset code run on it exactly as on real data. Beside
them, ``SynthKitchen_latents.csv`` holds what no annotator wrote: each
segment's true classes and latent flags (:func:`read_latents`).

The generative model (the classes, the latent variables of an action, what
each sensor can know of them, the annotators' noise and the information
ceilings) is :mod:`karmma.data.synth_world`; docs/data.md ("SynthKitchen")
argues each property from real kitchens. This module renders its cues:

* **Video**: a muted cluttered counter, the object (colour x shape, with
  per-instance tint, size and angle), the hand that grips it and what shows
  the verb (a contact shadow, a lid, a knife, a water stream, a tilt and a
  pour), under camera shake, a drifting distractor, pixel noise and flicker.
* **Audio**: the room (hum, noise, clicks), each verb's own sound (water,
  chopping, pouring, a rattle when it rattles), a knock whose timbre is the
  object's material when the instance knocks, and the room alone when it is
  louder than the action. Some recordings have no audio track at all
  (``WORLD.audio_track_missing``).

Video ids mix the two EPIC generations (``P01_01`` 2018-style, flow at half
rate; ``P01_101`` 2020-style) so both flow rules are exercised. Participants
are split: the last ones form the test set (``EPIC_100_test.csv``, labelled,
when ``test_participants`` > 0), those before them the validation set, as the
participants of EPIC-KITCHENS-100's splits are.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from karmma.data.annotations import EPIC_LABEL_COLUMNS, EPIC_TIMESTAMP_COLUMNS, epic_timestamp, parse_timestamp
from karmma.data.synth_world import (
    NOUN_NAMES,
    VERB_NAMES,
    WORLD,
    ActionLatent,
    Instance,
    sample_action,
)
from karmma.data.synth_world import (
    NOUNS as NOUN_SPECS,
)
from karmma.data.synth_world import (
    VERBS as VERB_SPECS,
)
from karmma.data.views import segment_frame_range
from karmma.io import atomic_open, atomic_path, atomic_write_text
from karmma.parallel import process_pool

SAMPLE_RATE = 24000
VERBS = list(VERB_NAMES)
NOUNS = list(NOUN_NAMES)
# RGB of each colour a noun can have (docs/data.md): saturated enough to stand out from the muted counter
COLOURS = {
    "pale": (232, 228, 214),
    "grey": (150, 160, 178),
    "yellow": (228, 200, 45),
    "brown": (155, 95, 45),
    "green": (45, 150, 65),
    "orange": (235, 128, 30),
    "red": (200, 35, 40),
}
# width and height of each shape, in units of the object's size
SHAPES = {"round": (1.0, 1.0), "tall": (0.7, 1.35), "flat": (1.45, 0.6), "long": (1.9, 0.35)}
LID = (125, 45, 140)
SKIN = (225, 180, 150)
LIQUID = (165, 205, 235)
SHADOW = (12, 10, 10)
TOOL = (175, 180, 192)  # the knife that cuts
# partials (Hz) and decay (s) of a knock on each material
KNOCKS = {
    "ceramic": ((2200.0, 5400.0), 0.08),
    "glass": ((3600.0, 8100.0), 0.25),
    "metal": ((950.0, 2600.0, 4300.0), 0.35),
    "plastic": ((450.0, 1300.0), 0.03),
    "wood": ((320.0, 980.0), 0.05),
}


@dataclass(frozen=True)
class SynthSize:
    participants: int
    validation_participants: int
    videos_per_participant: int
    actions_per_video: int
    test_participants: int = 0  # the last participants, after the validation ones: a labelled test split
    width: int = 128
    height: int = 96
    fps: int = 24


SIZES = {
    "quick": SynthSize(participants=8, validation_participants=2, videos_per_participant=4, actions_per_video=8),
    "default": SynthSize(participants=16, validation_participants=4, videos_per_participant=6, actions_per_video=12),
}


@dataclass(frozen=True)
class Action:
    """One action of a recording: its latent instance (true classes, annotated labels, what it
    sounds like) and where it is in time."""

    latent: ActionLatent
    start: float  # seconds
    stop: float

    @property
    def verb(self) -> int:  # the annotated label, what the CSV holds
        return self.latent.label_verb

    @property
    def noun(self) -> int:
        return self.latent.label_noun


def video_ids(size: SynthSize) -> list[tuple[str, str]]:
    """``[(participant, video_id)]``: half 2018-style ids (``P01_01``), half 2020-style (``P01_101``)."""
    ids = []
    for p in range(1, size.participants + 1):
        participant = f"P{p:02d}"
        for v in range(1, size.videos_per_participant + 1):
            number = f"{v:02d}" if v % 2 else f"1{v:02d}"
            ids.append((participant, f"{participant}_{number}"))
    return ids


def plan_actions(rng: np.random.Generator, size: SynthSize) -> tuple[list[Action], float]:
    t, actions = 0.4, []
    for _ in range(size.actions_per_video):
        duration = rng.uniform(1.2, 2.0)
        actions.append(Action(sample_action(rng), t, t + duration))
        t += duration + rng.uniform(0.3, 0.7)
    return actions, t + 0.2


def _ease(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return 0.5 - 0.5 * math.cos(math.pi * x)


@dataclass(frozen=True)
class Placement:
    """Nuisances of one action instance, drawn independently of its classes."""

    x: float
    y: float
    size: float  # the object's size in pixels
    tint: np.ndarray  # added to the noun's colour
    angle: float  # degrees
    phase: float


def _place(rng: np.random.Generator, width: int, height: int, scale: float) -> Placement:
    return Placement(
        x=rng.uniform(0.35, 0.65) * width,
        y=rng.uniform(0.45, 0.65) * height,
        size=0.16 * scale * rng.uniform(0.9, 1.1),
        tint=rng.uniform(-12, 12, 3).astype(np.float32),
        angle=rng.uniform(-10, 10),
        phase=rng.uniform(0, 2 * math.pi),
    )


class Part(NamedTuple):
    """One ellipse of the scene."""

    x: float  # centre, pixels
    y: float
    half_width: float
    half_height: float
    angle: float  # degrees
    colour: tuple
    texture: str | None = None  # "stripes" (move with the part) or "falling" (liquid running down)
    kind: str | None = None  # its box kind ("object", "hand") for the Something-Else boxes


def action_parts(action: Action, place: Placement, t: float, scale: float) -> list[Part]:
    """What the camera sees of ``action`` at time ``t`` (s), back to front. The verb shows in the hand's
    grip and the object's state and motion; the noun in the object's colour and shape (docs/data.md)."""
    verb, noun = VERBS[action.latent.verb], NOUN_SPECS[action.latent.noun]
    p = (t - action.start) / (action.stop - action.start)
    local = t - action.start
    half_w, half_h = (place.size * k for k in SHAPES[noun.shape])
    colour = tuple(np.clip(np.array(COLOURS[noun.colour]) + place.tint, 0, 255))
    x, y, angle = place.x, place.y, place.angle
    parts: list[Part] = []
    lift = 0.35 * scale  # a hand-length at arm's reach
    if verb == "take":  # rests on the counter (a contact shadow), then is lifted
        y -= lift * _ease((p - 0.3) / 0.6)
    elif verb == "put":  # is lowered, then rests
        y -= lift * (1 - _ease((p - 0.1) / 0.6))
    elif verb in ("adjust", "shake"):  # held in place and moved by a few pixels: slowly, or fast
        x += 8.0 * math.sin(2 * math.pi * (0.6 if verb == "adjust" else 5.0) * local + place.phase)
    elif verb == "wash":  # scrubbed under a stream of water
        x += 5.0 * math.sin(2 * math.pi * 2.0 * local + place.phase)
    elif verb in ("open", "close"):  # steadied by one hand while the other moves the lid
        y += 1.5 * math.sin(2 * math.pi * 1.5 * local + place.phase)
    elif verb == "pour":  # tilted, then liquid runs from the rim
        angle += 80.0 * _ease((p - 0.1) / 0.5)
    resting = (verb == "take" and p < 0.3) or (verb == "put" and p > 0.7)
    if resting:
        parts.append(Part(x, y + half_h * 0.85, half_w * 1.3, max(half_h * 0.45, 3.0), 0.0, SHADOW))
    if verb == "wash":  # the stream falls from the top of the frame onto the object
        parts.append(Part(x, (y - half_h) / 2, 4.0, (y - half_h) / 2, 0.0, LIQUID, "falling"))
    parts.append(Part(x, y, half_w, half_h, angle, colour, "stripes", "object"))
    hand = (x + half_w * 0.9, y + half_h * 0.3)
    if verb in ("open", "close"):
        away = _ease((p - 0.3) / 0.5) if verb == "open" else 1 - _ease((p - 0.2) / 0.5)
        top = y - half_h * 0.95
        lid = (x + 0.15 * scale * away, top - 0.25 * scale * away)
        parts.append(Part(*lid, max(half_w, 0.6 * place.size), 0.35 * place.size, 0.0, LID, "stripes"))
        hand = (lid[0] + max(half_w, 0.6 * place.size) + 0.3 * place.size, lid[1])
    elif verb == "cut":  # a knife chops down onto the object
        height = (0.05 + 0.15 * (0.5 + 0.5 * math.sin(2 * math.pi * 3.0 * local + place.phase))) * scale
        knife = (x + 0.3 * place.size, y - half_h - height)
        parts.append(Part(*knife, 1.8 * place.size, 0.22 * place.size, -15.0, TOOL, "stripes"))
        hand = (knife[0] + 1.6 * place.size, knife[1] - 0.4 * place.size)
    elif verb == "pour" and p > 0.5:
        rim = x + half_w * 0.9, y - half_h * 0.3
        parts.append(Part(rim[0] + 3, rim[1] + 0.18 * scale, 3.5, 0.18 * scale, 0.0, LIQUID, "falling"))
    parts.append(Part(*hand, 0.55 * place.size, 0.42 * place.size, 0.0, SKIN, kind="hand"))
    return parts


def _ellipse(canvas: np.ndarray, part: Part, t: float) -> None:
    """Draw one (rotated, optionally striped) ellipse onto ``canvas`` ``[H, W, 3]`` float32."""
    cx, cy, rx, ry, angle, colour, texture, _ = part
    h, w, _ = canvas.shape
    reach = max(rx, ry) + 1
    y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 2, h)
    x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 2, w)
    if y1 <= y0 or x1 <= x0:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
    inside = (u / rx) ** 2 + (v / ry) ** 2 <= 1.0
    shade = np.broadcast_to(np.asarray(colour, dtype=np.float32), (*inside.shape, 3))
    if texture == "stripes":  # stripes that move with the part, so flow has something to track
        shade = shade * (0.78 + 0.22 * (np.sin((u + v) * 1.3) > 0))[..., None]
    elif texture == "falling":  # ripples running down at 60 px/s
        shade = shade * (0.8 + 0.2 * (np.sin((v - 60.0 * t) * 0.9) > 0))[..., None]
    canvas[y0:y1, x0:x1][inside] = shade[inside]


def render_video(
    rng: np.random.Generator, actions: list[Action], duration: float, size: SynthSize, boxes: list | None = None
) -> np.ndarray:
    """Frames ``[N, H, W, 3]`` uint8 of one recording.

    When ``boxes`` is a list, one entry per frame is appended: the visible
    ``(x1, y1, x2, y2, kind)`` boxes in frame pixels, kind ``"hand"`` or ``"object"``.
    """
    margin = 8
    H, W = size.height + 2 * margin, size.width + 2 * margin
    # a muted counter (dark greys and browns) with clutter, so the coloured objects stand out
    tone = rng.uniform(55, 115, size=(4, 5, 1)) + rng.uniform(-12, 12, size=(4, 5, 3))
    background = np.kron(tone.astype(np.float32), np.ones((H // 4 + 1, W // 5 + 1, 1), dtype=np.float32))[:H, :W]
    for _ in range(6):
        y, x = rng.integers(0, H - 10), rng.integers(0, W - 10)
        background[y : y + rng.integers(5, 20), x : x + rng.integers(5, 25)] = rng.uniform(40, 130) + rng.uniform(
            -15, 15, 3
        )
    frames_count = int(duration * size.fps)
    shake = np.cumsum(rng.normal(0, 0.4, size=(frames_count, 2)), axis=0)
    shake = np.clip(shake - shake.mean(0), -margin + 1, margin - 1)
    distractor = np.array([rng.uniform(0, W), rng.uniform(0, H)])
    scale = min(size.width, size.height)
    placements = [_place(rng, W, H, scale) for _ in actions]
    frames = np.empty((frames_count, size.height, size.width, 3), dtype=np.uint8)
    for i in range(frames_count):
        t = i / size.fps
        canvas = background.copy()
        frame_boxes = []
        distractor = np.clip(distractor + rng.normal(0, 0.5, 2), 0, [W, H])
        _ellipse(canvas, Part(distractor[0], distractor[1], 6, 4, 0.0, (150, 140, 110)), t)
        for action, place in zip(actions, placements):
            if action.start <= t <= action.stop:
                for part in action_parts(action, place, t, scale):
                    _ellipse(canvas, part, t)
                    if part.kind is not None:
                        reach = max(part.half_width, part.half_height)
                        frame_boxes.append((part.x - reach, part.y - reach, part.x + reach, part.y + reach, part.kind))
        oy, ox = (margin + shake[i]).round().astype(int)
        if boxes is not None:  # into the coordinates of the shaken, cropped view
            boxes.append(
                [
                    (max(x1 - ox, 0), max(y1 - oy, 0), min(x2 - ox, size.width), min(y2 - oy, size.height), kind)
                    for x1, y1, x2, y2, kind in frame_boxes
                    if x2 - ox > 0 and y2 - oy > 0 and x1 - ox < size.width and y1 - oy < size.height
                ]
            )
        view = canvas[oy : oy + size.height, ox : ox + size.width]
        view = view * rng.uniform(0.95, 1.05) + rng.normal(0, 6, view.shape)
        frames[i] = np.clip(view, 0, 255).astype(np.uint8)
    return frames


def _band_noise(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    """White noise band-passed to ``[low, high]`` Hz (in the frequency domain), unit RMS."""
    spectrum = np.fft.rfft(rng.normal(size=n))
    frequencies = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spectrum[(frequencies < low) | (frequencies > high)] = 0
    out = np.fft.irfft(spectrum, n)
    return out / (np.sqrt(np.mean(out**2)) + 1e-9)


def _decaying(frequencies: tuple[float, ...], decay: float, length: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(length) / SAMPLE_RATE
    tone = sum(np.sin(2 * np.pi * f * rng.uniform(0.97, 1.03) * t + rng.uniform(0, 6.28)) for f in frequencies)
    return tone * np.exp(-t / decay) / len(frequencies)


def render_audio(rng: np.random.Generator, actions: list[Action], duration: float) -> np.ndarray:
    """Mono float32 samples at 24 kHz of one recording: the room, each verb's own sound (water,
    chopping, pouring, a rattle when it rattles) and a knock revealing the object's material
    when the instance knocks (docs/data.md)."""
    n = int(duration * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    audio = 0.02 * rng.normal(size=n) + 0.02 * np.sin(2 * np.pi * 50 * t)
    for _ in range(int(duration * 1.5)):  # clicks of the room, unrelated to the actions
        at = rng.integers(0, n - 200)
        audio[at : at + 200] += 0.2 * rng.normal(size=200) * np.exp(-np.arange(200) / 40)
    for action in actions:
        latent = action.latent.instance
        a, b = int(action.start * SAMPLE_RATE), min(int(action.stop * SAMPLE_RATE), n)
        length = b - a
        if latent.masked:  # the room is louder than the action: a hood's roar and a radio's tones alone
            audio[a:b] += 0.12 * _band_noise(rng, length, 100, 4000)
            for frequency in rng.uniform(200, 2000, size=3):
                audio[a:b] += 0.05 * np.sin(2 * np.pi * frequency * np.arange(length) / SAMPLE_RATE)
            continue
        sound = VERB_SPECS[latent.verb].sound
        if sound == "water":
            audio[a:b] += 0.08 * _band_noise(rng, length, 1500, 6000) * (0.8 + 0.2 * rng.random())
        elif sound == "chop":
            period = int(SAMPLE_RATE / 3.0)
            for at in range(a + rng.integers(0, period), b - 1500, period):
                audio[at : at + 1500] += 0.3 * _decaying((150.0,), 0.02, 1500, rng) + 0.1 * rng.normal(
                    size=1500
                ) * np.exp(-np.arange(1500) / 100)
        elif sound == "pour":  # liquid runs in the second half: a low band of noise with bubbles
            half = a + length // 2
            audio[half:b] += 0.06 * _band_noise(rng, b - half, 300, 1200)
            for at in rng.integers(half, max(b - 720, half + 1), size=int(12 * (b - half) / SAMPLE_RATE)):
                chirp = np.sin(2 * np.pi * np.cumsum(np.linspace(500, 900, 720)) / SAMPLE_RATE)
                audio[at : at + 720] += 0.08 * chirp * np.hanning(720)
        elif sound == "rattle" and latent.rattle:
            rattle = _band_noise(rng, 240, 3000, 8000) * np.exp(-np.arange(240) / 60)
            for at in range(a, b - 240, int(SAMPLE_RATE / 18)):
                audio[at : at + 240] += 0.4 * rattle
        if latent.knock:  # two or three knocks in the middle of the action, whatever the verb
            partials, decay = KNOCKS[NOUN_SPECS[latent.noun].material]
            ring = int(min(4 * decay, 0.5) * SAMPLE_RATE)
            for at in np.sort(rng.uniform(0.25, 0.75, size=int(rng.integers(2, 4)))):
                start = a + int(at * length)
                end = min(start + ring, n)
                audio[start:end] += 0.3 * _decaying(partials, decay, end - start, rng)
    return np.clip(audio, -1, 1).astype(np.float32)


def write_mp4(path: Path, frames: np.ndarray, fps: int, audio: np.ndarray | None) -> None:
    """H.264 video (+ AAC mono 24 kHz audio when given), written atomically.

    A ``.webm`` path gets VP8 video instead (as Something-Something v2), no audio.
    """
    import av

    webm = path.suffix == ".webm"
    with atomic_path(path, fsync=False) as tmp, av.open(str(tmp), "w", format="webm" if webm else "mp4") as container:
        video = container.add_stream("libvpx" if webm else "libx264", rate=fps)
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        video.thread_count = 1  # tiny frames: threads cost more than they save, and workers run in parallel
        video.options = (
            {"crf": "10", "b:v": "1M", "deadline": "realtime", "cpu-used": "8"}
            if webm
            else {"preset": "veryfast", "crf": "18"}
        )
        audio = None if webm else audio
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=SAMPLE_RATE)
            sound.layout = "mono"
        for frame in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            for start in range(0, len(audio), 1024):
                chunk = audio[start : start + 1024][None]
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                frame.sample_rate, frame.pts = SAMPLE_RATE, start
                for packet in sound.encode(frame):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)


def _make_video(job: tuple) -> tuple[str, str, list[Action], float, bool]:
    out, seed, index, participant, video_id, size = job
    rng = np.random.default_rng([seed, index])
    actions, duration = plan_actions(rng, size)
    frames = render_video(rng, actions, duration, size)
    has_audio = rng.random() >= WORLD.audio_track_missing
    audio = render_audio(rng, actions, duration) if has_audio else None
    write_mp4(Path(out) / participant / "videos" / f"{video_id}.MP4", frames, size.fps, audio)
    return participant, video_id, actions, len(frames) / size.fps, has_audio


def synthesize(
    out: str | Path, seed: int = 0, size: str | SynthSize = "quick", workers: int = 2, progress: bool = True
) -> dict:
    """Write SynthKitchen recordings and EPIC-format annotations under ``out``; returns a summary.

    ``size`` is a name from :data:`SIZES` or a :class:`SynthSize` (tests use tiny ones).
    """
    from tqdm import tqdm

    if isinstance(size, str) and size not in SIZES:
        raise ValueError(f"unknown SynthKitchen size {size!r}; choose one of {', '.join(SIZES)}")
    spec = SIZES[size] if isinstance(size, str) else size
    out = Path(out)
    jobs = [(str(out), seed, i, p, v, spec) for i, (p, v) in enumerate(video_ids(spec))]
    with process_pool(workers) as pool:
        results = list(
            tqdm(pool.map(_make_video, jobs), total=len(jobs), desc="synth", unit="video", disable=not progress)
        )
    splits = participant_splits(spec)
    write_annotations(out / "annotations", results, spec, splits)
    return {
        "videos": len(results),
        "segments": sum(len(r[2]) for r in results),
        "without_audio": sum(not r[4] for r in results),
        "validation_participants": sorted(p for p, split in splits.items() if split == "validation"),
        "test_participants": sorted(p for p, split in splits.items() if split == "test"),
    }


def participant_splits(size: SynthSize) -> dict[str, str]:
    """Participant -> split: the last ``test_participants`` are test, the ``validation_participants``
    before them validation, the rest train."""
    test_from = size.participants - size.test_participants + 1
    validation_from = test_from - size.validation_participants
    if validation_from < 2:
        raise ValueError(f"{size}: no participant left for training")
    return {
        f"P{p:02d}": "test" if p >= test_from else "validation" if p >= validation_from else "train"
        for p in range(1, size.participants + 1)
    }


#: what no annotator wrote: each segment's true classes and latent flags (the fields of
#: ``synth_world.Instance``), so a model can be scored against the Bayes-optimal guess clip by clip
#: (``synth_world.bayes_classifier``; scripts/extractor_per_verb.py)
LATENTS_FILE = "SynthKitchen_latents.csv"
LATENT_COLUMNS = ["narration_id", "verb_class", "noun_class", "knock", "rattle", "masked"]


def read_latents(path: Path) -> dict[str, Instance]:
    """``{narration_id: Instance}`` from a :data:`LATENTS_FILE` (``karmma synth`` writes it beside the
    annotations; ``karmma prepare`` copies it to ``OUT/annotations``)."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        if next(reader, None) != LATENT_COLUMNS:
            raise ValueError(f"{path}: expected the columns {', '.join(LATENT_COLUMNS)}")
        out = {}
        for line, row in enumerate(reader, start=2):
            try:
                verb, noun, *flags = (int(x) for x in row[1:])
                if len(flags) != 3 or not (0 <= verb < len(VERBS) and 0 <= noun < len(NOUNS)):
                    raise ValueError
            except ValueError:
                raise ValueError(f"{path}, line {line}: not a SynthKitchen latent row: {row}") from None
            out[row[0]] = Instance(verb, noun, *map(bool, flags))
    return out


def write_annotations(folder: Path, results: list, size: SynthSize, splits: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, keys in (("verb", VERBS), ("noun", NOUNS)):
        with atomic_open(folder / f"EPIC_100_{name}_classes.csv", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "key", "instances", "category"])
            for i, key in enumerate(keys):
                writer.writerow([i, key, str([key]), "synthetic"])
    header = [*EPIC_TIMESTAMP_COLUMNS, *EPIC_LABEL_COLUMNS]
    rows: dict[str, list] = {"train": [], "validation": [], **({"test": []} if size.test_participants else {})}
    latents = []
    for participant, video_id, actions, _, _ in results:
        split = splits[participant]
        for k, a in enumerate(actions):
            instance = a.latent.instance
            flags = (instance.knock, instance.rattle, instance.masked)
            latents.append([f"{video_id}_{k}", instance.verb, instance.noun, *map(int, flags)])
            # frames from the written timestamps, by the rule every reader applies (EPIC's convention)
            start_frame, stop_frame = segment_frame_range(
                parse_timestamp(epic_timestamp(a.start)), parse_timestamp(epic_timestamp(a.stop)), size.fps
            )
            verb, noun = VERBS[a.verb], NOUNS[a.noun]
            rows[split].append(
                [
                    f"{video_id}_{k}",
                    participant,
                    video_id,
                    epic_timestamp(a.start),
                    epic_timestamp(a.start),
                    epic_timestamp(a.stop),
                    start_frame,
                    stop_frame,
                    f"{verb} {noun}",
                    verb,
                    a.verb,
                    noun,
                    a.noun,
                    str([noun]),
                    str([a.noun]),
                ]
            )
    for split, split_rows in rows.items():
        with atomic_open(folder / f"EPIC_100_{split}.csv", newline="") as f:
            csv.writer(f).writerows([header, *split_rows])
    with atomic_open(folder / LATENTS_FILE, newline="") as f:
        csv.writer(f).writerows([LATENT_COLUMNS, *latents])
    with atomic_open(folder / "EPIC_100_video_info.csv", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video_id", "duration", "fps", "resolution"])
        for _, video_id, _, duration, _ in results:
            writer.writerow([video_id, f"{duration:.3f}", size.fps, f"{size.width}x{size.height}"])


# --- Something-Something v2 layout -----------------------------------------

SOMETHING_ELSE_PARTS = tuple(f"bounding_box_smthsmth_part{i}.json" for i in range(1, 5))
SSV2_TEMPLATES = [  # one per SynthKitchen verb, in the order of synth_world.VERBS
    "Taking [something]",
    "Putting [something] down",
    "Washing [something]",
    "Opening [something]",
    "Closing [something]",
    "Cutting [something]",
    "Pouring [something] out",
    "Moving [something] slightly",
    "Shaking [something]",
]


def _make_ssv2_clip(job: tuple) -> dict:
    out, seed, index, size = job
    rng = np.random.default_rng([seed, 10_000 + index])
    action = Action(sample_action(rng), 0.2, 0.2 + rng.uniform(1.6, 2.4))
    duration = action.stop + 0.2
    boxes: list = []
    frames = render_video(rng, [action], duration, size, boxes)
    video_id = str(100_001 + index)
    write_mp4(Path(out) / "videos" / f"{video_id}.webm", frames, size.fps, None)
    noun = NOUNS[action.noun]
    annotation = []
    for number, frame_boxes in enumerate(boxes, start=1):
        labels = [
            {
                "box2d": {"x1": x1, "y1": y1, "x2": x2, "y2": y2},
                "category": "hand" if kind == "hand" else noun,
                "standard_category": "hand" if kind == "hand" else "0000",
                "gt_annotation": f"object {kind}",
            }
            for x1, y1, x2, y2, kind in frame_boxes
        ]
        annotation.append(
            {
                "name": f"{video_id}/{number:04d}.jpg",
                "labels": labels,
                "gt_placeholders": [noun],
                "nr_instances": len(labels),
            }
        )
    template = SSV2_TEMPLATES[action.verb]
    entry = {
        "id": video_id,
        "label": template.replace("[something]", noun).lower(),
        "template": template,
        "placeholders": [noun],
    }
    return {"entry": entry, "boxes": {video_id: annotation}}


def synthesize_ssv2(
    out: str | Path, seed: int = 0, size: str | SynthSize = "quick", workers: int = 2, progress: bool = True
) -> dict:
    """SynthKitchen in the Something-Something v2 layout: one ``.webm`` clip per action,
    the SSv2 label/split JSON files and per-frame boxes (D) in the four Something-Else files
    ``bounding_box_smthsmth_part{1..4}.json``, named as the shipped ``configs/ssv2`` expect."""
    import json

    from tqdm import tqdm

    spec = SIZES[size] if isinstance(size, str) else size
    clips = spec.participants * spec.videos_per_participant * spec.actions_per_video
    validation_from = clips - clips * spec.validation_participants // spec.participants
    out = Path(out)
    jobs = [(str(out), seed, i, spec) for i in range(clips)]
    with process_pool(workers) as pool:
        results = list(
            tqdm(pool.map(_make_ssv2_clip, jobs), total=clips, desc="synth", unit="clip", disable=not progress)
        )
    annotations = out / "annotations"
    annotations.mkdir(parents=True, exist_ok=True)
    labels = {t.replace("[", "").replace("]", ""): str(i) for i, t in enumerate(SSV2_TEMPLATES)}
    atomic_write_text(annotations / "something-something-v2-labels.json", json.dumps(labels, indent=1))
    splits = {
        "train": [r["entry"] for r in results[:validation_from]],
        "validation": [r["entry"] for r in results[validation_from:]],
    }
    for split, entries in splits.items():
        atomic_write_text(annotations / f"something-something-v2-{split}.json", json.dumps(entries))
    # Something-Else ships its boxes in four files; videos are spread over them as in the release
    parts: list[dict] = [{} for _ in SOMETHING_ELSE_PARTS]
    for i, r in enumerate(results):
        parts[i % len(parts)].update(r["boxes"])
    for name, part in zip(SOMETHING_ELSE_PARTS, parts):
        atomic_write_text(annotations / name, json.dumps(part))
    return {"videos": clips, "segments": clips, "without_audio": clips, "validation_clips": clips - validation_from}
