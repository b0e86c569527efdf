"""Peak memory of preparing one video vs its length (issue 13: memory must not grow with the video).

    python scripts/prepare_peak_memory.py --minutes 1 10 [--short-side 128 --fps 10]

Writes synthetic videos (moving noise, 320x240 at 25 fps, AAC audio) of the given
lengths, then prepares each in a fresh process (``karmma.data.prepare.prepare_video``,
the per-video work a ``karmma prepare`` worker does) and prints that process's peak
resident memory (``ru_maxrss``). Run it with another ``PYTHONPATH`` to measure
another version of the code.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = """
import json, resource, sys
from karmma.data.prepare import PrepareSettings, prepare_video
settings = PrepareSettings(flow="dis", fps=float(sys.argv[3]), short_side=int(sys.argv[4]))
summary = prepare_video((sys.argv[1], sys.argv[2], settings))
assert "error" not in summary, summary
print(json.dumps({"frames": summary["frames"], "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_video(path: Path, seconds: float, fps: int = 25, size=(320, 240)) -> None:
    import av

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (size[1] * 2, size[0] * 2, 3), dtype=np.uint8)
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "28"}
        sound = container.add_stream("aac", rate=24000)
        sound.layout = "mono"
        for i in range(int(seconds * fps)):
            x, y = (i * 3) % size[0], (i * 2) % size[1]  # a moving texture: real flow, real decoding work
            frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(base[y : y + size[1], x : x + size[0]]), format="rgb24"
            )
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        tone = (0.2 * np.sin(np.arange(1024) * 0.05)).astype(np.float32)[None]
        for start in range(0, int(seconds * 24000), 1024):
            chunk = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 24000, start
            for packet in sound.encode(chunk):
                container.mux(packet)
        for packet in sound.encode():
            container.mux(packet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--short-side", type=int, default=128)
    parser.add_argument("--fps", type=float, default=10.0)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            video = Path(tmp) / f"P01_1{int(minutes * 10):02d}.mp4"
            write_video(video, minutes * 60)
            out = Path(tmp) / f"out{minutes}"
            run = subprocess.run(
                [sys.executable, "-c", CHILD, str(video), str(out), str(args.fps), str(args.short_side)],
                capture_output=True,
                text=True,
                check=True,
            )
            results[f"{minutes:g} min"] = json.loads(run.stdout.strip().splitlines()[-1])
            print(f"{minutes:g} min: {results[f'{minutes:g} min']}", file=sys.stderr, flush=True)
    peaks = [r["peak_rss_mb"] for r in results.values()]
    print(
        json.dumps(
            {
                "results": results,
                "ratio_longest_to_shortest": round(peaks[-1] / peaks[0], 3),
                "max_rss_children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
