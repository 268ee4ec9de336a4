"""Head pose from 68 iBUG landmarks: a 3-D mean face, solvePnP, and OpenFace's pose conventions.

Conventions (read from OpenFace 2.2: ``RotationHelpers.h`` and ``LandmarkDetectorUtils``):

* camera coordinates: X right, Y down, Z away from the camera, in millimetres; the
  model face with identity rotation looks straight into the camera (nose tip has the
  smallest Z);
* ``pose_Tx, pose_Ty, pose_Tz``: where the head model's origin (the mean of its 68
  points, roughly behind the nose bridge) sits in camera coordinates;
* ``pose_Rx, pose_Ry, pose_Rz`` (pitch, yaw, roll, radians): the head's rotation with
  respect to the camera, as Euler angles of ``R = Rx(pitch) @ Ry(yaw) @ Rz(roll)``
  (OpenFace's "XYZ convention"), so a model point X maps to ``R @ X + T``. With these
  axes a positive pitch tips the nose down (the subject looks down), a positive yaw
  moves the nose towards the image's left (the subject turns to their own right), and
  a positive roll turns the face clockwise in the image;
* intrinsics when none are given: OpenFace's defaults ``fx = 500 · W/640``,
  ``fy = 500 · H/480``, both replaced by their mean, ``cx = W/2``, ``cy = H/2``.

The 3-D model is the widely used mean shape of the 68 iBUG points in millimetres
(face about 145 mm wide, outer eye corners 91 mm apart), distributed for example as
``assets/model.txt`` of yinguobing/head-pose-estimation and as ``landmarks_68_3D`` in
DeepFaceLab, where it is described as the mean face of OpenFace's in-the-wild
68-point model. It already has zero mean, and uses the camera axes above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODEL_68_MM = np.array(
    [
        [-73.393523, -29.801432, 47.667532], [-72.775014, -10.949766, 45.909403],  # 0-1
        [-70.533638, 7.929818, 44.842580], [-66.850058, 26.074280, 43.141114],  # 2-3
        [-59.790187, 42.564390, 38.635298], [-48.368973, 56.481080, 30.750622],  # 4-5
        [-34.121101, 67.246992, 18.456453], [-17.875411, 75.056892, 3.609035],  # 6-7
        [0.098749, 77.061286, -0.881698], [17.477031, 74.758448, 5.181201],  # 8-9
        [32.648966, 66.929021, 19.176563], [46.372358, 56.311389, 30.770570],  # 10-11
        [57.343480, 42.419126, 37.628629], [64.388482, 25.455880, 40.886309],  # 12-13
        [68.212038, 6.990805, 42.281449], [70.486405, -11.666193, 44.142567],  # 14-15
        [71.375822, -30.365191, 47.140426], [-61.119406, -49.361602, 14.254422],  # 16-17
        [-51.287588, -58.769795, 7.268147], [-37.804800, -61.996155, 0.442051],  # 18-19
        [-24.022754, -61.033399, -6.606501], [-11.635713, -56.686759, -11.967398],  # 20-21
        [12.056636, -57.391033, -12.051204], [25.106256, -61.902186, -7.315098],  # 22-23
        [38.338588, -62.777713, -1.022953], [51.191007, -59.302347, 5.349435],  # 24-25
        [60.053851, -50.190255, 11.615746], [0.653940, -42.193790, -13.380835],  # 26-27
        [0.804809, -30.993721, -21.150853], [0.992204, -19.944596, -29.284036],  # 28-29
        [1.226783, -8.414541, -36.948060], [-14.772472, 2.598255, -20.132003],  # 30-31
        [-7.180239, 4.751589, -23.536684], [0.555920, 6.562900, -25.944448],  # 32-33
        [8.272499, 4.661005, -23.695741], [15.214351, 2.643046, -20.858157],  # 34-35
        [-46.047290, -37.471411, 7.037989], [-37.674688, -42.730510, 3.021217],  # 36-37
        [-27.883856, -42.711517, 1.353629], [-19.648268, -36.754742, -0.111088],  # 38-39
        [-28.272965, -35.134493, -0.147273], [-38.082418, -34.919043, 1.476612],  # 40-41
        [19.265868, -37.032306, -0.665746], [27.894191, -43.342445, 0.247660],  # 42-43
        [37.437529, -43.110822, 1.696435], [45.170805, -38.086515, 4.894163],  # 44-45
        [38.196454, -35.532024, 0.282961], [28.764989, -35.484289, -1.172675],  # 46-47
        [-28.916267, 28.612716, -2.240310], [-17.533194, 22.172187, -15.934335],  # 48-49
        [-6.684590, 19.029051, -22.611355], [0.381001, 20.721118, -23.748437],  # 50-51
        [8.375443, 19.035460, -22.721995], [18.876618, 22.394109, -15.610679],  # 52-53
        [28.794412, 28.079924, -3.217393], [19.057574, 36.298248, -14.987997],  # 54-55
        [8.956375, 39.634575, -22.554245], [0.381549, 40.395647, -23.591626],  # 56-57
        [-7.428895, 39.836405, -22.406106], [-18.160634, 36.677899, -15.121907],  # 58-59
        [-24.377490, 28.677771, -4.785684], [-6.897633, 25.475976, -20.893742],  # 60-61
        [0.340663, 26.014269, -22.220479], [8.444722, 25.326198, -21.025520],  # 62-63
        [24.474473, 28.323008, -5.712776], [8.449166, 30.596216, -20.671489],  # 64-65
        [0.205322, 31.408738, -21.903670], [-7.198266, 30.844876, -20.328022],  # 66-67
    ],
    dtype=np.float64,
)

#: the points of the model that move least with expression (jaw sides, brows' outer ends,
#: nose, eye corners); used for the fit so that a smile or an open mouth does not tilt the pose
RIGID_68 = np.array([0, 1, 2, 3, 13, 14, 15, 16, 17, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 39, 42, 45])


def default_intrinsics(width: int, height: int) -> tuple[float, float, float, float]:
    """OpenFace's default camera for an image of ``width`` × ``height`` pixels: (fx, fy, cx, cy)."""
    fx = 500.0 * width / 640.0
    fy = 500.0 * height / 480.0
    f = (fx + fy) / 2.0
    return f, f, width / 2.0, height / 2.0


