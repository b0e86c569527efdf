"""SynthKitchen: an embedded egocentric-style dataset generated on the fly.

``karmma synth OUT --seed S --size quick`` writes real recordings
(``OUT/P01/videos/P01_101.MP4``: H.264 video, AAC mono audio at 24 kHz) and
EPIC-KITCHENS-100 annotation files (``OUT/annotations/``), so ``karmma
prepare`` and the EPIC dataset code run on it exactly as on real data.

The generative model (what each modality can know):

* Each recording is a sequence of actions separated by short pauses. An
  action is a (verb, noun) pair drawn uniformly.
* **Noun = colour x sound.** The object is a textured blob whose hue is one
  of red / green / blue, and while it moves it hums at a low (~260 Hz) or
  high (~620 Hz) pitch with harmonics. Six nouns are the 3 x 2 combinations,
  so RGB alone tells the colour (3 choices), audio alone the pitch (2), and
  only RGB + audio identify the noun.
* **Verb = motion.** lift (up), lower (down), push (right), pull (left),
  shake (fast horizontal oscillation). Motion is visible in optical flow and,
  less directly, in RGB across frames; the sound's loudness follows the
  object's speed, a weak verb cue in audio.
* **Nuisances.** Camera shake (a random walk of a few pixels), a
  static cluttered background, a skin-coloured "hand" that grips and partly
  occludes the object, a drifting distractor blob, pixel noise and
  brightness flicker; audio has background hum, noise and random clicks.
  About 15 % of recordings have **no audio track at all**.

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

import numpy as np

from karmma.data.annotations import EPIC_LABEL_COLUMNS, EPIC_TIMESTAMP_COLUMNS
from karmma.io import atomic_open, atomic_path, atomic_write_text
from karmma.parallel import process_pool

VERBS = ["lift", "lower", "push", "pull", "shake"]
NOUNS = ["cup", "plate", "sponge", "bottle", "pan", "knife"]
# noun -> (colour index, pitch index)
NOUN_COLOUR_PITCH = {n: (i // 2, i % 2) for i, n in enumerate(NOUNS)}
COLOURS = np.array([[200, 40, 40], [40, 170, 60], [40, 70, 200]], dtype=np.float32)
PITCHES = [260.0, 620.0]
SAMPLE_RATE = 24000


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
    verb: int
    noun: int
    start: float  # seconds
    stop: float


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
        actions.append(Action(int(rng.integers(len(VERBS))), int(rng.integers(len(NOUNS))), t, t + duration))
        t += duration + rng.uniform(0.3, 0.7)
    return actions, t + 0.2


def trajectory(verb: int, progress: float, scale: float) -> tuple[float, float]:
    """Object offset (dx, dy) in pixels at ``progress`` in [0, 1] of the action."""
    ease = 0.5 - 0.5 * math.cos(math.pi * progress)
    travel = 0.5 * scale
    if verb == 0:
        return 0.0, -travel * ease
    if verb == 1:
        return 0.0, travel * ease
    if verb == 2:
        return travel * ease, 0.0
    if verb == 3:
        return -travel * ease, 0.0
    return 0.12 * scale * math.sin(2 * math.pi * 3 * progress), 0.0


def _blob(canvas: np.ndarray, cx: float, cy: float, rx: float, ry: float, colour: np.ndarray, stripes: bool) -> None:
    h, w, _ = canvas.shape
    y0, y1 = max(int(cy - ry) - 1, 0), min(int(cy + ry) + 2, h)
    x0, x1 = max(int(cx - rx) - 1, 0), min(int(cx + rx) + 2, w)
    if y1 <= y0 or x1 <= x0:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
    shade = colour[None, None, :].repeat(y1 - y0, 0).repeat(x1 - x0, 1)
    if stripes:  # texture that moves with the object, so flow has something to track
        shade = shade * (0.75 + 0.25 * (np.sin((xx - cx + yy - cy) * 1.3) > 0))[..., None]
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
    # static background: smooth colour field plus clutter rectangles
    # muted kitchen tones (grey/brown with little saturation), so coloured objects stand out
    tone = rng.uniform(70, 170, size=(4, 5, 1)) + rng.uniform(-15, 15, size=(4, 5, 3))
    coarse = tone.astype(np.float32)
    background = np.kron(coarse, np.ones((H // 4 + 1, W // 5 + 1, 1), dtype=np.float32))[:H, :W]
    for _ in range(6):
        y, x = rng.integers(0, H - 10), rng.integers(0, W - 10)
        background[y : y + rng.integers(5, 20), x : x + rng.integers(5, 25)] = rng.uniform(50, 200) + rng.uniform(
            -20, 20, 3
        )
    frames_count = int(duration * size.fps)
    shake = np.cumsum(rng.normal(0, 0.4, size=(frames_count, 2)), axis=0)
    shake = np.clip(shake - shake.mean(0), -margin + 1, margin - 1)
    distractor = np.array([rng.uniform(0, W), rng.uniform(0, H)])
    distractor_colour = np.array([170, 160, 120], dtype=np.float32)
    skin = np.array([225, 180, 150], dtype=np.float32)
    scale = min(size.width, size.height)
    placements = [(rng.uniform(0.35, 0.65) * W, rng.uniform(0.4, 0.6) * H, rng.uniform(-12, 12)) for _ in actions]
    frames = np.empty((frames_count, size.height, size.width, 3), dtype=np.uint8)
    for i in range(frames_count):
        t = i / size.fps
        canvas = background.copy()
        frame_boxes = []
        distractor = np.clip(distractor + rng.normal(0, 0.5, 2), 0, [W, H])
        _blob(canvas, distractor[0], distractor[1], 6, 4, distractor_colour, stripes=False)
        for action, (x, y, tint) in zip(actions, placements):
            if action.start <= t <= action.stop:
                progress = (t - action.start) / (action.stop - action.start)
                dx, dy = trajectory(action.verb, progress, scale)
                colour = np.clip(COLOURS[NOUN_COLOUR_PITCH[NOUNS[action.noun]][0]] + tint, 0, 255)
                parts = [
                    (x + dx, y + dy, 0.16 * scale, 0.13 * scale, colour, True, "object"),
                    (x + dx + 0.12 * scale, y + dy + 0.13 * scale, 0.08 * scale, 0.06 * scale, skin, False, "hand"),
                ]
                for cx, cy, rx, ry, shade, stripes, kind in parts:
                    _blob(canvas, cx, cy, rx, ry, shade, stripes)
                    frame_boxes.append((cx - rx, cy - ry, cx + rx, cy + ry, kind))
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


def render_audio(rng: np.random.Generator, actions: list[Action], duration: float) -> np.ndarray:
    """Mono float32 samples at 24 kHz of one recording."""
    n = int(duration * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    audio = 0.02 * rng.normal(size=n) + 0.02 * np.sin(2 * np.pi * 50 * t)
    for _ in range(int(duration * 1.5)):  # clicks
        at = rng.integers(0, n - 200)
        audio[at : at + 200] += 0.2 * rng.normal(size=200) * np.exp(-np.arange(200) / 40)
    for action in actions:
        a, b = int(action.start * SAMPLE_RATE), min(int(action.stop * SAMPLE_RATE), n)
        local = np.arange(b - a) / SAMPLE_RATE
        progress = local / (action.stop - action.start)
        # loudness follows the object's speed (finite differences of the trajectory)
        scale = 100.0
        positions = np.array([trajectory(action.verb, p, scale) for p in np.linspace(0, 1, 64)])
        speed = np.linalg.norm(np.diff(positions, axis=0), axis=1)
        envelope = np.interp(progress, np.linspace(0, 1, 63), speed / (speed.max() + 1e-6))
        pitch = PITCHES[NOUN_COLOUR_PITCH[NOUNS[action.noun]][1]] * rng.uniform(0.95, 1.05)
        tone = sum(np.sin(2 * np.pi * pitch * k * local + rng.uniform(0, 6.28)) / k for k in (1, 2, 3))
        audio[a:b] += 0.25 * (0.3 + 0.7 * envelope) * tone
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


def _timestamp(seconds: float) -> str:
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h):02d}:{int(m):02d}:{s:05.2f}"


def _make_video(job: tuple) -> tuple[str, str, list[Action], float, bool]:
    out, seed, index, participant, video_id, size = job
    rng = np.random.default_rng([seed, index])
    actions, duration = plan_actions(rng, size)
    frames = render_video(rng, actions, duration, size)
    has_audio = rng.random() >= 0.15
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
    for participant, video_id, actions, _, _ in results:
        split = splits[participant]
        for k, a in enumerate(actions):
            start_frame = int(round(a.start * size.fps)) + 1
            stop_frame = int(round(a.stop * size.fps)) + 1
            verb, noun = VERBS[a.verb], NOUNS[a.noun]
            rows[split].append(
                [
                    f"{video_id}_{k}",
                    participant,
                    video_id,
                    _timestamp(a.start),
                    _timestamp(a.start),
                    _timestamp(a.stop),
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
    with atomic_open(folder / "EPIC_100_video_info.csv", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video_id", "duration", "fps", "resolution"])
        for _, video_id, _, duration, _ in results:
            writer.writerow([video_id, f"{duration:.3f}", size.fps, f"{size.width}x{size.height}"])


# --- Something-Something v2 layout -----------------------------------------

SOMETHING_ELSE_PARTS = tuple(f"bounding_box_smthsmth_part{i}.json" for i in range(1, 5))
SSV2_TEMPLATES = [
    "Lifting [something] up",
    "Putting [something] down",
    "Pushing [something] from left to right",
    "Pulling [something] from right to left",
    "Shaking [something]",
]


def _make_ssv2_clip(job: tuple) -> dict:
    out, seed, index, size = job
    rng = np.random.default_rng([seed, 10_000 + index])
    action = Action(int(rng.integers(len(VERBS))), int(rng.integers(len(NOUNS))), 0.2, 0.2 + rng.uniform(1.6, 2.4))
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
