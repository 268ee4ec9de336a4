"""Does a landmark source follow OpenFace's face *movements*, not only its mean shape? (issue 15)

    python benchmarks/au_landmark_motion.py RUNS_A [RUNS_B ...] [--videos V ...]

Each RUNS folder holds our CSVs as ``RUNS/<stem>/video_au.csv`` (as ``au_stages.py --landmarks`` reads them);
their faces are paired with the OpenFace 0.2 CSV's as ``au_agreement`` pairs them. Per video and source:
mean point error and NME (outer eye corners), the frame-to-frame jitter of the error, the Pearson r of the
shape motion (points minus each frame's centroid, minus the video's mean shape: what expression moves), and
the mean r over time of our PDM fit's first 10 shape parameters against the CSV's ``p_0…p_9``. The openface AU
stage reads expression from these, so a source with a low mean error but low motion r still scores badly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from au_agreement import SHARED, _landmarks, pair_rows, read_csv
from au_stages import MODELS

HELD_OUT = ("ytf_0188_03_021_al_pacino", "pyfeat_single_face", "pyfeat_face_noface")  # issue 16's held-out videos


def motion_report(ours: dict, ref: dict, pdm) -> dict[str, float]:
    a, b = pair_rows(ours, ref)
    p, q = _landmarks(ours)[a].astype(np.float64), _landmarks(ref)[b].astype(np.float64)
    err = p - q
    eyes = np.linalg.norm(q[:, 36] - q[:, 45], axis=1)
    sp, sq = p - p.mean(1, keepdims=True), q - q.mean(1, keepdims=True)
    sp, sq = sp - sp.mean(0), sq - sq.mean(0)
    ours_local = np.array([pdm.fit(x).local[:10] for x in p])
    ref_local = np.array([[ref[f"p_{k}"][j] for k in range(10)] for j in b])
    pdm_r = [np.corrcoef(ours_local[:, k], ref_local[:, k])[0, 1] for k in range(10)]
    return {"faces": len(a), "of_faces": int((ref["success"] == 1).sum()),
            "err_px": float(np.linalg.norm(err, axis=2).mean()),
            "nme": float(np.mean(np.linalg.norm(err, axis=2).mean(1) / eyes)),
            "jitter_px": float(np.linalg.norm(np.diff(err, axis=0), axis=2).mean()),
            "shape_motion_r": float(np.corrcoef(sp.ravel(), sq.ravel())[0, 1]),
            "pdm_r": float(np.nanmean(pdm_r))}


def main(argv: list[str] | None = None) -> int:
    from facegraph.nodes.face import _openface_au as oa

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="folders of our runs (RUNS/<stem>/video_au.csv)")
    ap.add_argument("--videos", nargs="*", default=list(HELD_OUT), help="video stems")
    args = ap.parse_args(argv)
    pdm = oa.OpenFaceModels(MODELS, static=True).pdm
    print("| video | source | faces paired | error px | NME | jitter px | shape-motion r | PDM p0-9 r |")
    print("|---|---|---|---|---|---|---|---|")
    for stem in args.videos:
        ref = read_csv(SHARED / "openface_0.2" / f"{stem}.csv")
        for run in args.runs:
            csv = run / stem / "video_au.csv"
            if not csv.exists():
                print(f"{csv}: not found, skipped", file=sys.stderr)
                continue
            m = motion_report(read_csv(csv), ref, pdm)
            print(f"| {stem} | {run.name} | {m['faces']}/{m['of_faces']} | {m['err_px']:.2f} | {m['nme']:.3f} | "
                  f"{m['jitter_px']:.2f} | {m['shape_motion_r']:.2f} | {m['pdm_r']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
