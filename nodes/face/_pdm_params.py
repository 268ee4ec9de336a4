"""OpenFace's PDM global parameters under a 2-D similarity: frame pixels ↔ crop pixels, exactly.

OpenFace projects a shape as ``x = s·R[:2]·X + t`` (weak perspective). A crop made by the
similarity ``A = c·Q`` with offset ``b`` sees ``s' = c·s``, ``R' = Q₃·R`` (``Q₃``: ``Q`` as a
rotation about the camera axis) and ``t' = c·Q·t + b``; the local (shape) parameters do not change.
"""

from __future__ import annotations

import numpy as np

from ._openface_au import _euler, _rotation


def params_to_crop(global_params: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """OpenFace's [scale, rx, ry, rz, tx, ty] in frame pixels → the same in crop pixels (see the module note)."""
    g = np.asarray(global_params, np.float64)
    a = np.asarray(matrix, np.float64)
    c = float(np.sqrt(abs(np.linalg.det(a[:, :2]))))
    q = a[:, :2] / c
    q3 = np.eye(3)
    q3[:2, :2] = q
    rot = q3 @ _rotation(g[1:4])
    t = a[:, :2] @ g[4:6] + a[:, 2]
    return np.concatenate([[c * g[0]], _euler(rot), t])


def params_to_frame(global_params: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The inverse of :func:`params_to_crop`: crop-pixel global parameters back in the frame."""
    a = np.vstack([np.asarray(matrix, np.float64), [0, 0, 1]])
    return params_to_crop(global_params, np.linalg.inv(a)[:2])
