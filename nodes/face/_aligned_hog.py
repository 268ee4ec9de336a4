"""FHOG of a face aligned OpenFace's way (a similarity on its rigid points to the 112 px template).

One implementation for the teacher HDF5's ``hog_features`` and the AU nets that read FHOG
(``FhogFerAUNet``): training, evaluation and the ``au.nn`` node all call this, so the feature
a net learnt from is the feature it is given.
"""

from __future__ import annotations

import numpy as np

from . import _fhog
from ._align import openface_matrix, warp_crops

ALIGNED_SIZE = 112
#: the metadata ``input`` of a model that takes this FHOG beside the crop (``train au --net fhog+fer``)
FHOG_INPUT = "image+fhog"


def reads_fhog(meta: dict) -> bool:
    """Whether a model's metadata (or its ``model_config``) says it takes FHOG as a second input."""
    return FHOG_INPUT in (meta.get("input"), (meta.get("model_config") or {}).get("input"))


def aligned_fhog(images_bgr: np.ndarray, points68: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 images and each one's 68 landmarks (N, 68, 2) in its pixels → (N, 4464) float32."""
    images_bgr, points68 = np.asarray(images_bgr), np.asarray(points68, np.float64)
    if len(images_bgr) != len(points68) or points68.shape[1:] != (68, 2):
        raise ValueError(f"aligned_fhog: {len(images_bgr)} images and landmarks of shape {points68.shape} "
                         "(want (N, 68, 2), one row per image)")
    out = np.empty((len(images_bgr), 12 * 12 * 31), np.float32)
    for i, (image, points) in enumerate(zip(images_bgr, points68, strict=True)):
        face = warp_crops(np.ascontiguousarray(image), openface_matrix(points, ALIGNED_SIZE)[None], ALIGNED_SIZE)[0]
        out[i] = _fhog.descriptor(_fhog.fhog(face))
    return out
