"""Face alignment maths: similarity transforms to the ArcFace 5-point template and OpenFace's 68-point crop.

The one ArcFace alignment of facegraph: the ``align`` node, the gallery builder of
``identify`` and tests all use ``arcface_matrix``/``align`` from here, so a gallery
photo and a video frame are cropped the same way.

``arcface``: insightface's ``face_align.estimate_norm``/``norm_crop`` — the least-squares
similarity (Umeyama, as scikit-image's ``SimilarityTransform.estimate``) from the five
keypoints to ``ARCFACE_112``; sizes that are multiples of 112 scale the template, sizes
that are multiples of 128 scale it by S/128 and shift it right by 8·S/128, as insightface does.

``openface``: OpenFace's ``AlignFace`` — a similarity from the more rigid of the 68 points to
the frontal mean shape scaled by 0.7 px/mm (at 112 px; ``0.7 · S/112`` otherwise), its origin
at the crop's centre.
"""

from __future__ import annotations

import numpy as np

from ._headpose import MODEL_68_MM

#: insightface's ``arcface_dst``: eye centres, nose tip, mouth corners in a 112×112 crop
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)

#: OpenFace's px-per-model-unit at a 112 px crop (``sim_scale`` of FaceAnalyser)
OPENFACE_SCALE = 0.7

#: the 68-point indices OpenFace fits the crop on (``extract_rigid_points``: jaw sides, nose, eye corners),
#: so the crop does not move with the mouth or the brows
OPENFACE_RIGID = np.array([1, 2, 3, 4, 12, 13, 14, 15, 27, 28, 29, 31, 32, 33, 34, 35, 36, 39, 40, 42, 45, 46, 47])


def arcface_template(size: int = 112) -> np.ndarray:
    """The 5-point destination for an S×S ArcFace crop (insightface's ``estimate_norm``)."""
    if size % 112 == 0:
        return ARCFACE_112 * (size / 112.0)
    if size % 128 == 0:
        ratio = size / 128.0
        dst = ARCFACE_112 * ratio
        dst[:, 0] += 8.0 * ratio
        return dst
    raise ValueError(f"ArcFace crop size must be a multiple of 112 or 128, got {size}")


def openface_template(size: int = 112) -> np.ndarray:
    """The 68-point frontal mean shape (pixels) in an S×S OpenFace-style crop."""
    scale = OPENFACE_SCALE * size / 112.0
    return MODEL_68_MM[:, :2] * scale + size / 2.0


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) taking ``src`` onto ``dst``.

    Umeyama (1991), as scikit-image implements it; returns the 2×3 matrix. Degenerate
    input (all points equal) gives a pure translation.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    n, dim = src.shape
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / n
    d = np.ones(dim)
    if np.linalg.det(cov) < 0:
        d[-1] = -1
    u, s, vt = np.linalg.svd(cov)
    rank = np.linalg.matrix_rank(cov)
    if rank == 0:
        out = np.eye(2, 3)
        out[:, 2] = dst_mean - src_mean
        return out
    if rank == dim - 1 and np.linalg.det(u) * np.linalg.det(vt) <= 0:
        s_vec = d.copy()
        s_vec[-1] = -1
        rot = u @ np.diag(s_vec) @ vt
    else:
        rot = u @ np.diag(d) @ vt
    var = src_c.var(0).sum()
    scale = (s @ d) / var if var > 0 else 1.0
    out = np.empty((2, 3))
    out[:, :2] = scale * rot
    out[:, 2] = dst_mean - scale * rot @ src_mean
    return out


def arcface_matrix(kps: np.ndarray, size: int = 112) -> np.ndarray:
    """Frame → crop matrix for one face's five keypoints (5, 2), or four (eyes, nose, mouth centre).

    Four points are what mediapipe's detector gives; the mouth centre is then matched
    to the middle of the template's mouth corners.
    """
    kps = np.asarray(kps, np.float64)[:, :2]
    dst = arcface_template(size)
    if len(kps) == 4:
        dst = np.vstack([dst[:3], dst[3:5].mean(0, keepdims=True)])
    elif len(kps) != 5:
        raise ValueError(f"ArcFace alignment needs 4 or 5 keypoints, got {len(kps)}")
    return umeyama(kps, dst)


def align(image: np.ndarray, kps: np.ndarray, size: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """One face warped to the ArcFace template: (crop uint8[S,S,3], matrix float32[2,3]), as ``norm_crop``."""
    matrix = arcface_matrix(kps, size)
    return warp_crops(image, matrix[None], size)[0], matrix.astype(np.float32)


def openface_matrix(points68: np.ndarray, size: int = 112) -> np.ndarray:
    """Frame → crop matrix for one face's 68 landmarks (68, 2), fitted on the rigid points."""
    return umeyama(points68[OPENFACE_RIGID, :2], openface_template(size)[OPENFACE_RIGID])


def warp_crops(image: np.ndarray, matrices: np.ndarray, size: int) -> np.ndarray:
    """All crops of one frame: uint8 (N, S, S, 3), black outside the frame (insightface's border)."""
    import cv2

    out = np.zeros((len(matrices), size, size, 3), np.uint8)
    for i, m in enumerate(matrices):
        cv2.warpAffine(image, m.astype(np.float64), (size, size), dst=out[i], flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2×3 affine matrix to points (..., 2)."""
    return points[..., :2] @ matrix[:, :2].T + matrix[:, 2]
