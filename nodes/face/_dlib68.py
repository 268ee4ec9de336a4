"""FaceMesh's iBUG-68 view blended with dlib's 68-point shape predictor: closer to OpenFace's landmarks.

OpenFace's AU models were trained on CLNF's 68 points, which follow the iBUG
annotation; FaceMesh's 468 points mapped to 68 only approximate it (its jaw runs
higher, its brows lower), and dlib's ensemble-of-trees predictor, trained on the
iBUG annotation itself, errs differently. Their mean agrees with OpenFace better
than either (``benchmarks/README.md``, issue 15: pooled r over 17 AUs of the
openface backend's stage 0.68 FaceMesh, 0.70 dlib, 0.71 the mean).

dlib's predictor starts from a face box framed as its HOG detector frames faces;
running that detector costs ~30 ms a frame, so the box is placed from the mapped
points instead: centred on the midpoint of the eye and mouth centres, its side a
multiple of their distance (the medians over 4,400 faces of the shared videos
where dlib's detector found the face; the detector's own boxes give the same
agreement). The weights are dlib's CC0 model from ``face-recognition-models``:
the ``[dlib]`` extra.
"""

from __future__ import annotations

import numpy as np

from facegraph import ModelError

#: detector box centre offset (x, y) and side, in eye-centre → mouth-centre distances
BOX_CENTRE = (0.0, -0.062)
BOX_SIDE = 2.296
#: weight of FaceMesh's mapped points in the blend (0.3–0.7 measured within 0.01 of each other)
FACEMESH_WEIGHT = 0.5


def missing() -> list[str]:
    """Requirement lines: empty when dlib and its 68-point model are installed."""
    from ..models import _dlib

    return _dlib.missing("landmarks refine68=dlib")


def box_from_points(points: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of dlib's detector box for a face with these iBUG 68 points."""
    eyes, mouth = points[36:48, :2].mean(0), points[48:68, :2].mean(0)
    unit = float(np.linalg.norm(mouth - eyes))
    cx, cy = (eyes + mouth) / 2 + np.asarray(BOX_CENTRE) * unit
    half = BOX_SIDE * unit / 2
    return round(float(cx - half)), round(float(cy - half)), round(float(cx + half)), round(float(cy + half))


class Dlib68Refiner:
    """Blends mapped iBUG 68 points with dlib's prediction in the box they place."""

    def __init__(self, weight: float = FACEMESH_WEIGHT) -> None:
        problems = missing()
        if problems:
            raise ModelError(problems[0])
        import dlib

        from ..models import _dlib

        self._dlib = dlib
        self.weight = float(weight)
        self._predictor = _dlib.shape_predictor_68()

    def predict(self, rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
        """dlib's 68 points (68, 2) for the face whose mapped points are ``points``."""
        box = self._dlib.rectangle(*box_from_points(points))
        shape = self._predictor(rgb, box)
        return np.array([[p.x, p.y] for p in shape.parts()], np.float32)

    def refine(self, image_bgr: np.ndarray, points: np.ndarray) -> np.ndarray:
        """(N, 68, 2+) mapped points → the blend, same shape (extra columns such as depth kept)."""
        points = np.asarray(points, np.float32)
        if len(points) == 0:
            return points
        import cv2

        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB) if image_bgr.ndim == 3 else image_bgr
        out = points.copy()
        for i, face in enumerate(points):
            out[i, :, :2] = self.weight * face[:, :2] + (1.0 - self.weight) * self.predict(rgb, face)
        return out
