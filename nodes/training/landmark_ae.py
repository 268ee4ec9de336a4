"""The landmark autoencoder: chunked landmark files, canonical targets, the MLP task for the shared trainer.

``facegraph data landmark-chunks --images DIR --out CHUNKS`` writes ``chunk_00000.npz``…
(``--chunk-size`` rows each): normalised iBUG-68 shapes (``face/_landmark_ae.normalise``),
head pose from the ``pose`` node's solvePnP, identity from the folder name and the file.
``facegraph train landmark-ae --chunks CHUNKS`` learns posed shape + pose → that
identity's canonical shape: the shape of its image with the smallest absolute pose
(|pitch| + |yaw| + |roll|). Held-out identities measure it against the identity
baseline (change nothing): mean point error in units of the RMS face size.
Chunks are read with numpy, or with pyspark when it is installed (``--spark``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..face._landmark_ae import features, point_error
from .errors import TrainingError


@dataclass
class LandmarkRows:
    shapes: np.ndarray  # [N,68,2] normalised
    pose: np.ndarray  # [N,3] pitch, yaw, roll (radians)
    identity: np.ndarray  # [N] str
    path: np.ndarray  # [N] str


def write_chunks(rows: LandmarkRows, out: str | Path, chunk_size: int = 1000) -> list[Path]:
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, start in enumerate(range(0, len(rows.shapes), chunk_size)):
        sl = slice(start, start + chunk_size)
        path = out / f"chunk_{k:05d}.npz"
        np.savez_compressed(path, shapes=rows.shapes[sl], pose=rows.pose[sl], identity=rows.identity[sl],
                            path=rows.path[sl])
        paths.append(path)
    return paths


def _load_one(path: str) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in ("shapes", "pose", "identity", "path")}


def read_chunks(folder: str | Path, spark: bool = False) -> LandmarkRows:
    folder = Path(folder).expanduser()
    files = sorted(str(p) for p in folder.glob("chunk_*.npz")) if folder.is_dir() else []
    if not files:
        raise TrainingError(f"--chunks {folder}: no chunk_*.npz files (write them with facegraph data landmark-chunks)")
    if spark:
        try:
            from pyspark.sql import SparkSession
        except ImportError:
            raise TrainingError("--spark: pyspark is not installed (pip install pyspark), or drop --spark") from None
        session = SparkSession.builder.appName("landmark-ae").getOrCreate()
        parts = session.sparkContext.parallelize(files, len(files)).map(_load_one).collect()
    else:
        parts = [_load_one(f) for f in files]
    cat = {k: np.concatenate([p[k] for p in parts]) for k in ("shapes", "pose", "identity", "path")}
    ok = np.isfinite(cat["pose"]).all(1) & np.isfinite(cat["shapes"]).all((1, 2))
    return LandmarkRows(cat["shapes"][ok].astype(np.float32), cat["pose"][ok].astype(np.float32),
                        cat["identity"][ok], cat["path"][ok])


def canonical_targets(rows: LandmarkRows) -> tuple[np.ndarray, np.ndarray]:
    """(target shapes [N,68,2], is_canonical [N]): each row's identity's least-posed shape."""
    target = np.empty_like(rows.shapes)
    is_canon = np.zeros(len(rows.shapes), bool)
    size = np.abs(rows.pose).sum(1)
    for who in np.unique(rows.identity):
        index = np.flatnonzero(rows.identity == who)
        best = index[np.argmin(size[index])]
        target[index] = rows.shapes[best]
        is_canon[best] = True
    return target, is_canon


def split_identities(rows: LandmarkRows, holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    people = np.unique(rows.identity)
    if not 1 <= holdout < len(people):
        raise TrainingError(f"--holdout-identities {holdout}: the chunks hold {len(people)} identities")
    held = set(np.random.default_rng(seed).choice(people, holdout, replace=False).tolist())
    val = np.array([p in held for p in rows.identity])
    return np.flatnonzero(~val), np.flatnonzero(val)


class LandmarkMLP(nn.Module):
    """[shape 136 + pose 3] → residual 136 added to the shape."""

    def __init__(self, hidden: int = 256, layers: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        dims = [139] + [hidden] * layers
        mods: list[nn.Module] = []
        for a, b in itertools.pairwise(dims):
            mods += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
        mods.append(nn.Linear(dims[-1], 136))
        self.net = nn.Sequential(*mods)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)  # starts as the identity baseline

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :136] + self.net(x)


class LandmarkAETask:
    kind = "landmark-ae"

    def __init__(self, rows: LandmarkRows, train: np.ndarray, val: np.ndarray, *, hidden: int, layers: int,
                 dropout: float, noise: float = 0.0) -> None:
        self.rows, self.hidden, self.layers, self.dropout, self.noise = rows, hidden, layers, dropout, noise
        target, self.is_canon = canonical_targets(rows)
        self.x = torch.from_numpy(features(rows.shapes, rows.pose))
        self.y = torch.from_numpy(target.reshape(len(target), -1))
        self.train_index, self.val_index = train, val[~self.is_canon[val]]  # a canonical row's error is 0 anyway

    def model_config(self) -> dict[str, Any]:
        return {"hidden": self.hidden, "layers": self.layers, "dropout": self.dropout}

    def build_model(self) -> nn.Module:
        return LandmarkMLP(self.hidden, self.layers, self.dropout)

    def steps_per_epoch(self, batch_size: int) -> int:
        return max(1, len(self.train_index) // batch_size)

    def train_batches(self, epoch: int, batch_size: int, generator: torch.Generator) -> Iterator[Any]:
        order = torch.from_numpy(self.train_index)[torch.randperm(len(self.train_index), generator=generator)]
        for b in range(self.steps_per_epoch(batch_size)):
            pick = order[b * batch_size:(b + 1) * batch_size]
            x = self.x[pick].clone()
            if self.noise:
                x[:, :136] += self.noise * torch.randn(x[:, :136].shape, generator=generator)
            yield x, self.y[pick]

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = batch[0].to(device), batch[1].to(device)
        diff = (model(x) - y).view(len(x), 68, 2)
        return diff.pow(2).sum(-1).add(1e-9).sqrt().mean(), {}

    def scores(self, model: nn.Module, index: np.ndarray) -> dict[str, float]:
        with torch.no_grad():
            pred = model(self.x[index]).numpy().reshape(-1, 68, 2)
        target = self.y[index].numpy().reshape(-1, 68, 2)
        err = float(point_error(pred, target).mean())
        base = float(point_error(self.rows.shapes[index], target).mean())
        return {"error": err, "baseline": base, "reduction": 1.0 - err / max(base, 1e-12)}

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        s = self.scores(model.cpu(), self.val_index)
        model.to(device)
        return {"val_error": s["error"], "val_baseline": s["baseline"], "val_reduction": s["reduction"]}


def export(model: LandmarkMLP, path: Path, meta: dict[str, Any]) -> Path:
    import json

    linears = [m for m in model.net if isinstance(m, nn.Linear)]
    arrays = {}
    for i, m in enumerate(linears):
        arrays[f"w{i}"] = m.weight.detach().cpu().numpy().astype(np.float32)
        arrays[f"b{i}"] = m.bias.detach().cpu().numpy().astype(np.float32)
    np.savez(path, **arrays)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return path
