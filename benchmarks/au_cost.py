"""CPU time per face of each part of the au node's openface backend, one thread, on real frames.

    python benchmarks/au_cost.py [--frames 200] [--video openface_2015-10-15-15-14.avi]

Landmarks come from the video's OpenFace CSV (../shared/data/openface_0.2), so the figures
are the AU stage's alone. ``time.process_time`` (CPU, not wall time): on a shared machine
it moves far less than the wall clock. Each part runs over every frame in order, as the node
does (the running medians' early frames cost more than later ones).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from au_agreement import SHARED, _landmarks, read_csv
from au_stages import MODELS, frames_of


def main(argv: list[str] | None = None) -> int:
    import cv2
    from facegraph.nodes.face import _fhog
    from facegraph.nodes.face import _openface_au as oa
    from facegraph.nodes.face._gaze import Gaze
    from threadpoolctl import threadpool_limits

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--video", default="openface_2015-10-15-15-14.avi")
    args = ap.parse_args(argv)
    threadpool_limits(1)
    cv2.setNumThreads(1)
    ref = read_csv(SHARED / "openface_0.2" / f"{Path(args.video).stem}.csv")
    rows = {int(f): j for j, f in enumerate(ref["frame"]) if ref["success"][j] == 1}
    points = _landmarks(ref)
    frames = [(img, points[rows[f]]) for f, img in frames_of(SHARED / "videos" / args.video)
              if f in rows and f <= args.frames]
    models = oa.OpenFaceModels(MODELS)
    person, gaze = oa.Person(), Gaze(threads=1)
    spent = dict.fromkeys(("fit (cold)", "fit (warm)", "alignment", "FHOG", "medians", "models", "iris model"), 0.0)
    prev = None
    for img, p in frames:
        t0 = time.process_time()
        models.pdm.fit(p)
        t1 = time.process_time()
        fit = prev = models.pdm.fit(p, init=prev)
        t2 = time.process_time()
        face = models.aligner.align(img, p, fit.translation)
        t3 = time.process_time()
        x = np.concatenate([_fhog.descriptor(_fhog.fhog(face)), models.pdm.components @ fit.local, fit.local])
        t4 = time.process_time()
        med = person.observe(x)
        t5 = time.process_time()
        person.correct(models.svr.raw(x[None], med[None])[0])
        models.svm.classes(models.svm.raw(x[None], med[None]))
        t6 = time.process_time()
        gaze.pupils(img, p[None])
        t7 = time.process_time()
        for key, a, b in (("fit (cold)", t0, t1), ("fit (warm)", t1, t2), ("alignment", t2, t3), ("FHOG", t3, t4),
                          ("medians", t4, t5), ("models", t5, t6), ("iris model", t6, t7)):
            spent[key] += b - a
    print(f"{len(frames)} faces of {args.video}, CPU ms per face:")
    for key, total in spent.items():
        print(f"  {key:11s} {1e3 * total / max(len(frames), 1):6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
