"""Track-id stability of detect → landmarks on the multi-face video, per ``detect_every``.

Counts as tests/test_detect_real.py does: a switch is an id beyond the number of people
(3 on openface_multi_face.avi), so ``switches = distinct ids - 3``. Also prints the share of
frames where all faces are followed and the cost of detect + landmarks per frame.

    python benchmarks/track_ids.py                      # detect_every 1, 3, 5 on the whole video
    python benchmarks/track_ids.py --every 5 --start 300
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED


def read_frames(path: Path, start: int = 0, stop: int | None = None) -> list[np.ndarray]:
    import av

    frames = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if stop is not None and i >= stop:
                break
            if i >= start:
                frames.append(frame.to_ndarray(format="bgr24"))
    return frames


def measure(frames: list[np.ndarray], every: int, people: int) -> dict:
    from facegraph.nodes.face.detect import Detect
    from facegraph.nodes.face.landmarks import Landmarks

    from facegraph import Packet

    detect, marks = Detect(detect_every=every), Landmarks()
    detect.open()
    marks.open()
    ids, complete, spent = set(), 0, 0.0
    per_frame = []
    for i, image in enumerate(frames):
        frame = Packet(i, 0, "bench", {"image": image})
        t0 = time.perf_counter()
        faces = detect.process(frame=frame)["faces"]
        out = marks.process(frame=frame, faces=Packet(i, 0, "bench", faces))["faces"]
        spent += time.perf_counter() - t0
        tids = [int(t) for t in out["track_id"]]
        ids.update(tids)
        complete += len(tids) == people
        per_frame.append((tids, out["boxes"].round(1).tolist()))
    detect.close()
    marks.close()
    return {"every": every, "ids": len(ids), "switches": max(0, len(ids) - people),
            "complete": complete / max(1, len(frames)), "ms": 1000 * spent / max(1, len(frames)),
            "per_frame": per_frame}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(SHARED / "data" / "videos" / "openface_multi_face.avi"))
    parser.add_argument("--every", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--stop", type=int, default=None)
    parser.add_argument("--people", type=int, default=3)
    parser.add_argument("--dump", default="", help="write per-frame ids and boxes (JSON) here")
    args = parser.parse_args()
    frames = read_frames(Path(args.video), args.start, args.stop)
    print(f"{args.video}: frames {args.start}..{args.start + len(frames)}")
    print(f"{'detect_every':>12} {'ids':>4} {'switches':>8} {'all found':>9} {'ms/frame':>8}")
    results = []
    for every in args.every:
        r = measure(frames, every, args.people)
        results.append(r)
        print(f"{every:>12} {r['ids']:>4} {r['switches']:>8} {r['complete']:>9.3f} {r['ms']:>8.1f}", flush=True)
    if args.dump:
        import json

        Path(args.dump).write_text(json.dumps({r["every"]: r["per_frame"] for r in results}))


if __name__ == "__main__":
    main()
