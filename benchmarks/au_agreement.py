"""Frame-by-frame agreement of our AU columns with an OpenFace CSV of the same video.

    python benchmarks/au_agreement.py OURS.csv OPENFACE.csv            # one pair
    python benchmarks/au_agreement.py --run DIR [--backend openface]    # every shared video with an OpenFace CSV:
                                                                        # runs graphs/video_au.yaml on each, then scores

Per AU: Pearson r and mean absolute error of the intensities (``AU*_r``) and F1 of the
presences (``AU*_c``, OpenFace's as the reference); the mean r over the AUs both files
have; the share of our intensities at ≥ 4.9 (a pinned scale reads as a broken estimate).
OpenFace tracks one face: on each frame ours is the face whose 68 landmarks lie nearest
to OpenFace's (mean point distance under 10 % of the face's width), and frames where
either side has ``success`` 0 are left out. An AU that is constant on either side over
the video has no r (not counted in the mean).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
#: shared videos with an OpenFace 0.2 CSV and a face to score (the no-face clip is left out)
VIDEOS = ("openface_2015-10-15-15-14.avi", "openface_multi_face.avi", "pyfeat_single_face.mp4",
          "pyfeat_WolfgangLanger_Pexels.mp4", "pyfeat_face_noface.mov", "face_recognition_short_hamilton_clip.mp4",
          "ytf_0188_03_021_al_pacino.avi", "ytf_1461_01_021_noam_chomsky.avi", "facenet_pytorch_video.mp4")


def read_csv(path: str | Path) -> dict[str, np.ndarray]:
    """An OpenFace-style CSV (', ' separated, empty cells NaN) as columns of floats."""
    import csv

    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, skipinitialspace=True))
    header = [h.strip() for h in rows[0]]
    out = {}
    for k, name in enumerate(header):
        vals = []
        for r in rows[1:]:
            cell = r[k].strip() if k < len(r) else ""
            try:
                vals.append(float(cell) if cell else np.nan)
            except ValueError:
                vals.append(np.nan)
        out[name] = np.asarray(vals, np.float64)
    return out


def _landmarks(table: dict[str, np.ndarray]) -> np.ndarray | None:
    if "x_0" not in table:
        return None
    xs = np.stack([table[f"x_{i}"] for i in range(68)], 1)
    ys = np.stack([table[f"y_{i}"] for i in range(68)], 1)
    return np.stack([xs, ys], -1)


def pair_rows(ours: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(our row, OpenFace row) for each frame both read the same face."""
    ref_ok = np.flatnonzero(ref["success"] == 1)
    by_frame: dict[int, list[int]] = {}
    for i, f in enumerate(ours["frame"]):
        if ours["success"][i] == 1:
            by_frame.setdefault(int(f), []).append(i)
    lo, lr = _landmarks(ours), _landmarks(ref)
    a, b = [], []
    for j in ref_ok:
        cands = by_frame.get(int(ref["frame"][j]), [])
        if not cands:
            continue
        if lo is None or lr is None:
            if len(cands) == 1:
                a.append(cands[0])
                b.append(j)
            continue
        dist = [np.nanmean(np.linalg.norm(lo[i] - lr[j], axis=1)) for i in cands]
        k = int(np.nanargmin(dist))
        width = np.ptp(lr[j][:, 0])
        if dist[k] < 0.1 * max(width, 1.0):
            a.append(cands[k])
            b.append(j)
    return np.asarray(a, np.int64), np.asarray(b, np.int64)


def _f1(pred: np.ndarray, ref: np.ndarray) -> float:
    tp = float(np.sum((pred == 1) & (ref == 1)))
    fp = float(np.sum((pred == 1) & (ref == 0)))
    fn = float(np.sum((pred == 0) & (ref == 1)))
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")


