"""Track ids of detect → landmarks: extra ids on the multi-face video, and track purity across shot cuts.

Default mode counts as tests/test_detect_real.py does: a switch is an id beyond the number of
people (3 on openface_multi_face.avi), so ``switches = distinct ids - 3``; it also prints the
share of frames where all faces are followed and the cost of detect + landmarks per frame.
That count cannot see two tracks swapping ids or an id carried onto another person after a cut.

``--purity`` measures that instead: on scenes with shot cuts (the Hamilton clip: cuts, 1-6
faces; and concatenations of different shared videos, cut back and forth), every output row
is named by a gallery (MobileFaceNet embeddings of all rows of the scene, clustered; a cluster
of at least ``--min-rows`` rows is one identity, a row is named by its nearest identity when
the cosine is at least ``--name-cos``, else left unnamed). Purity = Σ over tracks of the
rows of its most frequent identity / all named rows (row-weighted). ``before`` is landmarks
with shot cuts and the appearance gate off (what the node did until they came), ``after``
the defaults. The gallery does not depend on the tracker, so both are named alike.

    python benchmarks/track_ids.py                      # detect_every 1, 3, 5 on the whole video
    python benchmarks/track_ids.py --every 5 --start 300
    python benchmarks/track_ids.py --purity --every 5   # before/after on the cut scenes
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


BEFORE = {"shot_cut": 0.0}  # detect and landmarks as they were: no shot cuts ...
BEFORE_MARKS = {**BEFORE, "track_appearance": 1.0}  # ... and no appearance gate on followed faces


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


def letterbox(image: np.ndarray, size: tuple[int, int] = (640, 360)) -> np.ndarray:
    """``image`` scaled into a black ``size`` (w, h) canvas: clips of any size side by side."""
    import cv2

    w, h = size
    scale = min(w / image.shape[1], h / image.shape[0])
    nw, nh = round(image.shape[1] * scale), round(image.shape[0] * scale)
    canvas = np.zeros((h, w, 3), np.uint8)
    x, y = (w - nw) // 2, (h - nh) // 2
    canvas[y:y + nh, x:x + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return canvas


def concat_scene(names: list[str], segment: int, rounds: int) -> list[np.ndarray]:
    """Segments of ``segment`` frames taken from each video in turn, ``rounds`` times: a cut at
    every switch, and the same people coming back after cuts (letterboxed to 640×360)."""
    videos = [read_frames(SHARED / "data" / "videos" / n, 0, segment * rounds) for n in names]
    frames = []
    for r in range(rounds):
        for v in videos:
            frames += [letterbox(f) for f in v[r * segment:(r + 1) * segment]]
    return frames


def track_rows(frames: list[np.ndarray], every: int, det: dict, mark: dict, embedder) -> tuple[np.ndarray, np.ndarray]:
    """(track ids [R], embeddings [R, D]) of every face row detect → landmarks emits on ``frames``."""
    from facegraph.nodes.face._align import align
    from facegraph.nodes.face.detect import Detect
    from facegraph.nodes.face.landmarks import Landmarks

    from facegraph import Packet

    detect, marks = Detect(detect_every=every, **det), Landmarks(**mark)
    detect.open()
    marks.open()
    ids, vecs = [], []
    for i, image in enumerate(frames):
        frame = Packet(i, 0, "bench", {"image": image})
        faces = detect.process(frame=frame)["faces"]
        out = marks.process(frame=frame, faces=Packet(i, 0, "bench", faces))["faces"]
        if len(out["track_id"]):
            crops = np.stack([align(image, k)[0] for k in out["kps"]])
            vecs.append(embedder(crops))
            ids += [int(t) for t in out["track_id"]]
    detect.close()
    marks.close()
    return np.asarray(ids, np.int64), (np.concatenate(vecs) if vecs else np.zeros((0, embedder.dim), np.float32))


def build_gallery(vecs: np.ndarray, min_rows: int, name_cos: float) -> np.ndarray:
    """Unit centroids [P, D] of the clusters of a scene's own embeddings with at least ``min_rows`` rows."""
    from scipy.cluster.hierarchy import fcluster, linkage

    if len(vecs) < 2:
        return np.zeros((0, vecs.shape[1]), np.float32)
    labels = fcluster(linkage(vecs, "average", metric="cosine"), 1.0 - name_cos, criterion="distance")
    people = [np.mean(vecs[labels == lab], 0) for lab in np.unique(labels) if (labels == lab).sum() >= min_rows]
    return np.stack([p / np.linalg.norm(p) for p in people]) if people else np.zeros((0, vecs.shape[1]), np.float32)


