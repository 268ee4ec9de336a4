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


# -- fine-tuning the backbone's last block on crop sequences ----------------------------------------------------
class BackboneGRU(nn.Module):
    """Crop windows [B, T, 3, S, S] → backbone → unit embeddings [B, T, D] → the GRU head.

    Only ``layer4`` (the backbone's last block) and the head learn: the rest is frozen
    and kept in eval mode, so its BatchNorm statistics do not drift either.
    """

    def __init__(self, backbone: nn.Module, head: TemporalGRU) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        for name, p in self.backbone.named_parameters():
            p.requires_grad = name.startswith("layer4.")

    def train(self, mode: bool = True) -> BackboneGRU:
        super().train(mode)
        for name, module in self.backbone.named_children():
            if name != "layer4":
                module.eval()
        return self

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        return F.normalize(self.backbone(x.flatten(0, 1)), dim=-1).reshape(b, t, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def load_backbone(name: str, checkpoint: str | Path | None, *, input_size: int = 112, **kwargs: Any) -> nn.Module:
    """An iResNet (``iresnet18|34|50|100``) with the user's weights: a state dict, or a trainer checkpoint."""
    from ..nets import iresnet

    depth = name.removeprefix("iresnet")
    if f"r{depth}" not in iresnet.LAYERS:
        raise TrainingError(f"--backbone {name}: one of {', '.join('iresnet' + k[1:] for k in iresnet.LAYERS)}")
    model = iresnet.iresnet(f"r{depth}", input_size=input_size, **kwargs)
    if checkpoint is None:
        raise TrainingError(f"--backbone {name}: give its weights with --backbone-checkpoint FILE.pt")
    try:
        state = torch.load(Path(checkpoint).expanduser(), map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TrainingError(f"--backbone-checkpoint {checkpoint}: cannot read it ({first})") from None
    state = state.get("model", state.get("state_dict", state)) if isinstance(state, dict) else state
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise TrainingError(f"--backbone-checkpoint {checkpoint}: not {name} weights "
                            f"({str(exc).splitlines()[0]})") from None
    return model


class CropWindows:
    """The crops of a sequences NPZ's windows, decoded once: uint8 [N, T, S, S, 3] BGR."""

    def __init__(self, seq: Sequences, crops_dir: str | Path, size: int) -> None:
        import cv2

        crops_dir = Path(crops_dir).expanduser()
        with np.load(seq.path) as d:
            if "crop" not in d:
                raise TrainingError(f"{seq.path}: no crop paths (made by an older facegraph data sequences)")
            paths = d["crop"]
        cache: dict[str, np.ndarray] = {}
        out = np.zeros((*paths.shape, size, size, 3), np.uint8)
        for index in np.ndindex(paths.shape):
            rel = str(paths[index])
            if rel not in cache:
                image = cv2.imread(str(crops_dir / rel), cv2.IMREAD_COLOR)
                if image is None:
                    raise TrainingError(f"{crops_dir / rel}: crop of {seq.path} is missing (--crops)")
                cache[rel] = cv2.resize(image, (size, size)) if image.shape[:2] != (size, size) else image
            out[index] = cache[rel]
        self.images = out


def crops_to_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 BGR [..., S, S, 3] → float RGB [..., 3, S, S] in ArcFace's (x − 127.5) / 127.5."""
    x = torch.as_tensor(np.ascontiguousarray(images)).flip(-1).float().sub_(127.5).div_(127.5)
    return x.movedim(-1, -3)


class FinetuneTask(GRUTask):
    """The GRU head on crop windows, through a backbone whose last block learns too."""

    kind = "gru_finetune"

    def __init__(self, train: Sequences, val: Sequences, config: GRUConfig, backbone: nn.Module, crops_dir: str | Path,
                 **kwargs: Any) -> None:
        super().__init__(train, val, config, **kwargs)
        size = int(getattr(backbone, "input_size", 112))
        self.backbone = backbone
        self.train_crops = torch.from_numpy(CropWindows(train, crops_dir, size).images)
        self.val_crops = CropWindows(val, crops_dir, size).images

    def model_config(self) -> dict[str, Any]:
        return {**super().model_config(), "backbone": type(self.backbone).__name__, "finetune": "layer4"}

    def build_model(self) -> nn.Module:
        return BackboneGRU(self.backbone, TemporalGRU(self.config))

    def train_batches(self, epoch: int, batch_size: int, generator: torch.Generator) -> Iterator[Any]:
        order = torch.randperm(len(self.y), generator=generator)
        for b in range(self.steps_per_epoch(batch_size)):
            index = order[b * batch_size:(b + 1) * batch_size]
            yield crops_to_input(self.train_crops[index].numpy()), self.y[index]

    def predict(self, model: nn.Module, x: np.ndarray, device: torch.device, batch: int = 32) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, len(self.val_crops), batch):
                logits = model(crops_to_input(self.val_crops[i:i + batch]).to(device))
                out.append(torch.softmax(logits, -1).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.config.classes), np.float32)


def export_finetuned(model: BackboneGRU, out: Path, task: FinetuneTask, *, command: str) -> tuple[Path, Path]:
    """``exported/backbone.onnx`` (for the ``embed`` node) + ``exported/gru_embed.onnx`` on its unit vectors."""
    from ..nets import iresnet
    from .exporting import onnx_parity

    model = model.cpu().eval()
    folder = out / "exported"
    folder.mkdir(parents=True, exist_ok=True)
    backbone = iresnet.export_onnx(model.backbone, folder / "backbone.onnx", metadata={"command": command})
    size = int(getattr(model.backbone, "input_size", 112))
    sample = crops_to_input(task.val_crops[:2, 0]).numpy()
    onnx_parity(backbone, model.backbone, [sample.reshape(-1, 3, size, size)])
    dim = model.head.config.input_dim
    head = export_gru(model.head, folder / "gru_embed.onnx", task.train.T,
                      {"E": dim, "backbone": str(backbone.name), "command": command,
                       "finetuned": "layer4 of the backbone + the head"},
                      labels=task.train.labels, mean=np.zeros(dim, np.float32), std=np.ones(dim, np.float32))
    return backbone, head
