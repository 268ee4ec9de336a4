"""Aligned face crops: ArcFace 5-point similarity or OpenFace's 68-point crop, all faces of a frame at once."""

from __future__ import annotations

from typing import Any

import numpy as np

from facegraph import FRAME, Input, Node, Output, Param, ParamError, PortValueError, register

from ..types import CROPS, FACES, LANDMARKS
from ._align import arcface_matrix, openface_matrix, warp_crops


@register("align")
class Align(Node):
    """Warps each face to a canonical crop.

    ``arcface`` uses the detector's five keypoints and insightface's 112×112 template
    (what ArcFace-style embedders expect); ``openface`` uses 68 landmarks and OpenFace's
    similarity-normalised crop (what OpenFace-style AU models expect).
    """

    frame = Input(FRAME)
    faces = Input(FACES, optional=True, doc="faces with 5 keypoints (mode arcface)")
    landmarks = Input(LANDMARKS, optional=True, doc="68-point landmarks (mode openface; 5-point works for arcface)")
    crops = Output(CROPS)
    mode = Param(str, "arcface", choices=("arcface", "openface"), doc="template to align to")
    size = Param(int, 112, ge=16, le=1024, doc="crop side in pixels (arcface: a multiple of 112 or 128)")

    @classmethod
    def validate_params(cls, values: dict[str, Any]) -> dict[str, Any] | None:
        if values["mode"] == "arcface" and values["size"] % 112 and values["size"] % 128:
            size = values["size"]
            raise ParamError(f"parameter 'size' must be a multiple of 112 or 128 for mode arcface, got {size}")
        return None

    def open(self) -> None:
        import cv2

        cv2.setNumThreads(max(1, self.context.threads))

    def _points(self, faces: Any, landmarks: Any) -> tuple[np.ndarray, Any]:
        """The per-face points this mode aligns on, and the track ids that come with them."""
        if self.mode == "arcface":
            if faces is not None:
                return faces.kps, faces.get("track_id")
            if landmarks is not None and landmarks.points.shape[1] == 5:
                return landmarks.points[:, :, :2], landmarks.get("track_id")
            if landmarks is not None and landmarks.points.shape[1] == 68:
                return _five_from_68(landmarks.points), landmarks.get("track_id")
            raise PortValueError("align (arcface) needs 'faces' with 5 keypoints or 5/68-point 'landmarks'")
        if landmarks is None or landmarks.points.shape[1] != 68:
            got = "nothing" if landmarks is None else f"{landmarks.points.shape[1]} points"
            raise PortValueError(f"align (openface) needs 68-point iBUG 'landmarks', got {got}")
        return landmarks.points[:, :, :2], landmarks.get("track_id")

    def process(self, frame: Any, faces: Any = None, landmarks: Any = None) -> dict[str, Any]:
        points, tracks = self._points(faces, landmarks)
        fit = arcface_matrix if self.mode == "arcface" else openface_matrix
        matrices = np.array([fit(p, self.size) for p in points], np.float32).reshape(-1, 2, 3)
        out: dict[str, Any] = {"images": warp_crops(frame.image, matrices, self.size), "matrices": matrices}
        if tracks is not None:
            out["track_id"] = np.asarray(tracks, np.int32)
        return {"crops": out}


def _five_from_68(points: np.ndarray) -> np.ndarray:
    """ArcFace's five points from iBUG 68: eye centres, nose tip, mouth corners."""
    p = points[:, :, :2]
    return np.stack(
        [p[:, 36:42].mean(1), p[:, 42:48].mean(1), p[:, 30], p[:, 48], p[:, 54]], axis=1
    ).astype(np.float32)
