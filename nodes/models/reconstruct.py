"""``reconstruct``: face crop → expression tokens → reconstructed face, rendered for a chosen identity.

Runs an expression encoder and a reconstruction decoder (``nets/reconstruction.py``),
each an ONNX export or a torch checkpoint (.pt, needs torch). The decoder takes the
identity either as a subject embedding (the ``embeddings`` input: each face's own,
or the first face's for everyone, which swaps identities) or as ``subject_id``.
The ``image`` output tiles the reconstructions of the first ``faces`` faces side by
side at a fixed size (black where a face is missing), so a video of it keeps one size.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from facegraph import FRAME, Input, ModelError, Node, Output, Param, ParamError, PortType, array, register

from ..types import CROPS, EMBEDDINGS
from ._modelparams import missing_models

EXPR_TOKENS = PortType(
    "ExprTokens",
    array("tokens", "float32", "N", "K", "E", doc="expression tokens per face"),
    array("track_id", "int32", "N", required=False, doc="persistent id per face"),
    doc="expression-transformer tokens per face",
)

TORCH_SUFFIXES = (".pt", ".pth")


def _load_part(spec: str, what: str, providers: str, threads: int) -> tuple[Callable[..., np.ndarray], dict, str]:
    """(run(*arrays) → first output, metadata, type of the second input) for an ONNX file or a torch checkpoint."""
    from ._onnx import resolve_model

    path = resolve_model(spec, what=what)
    if path.suffix.lower() in TORCH_SUFFIXES:
        try:
            import torch

            from ..nets.reconstruction import load_checkpoint
        except ImportError:
            raise ModelError(f"{path}: a torch checkpoint needs torch (pip install 'facegraph[train]')") from None
        try:
            module, meta = load_checkpoint(path)
        except Exception as exc:  # torch.load raises several types for a bad file
            raise ModelError(f"{path}: cannot load as a {what} checkpoint ({str(exc).splitlines()[0]})") from None
        torch.set_num_threads(max(1, threads))

        def run_torch(*arrays: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return module(*(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)).numpy()

        return run_torch, meta, "tensor(int64)" if meta.get("subject") == "id" else "tensor(float)"

    from ._onnx import OnnxModel

    net = OnnxModel(path, providers=providers, threads=threads, what=what)
    names = [i.name for i in net.inputs]

    def run_onnx(*arrays: np.ndarray) -> np.ndarray:
        return net.run(dict(zip(names, arrays, strict=True)))[0]

    return run_onnx, dict(net.metadata), net.inputs[1].type if len(net.inputs) > 1 else ""


@register("reconstruct")
class Reconstruct(Node):
    """Expression transformer + decoder: reconstructed faces (identity swappable) and expression tokens."""

    crops = Input(CROPS, doc="aligned face crops")
    embeddings = Input(EMBEDDINGS, optional=True, doc="subject embeddings for an embedding-conditioned decoder")
    image = Output(FRAME, doc="reconstructions of the first `faces` faces side by side, BGR")
    tokens = Output(EXPR_TOKENS, doc="expression tokens per face")

    encoder = Param(str, doc="expression encoder: ONNX or .pt checkpoint (path or catalogue name)")
    decoder = Param(str, doc="reconstruction decoder: ONNX or .pt checkpoint (path or catalogue name)")
    subject_id = Param(int, None, ge=0, doc="render every face as this subject (id-conditioned decoders)")
    subject = Param(str, "self", choices=("self", "first"),
                    doc="embedding-conditioned decoders: each face's own embedding, or the first face's for all")
    faces = Param(int, 1, ge=1, le=16, doc="how many faces are tiled into the image output")
    size = Param(int, 0, ge=0, le=2048, doc="tile side in pixels; 0: the decoder's image size")
    providers = Param(str, "auto", doc="ONNX Runtime provider: auto, cpu, cuda, coreml, tensorrt")

    threads = 2
    cost = 20.0  # a transformer encoder and a decoder per face

    @classmethod
    def requirements(cls, values: dict[str, Any]) -> list[str]:
        problems = missing_models(values, ["encoder", "decoder"])
        for key in ("encoder", "decoder"):
            spec = values.get(key)
            if spec and Path(spec).suffix.lower() in TORCH_SUFFIXES:
                try:
                    import torch  # noqa: F401
                except ImportError:
                    problems.append(f"needs torch to load {spec} (pip install 'facegraph[train]')")
        return problems

    def open(self) -> None:
        from ._crops import CropSpec

        threads = self.context.threads
        self._encode, enc_meta, _ = _load_part(self.encoder, "expression encoder", self.providers, threads)
        self.token_shape = (int(enc_meta.get("tokens", 1)), int(enc_meta.get("dim", 1)))
        self._decode, dec_meta, subject_type = _load_part(
            self.decoder, "reconstruction decoder", self.providers, threads
        )
        try:
            self.spec = CropSpec.from_metadata(enc_meta, size=64, color="rgb")
        except ValueError as exc:
            raise ModelError(f"{self.encoder}: bad metadata ({exc})") from None
        self.by_id = dec_meta.get("subject") == "id" or subject_type == "tensor(int64)"
        self.subject_dim = int(dec_meta.get("subject_dim", 0)) or None
        self.out_size = int(dec_meta.get("image_size", 64))
        self.out_color = str(dec_meta.get("color", "rgb"))
        self.out_range = dec_meta.get("output_range", [0.0, 1.0])
        subjects = int(dec_meta.get("subjects", 0))
        if self.by_id:
            if self.subject_id is None:
                raise ParamError(f"decoder {self.decoder} is conditioned on a subject id: set subject_id")
            if subjects and self.subject_id >= subjects:
                raise ParamError(f"subject_id {self.subject_id} is out of range: decoder {self.decoder} "
                                 f"knows {subjects} subjects")
        self.tile = self.size or self.out_size

    def _subjects(self, n: int, crops: Any, embeddings: Any) -> np.ndarray:
        if self.by_id:
            return np.full(n, self.subject_id, np.int64)
        if embeddings is None:
            raise ModelError(f"decoder {self.decoder} needs a subject embedding: connect the 'embeddings' input")
        vec = np.asarray(embeddings.vec, np.float32)
        if self.subject_dim and vec.shape[1] != self.subject_dim:
            raise ModelError(f"embeddings are {vec.shape[1]}-D but decoder {self.decoder} takes "
                             f"{self.subject_dim}-D subject embeddings")
        if len(vec) == 0:
            raise ModelError("no subject embedding for this frame's faces (the embeddings packet is empty)")
        if self.subject == "first":
            return np.repeat(vec[:1], n, axis=0)
        crop_ids, emb_ids = crops.get("track_id"), embeddings.get("track_id")
        if crop_ids is not None and emb_ids is not None:
            rows = {int(t): i for i, t in enumerate(emb_ids)}
            missing = [int(t) for t in crop_ids if int(t) not in rows]
            if missing:
                raise ModelError(f"no subject embedding for track {missing[0]}")
            return vec[[rows[int(t)] for t in crop_ids]]
        if len(vec) != n:
            raise ModelError(f"{n} crops but {len(vec)} embeddings and no track ids to match them")
        return vec

    def process(self, crops: Any, embeddings: Any = None) -> dict[str, Any]:
        from ._crops import prepare, to_bgr_uint8

        n = len(crops.images)
        ids = crops.get("track_id")
        canvas = np.zeros((self.tile, self.tile * self.faces, 3), np.uint8)
        if n == 0:  # no model call on an empty batch
            tokens = np.zeros((0, *self.token_shape), np.float32)
            return {"image": {"image": canvas}, "tokens": {"tokens": tokens, "track_id": ids}}
        tokens = np.asarray(self._encode(prepare(crops.images, self.spec)), np.float32)
        shown = min(n, self.faces)
        subjects = self._subjects(n, crops, embeddings)[:shown]
        faces = to_bgr_uint8(self._decode(tokens[:shown], subjects), self.out_color, self.out_range)
        for i, face in enumerate(faces):
            if face.shape[0] != self.tile:
                import cv2

                face = cv2.resize(face, (self.tile, self.tile), interpolation=cv2.INTER_LINEAR)
            canvas[:, i * self.tile : (i + 1) * self.tile] = face
        return {"image": {"image": canvas}, "tokens": {"tokens": tokens, "track_id": ids}}