def agreement(ours: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict:
    """Per-AU r, MAE, F1 and the summary figures for one video."""
    a, b = pair_rows(ours, ref)
    out: dict = {"frames": len(a), "aus": {}}
    rs = []
    for col in sorted(c for c in ref if c.startswith("AU") and c.endswith("_r")):
        if col not in ours or len(a) < 3:
            continue
        x, y = ours[col][a], ref[col][b]
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        r = float(np.corrcoef(x, y)[0, 1]) if len(x) > 2 and x.std() > 1e-9 and y.std() > 1e-9 else float("nan")
        entry = {"r": r, "mae": float(np.abs(x - y).mean()) if len(x) else float("nan")}
        ccol = col[:-2] + "_c"
        if ccol in ours and ccol in ref:
            entry["f1"] = _f1(ours[ccol][a], ref[ccol][b])
        out["aus"][col[:-2]] = entry
        rs.append(r)
    if "AU28_c" in ours and "AU28_c" in ref and len(a):
        out["aus"].setdefault("AU28", {})["f1"] = _f1(ours["AU28_c"][a], ref["AU28_c"][b])
    ir = [c for c in ours if c.startswith("AU") and c.endswith("_r")]
    vals = np.concatenate([ours[c] for c in ir]) if ir else np.zeros(0)
    vals = vals[np.isfinite(vals)]
    out["share_ge_4.9"] = float(np.mean(vals >= 4.9)) if len(vals) else float("nan")
    out["mean_r"] = float(np.nanmean(rs)) if rs and np.isfinite(rs).any() else float("nan")
    return out


def pooled(results: dict[str, dict]) -> dict:
    """Over the videos: each AU's r and MAE averaged over the videos where it has one (frames as weights)."""
    per: dict[str, dict[str, list]] = {}
    for res in results.values():
        for au, e in res["aus"].items():
            d = per.setdefault(au, {"r": [], "mae": [], "f1": [], "w": []})
            d["w"].append(res["frames"])
            d["r"].append(e.get("r", np.nan))
            d["mae"].append(e.get("mae", np.nan))
            d["f1"].append(e.get("f1", np.nan))
    out = {}
    for au, d in sorted(per.items()):
        w = np.asarray(d["w"], float)

        def avg(v: list, w: np.ndarray = w) -> float:
            v = np.asarray(v, float)
            ok = np.isfinite(v)
            return float(np.average(v[ok], weights=w[ok])) if ok.any() and w[ok].sum() > 0 else float("nan")

        out[au] = {"r": avg(d["r"]), "mae": avg(d["mae"]), "f1": avg(d["f1"])}
    rs = [e["r"] for k, e in out.items() if k != "AU28" and np.isfinite(e["r"])]
    maes = [e["mae"] for k, e in out.items() if k != "AU28" and np.isfinite(e["mae"])]
    f1s = [e["f1"] for e in out.values() if np.isfinite(e["f1"])]
    return {"aus": out, "mean_r": float(np.mean(rs)) if rs else float("nan"), "n_aus": len(rs),
            "mean_mae": float(np.mean(maes)) if maes else float("nan"),
            "mean_f1": float(np.mean(f1s)) if f1s else float("nan")}


def landmark_offsets(pairs: dict[str, tuple[Path, Path]], max_yaw_deg: float = 15.0) -> np.ndarray:
    """Mean offset (68, 2) of our landmarks from OpenFace's, in the aligned face's pixels (112-px face).

    Both are mapped with the similarity that takes OpenFace's rigid points onto the PDM mean shape × 0.7, over
    near-frontal frames (OpenFace's |pose_Ry| below ``max_yaw_deg``). The au node's ``openface`` backend
    subtracts this table from FaceMesh-mapped landmarks (``_openface_au.FACEMESH_OFFSETS``).
    """
    from facegraph.nodes.face import _openface_au as oa

    pdm = oa.Pdm.load(SHARED.parent / "models" / "openface_2.2" / "AU_predictors" / "In-the-wild_aligned_PDM_68.txt")
    dest = (pdm.mean.reshape(3, pdm.n)[:2].T * oa.ALIGN_SCALE)[oa.RIGID]
    offs = []
    for ours_path, ref_path in pairs.values():
        ours, ref = read_csv(ours_path), read_csv(ref_path)
        a, b = pair_rows(ours, ref)
        frontal = np.abs(np.degrees(ref["pose_Ry"][b])) < max_yaw_deg
        lo, lr = _landmarks(ours)[a[frontal]], _landmarks(ref)[b[frontal]]
        for p, q in zip(lo, lr, strict=True):
            offs.append((p - q) @ oa.similarity(q[oa.RIGID], dest).T)
    return np.mean(offs, axis=0)


def run_videos(out_dir: Path, backend: str, graph: str, videos: list[str]) -> dict[str, Path]:
    """Run the AU graph on each shared video; our CSV per video stem."""
    out = {}
    for name in videos:
        stem = Path(name).stem
        dest = out_dir / stem
        csv = dest / "video_au.csv"
        if not csv.exists():
            cmd = [str(Path(sys.executable).parent / "facegraph"), "run", graph,
                   "--source", str(SHARED / "videos" / name),
                   "--output", str(dest), "--set", f"au.backend={backend}", "--quiet"]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True)
            print(f"{stem}: ran in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        out[stem] = csv
    return out


def report(results: dict[str, dict], summary: dict) -> str:
    lines = ["| AU | r | MAE | F1 |", "|---|---|---|---|"]
    for au, e in summary["aus"].items():
        lines.append(f"| {au} | {e['r']:.2f} | {e['mae']:.2f} | {e['f1']:.2f} |")
    lines.append(f"| **mean** ({summary['n_aus']} AUs) | **{summary['mean_r']:.2f}** | {summary['mean_mae']:.2f} | "
                 f"{summary['mean_f1']:.2f} |")
    lines += ["", "| video | frames | mean r | share ≥ 4.9 |", "|---|---|---|---|"]
    for stem, res in results.items():
        lines.append(f"| {stem} | {res['frames']} | {res['mean_r']:.2f} | {100 * res['share_ge_4.9']:.2f} % |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help="OURS.csv OPENFACE.csv")
    ap.add_argument("--run", type=Path, help="run the graph on the shared videos into this folder, then score")
    ap.add_argument("--backend", default="openface", help="au backend for --run (openface, geometric)")
    ap.add_argument("--graph", default=str(ROOT / "graphs" / "video_au.yaml"))
    ap.add_argument("--videos", nargs="*", default=list(VIDEOS), help="shared video file names for --run")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--fit-offsets", action="store_true",
                    help="print the mean landmark offsets (ours − OpenFace's) over these pairs instead of scoring")
    args = ap.parse_args(argv)
    if args.run:
        pairs = {stem: (csv, SHARED / "openface_0.2" / f"{stem}.csv")
                 for stem, csv in run_videos(args.run, args.backend, args.graph, args.videos).items()}
    elif len(args.files) == 2:
        pairs = {Path(args.files[0]).stem: (Path(args.files[0]), Path(args.files[1]))}
    else:
        ap.error("give OURS.csv OPENFACE.csv, or --run DIR")
    if args.fit_offsets:
        table = landmark_offsets(pairs)
        print("FACEMESH_OFFSETS = np.array([")
        for k in range(0, 68, 6):
            print("    " + " ".join(f"[{x:.1f}, {y:.1f}]," for x, y in table[k:k + 6]))
        print("])")
        return 0
    results = {stem: agreement(read_csv(o), read_csv(r)) for stem, (o, r) in pairs.items()}
    return finish(results, args.json)


def finish(results: dict[str, dict], json_path: Path | None) -> int:
    """Pool the videos that had frames, print the table, write the JSON when asked: every AU script ends so."""
    results = {k: v for k, v in results.items() if v["frames"]}
    summary = pooled(results)
    print(report(results, summary))
    if json_path:
        json_path.write_text(json.dumps({"videos": results, "pooled": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
