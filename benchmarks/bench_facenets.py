"""CPU ms per face, one thread, in one sitting: the two nets vs FaceMesh + geometric AUs vs FaceMesh + OpenFace AUs.

    python benchmarks/bench_facenets.py --lm benchmarks/models/landmark_pose_w05 --au benchmarks/models/au_net_w05

Every chain gets the same detections (SCRFD/BlazeFace, run once beforehand, not timed) of the
same frames of a one-face video, and is timed in CPU seconds (``time.process_time``, so the
other users of a shared machine do not count), in alternating rounds A B C A B C …; the
figure is the median over rounds of each chain's CPU ms per face.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from _common import DEFAULT_VIDEO, RESULTS, fail


def _frames(video: Path, n: int) -> list[Any]:
    import cv2

    cap = cv2.VideoCapture(str(video))
    out = []
    while len(out) < n:
        ok, image = cap.read()
        if not ok:
            break
        out.append(image)
    cap.release()
    if not out:
        fail(f"{video}: no frames")
    return out


def _chain(specs: list[tuple[str, dict[str, Any], dict[str, str]]]) -> list[tuple[Any, dict[str, str]]]:
    """Open node instances; each spec: (type, params, input port → upstream 'node.port' or 'frame'/'faces')."""
    from facegraph._registry import node_class
    from facegraph._runner import open_node

    nodes = []
    for i, (kind, params, wiring) in enumerate(specs):
        cls = node_class(kind)
        node = cls(f"n{i}", None, **cls.check_params(params))
        node.context.threads = 1
        open_node(node)
        nodes.append((node, wiring))
    return nodes


def _run_chain(nodes: list[tuple[Any, dict[str, str]]], frame: Any, faces: Any, fid: int) -> float:
    """CPU seconds for one frame through the chain (packets passed by hand, as an inline run would)."""
    from facegraph._ports import Packet

    have: dict[str, Any] = {"frame": frame, "faces": faces}
    spent = 0.0
    for i, (node, wiring) in enumerate(nodes):
        args = {port: have[src] for port, src in wiring.items()}
        t0 = time.process_time()
        out = node.process(**args) or {}
        spent += time.process_time() - t0
        for port, fields in out.items():
            have[f"n{i}.{port}"] = Packet(fid, 0, "bench", fields)
    return spent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lm", type=Path, required=True, help="landmark-pose model folder")
    parser.add_argument("--au", type=Path, required=True, help="AU net model folder")
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=RESULTS / "bench_facenets.json")
    args = parser.parse_args(argv)

    import facegraph.nodes  # noqa: F401 - registers the node types
    from facegraph.nodes.face.au import openface_folder

    from facegraph._ports import Packet

    images = _frames(args.video, args.frames)
    detect = _chain([("detect", {"detect_every": 1}, {"frame": "frame"})])[0][0]
    frames = [Packet(i, 0, "bench", {"image": im}) for i, im in enumerate(images)]
    faces = [Packet(i, 0, "bench", detect.process(frame=f)["faces"]) for i, f in enumerate(frames)]
    per_frame = [len(f.boxes) for f in faces]
    chains: dict[str, list[tuple[str, dict[str, Any], dict[str, str]]]] = {
        "nets (landmarks.nn refine + au.nn)": [
            ("landmarks.nn", {"model": str(args.lm), "backend": "onnx-cpu"}, {"frame": "frame", "faces": "faces"}),
            ("au.nn", {"model": str(args.au), "backend": "onnx-cpu"},
             {"crops": "n0.crops", "landmarks": "n0.landmarks68"})],
        "nets, one landmark pass": [
            ("landmarks.nn", {"model": str(args.lm), "backend": "onnx-cpu", "refine": False},
             {"frame": "frame", "faces": "faces"}),
            ("au.nn", {"model": str(args.au), "backend": "onnx-cpu"},
             {"crops": "n0.crops", "landmarks": "n0.landmarks68"})],
        "FaceMesh + geometric AUs": [
            ("landmarks", {}, {"frame": "frame", "faces": "faces"}),
            ("au", {"backend": "geometric"}, {"landmarks": "n0.landmarks68", "frame": "frame"})],
    }
    if openface_folder("") is not None:
        chains["FaceMesh + pose + openface AUs"] = [
            ("landmarks", {}, {"frame": "frame", "faces": "faces"}),
            ("pose", {}, {"landmarks": "n0.landmarks68", "frame": "frame"}),
            ("au", {"backend": "openface", "gaze": False},
             {"landmarks": "n0.landmarks68", "frame": "frame", "pose": "n1.pose"})]
    opened = {name: _chain(spec) for name, spec in chains.items()}
    for nodes in opened.values():  # warm-up: first calls allocate
        for i in range(3):
            _run_chain(nodes, frames[i], faces[i], i)
    rounds: dict[str, list[float]] = {name: [] for name in opened}
    n_faces = sum(per_frame)
    for _ in range(args.rounds):
        for name, nodes in opened.items():
            cpu = sum(_run_chain(nodes, f, d, i) for i, (f, d) in enumerate(zip(frames, faces, strict=True)))
            rounds[name].append(1000.0 * cpu / max(1, n_faces))
    base = statistics.median(rounds["FaceMesh + geometric AUs"])
    report = {"video": str(args.video), "frames": len(frames), "faces": n_faces, "rounds": args.rounds,
              "threads": 1, "lm": str(args.lm), "au": str(args.au), "cpu_ms_per_face": {}}
    print(f"{len(frames)} frames, {n_faces} faces, {args.rounds} alternating rounds, one thread, CPU ms per face:")
    for name, values in rounds.items():
        med = statistics.median(values)
        report["cpu_ms_per_face"][name] = {"median": round(med, 2), "rounds": [round(v, 2) for v in values],
                                           "vs_facemesh_geometric": round(med / base, 2)}
        print(f"  {name:38s} {med:7.2f}  ({med / base:.2f}× FaceMesh + geometric; rounds "
              f"{', '.join(f'{v:.1f}' for v in values)})")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
