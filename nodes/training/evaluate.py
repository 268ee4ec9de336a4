"""Classification scores and their report: accuracy, per-class recall, confusion matrix (text and PNG).

Needs only numpy and ONNX Runtime (no torch): an exported model is evaluated as
the nodes will run it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .errors import TrainingError
from .imagefolder import LabelledImages


def confusion(pred: np.ndarray, truth: np.ndarray, classes: int) -> np.ndarray:
    """[true class, predicted class] counts."""
    m = np.zeros((classes, classes), np.int64)
    np.add.at(m, (truth.astype(np.int64), pred.astype(np.int64)), 1)
    return m


def scores(pred: np.ndarray, truth: np.ndarray, classes: int) -> dict[str, Any]:
    m = confusion(pred, truth, classes)
    support = m.sum(1)
    recall = np.where(support > 0, np.diag(m) / np.maximum(support, 1), np.nan)
    return {"accuracy": float(np.trace(m) / max(1, m.sum())), "mean_recall": float(np.nanmean(recall)),
            "recall": recall.tolist(), "confusion": m.tolist(), "n": int(m.sum())}


class OnnxClassifier:
    """An exported classifier with its metadata: images (uint8 [N, H, W, C] at its size) → probabilities."""

    def __init__(self, path: str | Path) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise TrainingError(f"--model {self.path}: no such file")
        meta_path = self.path.with_suffix(".json")
        if not meta_path.is_file():
            meta_path = self.path.parent / "metadata.json"
        try:
            self.meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise TrainingError(f"{meta_path}: cannot read the model's metadata ({exc})") from None
        try:
            self.session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise TrainingError(f"--model {self.path}: ONNX Runtime cannot load it ({exc})") from None
        self.labels = list(self.meta["labels"])
        self.size = int(self.meta.get("input_size", 48))
        self.color = str(self.meta.get("color", "gray"))

    def __call__(self, images: np.ndarray, batch: int = 256) -> np.ndarray:
        scale = float(self.meta.get("scale", 1 / 255))
        mean = np.asarray(self.meta.get("mean", 0.0), np.float32).reshape(-1, 1, 1)
        std = np.asarray(self.meta.get("std", 1.0), np.float32).reshape(-1, 1, 1)
        name = self.session.get_inputs()[0].name
        out = []
        for i in range(0, len(images), batch):
            x = images[i:i + batch].transpose(0, 3, 1, 2).astype(np.float32) * scale
            out.append(self.session.run(None, {name: np.ascontiguousarray((x - mean) / std)})[0])
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)


def evaluate_onnx(path: str | Path, data: LabelledImages) -> dict[str, Any]:
    """Scores of an exported classifier on labelled images (class names matched by name)."""
    return evaluate_loaded(OnnxClassifier(path), data)


def evaluate_loaded(model: OnnxClassifier, data: LabelledImages) -> dict[str, Any]:
    missing = [c for c in data.classes if c not in model.labels]
    if missing:
        raise TrainingError(f"--data: class '{missing[0]}' is not one of the model's labels "
                            f"({', '.join(model.labels)})")
    truth = np.array([model.labels.index(data.classes[i]) for i in data.labels], np.int64)
    probs = model(data.images)
    s = scores(probs.argmax(1), truth, len(model.labels))
    s["per_class_recall"] = {label: (None if np.isnan(r) else round(float(r), 4))
                             for label, r in zip(model.labels, s["recall"], strict=True)}
    s["labels"] = model.labels
    return s


def format_report(s: dict[str, Any]) -> str:
    labels = s["labels"]
    width = max(len(x) for x in labels) + 2
    lines = [f"accuracy {s['accuracy']:.4f}  mean recall {s['mean_recall']:.4f}  ({s['n']} images)", "",
             "recall per class:"]
    lines += [f"  {label:<{width}}{'-' if r is None else f'{r:.3f}'}" for label, r in s["per_class_recall"].items()]
    lines += ["", "confusion (rows: true, columns: predicted):",
              " " * width + "".join(f"{x[:7]:>8}" for x in labels)]
    lines += [f"{label:<{width}}" + "".join(f"{v:>8d}" for v in row) for label, row in zip(labels, s["confusion"],
                                                                                           strict=True)]
    return "\n".join(lines)


def confusion_png(s: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """The confusion matrix, row-normalised, as a PNG (matplotlib: the ``[plot]`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise TrainingError("a confusion PNG needs matplotlib: pip install 'facegraph[plot]'") from None
    m = np.asarray(s["confusion"], np.float64)
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    labels = s["labels"]
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(labels), 0.8 + 0.7 * len(labels)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for (i, j), v in np.ndenumerate(norm):
        ax.text(j, i, f"{v:.2f}\n{int(m[i, j])}", ha="center", va="center", fontsize=7,
                color="white" if v > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"accuracy {s['accuracy']:.3f}")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
