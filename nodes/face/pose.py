"""Head pose per face (OpenFace's pose_Rx..Rz, pose_Tx..Tz) from 68-point landmarks by solvePnP."""

from __future__ import annotations

from typing import Any

import numpy as np

from facegraph import FRAME, Input, Node, Output, Param, PortValueError, register

from ..types import LANDMARKS, POSE
from ._headpose import PoseState, camera_matrix, default_intrinsics, solve_pose

#: a track unseen for this many frames forgets its last pose
_FORGET_AFTER = 30


@register("pose")
class Pose(Node):
    """Fits a 3-D mean face to each face's 68 iBUG landmarks (see ``_headpose`` for the conventions).

    Each track starts its solvePnP from its previous pose, so the solution does not
    jump between the two mirror-like minima a near-frontal face can have.
    """

    landmarks = Input(LANDMARKS, doc="68-point iBUG landmarks (pixels)")
    frame = Input(FRAME, optional=True, doc="the frame, for its size (default intrinsics)")
    pose = Output(POSE)
    fx = Param(float, 0.0, ge=0, doc="focal length x in pixels; 0 = OpenFace's default 500·W/640")
    fy = Param(float, 0.0, ge=0, doc="focal length y in pixels; 0 = like fx")
    cx = Param(float, -1.0, doc="principal point x; < 0 = image centre")
    cy = Param(float, -1.0, doc="principal point y; < 0 = image centre")
    width = Param(int, 640, ge=1, doc="image width assumed when no frame is connected")
    height = Param(int, 480, ge=1, doc="image height assumed when no frame is connected")

    cost = 0.3  # solvePnP on 68 points, one face

    def open(self) -> None:
        import cv2

        cv2.setNumThreads(max(1, self.context.threads))
        self._states: dict[int, tuple[PoseState, int]] = {}
        self._count = 0

    def intrinsics(self, width: int, height: int) -> np.ndarray:
        """The camera matrix for an image of this size, with the parameters' overrides."""
        fx, fy, cx, cy = default_intrinsics(width, height)
        if self.fx > 0:
            fx = fy = self.fx
        if self.fy > 0:
            fy = self.fy
        cx = self.cx if self.cx >= 0 else cx
        cy = self.cy if self.cy >= 0 else cy
        return camera_matrix(fx, fy, cx, cy)

    def process(self, landmarks: Any, frame: Any = None) -> dict[str, Any]:
        points = landmarks.points
        if points.shape[1] != 68:
            raise PortValueError(
                f"pose needs 68-point iBUG landmarks, got {points.shape[1]} points "
                "(connect the landmarks node's 'landmarks68' output)"
            )
        h, w = frame.image.shape[:2] if frame is not None else (self.height, self.width)
        k = self.intrinsics(w, h)
        tracks = landmarks.get("track_id")
        n = points.shape[0]
        rotation = np.zeros((n, 3), np.float32)
        translation = np.zeros((n, 3), np.float32)
        self._count += 1
        for i in range(n):
            tid = int(tracks[i]) if tracks is not None else None
            previous = self._states.get(tid, (None, 0))[0] if tid is not None else None
            euler, tvec, state = solve_pose(points[i, :, :2], k, previous)
            rotation[i], translation[i] = euler, tvec
            if tid is not None and np.all(np.isfinite(euler)):
                self._states[tid] = (state, self._count)
        self._states = {t: s for t, s in self._states.items() if self._count - s[1] <= _FORGET_AFTER}
        out: dict[str, Any] = {"rotation": rotation, "translation": translation}
        if tracks is not None:
            out["track_id"] = np.asarray(tracks, np.int32)
        return {"pose": out}
