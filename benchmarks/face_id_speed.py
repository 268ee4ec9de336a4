"""CPU ms per face of face-ID exports (ONNX Runtime, one thread), A/B in one sitting: runs alternate, so the
machine's noise falls on both, and the ratio to the first model is what carries to another machine.

    python benchmarks/face_id_speed.py MODEL.onnx [MODEL.onnx …] [--faces 1] [--rounds 20] [--repeats 50]

A model's input shape ([N, C, S, S]) comes from the file; the first one is the baseline.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _timer(path: Path, faces: int):
    session = _session(path)
    inp = session.get_inputs()[0]
    _, channels, height, width = inp.shape
    x = np.random.default_rng(0).normal(size=(faces, int(channels), int(height), int(width))).astype(np.float32)

    def run() -> float:
        t0 = time.perf_counter()
        session.run(None, {inp.name: x})
        return time.perf_counter() - t0

    for _ in range(5):
        run()
    return run


def main() -> int:
    from facegraph.nodes.models._catalogue import resolve

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="ONNX files or catalogue names (facegraph/face_id)")
    p.add_argument("--faces", type=int, default=1, help="faces per call")
    p.add_argument("--rounds", type=int, default=20, help="alternations of the models")
    p.add_argument("--repeats", type=int, default=50, help="calls per model per round")
    p.add_argument("--json")
    args = p.parse_args()
    paths = [Path(m) if Path(m).exists() else Path(resolve(m)) for m in args.models]
    timers = [_timer(path, args.faces) for path in paths]
    times: list[list[float]] = [[] for _ in paths]
    for _ in range(args.rounds):
        for k, run in enumerate(timers):
            times[k] += [run() for _ in range(args.repeats)]
    ms = [float(np.median(t) * 1000 / args.faces) for t in times]
    rows = [{"model": str(m), "ms_per_face": round(v, 3), "ratio_to_first": round(v / ms[0], 3)}
            for m, v in zip(args.models, ms, strict=True)]
    for row in rows:
        print(f"{row['model']}: {row['ms_per_face']:.3f} ms per face ({args.faces} per call, one thread), "
              f"×{row['ratio_to_first']:.2f} the first")
    if args.json:
        Path(args.json).write_text(json.dumps({"faces_per_call": args.faces, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
