"""Where the openface backend's disagreement with OpenFace comes from: each stage fed from a chosen source.

    python benchmarks/au_stages.py                                   # OpenFace 0.2's own landmarks → our AU stage
    python benchmarks/au_stages.py --landmarks DIR                   # our landmarks (DIR/<stem>/video_au.csv)
    python benchmarks/au_stages.py --geometry csv --translation csv  # OpenFace's own PDM parameters as well
    python benchmarks/au_stages.py --fit-report                      # our PDM fit against the CSV's p_* values

The video's frames are decoded here (OpenCV), the 68 landmarks come from the OpenFace CSV
itself or from one of our CSVs (the face nearest OpenFace's, as ``au_agreement`` pairs
them), and the rest runs as the au node does: PDM fit, alignment, FHOG, running medians,
the linear models and (``--post on``) the offline post-processing. Each stage can take
OpenFace's own values instead (``--geometry csv``: the 238 geometry features from the CSV's
``p_0…p_33``; ``--translation csv``: the alignment centred on its ``p_tx, p_ty``), so a
gap that closes when a stage is swapped lies in that stage. Scores as ``au_agreement``:
per-AU Pearson r over the frames both read, pooled by frames.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from au_agreement import SHARED, VIDEOS, _landmarks, finish, pair_rows, read_csv

MODELS = SHARED.parent / "models" / "openface_2.2" / "AU_predictors"


def frames_of(video: Path):
    """Decoded BGR frames, 1-based index as OpenFace's ``frame`` column."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    i = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        i += 1
        yield i, img
    cap.release()


def csv_params(ref: dict, j: int) -> tuple[np.ndarray, np.ndarray]:
    glob = np.array([ref[k][j] for k in ("p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty")])
    local = np.array([ref[f"p_{k}"][j] for k in range(34)])
    return glob, local