def camera_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


def euler_to_matrix(euler: np.ndarray) -> np.ndarray:
    """OpenFace's ``Euler2RotationMatrix``: R = Rx(pitch) @ Ry(yaw) @ Rz(roll)."""
    a, b, c = (float(v) for v in euler)
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    rx = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rz = np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]])
    return rx @ ry @ rz


def matrix_to_euler(rot: np.ndarray) -> np.ndarray:
    """Inverse of :func:`euler_to_matrix` (pitch, yaw, roll); yaw in [-π/2, π/2]."""
    yaw = np.arcsin(np.clip(rot[0, 2], -1.0, 1.0))
    pitch = np.arctan2(-rot[1, 2], rot[2, 2])
    roll = np.arctan2(-rot[0, 1], rot[0, 0])
    return np.array([pitch, yaw, roll])


def project(model: np.ndarray, euler: np.ndarray, translation: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Pinhole projection of model points (M, 3) posed by (euler, translation): pixel (M, 2)."""
    cam = model @ euler_to_matrix(euler).T + np.asarray(translation, dtype=np.float64)
    uvw = cam @ k.T
    return uvw[:, :2] / uvw[:, 2:3]


@dataclass
class PoseState:
    """The last solution of one track, the starting point of its next solvePnP."""

    rvec: np.ndarray
    tvec: np.ndarray


def initial_guess(points: np.ndarray, k: np.ndarray, idx: np.ndarray = RIGID_68) -> PoseState:
    """A frontal pose at the distance that gives the landmarks their observed spread."""
    model = MODEL_68_MM[idx]
    pts = points[idx].astype(np.float64)
    spread_img = np.sqrt(((pts - pts.mean(0)) ** 2).sum(1).mean())
    spread_model = np.sqrt(((model[:, :2] - model[:, :2].mean(0)) ** 2).sum(1).mean())
    f = (k[0, 0] + k[1, 1]) / 2.0
    tz = f * spread_model / max(spread_img, 1e-6)
    cx, cy = pts.mean(0)
    tvec = np.array([(cx - k[0, 2]) * tz / k[0, 0], (cy - k[1, 2]) * tz / k[1, 1], tz])
    return PoseState(np.zeros(3), tvec)


def solve_pose(
    points: np.ndarray, k: np.ndarray, previous: PoseState | None = None, idx: np.ndarray = RIGID_68
) -> tuple[np.ndarray, np.ndarray, PoseState]:
    """Fit the mean face to one face's 2-D landmarks (68, 2) with iterative solvePnP.

    Starts from ``previous`` (the track's last pose) when given, else from a frontal
    guess, so successive frames stay on the same solution. Returns (euler [3] rad,
    translation [3] mm, new state).
    """
    import cv2

    guess = previous if previous is not None else initial_guess(points, k, idx)
    obj = np.ascontiguousarray(MODEL_68_MM[idx], dtype=np.float64)
    img = np.ascontiguousarray(points[idx, :2], dtype=np.float64)
    ok, rvec, tvec = cv2.solvePnP(
        obj, img, k, None, guess.rvec.copy().reshape(3, 1), guess.tvec.copy().reshape(3, 1),
        useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE,
    )
    rvec, tvec = rvec.reshape(3), tvec.reshape(3)
    if not ok or not np.all(np.isfinite(rvec)) or not np.all(np.isfinite(tvec)) or tvec[2] <= 0:
        if previous is not None:  # a bad start: retry from scratch once
            return solve_pose(points, k, None, idx)
        return np.full(3, np.nan), np.full(3, np.nan), guess
    rot, _ = cv2.Rodrigues(rvec)
    return matrix_to_euler(rot), tvec, PoseState(rvec, tvec)
