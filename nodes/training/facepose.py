"""Trainer tasks for the landmark/pose net and the AU net, on a teacher HDF5 split by video.

``facegraph train landmark-pose`` / ``facegraph train au`` build these. Augmentation is a
small random similarity of the crop (the landmarks and the PDM global parameters move
with it, exactly, by :func:`..training.teacher.params_to_crop`) plus brightness/contrast;
the AU net also sees mirror images (AU intensities are taken as symmetric).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual name
from torch import nn

from ..nets.facepose import AUPredictionLoss, AUPredictionNet, LandmarkPoseLoss, UnifiedLandmarkPoseNet
from .facepose_scores import au_scores, landmark_scores
from .h5data import SIZE, TeacherData
from .teacher import params_to_crop

MEAN, STD = 0.5, 0.5
#: the 68-point iBUG order mirrored left ↔ right
FLIP_68 = np.array([16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17,
                    27, 28, 29, 30, 35, 34, 33, 32, 31, 45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40, 54, 53, 52,
                    51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65])


def to_input(images: np.ndarray, size: int = SIZE) -> torch.Tensor:
    """uint8 RGB (N, 112, 112, 3) → float (N, 3, size, size) in [-1, 1] (resized when size ≠ 112)."""
    x = torch.as_tensor(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (x - MEAN) / STD


def random_similarity(rng: np.random.Generator, *, rotate: float, scale: float, shift: float,
                      size: int = SIZE) -> np.ndarray:
    """A 2×3 similarity about the crop's centre: ±rotate degrees, ×(1 ± scale), ±shift pixels."""
    a = math.radians(rng.uniform(-rotate, rotate))
    s = 1.0 + rng.uniform(-scale, scale)
    c = size / 2.0
    m = np.array([[s * math.cos(a), -s * math.sin(a), 0.0], [s * math.sin(a), s * math.cos(a), 0.0]])
    m[:, 2] = np.array([c, c]) - m[:, :2] @ np.array([c, c]) + rng.uniform(-shift, shift, 2)
    return m


