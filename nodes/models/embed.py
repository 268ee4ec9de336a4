"""``embed``: ArcFace-style recognition vectors for aligned face crops, all faces of a frame in one call.

Runs any 112×112 recognition ONNX (insightface's w600k_r50 / w600k_mbf, an
iResNet exported by ``facegraph.nodes.nets.iresnet.export_onnx``, a
MobileFaceNet), or ``dlib``: dlib's 128-D ResNet descriptor with its own 5-point
alignment inside the crop (the ``[dlib]`` extra, installs offline from PyPI);
the vector length D comes from the model. A model of ``facegraph train face-id``
whose .json asks for landmark heatmap channels gets them from the optional
``landmarks`` input (the landmarks node's output for the same faces, moved into
each crop by its matrix; ``_heatmap_embed``), or, unconnected, from FaceMesh on
the crop as in training. Input normalisation
comes from the model's metadata.json (``mean``, ``std``, ``color``), else
insightface's RGB (x − 127.5) / 127.5.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facegraph import Input, Node, Output, Param, PortValueError, register

from ..types import CROPS, EMBEDDINGS, LANDMARKS
from . import _catalogue  # registers the model names, so 'model' may be a name


@register("embed")
class Embed(Node):
    """L2-normalised face embeddings (ArcFace, MobileFaceNet ...) of aligned crops."""

    crops = Input(CROPS, doc="ArcFace-aligned crops (112×112 usual; other sizes are resized)")
    landmarks = Input(LANDMARKS, optional=True,
                      doc="the faces' landmarks (frame px, same rows as crops), for a model that wants heatmap "
                          "channels (its .json 'heatmaps'); without them it finds landmarks on the crop itself")
    embeddings = Output(EMBEDDINGS, doc="vec float32[N,D], unit length; track_id copied")
    model = Param(str, "buffalo_l/w600k_r50", doc="ONNX file, a model name from 'facegraph models', or dlib")
    providers = Param((str, list), "auto", doc="'auto', 'cpu', 'cuda', 'coreml', 'tensorrt' or a list")

    threads = 2
    cost = 25.0  # ArcFace r50 on one 112×112 crop, one core

    @classmethod
    def requirements(cls, values: dict[str, Any]) -> list[str]:
        from . import _dlib

        if _dlib.is_dlib(values["model"]):
            return _dlib.missing()
        return _catalogue.model_requirements(values["model"], "recognition model")

    def open(self) -> None:
        from ._dlib import open_embedder

        self.embedder = open_embedder(self.model, framing="arcface", providers=self.providers,
                                      threads=self.context.threads)

    @property
    def dim(self) -> int:
        return self.embedder.dim

    def process(self, crops: Any, landmarks: Any = None) -> dict[str, dict[str, Any]]:
        images = np.asarray(crops.images)
        if landmarks is not None and getattr(self.embedder, "needs_landmarks", False):
            points = np.asarray(landmarks.points)
            if len(points) != len(images):
                raise PortValueError(f"embed: {len(points)} faces of landmarks for {len(images)} crops "
                                     "(connect the landmarks of the faces that align cropped)")
            from ._heatmap_embed import crop_points

            pts = crop_points(points, np.asarray(crops.matrices))
            vec = self.embedder(images, pts, np.isfinite(pts).all((1, 2)), images.shape[1] if len(images) else None)
        else:
            vec = self.embedder(images)
        out: dict[str, Any] = {"vec": vec}
        track_id = crops.get("track_id")
        if track_id is not None:
            out["track_id"] = np.asarray(track_id, dtype=np.int32)
        return {"embeddings": out}
