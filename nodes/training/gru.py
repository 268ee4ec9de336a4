"""The GRU temporal head on embedding sequences: a task for the shared trainer, its checked export, a baseline.

``facegraph train gru --train train.npz --val val.npz`` trains
``nets/gru.py::TemporalGRU`` (GRU → LayerNorm + dropout → linear) on the ``(N, T, E)``
windows of ``facegraph data sequences`` and exports ``OUT/exported/gru_embed.onnx`` +
``metadata.json`` (T, E, labels, the feature stats the windows were z-scored with,
ONNX parity and held-out scores), which the ``temporal`` and ``gru`` nodes read.
The logistic-regression baseline scores the same windows' mean embedding, so a
run says how much the temporal head adds.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias
from torch import nn

from ..nets.gru import GRUConfig, TemporalGRU, _Softmaxed
from ..nets.gru import export_onnx as export_gru
from .errors import TrainingError


@dataclass
class Sequences:
    """One side of ``facegraph data sequences``: z-scored windows, labels, and the stats they were z-scored with."""

    x: np.ndarray  # float32 [N, T, E]
    y: np.ndarray  # int64 [N]
    labels: list[str]
    mean: np.ndarray
    std: np.ndarray
    backbone: str
    path: Path

    @property
    def T(self) -> int:  # noqa: N802 - the window length is T everywhere in the project
        return int(self.x.shape[1])

    @property
    def E(self) -> int:  # noqa: N802
        return int(self.x.shape[2])

    def counts(self) -> list[int]:
        return np.bincount(self.y, minlength=len(self.labels)).tolist()


def load_sequences(path: str | Path, flag: str) -> Sequences:
    path = Path(path).expanduser()
    try:
        with np.load(path) as d:
            x, y = np.asarray(d["x"], np.float32), np.asarray(d["y"], np.int64)
            labels = [str(s) for s in d["labels"]]
            mean, std = np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32)
            backbone = str(d["backbone"]) if "backbone" in d else "?"
    except FileNotFoundError:
        raise TrainingError(f"{flag} {path}: no such file") from None
    except (KeyError, OSError, ValueError) as exc:
        raise TrainingError(f"{flag} {path}: not a sequences NPZ of facegraph data sequences ({exc})") from None
    if x.ndim != 3 or len(x) != len(y) or len(x) == 0:
        raise TrainingError(f"{flag} {path}: x must be a non-empty [N, T, E] array with one label each, "
                            f"got {x.shape} and {y.shape}")
    return Sequences(x, y, labels, mean, std, backbone, path)


def check_pair(train: Sequences, val: Sequences) -> None:
    """Both sides must be the same kind of window: T, E, labels and stats."""
    for what, a, b in (("T", train.T, val.T), ("E", train.E, val.E)):
        if a != b:
            raise TrainingError(f"--val {val.path}: {what}={b}, but --train {train.path} has {what}={a}")
    if train.labels != val.labels:
        raise TrainingError(f"--val {val.path}: labels {val.labels} differ from --train's {train.labels}")
    if not (np.array_equal(train.mean, val.mean) and np.array_equal(train.std, val.std)):
        raise TrainingError(f"--val {val.path}: z-scored with other feature stats than --train {train.path}")


class GRUTask:
    """Window classification with cross-entropy (label smoothing, optional class weights)."""

    kind = "gru"

    def __init__(self, train: Sequences, val: Sequences, config: GRUConfig, *, label_smoothing: float = 0.1,
                 balance: str = "none", noise: float = 0.0) -> None:
        if balance not in ("none", "weights"):
            raise TrainingError(f"--balance must be none or weights, got {balance!r}")
        check_pair(train, val)
        self.train, self.val, self.config = train, val, config
        self.label_smoothing, self.balance, self.noise = label_smoothing, balance, noise
        counts = np.maximum(np.bincount(train.y, minlength=config.classes), 1).astype(np.float64)
        self.class_weights = torch.tensor(counts.sum() / (len(counts) * counts), dtype=torch.float32)
        self.x, self.y = torch.from_numpy(train.x), torch.from_numpy(train.y)

    def model_config(self) -> dict[str, Any]:
        return {**asdict(self.config), "labels": list(self.train.labels), "T": self.train.T}

    def fresh_layers(self, their_config: dict[str, Any]) -> list[str]:
        """Other classes than the checkpoint's: the class head starts anew."""
        return [] if their_config.get("labels") == list(self.train.labels) else ["head."]

    def build_model(self) -> nn.Module:
        return TemporalGRU(self.config)

    def steps_per_epoch(self, batch_size: int) -> int:
        n = len(self.y)
        return n // batch_size if n % batch_size < 2 and n >= batch_size else math.ceil(n / batch_size)

    def train_batches(self, epoch: int, batch_size: int, generator: torch.Generator) -> Iterator[Any]:
        order = torch.randperm(len(self.y), generator=generator)
        for b in range(self.steps_per_epoch(batch_size)):
            index = order[b * batch_size:(b + 1) * batch_size]
            x = self.x[index]
            if self.noise:
                x = x + self.noise * torch.randn(x.shape, generator=generator)
            yield x, self.y[index]

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = batch[0].to(device), batch[1].to(device)
        logits = model(x)
        weight = self.class_weights.to(device) if self.balance == "weights" else None
        loss = F.cross_entropy(logits, y, weight=weight, label_smoothing=self.label_smoothing)
        return loss, {"accuracy": float((logits.argmax(1) == y).float().mean())}

    def predict(self, model: nn.Module, x: np.ndarray, device: torch.device, batch: int = 1024) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, len(x), batch):
                out.append(torch.softmax(model(torch.from_numpy(x[i:i + batch]).to(device)), -1).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.config.classes), np.float32)

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        from .evaluate import scores

        probs = self.predict(model, self.val.x, device)
        loss = float(F.nll_loss(torch.log(torch.from_numpy(probs).clamp_min(1e-8)), torch.from_numpy(self.val.y)))
        s = scores(probs.argmax(1), self.val.y, len(self.val.labels))
        return {"val_loss": loss, "val_accuracy": s["accuracy"], "val_mean_recall": s["mean_recall"]}


