"""Decode and encode throughput (frames per second) at 640×480 and 1920×1080.

    python benchmarks/codec.py [--json PATH] [--frames N]

Decode: the ``decode`` node's own path (PyAV decode + conversion to BGR uint8 in
its background thread), on ../shared videos when present (640×480 mpeg4 AVI,
1920×1080 h264 MP4), else on clips this script encodes first. Encode: the
``sink.video`` writer (libx264 veryfast crf 23, yuv420p) on synthetic moving frames.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_VIDEOS = REPO.parent / "shared" / "data" / "videos"
SIZES = {"640x480": (640, 480), "1920x1080": (1920, 1080)}
SHARED = {"640x480": "openface_2015-10-15-15-14.avi", "1920x1080": "facenet_pytorch_video.mp4"}


def synthetic(width: int, height: int, n: int) -> list[np.ndarray]:
    """Camera-like frames: smooth gradients, a moving bright block and mild sensor noise."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / width * 180, yy / height * 160, (xx + yy) / (width + height) * 120], -1)
    side = height // 4
    frames = []
    for i in range(n):
        img = base + rng.normal(0, 3, base.shape).astype(np.float32)
        x, y = (i * width // n) % (width - side), (i * height // (2 * n)) % (height - side)
        img[y : y + side, x : x + side] = (40, 200, 250)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


def encode(width: int, height: int, n: int, path: Path, threads: int) -> float:
    from facegraph.nodes.io._video import VideoWriter

    frames = synthetic(width, height, min(n, 30))
    writer = VideoWriter(path, threads=threads)
    start = time.perf_counter()
    for i in range(n):
        writer.write(frames[i % len(frames)], 30.0)
    writer.close()
    return n / (time.perf_counter() - start)


def decode(path: Path, n: int, threads: int) -> tuple[float, int]:
    from facegraph.nodes.io.decode import Decode

    from facegraph import RunContext

    node = Decode(context=RunContext(threads=threads), source=str(path), loop=True)
    node.open()
    count = 0
    start = time.perf_counter()
    try:
        for _ in node.frames():
            count += 1
            if count >= n:
                break
    finally:
        node.close()
    return count / (time.perf_counter() - start), count


def main(argv: list[str] | None = None) -> int:
    import facegraph.nodes  # noqa: F401

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the results here as JSON")
    ap.add_argument("--frames", type=int, default=300, help="frames per measurement")
    ap.add_argument("--threads", type=int, default=2, help="codec threads")
    args = ap.parse_args(argv)
    results = {"machine": platform.platform(), "python": sys.version.split()[0], "threads": args.threads,
               "frames": args.frames, "decode_fps": {}, "encode_fps": {}, "decode_input": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for label, (w, h) in SIZES.items():
            results["encode_fps"][label] = round(encode(w, h, args.frames, Path(tmp) / f"enc_{label}.mp4",
                                                        args.threads), 1)
            src = SHARED_VIDEOS / SHARED[label]
            if not src.exists():
                src = Path(tmp) / f"enc_{label}.mp4"
            results["decode_input"][label] = src.name
            results["decode_fps"][label] = round(decode(src, args.frames, args.threads)[0], 1)
    for kind in ("decode_fps", "encode_fps"):
        for label, fps in results[kind].items():
            print(f"{kind.split('_')[0]:7s} {label:>10s}: {fps:8.1f} fps")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
