"""How the default AU graph scales with faces per frame (1, 2, 4, 8) and with resolution (480p, 720p, 1080p).

    python benchmarks/scaling.py [--video PATH] [--frames 300] [--executor process]

Faces: the shared face video tiled n times into a fixed 1280×720 frame. Resolution:
the same video letterboxed to 640×480, 1280×720 and 1920×1080. The test videos are
written once into a temporary folder (MJPG, so decoding stays cheap and alike).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import DEFAULT_GRAPH, DEFAULT_VIDEO, RESULTS, fail, load_checked, markdown_table, top_nodes

FACES = (1, 2, 4, 8)
RESOLUTIONS = {"480p": (640, 480), "720p": (1280, 720), "1080p": (1920, 1080)}
CANVAS = (1280, 720)


def fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` scaled to fit ``width``×``height``, centred on black: faces keep their shape."""
    import cv2

    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    nw, nh = max(1, int(w * scale)), max(1, int(h * scale))
    out = np.zeros((height, width, 3), np.uint8)
    y, x = (height - nh) // 2, (width - nw) // 2
    how = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out[y : y + nh, x : x + nw] = cv2.resize(image, (nw, nh), interpolation=how)
    return out


def tile(image: np.ndarray, n: int) -> np.ndarray:
    """``n`` copies of the frame in a grid on the fixed canvas (each copy shifted in time would need a
    second decoder; identical copies are as hard for the detector and the per-face nodes)."""
    width, height = CANVAS
    cols = math.ceil(math.sqrt(n * width / height / (4 / 3)))
    cols = min(n, max(1, cols))
    rows = math.ceil(n / cols)
    tw, th = width // cols, height // rows
    out = np.zeros((height, width, 3), np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        out[r * th : (r + 1) * th, c * tw : (c + 1) * tw] = fit(image, tw, th)
    return out


def write_video(src: Path, dst: Path, frames: int, make: Callable[[np.ndarray], np.ndarray]) -> Path:
    import cv2

    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    writer = None
    try:
        for _ in range(frames):
            ok, image = cap.read()
            if not ok:
                break
            out = make(image)
            if writer is None:
                writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"MJPG"), fps, (out.shape[1], out.shape[0]))
            writer.write(out)
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    if writer is None:
        fail(f"{src}: no frames could be read")
    return dst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph", type=Path, default=DEFAULT_GRAPH)
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--executor", default="process", choices=["process", "inline"])
    parser.add_argument("--only", choices=["faces", "resolution"], help="run one of the two sweeps")
    parser.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE",
                        help="e.g. detect.max_faces=8 so that every tiled face is kept")
    parser.add_argument("--json", type=Path, default=RESULTS / "scaling.json")
    args = parser.parse_args(argv)

    from facegraph._bench.harness import BenchOptions, run_once
    from facegraph._bench.machine import describe_machine, package_versions
    from facegraph._bench.report import headline, write_json
    from facegraph._run import available_executors

    load_checked(args.graph, args.video, args.set)  # fail early, before writing videos
    if args.executor not in available_executors():
        fail(f"executor '{args.executor}' is not available here ({', '.join(available_executors())} are)")
    cases: list[tuple[str, str, Callable[[np.ndarray], np.ndarray]]] = []
    if args.only in (None, "faces"):
        cases += [("faces", str(n), lambda im, n=n: tile(im, n)) for n in FACES]
    if args.only in (None, "resolution"):
        cases += [("resolution", name, lambda im, wh=wh: fit(im, *wh)) for name, wh in RESOLUTIONS.items()]
    results = []
    rows = []
    with tempfile.TemporaryDirectory(prefix="facegraph-scaling-") as tmp:
        for sweep, label, make in cases:
            video = write_video(args.video, Path(tmp) / f"{sweep}-{label}.avi", args.frames, make)
            graph = load_checked(args.graph, video, args.set)
            out = Path(tmp) / f"out-{sweep}-{label}"
            out.mkdir()
            summary = run_once(graph, args.executor, BenchOptions(warmup=args.warmup, output_dir=out), out).summary
            summary.pop("latency_series", None)
            print(f"{sweep} {label}: " + headline(summary), flush=True)
            results.append({"sweep": sweep, "case": label, **summary})
            lat = summary["latency_ms"]
            rows.append([sweep, label, f"{summary['fps']:.1f}", f"{lat['p50']:.1f}", f"{lat['p95']:.1f}",
                         top_nodes(summary)])
    write_json(args.json, {"executor": args.executor, "frames": args.frames, "runs": results,
                           "machine": describe_machine(graph), "versions": package_versions()})
    print("\n" + markdown_table(["sweep", "case", "FPS", "p50 ms", "p95 ms", "costliest nodes (ms)"], rows))
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
