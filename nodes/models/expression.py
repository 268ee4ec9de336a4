"""``expression``: a facial-emotion classifier over aligned crops → class probabilities (and a 128-D embedding).

Crops are resized and converted as the model's metadata.json says (48×48 gray for
FER-2013 models, 224×224 RGB for others; otherwise taken from the model's input
shape), all faces of a frame in one call. Probs carries every class; how many an
overlay shows is the overlay's ``top_k``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facegraph import Input, ModelError, Node, Output, Param, register

from ..types import CROPS, EMBEDDINGS, PROBS
from ._modelparams import FER_LABELS, as_probs, labels_for, missing_models


@register("expression")
class Expression(Node):
    """Emotion probabilities per face from an ONNX classifier (FER-2013 labels by default)."""

    crops = Input(CROPS, doc="aligned face crops")
    probs = Output(PROBS, doc="softmax over the model's classes, per face")
    embeddings = Output(EMBEDDINGS, doc="L2-normalised expression embedding, when the model has a second output")

    model = Param(str, doc="ONNX emotion classifier (path or catalogue name), metadata.json beside it")
    providers = Param(str, "auto", doc="ONNX Runtime provider: auto, cpu, cuda, coreml, tensorrt")

    threads = 2
    cost = 3.0  # a small CNN per face, one core

    @classmethod
    def requirements(cls, values: dict[str, Any]) -> list[str]:
        return missing_models(values, ["model"])

    def open(self) -> None:
        from ._crops import CropSpec
        from ._onnx import OnnxModel

        self.net = OnnxModel(self.model, providers=self.providers, threads=self.context.threads, what="emotion model")
        meta = self.net.metadata
        shape = self.net.input_shape
        channels = shape[1] if len(shape) == 4 and shape[1] in (1, 3) else None
        size = self.net.fixed_hw((48, 48) if channels != 3 else (224, 224))[0]
        try:
            self.spec = CropSpec.from_metadata(meta, size=size, color="rgb" if channels == 3 else "gray")
        except ValueError as exc:
            raise ModelError(f"{self.net.path}: bad metadata ({exc})") from None
        if channels is not None and channels != self.spec.channels:
            raise ModelError(
                f"{self.net.path}: metadata says color {self.spec.color} but the model takes {channels} channels"
            )
        classes = self.net.outputs[0].shape[-1]
        if not isinstance(classes, int):
            classes = len(meta.get("labels", FER_LABELS))
        self.labels = labels_for(meta, classes, FER_LABELS)
        self.output_kind = meta.get("output")
        self.has_embedding = len(self.net.outputs) > 1
        emb = self.net.outputs[1].shape[-1] if self.has_embedding else 0
        self.embedding_dim = emb if isinstance(emb, int) else int(meta.get("embedding_dim", 128))

    def process(self, crops: Any) -> dict[str, Any]:
        from ._crops import prepare

        n = len(crops.images)
        ids = crops.get("track_id")
        if n == 0:  # an empty batch is no call at all (some ONNX Runtime kernels abort on it)
            p = np.zeros((0, len(self.labels)), np.float32)
            emb = np.zeros((0, self.embedding_dim), np.float32)
        else:
            outs = self.net.run(prepare(crops.images, self.spec))
            p = as_probs(outs[0], self.output_kind)
            emb = outs[1].astype(np.float32) if self.has_embedding else None
            if emb is not None:
                emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        result: dict[str, Any] = {"probs": {"p": p, "labels": list(self.labels), "track_id": ids}}
        if self.has_embedding:
            result["embeddings"] = {"vec": emb.astype(np.float32), "track_id": ids}
        return result