def logistic_baseline(train: Sequences, val: Sequences, *, seed: int = 0) -> dict[str, float]:
    """scikit-learn's logistic regression on each window's mean (z-scored) embedding: no temporal model."""
    from sklearn.linear_model import LogisticRegression

    from .evaluate import scores

    model = LogisticRegression(max_iter=3000, C=0.1, random_state=seed)
    model.fit(train.x.mean(1), train.y)
    s = scores(model.predict(val.x.mean(1)), val.y, len(val.labels))
    return {"accuracy": s["accuracy"], "mean_recall": s["mean_recall"]}


def export(model: TemporalGRU, out: Path, task: GRUTask, *, command: str, seconds: float,
           best: dict[str, float], baseline: dict[str, float] | None) -> tuple[Path, dict[str, Any]]:
    """``out/exported/gru_embed.onnx`` + ``metadata.json`` + ``feature_stats.npz``, checked against torch."""
    import onnxruntime as ort

    from .evaluate import scores
    from .exporting import onnx_parity

    model = model.cpu().eval()
    train, val = task.train, task.val
    path = out / "exported" / "gru_embed.onnx"
    meta = {"E": train.E, "backbone": train.backbone, "command": command, "train_seconds": round(seconds, 1),
            "data": {"train": str(train.path), "val": str(val.path),
                     "train_counts": dict(zip(train.labels, train.counts(), strict=True)),
                     "val_counts": dict(zip(val.labels, val.counts(), strict=True))}}
    try:
        export_gru(model, path, train.T, meta, labels=train.labels, mean=train.mean, std=train.std)
    except Exception as exc:  # the exporter's own errors are long: keep the first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainingError(f"--export-onnx: the GRU cannot be exported to ONNX ({first})") from None
    wrapped = _Softmaxed(model).eval()
    diff = max(onnx_parity(path, wrapped, [val.x[:n]]) for n in sorted({1, min(len(val.x), 7), min(len(val.x), 64)}))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probs = np.concatenate([session.run(None, {"window": val.x[i:i + 256]})[0] for i in range(0, len(val.x), 256)])
    s = scores(probs.argmax(1), val.y, len(val.labels))
    meta_path = path.parent / "metadata.json"
    full = json.loads(meta_path.read_text())
    full["onnx_max_abs_diff"] = diff
    full["scores"] = {"val_accuracy": s["accuracy"], "val_mean_recall": s["mean_recall"], "n": s["n"],
                      "confusion": s["confusion"], "best_epoch_torch": best,
                      "logistic_regression_baseline": baseline}
    full["exported"] = time.strftime("%Y-%m-%d %H:%M:%S")
    meta_path.write_text(json.dumps(full, indent=2) + "\n")
    return path, {"accuracy": s["accuracy"], "mean_recall": s["mean_recall"], "onnx_max_abs_diff": diff}
