"""Real time of the live Session on this machine: per modality subset, the time to process one hop of
simulated sensor messages against the hop's length, ``session.predict`` p50 / p99, and memory over an hour.

    .venv/bin/python scripts/session_benchmark.py --make-student /tmp/bench     # full install: a tiny
        # random-weight student exported as one ONNX graph and a split-ONNX folder
    .venv-light/bin/python scripts/session_benchmark.py /tmp/bench/student-onnx --json bench.json

Simulated sensors: a 640 x 480 RGB camera at 30 Hz (stamps jittered by +-20 % of the interval) and a
16 kHz int16 microphone in 0.1 s chunks; a subset's session gets only its sensors (F needs the
camera). Each hop pushes its messages and polls (one ``predict``); the real-time factor is the mean
time of that work over the hop length, so a subset keeps up when it is below 1 (and its p99 below
the hop). Then one hour of both sensors is simulated (every push, a V+F+A prediction every
``--hour-hop`` s) and the process's resident memory and the session's buffers are read at 1, 10,
30 and 60 minutes. The
load average of the machine is recorded with each measurement: other users' work slows it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np

FPS, RATE, CHUNK = 30, 16000, 0.1
LATE = 0.1  # a window is predicted once the messages of the 0.1 s after it are in (jittered stamps)


def camera(count: int = FPS, size: tuple[int, int] = (480, 640)) -> np.ndarray:
    """``count`` frames of a bright square moving over noise (cycled: one second of content)."""
    background = np.random.default_rng(0).integers(0, 120, (*size, 3), dtype=np.uint8)
    frames = np.repeat(background[None], count, axis=0)
    for i in range(count):
        x = 40 + 15 * i
        frames[i, 150:300, x : x + 120] = 230
    return frames


def simulate(session, seconds: float, hop: float, sensors: set[str], record=None):
    """Push ``seconds`` of messages, hop by hop, polling after each; returns (seconds per hop, seconds per predict)."""
    frames = camera()
    tone = (0.3 * np.sin(np.arange(int(CHUNK * RATE)) * 2 * np.pi * 440 / RATE) * 32767).astype(np.int16)
    jitter = np.random.default_rng(1).uniform(-0.2, 0.2, int(seconds * FPS) + FPS) / FPS
    hop_seconds, predict_seconds = [], []
    frame, chunk = 0, 0
    for k in range(1, int(seconds / hop) + 1):
        end = k * hop
        start = time.perf_counter()
        while "camera" in sensors and frame / FPS < end + LATE:
            session.push_frame(frame / FPS + jitter[frame], frames[frame % FPS])
            frame += 1
        while "microphone" in sensors and chunk * CHUNK < end + LATE:
            session.push_audio(chunk * CHUNK, tone, RATE)
            chunk += 1
        before = time.perf_counter()
        windows = session.poll(end)
        done = time.perf_counter()
        if windows:
            hop_seconds.append(done - start)
            predict_seconds.append((done - before) / len(windows))
        if record:
            record(end)
    return np.array(hop_seconds), np.array(predict_seconds)


def resident_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def make_student(out: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from light_install_check import make_student as make

    out.mkdir(parents=True, exist_ok=True)
    for form, path in make(out).items():
        print(f"{form}: {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", help="an ONNX student: .onnx or a split-ONNX folder")
    parser.add_argument("--make-student", type=Path, metavar="DIR", help="write a tiny random-weight student (torch)")
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--hop", type=float, default=0.5)
    parser.add_argument("--seconds", type=float, default=120.0, help="simulated seconds per subset")
    parser.add_argument("--hour", type=float, default=3600.0, help="simulated seconds of the memory run (0: none)")
    parser.add_argument("--hour-hop", type=float, default=5.0, help="seconds between predictions of the memory run")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.make_student:
        make_student(args.make_student)
        return 0
    if not args.model:
        parser.error("give a model, or --make-student DIR")

    from karmma.deploy.recognizer import Recognizer

    recognizer = Recognizer.load(args.model, threads=args.threads)
    torch_loaded = "torch" in sys.modules
    rows = []
    subsets = [list(c) for n in (3, 2, 1) for c in combinations(recognizer.modalities, n)]
    for subset in subsets:
        sensors = ({"camera"} if {"V", "F"} & set(subset) else set()) | ({"microphone"} if "A" in subset else set())
        session = recognizer.session(args.window, args.hop, modalities=subset)
        load = os.getloadavg()[0]
        hops, predicts = simulate(session, args.seconds, args.hop, sensors)
        row = {
            "subset": "+".join(subset),
            "hop_ms": 1000 * hops.mean(),
            "rtf": hops.mean() / args.hop,
            "rtf_p99": np.percentile(hops, 99) / args.hop,
            "predict_p50_ms": 1000 * np.percentile(predicts, 50),
            "predict_p99_ms": 1000 * np.percentile(predicts, 99),
            "windows": len(predicts),
            "load": (load + os.getloadavg()[0]) / 2,
        }
        row["keeps_up"] = bool(row["rtf_p99"] < 1)
        rows.append(row)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)

    memory = []
    if args.hour:
        session = recognizer.session(args.window, args.hour_hop)
        marks = [m for m in (60, 600, 1800, 3600) if m <= args.hour] or [args.hour]

        def record(t: float) -> None:
            if marks and t >= marks[0]:
                memory.append(
                    {
                        "minutes": marks.pop(0) / 60,
                        "rss_mb": resident_mb(),
                        "buffered_mb": session.buffered_bytes() / 2**20,
                        "load": os.getloadavg()[0],
                    }
                )
                print(json.dumps({k: round(v, 2) for k, v in memory[-1].items()}), flush=True)

        clock = time.perf_counter()
        hops, predicts = simulate(session, args.hour, args.hour_hop, {"camera", "microphone"}, record)
        memory_run = {
            "simulated_s": args.hour,
            "wall_s": time.perf_counter() - clock,
            "windows": len(predicts),
            "predict_p50_ms": 1000 * np.percentile(predicts, 50),
            "predict_p99_ms": 1000 * np.percentile(predicts, 99),
            "rtf": hops.mean() / args.hour_hop,
        }
        print(json.dumps({k: round(v, 3) for k, v in memory_run.items()}), flush=True)
    else:
        memory_run = {}

    print(
        f"\nmodel {args.model} ({recognizer.backend}, {args.threads} threads), window {args.window} s, hop {args.hop} s, "
        f"{args.seconds:.0f} s simulated per subset; {os.cpu_count()} CPUs; torch imported: {torch_loaded}\n"
    )
    print(
        "| live sensors (subset) | ms per hop | real-time factor (mean / p99) | predict p50 ms | predict p99 ms | keeps up | load avg |"
    )
    print("|---|---:|---:|---:|---:|---|---:|")
    for r in rows:
        print(
            f"| {r['subset']} | {r['hop_ms']:.1f} | {r['rtf']:.3f} / {r['rtf_p99']:.3f} | {r['predict_p50_ms']:.1f} | "
            f"{r['predict_p99_ms']:.1f} | {'yes' if r['keeps_up'] else 'no'} | {r['load']:.1f} |"
        )
    if memory:
        print(
            f"\nmemory run: {memory_run['windows']} predictions (one every {args.hour_hop} s) in {memory_run['wall_s']:.0f} s"
        )
        print("\n| simulated minutes | resident MB | buffered MB | load avg |\n|---:|---:|---:|---:|")
        for m in memory:
            print(f"| {m['minutes']:.0f} | {m['rss_mb']:.1f} | {m['buffered_mb']:.2f} | {m['load']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"subsets": rows, "memory": memory, "hour": memory_run}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
