"""dlib's ResNet face descriptor (128-D) as a facegraph embedder: the one backbone that installs offline.

The weights come from PyPI's ``face-recognition-models`` (CC0) and run on the
``dlib-bin`` wheel: the ``[dlib]`` extra. dlib aligns with its own five points
(eye corners and the base of the nose, not ArcFace's five), so every crop is
first re-fitted by dlib's 5-point shape predictor inside a face box, then cut to
dlib's 150×150 chip. Where that box lies depends on how the crop was framed:
``arcface`` (the ``align`` node's 112×112 crops: eyes at 46 %, mouth at 82 %)
or ``full`` (the face fills the image, as in CK+48 and FER-2013).

``dlib+shape68`` appends dlib's 68-point shape (centred, unit RMS size: 136
values) to the descriptor, each part unit length and the whole scaled to unit
length. The descriptor is trained for identity: on CK+48 it carries expression
only weakly, the shape strongly (``benchmarks/README.md`` has the figures).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from facegraph import ModelError

#: catalogue-style names that mean this backbone (``embed`` node, ``facegraph data embeddings``)
NAMES = ("dlib", "dlib_resnet_v1", "dlib/resnet_v1")
SHAPE_NAMES = ("dlib+shape68",)
INSTALL = "pip install 'facegraph[dlib]' (dlib-bin + face-recognition-models)"
DIM = 128
CHIP = 150
#: the face box dlib's 5-point predictor starts from, as fractions (left, top, right, bottom) of the crop side;
#: arcface: dlib's HOG detector box around a face whose eyes and mouth sit at ArcFace's template points
FRAMINGS = {"arcface": (0.05, 0.12, 0.95, 1.0), "full": (0.10, 0.10, 0.90, 0.95)}


def is_dlib(spec: Any) -> bool:
    return str(spec).lower() in (*NAMES, *SHAPE_NAMES)


#: the weight files inside face-recognition-models' package folder
WEIGHTS = {
    "five": "shape_predictor_5_face_landmarks.dat",
    "sixty_eight": "shape_predictor_68_face_landmarks.dat",
    "descriptor": "dlib_face_recognition_resnet_model_v1.dat",
}


def weights_dir() -> Path | None:
    """face-recognition-models' ``models`` folder, found without importing the package: its ``__init__`` needs
    ``pkg_resources``, which new setuptools releases no longer ship (a fresh venv then cannot import it)."""
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        folder = Path(root) / "models"
        if all((folder / name).is_file() for name in WEIGHTS.values()):
            return folder
    return None


def missing(who: str = "backbone dlib") -> list[str]:
    """Requirement lines, naming ``who`` needs dlib: empty when dlib and its weights are installed."""
    try:
        import dlib  # noqa: F401
    except ImportError:
        return [f"{who} needs dlib and face-recognition-models: {INSTALL}"]
    if weights_dir() is None:
        return [f"{who} needs face-recognition-models' weight files: {INSTALL}"]
    return []


def shape_predictor_68() -> Any:
    """dlib's 68-point shape predictor (iBUG points) from face-recognition-models' weights (check ``missing``)."""
    import dlib

    folder = weights_dir()
    assert folder is not None, "call missing() first"
    return dlib.shape_predictor(str(folder / WEIGHTS["sixty_eight"]))


class DlibEmbedder:
    """BGR uint8 [N, S, S, 3] crops → float32 [N, 128] unit vectors (dlib's descriptor, its own alignment)."""

    def __init__(self, framing: str = "arcface", jitters: int = 0, shape68: bool = False) -> None:
        problems = missing()
        if problems:
            raise ModelError(problems[0])
        if framing not in FRAMINGS:
            raise ModelError(f"dlib backbone: framing must be one of {', '.join(FRAMINGS)}, got {framing!r}")
        import dlib

        folder = weights_dir()
        assert folder is not None  # missing() said so otherwise
        self._dlib = dlib
        self.framing = framing
        self.jitters = int(jitters)
        self.shape = dlib.shape_predictor(str(folder / WEIGHTS["five"]))
        self.net = dlib.face_recognition_model_v1(str(folder / WEIGHTS["descriptor"]))
        self.shape68 = shape_predictor_68() if shape68 else None
        self.name = "dlib_resnet_v1+shape68" if shape68 else "dlib_resnet_v1"
        self.dim = DIM + (136 if shape68 else 0)

    def chips(self, crops: np.ndarray) -> tuple[list[np.ndarray], np.ndarray | None]:
        """dlib's aligned 150×150 RGB chips of the crops (small crops are upsized first: 48-px CK+ faces),
        and with ``shape68`` the normalised 68-point shapes [N, 136]."""
        import cv2

        left, top, right, bottom = FRAMINGS[self.framing]
        out, shapes = [], []
        for crop in np.asarray(crops):
            if crop.ndim == 2:
                crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
            side = max(crop.shape[:2])
            if side < CHIP:
                crop = cv2.resize(crop, (CHIP, CHIP), interpolation=cv2.INTER_CUBIC)
            h, w = crop.shape[:2]
            rgb = np.ascontiguousarray(crop[..., ::-1])
            box = self._dlib.rectangle(int(left * w), int(top * h), int(right * w) - 1, int(bottom * h) - 1)
            out.append(self._dlib.get_face_chip(rgb, self.shape(rgb, box), size=CHIP, padding=0.25))
            if self.shape68 is not None:
                p = np.array([[q.x, q.y] for q in self.shape68(rgb, box).parts()], np.float64)
                p -= p.mean(0)
                shapes.append((p / max(float(np.sqrt((p**2).sum(1).mean())), 1e-9)).ravel())
        return out, (np.asarray(shapes, np.float32) if self.shape68 is not None else None)

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0, self.dim), np.float32)
        chips, shapes = self.chips(crops)
        if self.jitters:
            vec = [np.asarray(self.net.compute_face_descriptor(c, self.jitters)) for c in chips]
        else:
            vec = list(self.net.compute_face_descriptor(chips))
        vec = _unit(np.asarray([np.asarray(v) for v in vec], np.float32).reshape(len(chips), DIM))
        if shapes is not None:
            vec = np.concatenate([vec, _unit(shapes)], axis=1) / np.sqrt(2.0)
        return vec.astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def open_embedder(spec: str, *, framing: str = "arcface", providers: Any = "auto", threads: int = 1) -> Any:
    """An embedder by name: ``dlib`` (this module) or any recognition ONNX (path or catalogue name)."""
    if is_dlib(spec):
        return DlibEmbedder(framing=framing, shape68=str(spec).lower() in SHAPE_NAMES)
    from ._arcface import Embedder
    from ._heatmap_embed import HeatmapEmbedder, wants_heatmaps
    from ._onnx import load_metadata, resolve_model

    if wants_heatmaps(load_metadata(resolve_model(spec))):  # our face-ID models over RGB + heatmaps
        return HeatmapEmbedder(spec, providers=providers, threads=threads)
    embedder = Embedder(spec, providers=providers, threads=threads)
    embedder.name = str(spec)
    return embedder
