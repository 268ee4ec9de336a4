"""``canonical_landmarks``: each face's landmarks as they would look straight on (the landmark autoencoder).

The MLP of ``facegraph train landmark-ae`` maps a face's normalised iBUG-68 shape
and head pose (the ``pose`` node's pitch, yaw, roll) to the shape the same person
shows with the smallest pose; the output is put back at the input's centre and size,
so it can be drawn over the frame or compared across frames of one person.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from facegraph import Input, Node, Output, Param, PortValueError, register

from ..types import LANDMARKS, POSE

SHIPPED = Path(__file__).resolve().parent.parent / "models" / "data" / "landmark_ae.npz"


@register("canonical_landmarks")
class CanonicalLandmarks(Node):
    """Posed 68/468-point landmarks + head pose → canonical (frontal) iBUG-68 landmarks, same centre and size."""

    landmarks = Input(LANDMARKS, doc="iBUG 68 or FaceMesh 468 points (pixels)")
    pose = Input(POSE, doc="the pose node's rotation (pitch, yaw, roll, radians), same rows")
    canonical = Output(LANDMARKS, doc="iBUG 68 points (pixels), scheme ibug68")
    model = Param(str, "", doc="landmark autoencoder .npz (default: the shipped facegraph/landmark_ae)")

    cost = 0.05  # a 139 → 256 → 256 → 136 MLP per face

    @classmethod
    def requirements(cls, values: dict[str, Any]) -> list[str]:
        path = Path(values["model"] or SHIPPED).expanduser()
        return [] if path.exists() else [f"landmark autoencoder {path}: file not found"]

    def open(self) -> None:
        from ._landmark_ae import LandmarkAE

        self.ae = LandmarkAE(self.model or SHIPPED)

    def process(self, landmarks: Any, pose: Any) -> dict[str, dict[str, Any]]:
        from ._heatmaps import as_68
        from ._landmark_ae import denormalise, normalise

        points = np.asarray(landmarks.points)
        rotation = np.asarray(pose.rotation)
        if len(points) != len(rotation):
            raise PortValueError(f"canonical_landmarks: {len(points)} faces of landmarks but {len(rotation)} poses")
        if len(points) == 0:
            out = np.zeros((0, 68, 2), np.float32)
        else:
            if points.shape[1] not in (68, 468):
                raise PortValueError(f"canonical_landmarks needs 68 or 468 points, got {points.shape[1]}")
            shapes, centre, scale = normalise(as_68(points))
            canon = self.ae.canonical(shapes, np.nan_to_num(rotation))
            out = denormalise(canon, centre, scale)
        result: dict[str, Any] = {"points": out, "scheme": "ibug68"}
        track = landmarks.get("track_id")
        if track is not None:
            result["track_id"] = np.asarray(track, np.int32)
        return {"canonical": result}
