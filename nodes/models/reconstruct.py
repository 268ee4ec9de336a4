"""``reconstruct``: face crop → expression tokens → the face rebuilt, as its own identity or another's.

Runs the expression transformer and the reconstruction model of ``facegraph train
expression`` (``nets/reconstruction.py``), each an ONNX export or a part checkpoint
(.pt, needs torch). Both take a subject embedding from the ``subjects.npz`` beside
the models: ``subject`` is who the faces are (``mean`` for someone not enrolled, or
a name enrolled with ``facegraph train enroll``, or a training id); the decoder
renders ``target_subject`` instead when it is set: an identity swap (the expression
of the video, the identity of the target). A conv+ref decoder (metadata
``reference: true``) also takes the rendered subject's reference face from that
file. The ``image`` output tiles the first ``faces`` faces side by side at a fixed
size (black where a face is missing), so a video of it keeps one size; ``tokens``
carries every face's tokens (a live stream for ``sink.zmq`` or ``sink.parquet``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from facegraph import FRAME, Input, ModelError, Node, Output, Param, PortType, array, register

from ..types import CROPS, EMBEDDINGS
from ._modelparams import missing_models

EXPR_TOKENS = PortType(
    "ExprTokens",
    array("tokens", "float32", "N", "K", "E", doc="expression tokens per face"),
    array("track_id", "int32", "N", required=False, doc="persistent id per face"),
    doc="expression-transformer tokens per face",
)

TORCH_SUFFIXES = (".pt", ".pth")
TRANSFORMER = "facegraph/expression_transformer"
RECONSTRUCTION = "facegraph/expression_reconstruction"


def _load_part(spec: str, what: str, providers: str, threads: int) -> tuple[Callable[..., np.ndarray], dict, Path]:
    """(run(*arrays) → first output, metadata, file) for an ONNX file or a torch part checkpoint."""
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

        return run_torch, meta, path

    from ._onnx import OnnxModel

    net = OnnxModel(path, providers=providers, threads=threads, what=what)
    names = [i.name for i in net.inputs]
    expected = 3 if net.metadata.get("reference") in (True, "true", "True") else 2
    if len(names) != expected:
        raise ModelError(f"{path}: a {what} with these metadata takes {expected} inputs, this model takes "
                         f"{len(names)}")

    def run_onnx(*arrays: np.ndarray) -> np.ndarray:
        return net.run(dict(zip(names, arrays, strict=True)))[0]

    return run_onnx, dict(net.metadata), path


@register("reconstruct")
class Reconstruct(Node):
    """Expression transformer + reconstruction model: rebuilt faces (identity swappable) and expression tokens."""

    crops = Input(CROPS, doc="aligned face crops")
    image = Output(FRAME, doc="reconstructions of the first `faces` faces side by side, BGR")
    tokens = Output(EXPR_TOKENS, doc="expression tokens per face")
    vectors = Output(EMBEDDINGS, doc="the tokens flattened to one vector per face, for sink.parquet / sink.zmq")

    encoder = Param(str, TRANSFORMER, doc="expression transformer: ONNX or .pt (path or catalogue name)")
    decoder = Param(str, RECONSTRUCTION, doc="reconstruction model: ONNX or .pt (path or catalogue name)")
    subjects = Param(str, "", doc="subjects.npz (default: the one beside the decoder)")
    # (str, int): `--set swap.target_subject=12` reaches the node as YAML's integer 12, a training id
    subject = Param((str, int), "mean", doc="who the faces are: mean, an enrolled name, or a training id")
    target_subject = Param((str, int), "", doc="render the faces as this subject instead (identity swap); "
                           "'' = subject")
    faces = Param(int, 1, ge=1, le=16, doc="how many faces are tiled into the image output")
    size = Param(int, 0, ge=0, le=2048, doc="tile side in pixels; 0: the model's image size")
    providers = Param(str, "auto", doc="ONNX Runtime provider: auto, cpu, cuda, coreml, tensorrt")

    threads = 2
    cost = 20.0  # a transformer encoder and a decoder per face

    @classmethod
    def requirements(cls, values: dict[str, Any]) -> list[str]:
        problems = missing_models(values, ["encoder", "decoder"])
        for key in ("encoder", "decoder"):
            spec = values.get(key, cls.params[key].default)
            if spec and Path(spec).suffix.lower() in TORCH_SUFFIXES:
                try:
                    import torch  # noqa: F401
                except ImportError:
                    problems.append(f"needs torch to load {spec} (pip install 'facegraph[train]')")
        return problems

    def open(self) -> None:
        from ._crops import CropSpec
        from ._subjects import SUBJECTS_FILE, SubjectStore

        threads = self.context.threads
        self._encode, enc_meta, _ = _load_part(self.encoder, "expression transformer", self.providers, threads)
        self._decode, dec_meta, dec_path = _load_part(self.decoder, "reconstruction model", self.providers, threads)
        self.token_shape = (int(enc_meta.get("tokens", 1)), int(enc_meta.get("dim", 1)))
        try:
            self.spec = CropSpec.from_metadata(enc_meta, size=64, color="rgb")
        except ValueError as exc:
            raise ModelError(f"{self.encoder}: bad metadata ({exc})") from None
        where = Path(self.subjects).expanduser() if self.subjects else dec_path.parent / SUBJECTS_FILE
        store = SubjectStore.read(where)
        dim = int(dec_meta.get("subject_dim", 0)) or store.vectors.shape[1]
        if store.vectors.shape[1] != dim or int(enc_meta.get("subject_dim", dim)) != dim:
            raise ModelError(f"{store.path}: its embeddings are {store.vectors.shape[1]}-D, the models take {dim}-D")
        subject, target = str(self.subject), str(self.target_subject)
        self.source_vec = store.get(subject, "subject")
        self.target_vec = store.get(target, "target_subject") if target else self.source_vec
        self.target_ref = None
        if bool(dec_meta.get("reference", False)):  # the conv+ref head renders from the shown subject's reference face
            who, what = (target, "target_subject") if target else (subject, "subject")
            self.target_ref = np.ascontiguousarray(store.reference(who, what).transpose(2, 0, 1))
        self.out_size = int(dec_meta.get("image_size", 64))
        self.out_color = str(dec_meta.get("color", "rgb"))
        self.out_range = dec_meta.get("output_range", [0.0, 1.0])
        self.tile = self.size or self.out_size

    def process(self, crops: Any) -> dict[str, Any]:
        from ._crops import prepare, to_bgr_uint8

        n = len(crops.images)
        ids = crops.get("track_id")
        canvas = np.zeros((self.tile, self.tile * self.faces, 3), np.uint8)
        if n == 0:  # no model call on an empty batch
            tokens = np.zeros((0, *self.token_shape), np.float32)
            return self._result(canvas, tokens, ids)
        source = np.repeat(self.source_vec[None], n, axis=0)
        tokens = np.asarray(self._encode(prepare(crops.images, self.spec), source), np.float32)
        shown = min(n, self.faces)
        target = np.repeat(self.target_vec[None], shown, axis=0)
        extra = [] if self.target_ref is None else [np.repeat(self.target_ref[None], shown, axis=0)]
        faces = to_bgr_uint8(self._decode(target, tokens[:shown], *extra), self.out_color, self.out_range)
        for i, face in enumerate(faces):
            if face.shape[0] != self.tile:
                import cv2

                face = cv2.resize(face, (self.tile, self.tile), interpolation=cv2.INTER_LINEAR)
            canvas[:, i * self.tile : (i + 1) * self.tile] = face
        return self._result(canvas, tokens, ids)

    @staticmethod
    def _result(canvas: np.ndarray, tokens: np.ndarray, ids: Any) -> dict[str, Any]:
        flat = np.ascontiguousarray(tokens.reshape(len(tokens), int(np.prod(tokens.shape[1:]))))
        return {"image": {"image": canvas}, "tokens": {"tokens": tokens, "track_id": ids},
                "vectors": {"vec": flat, "track_id": ids}}
