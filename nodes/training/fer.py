"""The facial-emotion (FER) classifier: a task for the shared trainer, and its checked ONNX export.

``facegraph train fer --data DIR`` trains a 48×48 gray CNN (``cnn48``) or a
stronger backbone (``resnet18``, ``timm:<name>``), each with a 128-D embedding
and a class head, then exports ``<out>/fer.onnx`` + ``fer.json`` that the
``expression`` node and ``facegraph predict`` read, with the held-out scores of
the exported file itself.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias
from torch import nn

from ..nets.expression import ExpressionConfig, ExpressionNet, _Exported
from ..nets.expression import export_onnx as export_expression
from .augment import FaceAugment
from .errors import TrainingError
from .imagefolder import LabelledImages

#: model presets of ``--model``; anything else must be ``timm:<name>``
PRESETS = {
    "cnn48": {"backbone": "cnn", "size": 48, "color": "gray", "width": 32, "blocks": 4},
    "resnet18": {"backbone": "resnet18", "size": 48, "color": "gray", "width": 32},
}
MEAN, STD = 0.5, 0.5  # on [0, 1] pixels; written to the metadata
#: where FER-2013's faces have their five ArcFace keypoints, as fractions of the image side: the median of
#: facegraph's detector over 250 training images (×4 upscaled, padded), made symmetric. FER-2013's faces fill
#: their frames (eyes at 39 %, mouth at 77 % of the height; ArcFace's crop: 46 %, 82 %), so the expression
#: node reframes ArcFace crops to this before classifying.
FER_TEMPLATE = ((0.320, 0.389), (0.680, 0.389), (0.500, 0.597), (0.354, 0.768), (0.646, 0.768))


def model_config(name: str, classes: int, *, size: int | None = None, color: str | None = None,
                 width: int | None = None, dropout: float = 0.3) -> ExpressionConfig:
    if name in PRESETS:
        preset = dict(PRESETS[name])
    elif name.startswith("timm:"):
        try:
            import timm  # noqa: F401
        except ImportError:
            raise TrainingError(f"--model {name}: timm is not installed (pip install timm)") from None
        preset = {"backbone": name, "size": 112, "color": "rgb"}
    else:
        raise TrainingError(f"--model {name}: unknown (one of {', '.join(PRESETS)}, or timm:<name>)")
    for key, value in (("size", size), ("color", color), ("width", width)):
        if value:
            preset[key] = value
    return ExpressionConfig(classes=classes, embedding_dim=128, dropout=dropout, flip_tta=True, **preset)


def to_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W, C] → float [N, C, H, W] in [0, 1]."""
    x = torch.as_tensor(images)
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - MEAN) / STD


