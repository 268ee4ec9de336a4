"""Landmark heatmap channels for face ID: the one implementation that training and the ``embed`` node share.

A face-ID model trained on ``[RGB + heatmaps (+ mask)]`` must see at inference the
very channels it saw in training, so both build them here (plain numpy, no torch).

Schemes (``spec["scheme"]``):
  * ``groups6``: six grouped Gaussian maps over iBUG-68 points (FaceMesh 468 points
    are mapped to iBUG 68 first): left eye, right eye, nose, left mouth corner,
    right mouth corner, chin; each map is the max of its points' Gaussians (peak 1).
    "Left" is the viewer's left, as in iBUG images and ``_facemesh.mesh_kps``.
  * ``all``: one map per landmark of the native scheme (68 or 468 channels).

With ``mask`` a last channel is 1 where the landmarks are valid and 0 where the
extractor failed (then every heatmap is 0 too): the network can tell "no face
part here" from "landmarks unknown". A horizontal flip mirrors the points and
relabels them (iBUG's mirror permutation), so the left-eye map follows the eye
that is now on the left: :func:`flip_points`, and :data:`GROUP_FLIP` for maps.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._facemesh import to_ibug68

GROUP_NAMES = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth", "chin")
#: iBUG-68 members of each group (0-based)
GROUPS_68: tuple[tuple[int, ...], ...] = (
    tuple(range(36, 42)),  # left eye (viewer's)
    tuple(range(42, 48)),  # right eye
    tuple(range(27, 36)),  # nose bridge, tip, nostrils
    (48, 60),  # left mouth corner (outer, inner)
    (54, 64),  # right mouth corner
    (6, 7, 8, 9, 10),  # chin
)
#: channel order after a horizontal flip of grouped maps: left ↔ right eye, left ↔ right mouth corner
GROUP_FLIP = (1, 0, 2, 4, 3, 5)

#: iBUG 68 mirror image: point i of a flipped face is point FLIP_68[i] of the original
FLIP_68 = np.array(
    list(range(16, -1, -1))  # jaw
    + list(range(26, 16, -1))  # brows
    + [27, 28, 29, 30] + [35, 34, 33, 32, 31]  # nose
    + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lip
    + [64, 63, 62, 61, 60, 67, 66, 65],  # inner lip
    dtype=np.int64,
)

DEFAULT_SPEC: dict[str, Any] = {"scheme": "groups6", "sigma": 2.0, "mask": False}


def channels(spec: dict[str, Any] | None, points: int = 68) -> int:
    """Extra input channels a heatmap spec adds (0 when ``spec`` is None: RGB only)."""
    if not spec:
        return 0
    n = len(GROUP_NAMES) if spec.get("scheme", "groups6") == "groups6" else int(spec.get("points", points))
    return n + (1 if spec.get("mask") else 0)


def channel_names(spec: dict[str, Any] | None) -> list[str]:
    names = ["r", "g", "b"]
    if not spec:
        return names
    if spec.get("scheme", "groups6") == "groups6":
        names += [f"heatmap_{g}" for g in GROUP_NAMES]
    else:
        names += [f"heatmap_{i}" for i in range(int(spec["points"]))]
    return names + (["mask"] if spec.get("mask") else [])


def as_68(points: np.ndarray) -> np.ndarray:
    """[N,68|468,C] → [N,68,2] iBUG points (FaceMesh 468 mapped by ``_facemesh.IBUG68_FROM_MESH``)."""
    pts = np.asarray(points, np.float32)
    if pts.ndim != 3 or pts.shape[1] not in (68, 468):
        raise ValueError(f"heatmaps need [N, 68 or 468, 2|3] landmarks, got shape {pts.shape}")
    return pts[:, :, :2] if pts.shape[1] == 68 else to_ibug68(pts).astype(np.float32)


def gaussians(points: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """float32 [N,K,size,size]: a Gaussian (peak 1 at the pixel centre nearest the point) per point [N,K,2]."""
    pts = np.asarray(points, np.float32)
    coords = np.arange(size, dtype=np.float32)
    gx = np.exp(-((coords[None, None, :] - pts[..., 0, None]) ** 2) / (2 * sigma**2))  # [N,K,W]
    gy = np.exp(-((coords[None, None, :] - pts[..., 1, None]) ** 2) / (2 * sigma**2))  # [N,K,H]
    return (gy[..., :, None] * gx[..., None, :]).astype(np.float32)  # separable: [N,K,H,W]


def heatmaps(points: np.ndarray, valid: np.ndarray | None, size: int, spec: dict[str, Any],
             source_size: float | None = None) -> np.ndarray:
    """float32 [N, C, size, size] extra channels for landmarks ``points`` [N,K,2|3] in crop pixels.

    ``source_size``: the side of the crop the points were measured on, when the network input is
    resized (points are scaled by ``size / source_size``). Invalid faces get all-zero maps (and mask 0).
    """
    pts = np.asarray(points, np.float32)
    n = len(pts)
    valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool).reshape(n)
    scale = 1.0 if not source_size else size / float(source_size)
    sigma = float(spec.get("sigma", 2.0))
    if spec.get("scheme", "groups6") == "groups6":
        p68 = as_68(pts) * scale
        maps = np.stack([gaussians(p68[:, list(g)], size, sigma).max(1) for g in GROUPS_68], 1)
    else:
        want = int(spec.get("points", pts.shape[1]))
        if pts.shape[1] != want:
            raise ValueError(f"this model wants one heatmap per landmark of {want} points, got {pts.shape[1]}")
        maps = gaussians(pts[:, :, :2] * scale, size, sigma)
    maps[~valid] = 0.0
    if spec.get("mask"):
        mask = np.broadcast_to(valid.astype(np.float32)[:, None, None, None], (n, 1, size, size))
        maps = np.concatenate([maps, mask], 1)
    return np.ascontiguousarray(maps, dtype=np.float32)


def flip_points(points: np.ndarray, width: float, mirror: np.ndarray | None = None) -> np.ndarray:
    """Landmarks [..., K, 2|3] of the horizontally flipped image (pixel centres: x → width − 1 − x), relabelled by
    the mirror permutation (iBUG's for 68 points; pass ``mirror`` for other schemes)."""
    pts = np.array(points, np.float32, copy=True)
    pts[..., 0] = width - 1 - pts[..., 0]
    k = pts.shape[-2]
    perm = mirror if mirror is not None else FLIP_68 if k == 68 else None
    if perm is None:
        raise ValueError(f"no mirror permutation for {k}-point landmarks (map them to iBUG 68 first)")
    return pts[..., perm, :]
