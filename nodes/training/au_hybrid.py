"""Trainer task for ``FhogFerAUNet`` (``facegraph train au --net fhog+fer``), on a teacher HDF5 split by video.

Each batch: half the crops are mirrored (an exact pixel operation; the teacher's 68
landmarks swap sides with them), and the landmarks get Gaussian jitter of ``jitter`` px, so
the FHOG is taken from landmarks about as wrong as a landmark net's (held-out point error
≈ 2 px); then FHOG of the face aligned OpenFace's way from those points. No random
similarity as the pixel nets get: the alignment undoes it, and its extra resampling only
blurs the training FHOG against the held-out one. The frozen FER CNN's embedding of each
training crop is computed once (it is flip-averaged; running the CNN every step cost ~15 s
an epoch on two cores). The loss is the AU loss plus ``l2`` × the head's squared weights
/ training rows (a ridge penalty). Held-out scores use ``val_landmarks``: the teacher's
(an upper bound) unless a landmark net's are given; ``facegraph eval au`` scores the
pipeline with the landmark net's own.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..face._aligned_hog import FHOG_INPUT, aligned_fhog
from ..nets.au_hybrid import FhogFerAUNet
from ..nets.facepose import AUPredictionLoss
from ..nets.fer_features import FerEmbedding
from .facepose import FLIP_68, _TeacherTask, to_input
from .facepose_scores import au_scores
from .h5data import SIZE, TeacherData

NET = "FhogFerAUNet"


def flip_landmarks(points: np.ndarray, width: int = SIZE) -> np.ndarray:
    """68 points (N, 68, 2) of crops mirrored left ↔ right: x → width − 1 − x, and the iBUG sides swapped."""
    out = np.asarray(points, np.float64)[:, FLIP_68].copy()
    out[..., 0] = width - 1 - out[..., 0]
    return out


def fhog_of(images_rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """FHOG (N, 4464) of RGB crops from their 68 landmarks in crop pixels."""
    return aligned_fhog(np.ascontiguousarray(images_rgb[..., ::-1]), landmarks)


class FhogFerAUTask(_TeacherTask):
    kind = "au-net"
    person_norm = False

    def __init__(self, train: TeacherData, val: TeacherData, *, fer_onnx: str | Path, l1_weight: float = 1.0,
                 ccc_weight: float = 0.5, au_weights: list[float] | None = None, l2: float = 1.0,
                 fer_weight: float = 2.0, jitter: float = 1.0, augment: bool = True,
                 val_landmarks: np.ndarray | None = None, val_landmarks_from: str = "teacher") -> None:
        super().__init__(train, val, image_size=SIZE, augment=augment)
        self.fer_onnx, self.l2, self.fer_weight, self.jitter = str(fer_onnx), float(l2), float(fer_weight), jitter
        weights = None if au_weights is None else torch.tensor(au_weights)
        self.criterion = AUPredictionLoss(l1_weight, ccc_weight, weights)
        self.val_landmarks = val.landmarks if val_landmarks is None else np.asarray(val_landmarks)
        self.val_landmarks_from = val_landmarks_from
        self._val_hog: np.ndarray | None = None
        self.fer = FerEmbedding.from_onnx(self.fer_onnx).eval()
        self.train_fer = self._embed(self.train.images)

    def _embed(self, images: np.ndarray) -> np.ndarray:
        """The FER CNN's embedding of RGB crops (N, 128)."""
        with torch.no_grad():
            parts = [self.fer(to_input(images[i:i + 256])).numpy() for i in range(0, len(images), 256)]
        return np.concatenate(parts) if parts else np.zeros((0, self.fer.dim), np.float32)

    def model_config(self) -> dict[str, Any]:
        return {"net": NET, "input": FHOG_INPUT, "image_size": SIZE, "fer_weight": self.fer_weight,
                "l2": self.l2, "jitter": self.jitter, "fer_model": Path(self.fer_onnx).name,
                "au_names": list(self.train.au_names)}

    def build_model(self) -> nn.Module:
        model = FhogFerAUNet(len(self.train.au_names), self.fer_weight, copy.deepcopy(self.fer))
        model.set_normalisation(fhog_of(self.train.images, self.train.landmarks), self.train_fer,
                                self.train.au_intensities)
        return model

    def train_batches(self, epoch: int, batch_size: int, generator: torch.Generator) -> Iterator[Any]:
        order = self._order(generator).numpy()
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        for b in range(self.steps_per_epoch(batch_size)):
            idx = np.sort(order[b * batch_size:(b + 1) * batch_size])
            images = self.train.images[idx].copy()
            points = self.train.landmarks[idx].astype(np.float64)
            if self.augment:
                flip = rng.random(len(images)) < 0.5
                images[flip] = images[flip, :, ::-1]
                points[flip] = flip_landmarks(points[flip])
                points = points + rng.normal(0.0, self.jitter, points.shape)
            hog = torch.from_numpy(fhog_of(images, points))
            yield (torch.from_numpy(self.train_fer[idx]), hog,
                   torch.from_numpy(self.train.au_intensities[idx]).float())

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
        fer, hog, y = (t.to(device) for t in batch)
        self.criterion.to(device)
        loss, logs = self.criterion(model.from_parts(fer, hog), y)
        penalty = self.l2 * model.l2() / max(1, len(self.train))
        logs = {**logs, "l2": float(penalty.detach())}
        return loss + penalty, logs

    def predict(self, model: nn.Module, images: np.ndarray, landmarks: np.ndarray, device: torch.device,
                hog: np.ndarray | None = None, batch: int = 128) -> np.ndarray:
        """Clipped AUs of RGB crops from their 68 landmarks (crop pixels)."""
        hog = fhog_of(images, landmarks) if hog is None else hog
        outs = []
        with torch.no_grad():
            for i in range(0, len(images), batch):
                out = model(to_input(images[i:i + batch]).to(device), torch.from_numpy(hog[i:i + batch]).to(device))
                outs.append(out.clamp(0.0, 5.0).float().cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, len(self.train.au_names)), np.float32)

    def val_hog(self) -> np.ndarray:
        if self._val_hog is None:
            self._val_hog = fhog_of(self.val.images, self.val_landmarks)
        return self._val_hog

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        pred = self.predict(model, self.val.images, self.val_landmarks, device, hog=self.val_hog())
        return au_scores(pred, self.val.au_intensities, self.train.au_names)
