"""The GRU temporal head: windows of per-frame face embeddings → expression class logits.

GRU(input_dim → hidden, layers, optional bidirectional) → LayerNorm + Dropout →
Linear(classes). The same definition is trained and exported, so the ``gru`` node
runs exactly what was trained.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._export import export


@dataclass
class GRUConfig:
    input_dim: int = 512
    hidden: int = 128
    layers: int = 1
    classes: int = 7
    bidirectional: bool = False
    dropout: float = 0.1


class TemporalGRU(nn.Module):
    """x [B, T, input_dim] → logits [B, classes], from the final hidden state of the last layer."""

    def __init__(self, config: GRUConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = cfg = config or GRUConfig(**overrides)
        self.gru = nn.GRU(
            cfg.input_dim,
            cfg.hidden,
            num_layers=cfg.layers,
            batch_first=True,
            bidirectional=cfg.bidirectional,
            dropout=cfg.dropout if cfg.layers > 1 else 0.0,
        )
        width = cfg.hidden * (2 if cfg.bidirectional else 1)
        self.norm = nn.LayerNorm(width)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(width, cfg.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(x)  # h: [layers * directions, B, hidden]
        last = torch.cat([h[-2], h[-1]], dim=-1) if self.config.bidirectional else h[-1]
        return self.head(self.drop(self.norm(last)))


class _Softmaxed(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=-1)


def export_onnx(
    model: TemporalGRU,
    path: str | Path,
    T: int,  # noqa: N803 - the window length is T everywhere in the project
    metadata: Mapping[str, Any] | None = None,
    *,
    labels: Sequence[str] | None = None,
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
) -> Path:
    """Write the model (softmax included, batch dynamic, T fixed) and metadata.json beside it.

    With ``mean``/``std`` the feature stats are also saved as feature_stats.npz
    beside the model (the ``temporal`` node's ``stats`` parameter takes that path).
    """
    cfg = model.config
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "kind": "gru",
        "labels": list(labels) if labels is not None else [f"class{i}" for i in range(cfg.classes)],
        "T": int(T),
        "input_dim": cfg.input_dim,
        "hidden": cfg.hidden,
        "layers": cfg.layers,
        "bidirectional": cfg.bidirectional,
        "output": "probs",
        "config": asdict(cfg),
    }
    if mean is not None and std is not None:
        stats = path.parent / "feature_stats.npz"
        np.savez(stats, mean=np.asarray(mean, np.float32), std=np.asarray(std, np.float32))
        meta["feature_stats"] = {"path": stats.name, "mean": np.asarray(mean).tolist(), "std": np.asarray(std).tolist()}
    meta.update(metadata or {})
    if len(meta["labels"]) != cfg.classes:
        raise ValueError(f"{len(meta['labels'])} labels for a model of {cfg.classes} classes")
    example = torch.zeros(2, int(T), cfg.input_dim)
    return export(_Softmaxed(model), (example,), path, ["window"], ["probs"], meta, metadata_name="metadata.json")