class FerTask:
    """FER-style image classification: cross-entropy (label smoothing, optional class weights or balanced draws)."""

    kind = "fer"

    def __init__(self, train: LabelledImages, val: LabelledImages, config: ExpressionConfig, *,
                 balance: str = "none", label_smoothing: float = 0.1, augment: FaceAugment | None = None) -> None:
        if balance not in ("none", "weights", "sampler"):
            raise TrainingError(f"--balance must be none, weights or sampler, got {balance!r}")
        self.train, self.val, self.config = train, val, config
        self.balance, self.label_smoothing = balance, label_smoothing
        self.augment = augment or FaceAugment()
        counts = np.maximum(np.bincount(train.labels, minlength=config.classes), 1).astype(np.float64)
        self.class_weights = torch.tensor(counts.sum() / (len(counts) * counts), dtype=torch.float32)
        self.images = torch.from_numpy(train.images)  # uint8, shared: batches are slices
        self.labels = torch.from_numpy(train.labels)

    def model_config(self) -> dict[str, Any]:
        return {**asdict(self.config), "labels": list(self.train.classes)}

    def fresh_layers(self, their_config: dict[str, Any]) -> list[str]:
        """Fine-tuning on other classes (CK+ after FER-2013): the class head starts anew."""
        return [] if their_config.get("labels") == list(self.train.classes) else ["head."]

    def build_model(self) -> nn.Module:
        return ExpressionNet(self.config).to(memory_format=torch.channels_last)

    def steps_per_epoch(self, batch_size: int) -> int:
        n = len(self.train)
        return n // batch_size if n % batch_size < 2 and n >= batch_size else math.ceil(n / batch_size)

    def train_batches(self, epoch: int, batch_size: int, generator: torch.Generator) -> Iterator[Any]:
        n = len(self.train)
        if self.balance == "sampler":
            order = torch.multinomial(self.class_weights[self.labels], n, replacement=True, generator=generator)
        else:
            order = torch.randperm(n, generator=generator)
        for b in range(self.steps_per_epoch(batch_size)):
            index = order[b * batch_size:(b + 1) * batch_size]
            x = self.augment(to_input(self.images[index]), generator)
            yield normalise(x).contiguous(memory_format=torch.channels_last), self.labels[index]

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = batch[0].to(device), batch[1].to(device)
        logits = model(x)[0]
        weight = self.class_weights.to(device) if self.balance == "weights" else None
        loss = F.cross_entropy(logits, y, weight=weight, label_smoothing=self.label_smoothing)
        return loss, {"accuracy": float((logits.argmax(1) == y).float().mean())}

    def predict(self, model: nn.Module, images: np.ndarray, device: torch.device, batch: int = 512) -> np.ndarray:
        """Probabilities [N, classes] as the export computes them (with the mirror-image average)."""
        wrapped = _Exported(model).eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(images), batch):
                x = normalise(to_input(images[i:i + batch])).to(device).contiguous(memory_format=torch.channels_last)
                probs = wrapped(x)
                out.append((probs[0] if isinstance(probs, tuple) else probs).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.config.classes), np.float32)

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        from .evaluate import scores

        probs = self.predict(model, self.val.images, device)
        loss = float(F.nll_loss(torch.log(torch.from_numpy(probs).clamp_min(1e-8)), torch.from_numpy(self.val.labels)))
        s = scores(probs.argmax(1), self.val.labels, len(self.val.classes))
        return {"val_loss": loss, "val_accuracy": s["accuracy"], "val_mean_recall": s["mean_recall"]}


def export(model: ExpressionNet, out: Path, task: FerTask, *, data: str, command: str, seconds: float,
           history_best: dict[str, float]) -> tuple[Path, dict[str, Any]]:
    """``out/fer.onnx`` + ``fer.json`` (labels, input, normalisation, provenance, parity, held-out scores)."""
    from .evaluate import evaluate_onnx
    from .exporting import export_onnx_checked

    model = model.cpu().eval().to(memory_format=torch.contiguous_format)
    cfg = model.config
    path = out / "fer.onnx"
    meta = {
        "layout": "NCHW",
        "data": {"path": str(data), "train_counts": dict(zip(task.train.classes, task.train.counts(), strict=True)),
                 "val_counts": dict(zip(task.val.classes, task.val.counts(), strict=True))},
        "command": command,
        "train_seconds": round(seconds, 1),
        "template": [list(p) for p in FER_TEMPLATE],
    }
    sample = normalise(to_input(task.val.images[:8])).numpy()
    path, _ = export_onnx_checked(
        lambda: export_expression(model, path, meta, labels=task.train.classes, mean=MEAN, std=STD),
        _Exported(model).eval(), [sample], f"the {cfg.backbone} FER model")
    report = evaluate_onnx(path, task.val)
    meta_path = path.with_suffix(".json")
    full = json.loads(meta_path.read_text())
    full["scores"] = {"val_accuracy": report["accuracy"], "val_mean_recall": report["mean_recall"],
                      "per_class_recall": report["per_class_recall"], "n": report["n"],
                      "best_epoch_torch": history_best}
    full["exported"] = time.strftime("%Y-%m-%d %H:%M:%S")
    meta_path.write_text(json.dumps(full, indent=2) + "\n")
    return path, report