def _median_02(hist: np.ndarray, count: int, lo: float, hi: float) -> np.ndarray:
    """OpenFace 0.2's median: the first bin whose running count *exceeds* (count + 1) // 2."""
    cum = np.cumsum(hist, axis=1)
    j = np.argmax(cum > (count + 1) // 2, axis=1)
    return lo + (j + 0.5) * (hi - lo) / hist.shape[1]


def emulate_02(models, feats: list) -> tuple[np.ndarray, np.ndarray]:
    """OpenFace 0.2.x's video path (DeepFace fork's FaceAnalyser) over one person's frames (features or None).

    Differences from 2.2, read in its source: the HOG median's histogram has 600 bins over [0, 1]; the median bin
    is the first whose cumulative count exceeds (n + 1) // 2; the dynamic SVRs are given the frame's own geometry
    as the geometry median (so their geometry part is constant); after the video every successful frame is
    re-predicted with the final medians, *every* intensity is shifted down by its 25th percentile over the
    successful frames, clipped to 0–5, and smoothed by (v[i−1] + v[i]) / 3 (its 3-frame window loop stops one
    short); presences by a 7-frame vote over v[i−3 … i+2].
    """
    from facegraph.nodes.face import _openface_au as oa

    nh = oa.N_HOG
    hog_h = np.zeros((nh, 600), np.int32)
    geo_h = np.zeros((238, 10000), np.int32)
    hog_med = geo_med = None
    count = 0
    for t, x in enumerate(feats, start=1):
        if x is None:
            continue
        if hog_med is None:
            hog_med, geo_med = x[:nh].copy(), x[nh:].copy()
        if t % 2 == 1:
            hb = np.clip(((x[:nh] - 0.0) * 600 / 1.0), 0, 599).astype(np.int64)
            gb = np.clip(((x[nh:] + 60.0) * 10000 / 120.0), 0, 9999).astype(np.int64)
            hog_h[np.arange(nh), hb] += 1
            geo_h[np.arange(238), gb] += 1
            count += 1
            if count == 1:
                hog_med, geo_med = x[:nh].copy(), x[nh:].copy()
            else:
                hog_med = _median_02(hog_h, count, 0.0, 1.0)
                geo_med = _median_02(geo_h, count, -60.0, 60.0)
    n = len(feats)
    ok = np.array([x is not None for x in feats])
    reg = np.zeros((n, len(models.svr.names)))
    cls = np.zeros((n, len(models.svm.names)))
    if ok.any():
        xs = np.stack([x for x in feats if x is not None])
        svr, svm = models.svr, models.svm
        x_dyn = xs.copy()
        x_dyn[:, :nh] -= hog_med
        x_dyn[:, nh:] = 0.0  # geometry − the frame's own geometry
        r = np.where(svr.dynamic, (x_dyn @ svr.weights + svr.offsets), xs @ svr.weights + svr.offsets)
        x_cls = xs.copy()
        x_cls[:, :nh] -= hog_med
        x_cls[:, nh:] -= geo_med
        c = np.where(svm.dynamic, x_cls @ svm.weights + svm.offsets, xs @ svm.weights + svm.offsets)
        reg[ok] = r
        cls[ok] = svm.classes(c)
        off = np.sort(r, axis=0)[len(r) // 4]
        reg[ok] -= off
    reg = np.where(ok[:, None], np.clip(reg, 0.0, 5.0), 0.0)
    sm = reg.copy()
    sm[1:-1] = (reg[:-2] + reg[1:-1]) / 3.0
    vote = cls.copy()
    for i in range(3, n - 3):
        vote[i] = cls[i - 3:i + 3].sum(0) / 7.0 >= 0.5
    return sm, vote


def run_video(models, stem: str, video: Path, ref: dict, ours: dict | None, args) -> dict:
    from facegraph.nodes.face import _openface_au as oa

    rows = np.flatnonzero(ref["success"] == 1)
    if ours is not None:
        a, b = pair_rows(ours, ref)
        pts_of = dict(zip(ref["frame"][b].astype(int), _landmarks(ours)[a], strict=True))
    else:
        pts_of = dict(zip(ref["frame"][rows].astype(int), _landmarks(ref)[rows], strict=True))
    ref_row = {int(ref["frame"][j]): j for j in rows}
    person = oa.Person()
    feats: list = []  # per decoded frame: features or None (for the 0.2 emulation)
    online = []  # (frame, reg) per read frame
    fit_diffs = []
    for f, img in frames_of(video):
        pts = pts_of.get(f)
        j = ref_row.get(f)
        if pts is None or j is None:
            person.frames += 1  # a frame without a face, as the node counts it
            person.keys.append(f)
            person.success.append(False)
            feats.append(None)
            continue
        pts = np.asarray(pts, np.float64)
        fit = models.pdm.fit(pts)
        g, loc = csv_params(ref, j)
        if args.fit_report:
            fit_diffs.append(np.concatenate([fit.params_global - g, fit.local - loc]))
        t = g[4:6] if args.translation == "csv" else fit.translation
        face = models.aligner.align(img, pts, t)
        hog = oa._fhog.descriptor(oa._fhog.fhog(face))
        local = loc if args.geometry == "csv" else fit.local
        x = np.concatenate([hog, models.pdm.components @ local, local])
        feats.append(x)
        med = person.observe(x)
        person.keys.append(f)
        person.success.append(True)
        person.kept.append((f, x.astype(np.float32)))
        raw = models.svr.raw(x[None], None if med is None else med[None])[0]
        online.append((f, np.clip(person.correct(raw), 0, 5)))
    if args.semantics == "0.2":
        reg02, _ = emulate_02(models, feats)
        pred = {person.keys[i]: reg02[i] for i in range(len(feats)) if feats[i] is not None}
    elif args.post == "on":
        keys, reg, _, ok = oa.offline(models, person)
        pred = {k: reg[i] for i, k in enumerate(keys) if ok[i]}
    else:
        pred = dict(online)
    names = models.svr.names
    frames = sorted(set(pred) & set(ref_row))
    res = {"frames": len(frames), "aus": {}}
    rs = []
    for k, au in enumerate(names):
        x = np.array([pred[f][k] for f in frames])
        y = np.array([ref[f"{au}_r"][ref_row[f]] for f in frames])
        r = float(np.corrcoef(x, y)[0, 1]) if len(x) > 2 and x.std() > 1e-9 and y.std() > 1e-9 else float("nan")
        res["aus"][au] = {"r": r, "mae": float(np.abs(x - y).mean()), "f1": float("nan")}
        rs.append(r)
    res["mean_r"] = float(np.nanmean(rs))
    res["share_ge_4.9"] = 0.0
    if fit_diffs:
        d = np.abs(np.array(fit_diffs))
        csv_local = np.abs([csv_params(ref, j)[1] for j in rows]).mean()
        res["fit_mean_abs_diff"] = {"scale": float(d[:, 0].mean()), "rot_deg": np.degrees(d[:, 1:4].mean(0)).tolist(),
                                    "t_px": d[:, 4:6].mean(0).tolist(), "local": float(d[:, 6:].mean()),
                                    "local_rel": float(d[:, 6:].mean() / csv_local)}
    return res


def main(argv: list[str] | None = None) -> int:
    from facegraph.nodes.face import _openface_au as oa

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--landmarks", default="openface", help="'openface' (the CSV's own) or a folder of our runs")
    ap.add_argument("--geometry", choices=("fit", "csv"), default="fit")
    ap.add_argument("--translation", choices=("fit", "csv"), default="fit")
    ap.add_argument("--post", choices=("on", "off"), default="on")
    ap.add_argument("--semantics", choices=("2.2", "0.2"), default="2.2",
                    help="the AU stage as OpenFace 2.2 runs it (the au node), or 0.2.x's video path (emulate_02)")
    ap.add_argument("--static", action="store_true", help="static models only")
    ap.add_argument("--fit-report", action="store_true", help="also report our fit against the CSV's p_* values")
    ap.add_argument("--videos", nargs="*", default=list(VIDEOS))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    models = oa.OpenFaceModels(MODELS, static=args.static)
    results = {}
    for name in args.videos:
        stem = Path(name).stem
        ref = read_csv(SHARED / "openface_0.2" / f"{stem}.csv")
        ours = None
        if args.landmarks != "openface":
            csv = Path(args.landmarks) / stem / "video_au.csv"
            if not csv.exists():
                print(f"{csv}: not found, skipped", file=sys.stderr)
                continue
            ours = read_csv(csv)
        results[stem] = run_video(models, stem, SHARED / "videos" / name, ref, ours, args)
        print(f"{stem}: {results[stem]['frames']} frames, mean r {results[stem]['mean_r']:.3f}"
              + (f", fit {results[stem].get('fit_mean_abs_diff')}" if args.fit_report else ""), file=sys.stderr)
    return finish(results, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
