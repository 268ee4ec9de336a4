"""Landmarks and head pose of already-aligned face crops (an identity folder), with the project's own models.

Training data for face ID comes as ArcFace-aligned crops with no frame around
them, so the graph's detector has nothing to find. The face's position is known
instead (the ArcFace template), so the landmark models run on the region of
interest the ``landmarks`` node would build from the template's five points:

  * ``mediapipe`` (default): FaceMesh 468 through ``_facemesh`` (the same ROI maths,
    crop warp and presence score as the ``landmarks`` node); a face whose presence
    score is below ``min_score`` counts as failed;
  * ``dlib``: dlib's 68-point shape predictor (the ``[dlib]`` extra) in the face box
    ``_dlib.FRAMINGS['arcface']``.

Yaw, pitch and roll come from the ``pose`` node's maths (``_headpose.solve_pose``,
OpenFace's conventions) on the iBUG-68 view of the points.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facegraph import ModelError

from . import _facemesh as fm
from ._align import ARCFACE_112

EXTRACTORS = ("mediapipe", "dlib")


class MeshOnCrops:
    """FaceMesh 468 landmarks of aligned BGR crops [N,S,S,3]: (points [N,468,3] crop px, valid [N], score [N])."""

    points = 468

    def __init__(self, threads: int = 1, min_score: float = 0.5, scale: float = 1.5) -> None:
        from ..models._tflite import TfliteModel, mediapipe_model

        self.model = TfliteModel(mediapipe_model("modules/face_landmark/face_landmark.tflite"), threads=threads)
        self.size = self.model.input_shape[1]
        self.min_score, self.scale = min_score, scale

    def _roi(self, side: int) -> fm.Roi:
        kps = ARCFACE_112 * (side / 112.0)
        return fm.roi_from_kps(kps, np.array([0, 0, side, side], np.float64), self.scale)

    def __call__(self, crops: np.ndarray, batch: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import cv2

        from .landmarks import _rgb_unit

        crops = np.asarray(crops)
        out = np.zeros((len(crops), 468, 3), np.float32)
        scores = np.zeros(len(crops), np.float32)
        for start in range(0, len(crops), batch):
            chunk = crops[start:start + batch]
            matrices = [fm.crop_matrix(self._roi(c.shape[0]), self.size) for c in chunk]
            warped = np.stack([cv2.warpAffine(c, m, (self.size, self.size), flags=cv2.INTER_LINEAR,
                                              borderMode=cv2.BORDER_CONSTANT)
                               for c, m in zip(chunk, matrices, strict=True)])
            raw, flag = self.model.run_filled(len(chunk), lambda t, w=warped: _rgb_unit(w, t))
            pts = raw.reshape(len(chunk), -1, 3)
            for j, m in enumerate(matrices):
                out[start + j] = fm.to_frame(pts[j], m)
            scores[start:start + len(chunk)] = 1.0 / (1.0 + np.exp(-np.clip(flag.reshape(-1), -100, 100)))
        return out, scores >= self.min_score, scores


class DlibOnCrops:
    """dlib's 68-point shape predictor on aligned crops: (points [N,68,2], valid [N], score [N] = 1)."""

    points = 68

    def __init__(self, threads: int = 1) -> None:
        from ..models import _dlib

        problems = _dlib.missing("--extractor dlib")
        if problems:
            raise ModelError(problems[0])
        import dlib

        self._dlib = dlib
        self.predictor = _dlib.shape_predictor_68()
        self.framing = _dlib.FRAMINGS["arcface"]

    def __call__(self, crops: np.ndarray, batch: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        left, top, right, bottom = self.framing
        out = np.zeros((len(crops), 68, 2), np.float32)
        for i, crop in enumerate(np.asarray(crops)):
            h, w = crop.shape[:2]
            rgb = np.ascontiguousarray(crop[..., ::-1])
            box = self._dlib.rectangle(int(left * w), int(top * h), int(right * w) - 1, int(bottom * h) - 1)
            out[i] = [[p.x, p.y] for p in self.predictor(rgb, box).parts()]
        ok = np.isfinite(out).all((1, 2))
        return out, ok, ok.astype(np.float32)


def open_extractor(name: str, threads: int = 1) -> Any:
    if name == "mediapipe":
        return MeshOnCrops(threads=threads)
    if name == "dlib":
        return DlibOnCrops(threads=threads)
    raise ModelError(f"--extractor {name!r}: one of {', '.join(EXTRACTORS)}")


def crop_pose(points: np.ndarray, valid: np.ndarray, side: int) -> np.ndarray:
    """(pitch, yaw, roll) radians [N,3] by the ``pose`` node's solvePnP (NaN where landmarks failed)."""
    from ._headpose import camera_matrix, default_intrinsics, solve_pose
    from ._heatmaps import as_68

    k = camera_matrix(*default_intrinsics(side, side))
    p68 = as_68(points)
    out = np.full((len(p68), 3), np.nan, np.float32)
    for i in np.flatnonzero(valid):
        out[i] = solve_pose(p68[i], k)[0]
    return out
