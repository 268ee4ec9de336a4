"""What a teacher HDF5's own FHOG features allow: ridge regression train videos → held-out videos, per AU.

    python benchmarks/facenets_hog_ridge.py --data runs/teacher.h5 --val-videos a,b,c [--alpha 10]
        [--person-norm none|causal|all]

A reference for the AU net: OpenFace's AU models are linear on FHOG + PDM values, so a linear model on the
same features shows how much of the teacher the data carries; the AU net must learn it from pixels instead.
``--person-norm``: the features minus their mean over the video's frames so far (causal) or all of them,
as the person-normalised AU net sees its own features.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--val-videos", required=True)
    parser.add_argument("--alpha", type=float, default=10.0)
    parser.add_argument("--person-norm", choices=["none", "causal", "all"], default="none",
                        help="subtract each video's mean features (frames so far, or all)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    import h5py
    from facegraph.nodes.models.person_reference import references_by_group
    from facegraph.nodes.training import h5data
    from facegraph.nodes.training.facepose_scores import au_scores, within_video_r
    from sklearn.linear_model import Ridge

    with h5py.File(args.data, "r") as f:
        hog = f["hog_features"][:]
    data = h5data.read(args.data)
    if not np.abs(hog).sum():
        raise SystemExit(f"{args.data}: hog_features are zero (made with --no-hog)")
    x = np.concatenate([hog, data.local_params / 10.0], 1)
    if args.person_norm != "none":  # the file holds each video's frames in order
        x = x - references_by_group(x, data.video_names, args.person_norm)
    train, val = h5data.split_by_video(data.video_names, [v for v in args.val_videos.split(",") if v])
    model = Ridge(alpha=args.alpha).fit(x[train], data.au_intensities[train])
    pred = np.clip(model.predict(x[val]), 0, 5)
    scores = au_scores(pred, data.au_intensities[val], data.au_names)
    scores.update(within_video_r(pred, data.au_intensities[val], data.video_names[val], data.au_names))
    print(f"ridge (alpha {args.alpha}) on FHOG + local params (person-norm {args.person_norm}), {len(train)} train / "
          f"{len(val)} held-out rows: mean r {scores['val_mean_r']:.3f}, MAE {scores['val_mae']:.3f}, "
          f"within-video mean r {scores['within_video_mean_r']:.3f}")
    print("  " + "  ".join(f"{a} {scores['val_r_' + a]:.2f}" for a in data.au_names))
    if args.json:
        args.json.write_text(json.dumps(scores, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