def _photometric(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    contrast = 1.0 + (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.5
    brightness = (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.4
    return (x * contrast + brightness).clamp(-1.0, 1.0)


class _TeacherTask:
    """What both tasks share: the data, the batches, batched prediction of the held-out side."""

    def __init__(self, train: TeacherData, val: TeacherData, *, image_size: int = SIZE, augment: bool = True) -> None:
        self.train, self.val, self.image_size, self.augment = train, val, image_size, augment

    def steps_per_epoch(self, batch_size: int) -> int:
        n = len(self.train)
        return max(1, n // batch_size) if n >= batch_size else 1

    def _warp(self, images: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        out = np.empty_like(images)
        mats = np.empty((len(images), 2, 3))
        for i, img in enumerate(images):
            m = random_similarity(rng, rotate=10.0, scale=0.08, shift=4.0) if self.augment else np.eye(2, 3)
            mats[i] = m
            out[i] = cv2.warpAffine(img, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return out, mats

    def _order(self, generator: torch.Generator) -> torch.Tensor:
        return torch.randperm(len(self.train), generator=generator)

    def _predict(self, model: nn.Module, images: np.ndarray, device: torch.device, batch: int = 128) -> list[Any]:
        outs = []
        for i in range(0, len(images), batch):
            out = model(to_input(images[i:i + batch], self.image_size).to(device))
            outs.append([o.float().cpu().numpy() for o in out] if isinstance(out, tuple) else out.float().cpu().numpy())
        return outs


class LandmarkPoseTask(_TeacherTask):
    kind = "landmark-pose"

    def __init__(self, train: TeacherData, val: TeacherData, *, width_mult: float = 1.0, image_size: int = SIZE,
                 lm_weight: float = 1.0, gp_weight: float = 0.1, lp_weight: float = 0.01, dropout: float = 0.1,
                 augment: bool = True) -> None:
        super().__init__(train, val, image_size=image_size, augment=augment)
        self.width_mult, self.dropout = width_mult, dropout
        self.weights = {"lm_weight": lm_weight, "gp_weight": gp_weight, "lp_weight": lp_weight}
        self.criterion = LandmarkPoseLoss(**self.weights, image_size=image_size)

    def model_config(self) -> dict[str, Any]:
        return {"net": "UnifiedLandmarkPoseNet", "width_mult": self.width_mult, "num_landmarks": 68,
                "num_local_params": 34, "image_size": self.image_size, "dropout": self.dropout}

    def build_model(self) -> nn.Module:
        return UnifiedLandmarkPoseNet(width_mult=self.width_mult, image_size=self.image_size, dropout=self.dropout)

    def train_batches(self, epoch: int, batch_size: int, generator: torch.Generator) -> Iterator[Any]:
        order = self._order(generator).numpy()
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        k = self.image_size / SIZE
        for b in range(self.steps_per_epoch(batch_size)):
            idx = np.sort(order[b * batch_size:(b + 1) * batch_size])
            images, mats = self._warp(self.train.images[idx], rng)
            lm = np.einsum("nij,nkj->nki", mats[:, :, :2], self.train.landmarks[idx]) + mats[:, None, :, 2]
            gp = np.array([params_to_crop(g, m) for g, m in zip(self.train.global_params[idx], mats, strict=True)])
            gp[:, [0, 4, 5]] *= k
            x = to_input(images, self.image_size)
            if self.augment:
                x = _photometric(x, generator)
            yield (x, torch.from_numpy(lm * k).float(), torch.from_numpy(gp).float(),
                   torch.from_numpy(self.train.local_params[idx]).float())

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
        x, lm, gp, lp = (t.to(device) for t in batch)
        self.criterion.to(device)
        return self.criterion(model(x), (lm, gp, lp))

    def predict(self, model: nn.Module, images: np.ndarray, device: torch.device) -> tuple[np.ndarray, ...]:
        """(landmarks, global, local) in 112-px crop units, whatever size the net runs at."""
        parts = self._predict(model, images, device)
        lm, gp, lp = (np.concatenate([p[i] for p in parts]) for i in range(3))
        k = SIZE / self.image_size
        gp = gp.copy()
        gp[:, [0, 4, 5]] *= k
        return lm * k, gp, lp

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        lm, gp, lp = self.predict(model, self.val.images, device)
        scores = landmark_scores(lm, self.val.landmarks, gp, self.val.global_params, self.val.matrices)
        scores["val_local_l1"] = float(np.abs(lp - self.val.local_params).mean())
        return scores


class AUTask(_TeacherTask):
    """The AU net on the teacher's intensities.

    ``person_norm``: each step draws ``frames_per_video`` frames from each of ``batch_size //
    frames_per_video`` training videos; the reference of a video's frames is the mean of those
    frames' backbone features, computed in the same pass (gradient through it: the backbone
    learns features whose change within a person is the expression). A video's frames share
    one mirror flip and one brightness/contrast, so the change from the reference is the
    face's, not the augmentation's. Held-out scores follow the node: frames in video order,
    each frame's reference the mean of its video's frames so far.
    """

    kind = "au-net"

    def __init__(self, train: TeacherData, val: TeacherData, *, width_mult: float = 1.0, image_size: int = SIZE,
                 dropout: float = 0.3, l1_weight: float = 1.0, ccc_weight: float = 0.5,
                 au_weights: list[float] | None = None, augment: bool = True, person_norm: bool = False,
                 with_frame: bool = False, frames_per_video: int = 8) -> None:
        super().__init__(train, val, image_size=image_size, augment=augment)
        self.width_mult, self.dropout = width_mult, dropout
        self.person_norm, self.with_frame = person_norm, person_norm and with_frame
        self.frames_per_video = max(1, int(frames_per_video))
        weights = None if au_weights is None else torch.tensor(au_weights)
        self.criterion = AUPredictionLoss(l1_weight, ccc_weight, weights)

    def model_config(self) -> dict[str, Any]:
        config = {"net": "AUPredictionNet", "width_mult": self.width_mult, "dropout": self.dropout,
                  "image_size": self.image_size, "au_names": list(self.train.au_names)}
        if self.person_norm:
            config.update(person_norm=True, with_frame=self.with_frame, reference="mean")
        return config

    def build_model(self) -> nn.Module:
        return AUPredictionNet(width_mult=self.width_mult, dropout=self.dropout, num_aus=len(self.train.au_names),
                               person_norm=self.person_norm, with_frame=self.with_frame)

    def steps_per_epoch(self, batch_size: int) -> int:
        if not self.person_norm:
            return super().steps_per_epoch(batch_size)
        return max(1, len(self.train) // (self._videos_per_step(batch_size) * self.frames_per_video))

    def _videos_per_step(self, batch_size: int) -> int:
        return max(1, min(batch_size // self.frames_per_video, len(self.train.videos())))

    def train_batches(self, epoch: int, batch_size: int, generator: torch.Generator) -> Iterator[Any]:
        if self.person_norm:
            yield from self._video_batches(batch_size, generator)
            return
        order = self._order(generator).numpy()
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        for b in range(self.steps_per_epoch(batch_size)):
            idx = np.sort(order[b * batch_size:(b + 1) * batch_size])
            images, _ = self._warp(self.train.images[idx], rng)
            if self.augment:
                flip = rng.random(len(images)) < 0.5
                images[flip] = images[flip, :, ::-1]
            x = to_input(images, self.image_size)
            if self.augment:
                x = _photometric(x, generator)
            yield x, torch.from_numpy(self.train.au_intensities[idx]).float()

    def _video_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Any]:
        """(images (V·K, 3, S, S), targets (V·K, A), group (V·K,) video slot): K frames of each of V videos."""
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        videos = self.train.videos()
        rows = {v: np.flatnonzero(self.train.video_names == v) for v in videos}
        n_videos, k = self._videos_per_step(batch_size), self.frames_per_video
        for _ in range(self.steps_per_epoch(batch_size)):
            chosen = rng.choice(len(videos), n_videos, replace=False)
            xs, ys = [], []
            for v in chosen:
                pool = rows[videos[v]]
                idx = np.sort(rng.choice(pool, k, replace=len(pool) < k))
                images, _ = self._warp(self.train.images[idx], rng)
                if self.augment and rng.random() < 0.5:
                    images = images[:, :, ::-1]
                x = to_input(images, self.image_size)
                if self.augment:
                    x = _group_photometric(x, generator)
                xs.append(x)
                ys.append(torch.from_numpy(self.train.au_intensities[idx]).float())
            group = torch.arange(n_videos).repeat_interleave(k)
            yield torch.cat(xs), torch.cat(ys), group

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = batch[0].to(device), batch[1].to(device)
        self.criterion.to(device)
        if not self.person_norm:
            return self.criterion(model(x), y)
        group = batch[2].to(device)
        f = model.features(x)
        return self.criterion(model.from_features(f, group_means(f, group)), y)

    def features(self, model: nn.Module, images: np.ndarray, device: torch.device, batch: int = 128) -> np.ndarray:
        outs = []
        for i in range(0, len(images), batch):
            outs.append(model.features(to_input(images[i:i + batch], self.image_size).to(device)).float().cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, model.num_features), np.float32)

    def predict(self, model: nn.Module, images: np.ndarray, device: torch.device,
                groups: np.ndarray | None = None) -> np.ndarray:
        """AUs; a person-normalised net takes ``groups`` (a video name per row, rows in frame order)."""
        if not self.person_norm:
            return np.concatenate(self._predict(model, images, device))
        from ..models.person_reference import references_by_group

        f = self.features(model, images, device)
        ref = references_by_group(f, groups if groups is not None else np.zeros(len(f)))
        out = model.from_features(torch.from_numpy(f).to(device), torch.from_numpy(ref).to(device))
        return out.float().cpu().numpy()

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        pred = self.predict(model, self.val.images, device, self.val.video_names)
        return au_scores(pred, self.val.au_intensities, self.train.au_names)


def group_means(features: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Each row's reference: the mean of the features of the rows in its group (its video's frames in the batch)."""
    n = int(group.max()) + 1
    sums = torch.zeros(n, features.shape[1], dtype=features.dtype, device=features.device).index_add(0, group, features)
    counts = torch.bincount(group, minlength=n).clamp(min=1).to(features.dtype)
    return (sums / counts[:, None])[group]


def _group_photometric(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One brightness/contrast for all of one video's frames."""
    contrast = 1.0 + (torch.rand(1, generator=generator) - 0.5) * 0.5
    brightness = (torch.rand(1, generator=generator) - 0.5) * 0.4
    return (x * contrast + brightness).clamp(-1.0, 1.0)