def name_rows(vecs: np.ndarray, gallery: np.ndarray, name_cos: float) -> np.ndarray:
    """An identity index per row: the nearest gallery entry, -1 (unnamed) below ``name_cos``."""
    if not len(gallery) or not len(vecs):
        return np.full(len(vecs), -1)
    cos = vecs @ gallery.T
    return np.where(cos.max(1) >= name_cos, cos.argmax(1), -1)


def purity(ids: np.ndarray, names: np.ndarray) -> tuple[float, int, int]:
    """(row-weighted purity, named rows, tracks with named rows): Σ_track max identity count / named rows."""
    named = names >= 0
    ids, names = ids[named], names[named]
    top = sum(np.bincount(names[ids == t]).max() for t in np.unique(ids))
    return top / max(1, len(ids)), len(ids), len(np.unique(ids))


def purity_main(args: argparse.Namespace) -> None:
    from facegraph.nodes.models._arcface import Embedder

    model = SHARED / "models" / "mobilefacenet_128d.onnx"
    if not model.exists():
        sys.exit(f"benchmark: {model} not found (set FACEGRAPH_SHARED to the folder holding models/)")
    embedder = Embedder(model, threads=1)
    scenes = {
        "hamilton": lambda: read_frames(SHARED / "data" / "videos" / "face_recognition_short_hamilton_clip.mp4"),
        "concat3": lambda: concat_scene(["pyfeat_WolfgangLanger_Pexels.mp4", "openface_2015-10-15-15-14.avi",
                                         "ytf_0188_03_021_al_pacino.avi"], 40, 4),
        "concat_multi": lambda: concat_scene(["openface_multi_face.avi", "face_recognition_short_hamilton_clip.mp4",
                                              "ytf_1461_01_021_noam_chomsky.avi"], 45, 3),
        # no cut: three people, occlusions (what the id count of the default mode looks at, by purity)
        "multi_face": lambda: read_frames(SHARED / "data" / "videos" / "openface_multi_face.avi"),
        # held out: none of these three was looked at when the cut threshold and the gate were chosen
        "heldout": lambda: concat_scene(["facenet_pytorch_video.mp4", "pyfeat_face_noface.mov",
                                         "pyfeat_single_face.mp4"], 24, 3),
    }
    print(f"{'scene':>13} {'frames':>6} {'every':>5} {'variant':>7} {'rows':>5} {'named':>5} {'tracks':>6} "
          f"{'purity':>6}")
    for scene in args.scenes:
        frames = scenes[scene]()
        for every in args.every:
            results = {}
            for variant, det, marks in (("before", BEFORE, BEFORE_MARKS), ("after", {}, {})):
                ids, vecs = track_rows(frames, every, det, marks, embedder)
                results[variant] = (ids, vecs)
            # one gallery per scene and detect_every, from the 'before' rows: both variants named alike
            gallery = build_gallery(results["before"][1], args.min_rows, args.name_cos)
            print(f"{scene:>13}: gallery of {len(gallery)} identities from the scene's own faces")
            for variant, (ids, vecs) in results.items():
                p, named, tracks = purity(ids, name_rows(vecs, gallery, args.name_cos))
                print(f"{scene:>13} {len(frames):>6} {every:>5} {variant:>7} {len(ids):>5} {named:>5} {tracks:>6} "
                      f"{100 * p:>5.1f}%", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--purity", action="store_true", help="track purity on scenes with shot cuts (see above)")
    parser.add_argument("--scenes", nargs="+", default=["hamilton", "concat3", "concat_multi", "heldout"],
                        help="--purity: hamilton concat3 concat_multi heldout multi_face")
    parser.add_argument("--min-rows", type=int, default=15, help="--purity: rows a gallery identity needs")
    parser.add_argument("--name-cos", type=float, default=0.4, help="--purity: cosine that names a row")
    parser.add_argument("--video", default=str(SHARED / "data" / "videos" / "openface_multi_face.avi"))
    parser.add_argument("--every", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--stop", type=int, default=None)
    parser.add_argument("--people", type=int, default=3)
    parser.add_argument("--dump", default="", help="write per-frame ids and boxes (JSON) here")
    args = parser.parse_args()
    if args.purity:
        purity_main(args)
        return
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
