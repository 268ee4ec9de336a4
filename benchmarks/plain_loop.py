"""A plain hand-written mediapipe loop doing the default AU graph's job, as the engine's outside baseline.

Issue 12 measures the engine against "a plain hand-written mediapipe loop": what a user writes without facegraph.
This is that loop, written the obvious way: OpenCV reads the video, mediapipe's FaceMesh solution (its own
BlazeFace detection + landmark tracking) finds the faces, OpenCV's solvePnP gives the head pose, a few landmark
ratios stand in for the AUs, and every frame is drawn on and written to an MP4 and a CSV row. With ``--rounds N``
it alternates with ``facegraph bench`` (process executor) on the same video in the same sitting and prints the
FPS and CPU-per-frame ratios, the only figures that mean anything on a noisy machine.

    python benchmarks/plain_loop.py --frames 600 --rounds 3
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_GRAPH, DEFAULT_VIDEO, fail

# six FaceMesh points and a generic 3-D face (mm) for solvePnP: nose tip, chin, eye corners, mouth corners
MESH_POINTS = [1, 152, 33, 263, 61, 291]
MODEL_POINTS = np.array(
    [[0.0, 0.0, 0.0], [0.0, -63.6, -12.5], [-43.3, 32.7, -26.0], [43.3, 32.7, -26.0], [-28.9, -28.9, -24.1],
     [28.9, -28.9, -24.1]],
    dtype=np.float64,
)


def ratio(p: np.ndarray, a: int, b: int, c: int, d: int) -> float:
    """|p[a] - p[b]| / |p[c] - p[d]|: the scale-free distances hand-written AU proxies use."""
    return float(np.linalg.norm(p[a] - p[b]) / max(np.linalg.norm(p[c] - p[d]), 1e-6))


def run_plain(video: Path, frames: int, out_dir: Path) -> dict[str, float]:
    """Run the loop over the first ``frames`` frames; FPS and CPU ms per frame of this process (all threads)."""
    import cv2
    import mediapipe as mp

    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        fail(f"{video}: OpenCV cannot open it")
    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=4, min_detection_confidence=0.5)
    fps_in = cap.get(cv2.CAP_PROP_FPS) or 30.0
    writer = None
    table = open(out_dir / "plain.csv", "w", newline="")
    rows = csv.writer(table)
    rows.writerow(["frame", "face", "pitch", "yaw", "roll", "jaw_drop", "lip_stretch", "eye_open"])
    done = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while done < frames:
        ok, bgr = cap.read()
        if not ok:
            break
        h, w = bgr.shape[:2]
        if writer is None:
            writer = cv2.VideoWriter(str(out_dir / "plain.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps_in, (w, h))
        found = mesh.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        camera = np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1]], dtype=np.float64)
        for k, face in enumerate(found.multi_face_landmarks or []):
            p = np.array([(lm.x * w, lm.y * h) for lm in face.landmark], dtype=np.float64)
            ok_pnp, rvec, tvec = cv2.solvePnP(MODEL_POINTS, p[MESH_POINTS], camera, None,
                                              flags=cv2.SOLVEPNP_ITERATIVE)
            angles = cv2.RQDecomp3x3(cv2.Rodrigues(rvec)[0])[0] if ok_pnp else (np.nan,) * 3
            rows.writerow([done, k, *(round(float(a), 2) for a in angles), round(ratio(p, 13, 14, 33, 263), 4),
                           round(ratio(p, 61, 291, 33, 263), 4), round(ratio(p, 159, 145, 33, 133), 4)])
            for x, y in p[::4].astype(int):
                cv2.circle(bgr, (int(x), int(y)), 1, (0, 255, 0), -1)
            if ok_pnp:
                cv2.drawFrameAxes(bgr, camera, None, rvec, tvec, 40)
        writer.write(bgr)
        done += 1
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    cap.release()
    mesh.close()
    if writer is not None:
        writer.release()
    table.close()
    if done == 0:
        fail(f"{video}: no frame could be read")
    return {"frames": done, "fps": done / wall, "cpu_ms_per_frame": 1000 * cpu / done}


def run_engine(video: Path, frames: int, out_dir: Path, au_backend: str) -> dict[str, float]:
    """``facegraph bench`` on the default AU graph, process executor, in a child process (its own CPU count)."""
    report = out_dir / "engine.json"
    cmd = [sys.executable, "-m", "facegraph", "bench", str(DEFAULT_GRAPH), "--source", str(video),
           "--frames", str(frames), "--executor", "process", "--set", f"au.backend={au_backend}",
           "--json", str(report)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"facegraph bench failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    data = json.loads(report.read_text())
    run = next((r for r in data.get("runs", [data]) if r.get("executor", "process") == "process"), data)
    return {"frames": run.get("frames", frames), "fps": run["fps"], "cpu_ms_per_frame": run["cpu_ms_per_frame"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=0, help="alternate with facegraph bench this many times")
    ap.add_argument("--json", type=Path, help="write every run and the ratios here")
    ap.add_argument("--au-backend", default="geometric",
                    help="the engine's AU backend: geometric (default, what the loop's landmark ratios match), "
                         "or openface / auto (OpenFace 2.2's models once fetched: about twice the CPU)")
    args = ap.parse_args()
    if not args.video.exists():
        fail(f"{args.video}: video not found (set FACEGRAPH_SHARED to the folder holding data/videos)")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    runs: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(max(1, args.rounds)):
            plain = run_plain(args.video, args.frames, Path(tmp))
            runs.append({"round": r, "variant": "plain", **plain})
            print(f"round {r} plain  {plain['fps']:7.1f} FPS  {plain['cpu_ms_per_frame']:6.2f} CPU ms/frame")
            if args.rounds:
                engine = run_engine(args.video, args.frames, Path(tmp), args.au_backend)
                runs.append({"round": r, "variant": "engine", **engine})
                print(f"round {r} engine {engine['fps']:7.1f} FPS  {engine['cpu_ms_per_frame']:6.2f} CPU ms/frame"
                      f"  → {engine['fps'] / plain['fps']:.2f}× FPS,"
                      f" {engine['cpu_ms_per_frame'] / plain['cpu_ms_per_frame']:.2f}× CPU")
    if args.json:
        args.json.write_text(json.dumps({"video": str(args.video), "frames": args.frames,
                                         "au_backend": args.au_backend, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
