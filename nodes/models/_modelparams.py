"""Shared bits of the model nodes in this family: missing-model reports, softmax, class labels.

Kept apart from the nodes so they are importable without ONNX Runtime or torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from facegraph import ModelError

FER_LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


#: the project's own exports these nodes run; trained by the project, so no public download yet
OWN_MODELS = (
    ("facegraph/expression_gru", "facegraph/expression_gru/expression_gru.onnx",
     "GRU temporal head over ArcFace windows (nodes/nets/gru.py export_onnx) + metadata.json"),
)


#: models trained by the project that ship inside this package (nodes/models/data/), with a card beside each
#: (``facegraph models card NAME``: data, licence, command, wall time, scores)
SHIPPED_MODELS = (
    ("facegraph/fer_cnn", "data/fer_cnn.onnx", ("fer_cnn", "fer"),
     "FER-2013 emotion CNN, 48x48 gray, 7 classes + 128-D embedding; val 63.8 % (facegraph train fer)",
     "MIT code; weights trained on FER-2013: research use only",
     "04c0ab410412986b4fe2eec73a421bbdf3651eff64a59a9a2e0b3299899b8ba8", 4_831_617),
    ("facegraph/landmark_ae", "data/landmark_ae.npz", ("landmark_ae",),
     "landmark autoencoder: posed iBUG-68 + head pose -> canonical landmarks (canonical_landmarks node); "
     "held-out identities -59.6 % point error (facegraph train landmark-ae)",
     "MIT code; weights trained on glint24 (Glint360k sample): research use only",
     "6477c26e17e8d5ec3f683d9924053695d1e636b32359da4096143c06b45ab4ac", 547_774),
    ("facegraph/face_id", "data/face_id.onnx", ("face_id",),
     "face ID ResNet-18 x0.5 over RGB + 6 grouped landmark heatmaps (9 ch, 80 px, 512-D), distilled from dlib's "
     "CC0 descriptor; unseen people AUC 0.863, rank-1 0.929 (facegraph train face-id --distill dlib)",
     "MIT code; weights trained on glint24 (Glint360k sample): research use only; teacher dlib ResNet v1 (CC0)",
     "8c18696a495996cefbb630fb89e5071ab15e585fe32014f566b5cdb65983aaf7", 5_899_174),
    ("facegraph/expression_transformer", "data/expression/expression_transformer.onnx", ("expression_transformer",),
     "expression transformer, 64 px face + subject embedding -> 65 x 32 expression tokens (one per patch + the "
     "frozen FER CNN's); CK+ probe 0.887 vs pixels 0.814 (facegraph train expression; subjects.npz + .pt beside it)",
     "MIT code; weights trained on the shared research videos (+ the FER-2013 CNN's): research use only",
     "2d0b2a6ca292f4c0bba468cda7e9db33e26cc733f7eb08ff9e65039b24a4562d", 7_521_398),
    ("facegraph/expression_reconstruction", "data/expression/expression_reconstruction.onnx",
     ("expression_reconstruction",),
     "expression reconstruction model, subject embedding + tokens + the subject's reference face -> 64 px face; "
     "held-out PSNR vs mean face +5.5 / +1.9 / -1.2 dB, +3.9 over all frames (facegraph train expression)",
     "MIT code; weights trained on the shared research videos: research use only",
     "5789233b266ecc52fc809d051185936166436e617b953e0195c191ecd75ec2ad", 3_527_035),
)


#: the shipped expression transformer + reconstruction model (facegraph train expression): one folder, both parts
EXPRESSION_FOLDER = "data/expression"
EXPRESSION_NAMES = ("expression", "facegraph/expression")


def shipped_expression_folder(name: str) -> Path | None:
    """The package folder of the shipped expression models when ``name`` names them (and they are there)."""
    if name not in EXPRESSION_NAMES:
        return None
    folder = Path(__file__).parent / EXPRESSION_FOLDER
    return folder if (folder / "expression_transformer.onnx").is_file() else None


def _register_own_models() -> None:
    try:
        from facegraph._modelstore import ModelEntry, register_models
    except ImportError:  # an engine without the model store: paths only
        return
    register_models(*(
        ModelEntry(name=name, filename=filename, description=desc, licence="MIT (weights: per training data)",
                   aliases=(name.split("/", 1)[1],),
                   note="built by the project's training scripts; no public download yet")
        for name, filename, desc in OWN_MODELS
    ))
    register_models(*(
        ModelEntry(name=name, filename=filename, description=desc, licence=licence, sha256=sha, size=size,
                   package=__package__, aliases=aliases)
        for name, filename, aliases, desc, licence, sha, size in SHIPPED_MODELS
    ))
    register_models(ModelEntry(
        name="dinov2_vits14", filename="dinov2/dinov2_vits14_pretrain.pth",
        description="DINOv2 ViT-S/14 backbone weights: the expression transformer's patch tokens "
                    "(facegraph train expression --tokenizer dinov2 --dinov2 PATH)",
        licence="Apache-2.0 (facebookresearch/dinov2)",
        urls=("https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth",),
        size=88_283_115, size_approx=True, aliases=("dinov2",),
        note="never bundled; without it the expression transformer trains its own conv patch tokenizer"))


_register_own_models()


def missing_models(values: Mapping[str, Any], keys: Iterable[str]) -> list[str]:
    """One line per model parameter that does not resolve here; catalogue names read
    "needs model X (facegraph models fetch X)"."""
    try:
        from ._catalogue import model_requirements
    except ImportError:
        model_requirements = None
    problems = []
    for key in keys:
        spec = values.get(key)
        if not spec:
            continue
        if model_requirements is not None:
            problems += model_requirements(spec, what="model" if key == "model" else f"{key} model")
            continue
        from ._onnx import resolve_model

        try:
            resolve_model(spec)
        except ModelError:
            problems.append(f"needs model {spec} (facegraph models fetch {spec})")
    return problems


def softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def as_probs(out: np.ndarray, kind: str | None) -> np.ndarray:
    """Model output → probabilities: ``kind`` 'probs' or 'logits' from metadata; guessed when absent."""
    out = np.asarray(out, dtype=np.float32)
    if kind == "probs":
        return out
    if kind is None and out.size and out.min() >= 0 and np.allclose(out.sum(axis=-1), 1, atol=1e-3):
        return out
    return softmax(out)


def labels_for(metadata: Mapping[str, Any], classes: int, default: list[str] | None = None) -> list[str]:
    """Labels from metadata, else ``default`` when it has the right length, else class0..classN."""
    labels = metadata.get("labels")
    if labels is None and default is not None and len(default) == classes:
        labels = default
    if labels is None:
        labels = [f"class{i}" for i in range(classes)]
    labels = [str(label) for label in labels]
    if len(labels) != classes:
        raise ModelError(f"metadata lists {len(labels)} labels but the model has {classes} outputs")
    return labels
