"""Eye gaze as OpenFace reports it (``gaze_0_*``, ``gaze_1_*``, ``gaze_angle_x/y``), from mediapipe's iris model.

Why this way: OpenFace's gaze is geometric once the pupil is found: a ray from the
camera through the pupil meets a 12 mm eyeball whose centre sits 3.5 mm up and 7 mm
behind the midpoint of the eye corners (in head coordinates, rotated by the head pose);
the gaze is the unit vector from the eyeball centre to that point, in camera
coordinates (X right, Y down, Z away from the camera: looking at the camera is about
(0, 0, −1)). ``gaze_0`` is the eye of iBUG points 36–41 (the subject's right, on the
image's left), ``gaze_1`` that of 42–47, and ``gaze_angle_x/y`` = atan2 of the mean
vector's x and y against −z (OpenFace's GetGazeAngle).

The pupil comes from mediapipe's ``iris_landmark.tflite`` (bundled in the mediapipe
wheel): a 64×64 crop around each eye (2.3 × the corner distance, level with the
corners, the subject's right eye mirrored as mediapipe does), iris centre = its first
iris point. The eye corners' 3-D positions come from the pose node's mean face placed
at the head pose (R, T), with OpenFace's default camera unless the pose node was given
another.
"""

from __future__ import annotations

import numpy as np

from ._headpose import MODEL_68_MM, default_intrinsics, euler_to_matrix

CROP, SCALE = 64, 2.3
EYES = ((36, 39), (42, 45))  # gaze_0, gaze_1: outer/inner corners in iBUG order
EYEBALL_OFFSET = np.array([0.0, -3.5, 7.0])
EYEBALL_RADIUS = 12.0


def eye_crop_matrix(a: np.ndarray, b: np.ndarray, mirror: bool) -> np.ndarray:
    """2×3 affine from the frame to a 64×64 crop centred between corners a and b, level with them."""
    centre = (a + b) / 2
    d = b - a
    size = SCALE * max(float(np.hypot(*d)), 1e-3)
    ang = np.arctan2(d[1], d[0])
    c, s = np.cos(-ang), np.sin(-ang)
    k = CROP / size
    m = np.array([[c * k, -s * k, 0.0], [s * k, c * k, 0.0]])
    m[:, 2] = CROP / 2 - m[:, :2] @ centre
    if mirror:
        m[0] = -m[0]
        m[0, 2] += CROP
    return m


def ray_sphere(direction: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """The nearer point where a ray from the origin meets the sphere; the closest point when it misses."""
    b = float(direction @ centre)
    disc = b * b - float(centre @ centre) + radius * radius
    t = b - np.sqrt(disc) if disc >= 0 else b
    return t * direction


def eye_coords(pupils: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Pupils (N, 2, 2) in each eye's own frame: (along, across) the corner-to-corner line, in corner distances.

    A pupil kept this way follows the eye corners when the head moves (``from_eye_coords``), so the iris model
    need not run on every frame of a live stream.
    """
    out = np.empty((len(points), 2, 2))
    for e, (i, j) in enumerate(EYES):
        a, b = points[:, i, :2], points[:, j, :2]
        d = b - a
        norm2 = np.maximum((d * d).sum(1), 1e-9)
        rel = pupils[:, e] - (a + b) / 2
        out[:, e, 0] = (rel * d).sum(1) / norm2
        out[:, e, 1] = (rel[:, 1] * d[:, 0] - rel[:, 0] * d[:, 1]) / norm2
    return out


def from_eye_coords(coords: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The inverse of ``eye_coords`` for the eye corners of ``points`` (N, 68, 2)."""
    out = np.empty((len(points), 2, 2))
    for e, (i, j) in enumerate(EYES):
        a, b = points[:, i, :2], points[:, j, :2]
        d = b - a
        perp = np.stack([-d[:, 1], d[:, 0]], 1)
        out[:, e] = (a + b) / 2 + coords[:, e, :1] * d + coords[:, e, 1:] * perp
    return out


class Gaze:
    """Per face: the two gaze vectors (2, 3), the two angles, and the pupils (2, 2) in frame pixels."""

    def __init__(self, threads: int = 1) -> None:
        from ..models._tflite import TfliteModel, mediapipe_model

        self.model = TfliteModel(mediapipe_model("modules/iris_landmark/iris_landmark.tflite"), threads=threads)

    def pupils(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Iris centres (N, 2, 2) of N faces' 68 landmarks (N, 68, 2)."""
        import cv2

        n = len(points)
        if n == 0:
            return np.zeros((0, 2, 2))
        mats, crops = [], []
        for p in np.asarray(points, np.float64):
            for e, (i, j) in enumerate(EYES):
                m = eye_crop_matrix(p[i, :2], p[j, :2], mirror=e == 0)  # mediapipe mirrors the right eye
                mats.append(m)
                crops.append(cv2.warpAffine(image, m, (CROP, CROP), flags=cv2.INTER_LINEAR))
        batch = np.stack(crops)[..., ::-1].astype(np.float32) / 255.0
        outs = self.model.run(batch)
        iris = next(o for o in outs if o.shape[-1] == 15).reshape(len(crops), 5, 3)[:, 0, :2]
        out = np.empty((len(crops), 2))
        for k, m in enumerate(mats):
            full = np.vstack([m, [0, 0, 1]])
            out[k] = (np.linalg.inv(full) @ np.array([iris[k, 0], iris[k, 1], 1.0]))[:2]
        return out.reshape(n, 2, 2)

    @staticmethod
    def vectors(pupils: np.ndarray, rotation: np.ndarray, translation: np.ndarray,
                size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Gaze vectors (N, 2, 3) and angles (N, 2) from pupils (N, 2, 2), head poses and the image size (W, H)."""
        fx, fy, cx, cy = default_intrinsics(*size)
        n = len(pupils)
        vec = np.full((n, 2, 3), np.nan)
        for f in range(n):
            rot = euler_to_matrix(rotation[f])
            cam = MODEL_68_MM @ rot.T + translation[f]
            for e, (i, j) in enumerate(EYES):
                centre = (cam[i] + cam[j]) / 2 + rot @ EYEBALL_OFFSET
                u, v = pupils[f, e]
                ray = np.array([(u - cx) / fx, (v - cy) / fy, 1.0])
                ray /= np.linalg.norm(ray)
                g = ray_sphere(ray, centre, EYEBALL_RADIUS) - centre
                vec[f, e] = g / max(np.linalg.norm(g), 1e-9)
        mean = vec.mean(1)
        angle = np.stack([np.arctan2(mean[:, 0], -mean[:, 2]), np.arctan2(mean[:, 1], -mean[:, 2])], 1)
        return vec, angle
