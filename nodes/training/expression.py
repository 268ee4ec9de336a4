"""Expression transformer + reconstruction model on face clips: a task for the shared trainer.

``facegraph train expression --clips DIR`` trains ``nets/reconstruction.py``'s two
models jointly on the clips of ``facegraph data clips``. Each batch holds pairs of
neighbouring frames of random clips; three losses, weighted by :class:`LossSchedule`:

* reconstruction: MSE between the face and its reconstruction from (subject, tokens);
* temporal: the tokens of two neighbouring frames of one clip stay close (MSE);
* diversity: tokens do not collapse (VICReg's hinge on each token feature's std
  over the batch: ``relu(1 - std)``), which the temporal loss alone would reward.

Subject dropout: for half the clips of a batch the transformer gets the mean subject
embedding instead of the face's own (the reconstruction model always gets its own).
Without it the transformer met the diversity loss through its subject input alone
(tokens spread across people, not across faces: std 0.11 over different people's
faces given one subject, 1.12 given their own) and the image went unread.

Reference faces (``--head conv+ref``): the decoder renders from the
subject's reference face. In training each clip gets the mean of *another* clip of
its subject (16 frames of the same person, as enrollment will have), so the model
learns to move a few frames' average to the face at hand, not to copy a mean it
has seen every frame of.

Swap consistency (``--swap-weight``, off by default: the design has three losses): each
clip's tokens are also rendered as another subject of the batch (that subject's
embedding and reference face), re-read by the transformer given that subject, and
pulled back to the tokens they came from (MSE over the tokens' spread across the batch,
so shrinking every token does not meet it; the source tokens held fixed). It is
the identity swap's own test made a loss: without it the patch tokens carried the
source face's appearance, and the tokens re-read from a swapped face were no nearer
their source frame than any other frame of the video.

Validation runs on the held-out videos' clips (people the subject table has never
seen, so they get the mean subject embedding there; ``facegraph eval reconstruction``
enrolls them properly): PSNR of the reconstructions and the three losses, and the
same temporal loss on a fixed sample of training clips, so the two compare like with like.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias
from torch import nn

from ..nets.reconstruction import (
    ExpressionAutoencoder,
    ExpressionTransformer,
    ReconstructionConfig,
    ReconstructionModel,
    TransformerConfig,
)
from .errors import TrainingError


@dataclass
class LossSchedule:
    """Loss weights ramped linearly from their initial to their final values over ``ramp_steps`` optimiser steps.

    The design's initial weights (λ_rec 0.01, λ_temp 0.4, λ_div 0.3) first shape a
    token space that is smooth in time and spread out, then reconstruction takes over.
    """

    rec: tuple[float, float] = (0.01, 1.0)
    temporal: tuple[float, float] = (0.4, 0.1)
    diversity: tuple[float, float] = (0.3, 0.1)
    ramp_steps: int = 3000

    def weights(self, step: int) -> dict[str, float]:
        t = 1.0 if self.ramp_steps <= 0 else min(1.0, max(0, step) / self.ramp_steps)
        return {name: a + (b - a) * t for name, (a, b) in
                (("rec", self.rec), ("temporal", self.temporal), ("diversity", self.diversity))}


def temporal_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Tokens of neighbouring frames stay close: mean squared difference."""
    return F.mse_loss(a, b)


def diversity_loss(tokens: torch.Tensor, target_std: float = 1.0) -> torch.Tensor:
    """Tokens [B, K, D] do not collapse: each (k, d) feature keeps a std ≥ ``target_std`` over the batch."""
    flat = tokens.reshape(tokens.shape[0], -1)
    std = torch.sqrt(flat.var(dim=0) + 1e-4)
    return F.relu(target_std - std).mean()


def psnr(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """PSNR in dB of images in [0, 1] (mean over the pixels of all of them)."""
    mse = float(((torch.as_tensor(a) - torch.as_tensor(b)) ** 2).mean())
    return float(10 * np.log10(1.0 / max(mse, 1e-10)))


# -- data -----------------------------------------------------------------------------------------------------
@dataclass
class ClipSet:
    """Every crop of some clips, resized once: ``images`` RGB uint8 [N, S, S, 3]; ``clips`` index rows of it."""

    images: np.ndarray
    clips: list[np.ndarray]
    subjects: np.ndarray  # subject id per clip
    names: list[str]  # subject names by id (all subjects of the clips folder)

    def __len__(self) -> int:
        return len(self.clips)

    @cached_property
    def clip_means(self) -> np.ndarray:
        """Each clip's mean face, float32 [n_clips, S, S, 3] in [0, 1]: the reference faces of the conv+ref head."""
        return np.stack([self.images[c].mean(0, dtype=np.float32) / 255.0 for c in self.clips]) \
            if self.clips else np.zeros((0, *self.images.shape[1:]), np.float32)

    def first_clip_of_subject(self) -> dict[int, int]:
        """subject id → its first clip (the enrollment-like reference of validation)."""
        first: dict[int, int] = {}
        for i, sid in enumerate(self.subjects.tolist()):
            first.setdefault(int(sid), i)
        return first


def load_clip_set(folder: str | Path, split: str, size: int) -> ClipSet:
    """The ``split`` clips of a ``facegraph data clips`` folder, crops resized to ``size`` (area averaging)."""
    import cv2

    from .clips import load_clips

    folder = Path(folder).expanduser()
    meta, subjects = load_clips(folder)
    chosen = [c for c in meta["clips"] if c["split"] == split]
    index: dict[str, int] = {}
    images: list[np.ndarray] = []
    clips = []
    for c in chosen:
        rows = []
        for rel in c["crops"]:
            if rel not in index:
                img = cv2.imread(str(folder / rel), cv2.IMREAD_COLOR)
                if img is None:
                    raise TrainingError(f"--clips {folder}: cannot read crop {rel}")
                if img.shape[0] != size:
                    interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR
                    img = cv2.resize(img, (size, size), interpolation=interp)
                index[rel] = len(images)
                images.append(img[..., ::-1])
            rows.append(index[rel])
        clips.append(np.asarray(rows, np.int64))
    stack = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    return ClipSet(stack, clips, np.asarray([c["subject"] for c in chosen], np.int64),
                   [s["name"] for s in sorted(subjects, key=lambda s: s["id"])])


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """RGB uint8 [N, S, S, 3] → float [N, 3, S, S] in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


def to_reference(faces: np.ndarray) -> torch.Tensor:
    """Reference faces float [N, S, S, 3] in [0, 1] → [N, 3, S, S]."""
    return torch.from_numpy(np.ascontiguousarray(faces, dtype=np.float32)).permute(0, 3, 1, 2).contiguous()


# -- the task -------------------------------------------------------------------------------------------------
class ExpressionTask:
    """Joint training of both parts; ``freeze_transformer`` trains the reconstruction model (and subjects) only."""

    kind = "expression"

    def __init__(self, train: ClipSet, val: ClipSet, tcfg: TransformerConfig, rcfg: ReconstructionConfig, *,
                 schedule: LossSchedule | None = None, freeze_transformer: bool = False, flip: bool = True,
                 val_pairs: int = 192, subject_dropout: float = 0.5, swap_weight: float = 0.0) -> None:
        if len(train) == 0:
            raise TrainingError("--clips: no training clips (is every video in --val-videos?)")
        if int(train.subjects.max()) >= tcfg.subjects:
            raise TrainingError(f"--subjects {tcfg.subjects}: the clips have subject ids up to "
                                f"{int(train.subjects.max())}")
        self.train, self.val, self.tcfg, self.rcfg = train, val, tcfg, rcfg
        self.schedule = schedule or LossSchedule()
        self.freeze_transformer = freeze_transformer
        self.flip = flip
        self.val_pairs = val_pairs  # validation cost stays small next to an epoch's training
        self.subject_dropout = subject_dropout
        if swap_weight < 0:
            raise TrainingError(f"--swap-weight {swap_weight}: must be ≥ 0")
        self.swap_weight = swap_weight
        self.step = 0
        self.mean = torch.tensor(tcfg.mean).view(1, 3, 1, 1)
        self.std = torch.tensor(tcfg.std).view(1, 3, 1, 1)
        self.train_subject_ids = np.unique(train.subjects)
        rng = np.random.default_rng(0)  # a fixed sample of training clips for the like-for-like temporal figure
        self.train_probe = np.sort(rng.choice(len(train), size=min(len(train), max(8, len(val) or 8)), replace=False))
        self.uses_reference = rcfg.head == "conv+ref"
        self.clips_of_subject: dict[int, np.ndarray] = {
            int(sid): np.flatnonzero(train.subjects == sid) for sid in self.train_subject_ids}

    def model_config(self) -> dict[str, Any]:
        return {"transformer": asdict(self.tcfg), "reconstruction": asdict(self.rcfg)}

    def build_model(self) -> nn.Module:
        model = ExpressionAutoencoder(ExpressionTransformer(self.tcfg), ReconstructionModel(self.rcfg))
        if self.freeze_transformer:
            freeze_transformer(model)
        return model

    def steps_per_epoch(self, batch_size: int) -> int:
        return max(1, len(self.train) // batch_size)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def train_batches(self, epoch: int, batch_size: int, generator: torch.Generator) -> Iterator[Any]:
        self.step = epoch * self.steps_per_epoch(batch_size)  # the loss schedule's step, right after a resume too
        order = torch.randperm(len(self.train), generator=generator).numpy()
        for start in range(0, len(order) - batch_size + 1, batch_size):
            pick = order[start : start + batch_size]
            first, second = [], []
            for i in pick:
                rows = self.train.clips[i]
                t = int(torch.randint(0, len(rows) - 1, (1,), generator=generator))
                first.append(rows[t])
                second.append(rows[t + 1])
            x = to_tensor(self.train.images[np.concatenate([first, second])])
            if self.flip:  # one mirror decision per clip, the same for both of its frames
                flip = torch.rand(len(pick), generator=generator) < 0.5
                flip = torch.cat([flip, flip])
                x[flip] = torch.flip(x[flip], dims=[3])
            ids = torch.from_numpy(np.concatenate([self.train.subjects[pick]] * 2))
            if not self.uses_reference:
                yield x, ids, None
                continue
            ref = to_reference(self.train.clip_means[[self._other_clip(int(i), generator) for i in pick]])
            ref = torch.cat([ref, ref])
            if self.flip:
                ref[flip] = torch.flip(ref[flip], dims=[3])
            yield x, ids, ref

    def _other_clip(self, clip: int, generator: torch.Generator) -> int:
        """Another clip of the same subject (the clip itself when it is the subject's only one)."""
        pool = self.clips_of_subject[int(self.train.subjects[clip])]
        if len(pool) > 1:
            pool = pool[pool != clip]
        return int(pool[int(torch.randint(0, len(pool), (1,), generator=generator))])

    def losses(self, model: ExpressionAutoencoder, x: torch.Tensor, subject: torch.Tensor,
               seen: torch.Tensor | None = None, reference: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The three losses of a batch whose first half and second half are neighbouring frames.

        ``seen`` [B] (training only): where False the transformer gets the mean subject instead of the
        face's own (the decoder always gets its own), as it will for anyone not enrolled.
        """
        enc_subject = subject
        if seen is not None:
            enc_subject = torch.where(seen[:, None], subject, self.mean_subject(model).expand_as(subject))
        tokens = model.transformer(self.normalise(x), enc_subject)
        rec = model.reconstruction(subject, tokens, reference)
        half = x.shape[0] // 2
        return {"rec": F.mse_loss(rec, x), "temporal": temporal_loss(tokens[:half], tokens[half:]),
                "diversity": diversity_loss(tokens), "recon": rec, "tokens": tokens}

    def swap_loss(self, model: ExpressionAutoencoder, tokens: torch.Tensor, subject: torch.Tensor,
                  ids: torch.Tensor, reference: torch.Tensor | None) -> torch.Tensor:
        """Tokens survive a swap: first-half tokens rendered as the next clip's subject, re-read given that
        subject, against the tokens themselves (held fixed), relative to the tokens' variance over the batch
        (1: no better than a random face of the batch). Pairs of one subject are left out; 0 if none."""
        half = tokens.shape[0] // 2
        other = torch.roll(torch.arange(half, device=tokens.device), 1)  # the batch order is already random
        differs = ids[:half][other] != ids[:half]
        if not bool(differs.any()):
            return tokens.new_zeros(())
        source = tokens[:half][differs]
        target = subject[:half][other][differs]
        target_ref = None if reference is None else reference[:half][other][differs]
        swapped = model.reconstruction(target, source, target_ref)
        again = model.transformer(self.normalise(swapped), target)
        target_tokens = source.detach()
        spread = target_tokens.var(dim=0, unbiased=False).mean() + 1e-6  # how far apart faces' tokens are
        return F.mse_loss(again, target_tokens) / spread

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
        x, ids, ref = batch
        x, ids = x.to(device), ids.to(device)
        ref = None if ref is None else ref.to(device)
        seen = None
        if self.subject_dropout > 0:  # one decision per clip: both frames of a pair see the same subject input
            keep = torch.rand(x.shape[0] // 2, device=device) >= self.subject_dropout
            seen = torch.cat([keep, keep])
        subject = model.transformer.subject(ids)
        parts = self.losses(model, x, subject, seen, ref)
        w = self.schedule.weights(self.step)
        self.step += 1
        total = w["rec"] * parts["rec"] + w["temporal"] * parts["temporal"] + w["diversity"] * parts["diversity"]
        logs = {k: float(parts[k].detach()) for k in ("rec", "temporal", "diversity")}
        if self.swap_weight > 0:
            swap = self.swap_loss(model, parts["tokens"], subject, ids, ref)
            total = total + self.swap_weight * swap
            logs["swap"] = float(swap.detach())
        return total, {**logs, "psnr": psnr(parts["recon"].detach(), x)}

    def mean_subject(self, model: ExpressionAutoencoder) -> torch.Tensor:
        """The mean of the training subjects' embeddings: the stand-in for someone not enrolled."""
        ids = torch.from_numpy(self.train_subject_ids).to(model.transformer.subject_table.weight.device)
        return model.transformer.subject(ids).mean(0, keepdim=True)

    def mean_reference(self) -> np.ndarray:
        """The mean face of every training frame, float32 [S, S, 3]: the ``mean`` subject's reference."""
        return (self.train.images.mean(0, dtype=np.float64) / 255.0).astype(np.float32)

    def subject_references(self) -> dict[int, np.ndarray]:
        """Each training subject's reference face, float32 [S, S, 3]: the mean of all its training frames."""
        out = {}
        for sid, clips in self.clips_of_subject.items():
            rows = np.unique(np.concatenate([self.train.clips[i] for i in clips]))
            out[sid] = self.train.images[rows].mean(0, dtype=np.float32) / 255.0
        return out

    def _pairs(self, clips: ClipSet, which: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(frame, next frame, subject, reference clip) of every neighbour pair of the clips, at most
        ``val_pairs`` spread evenly. The reference clip is the subject's first (enrollment's frames)."""
        first = clips.first_clip_of_subject()
        a = np.concatenate([clips.clips[i][:-1] for i in which])
        b = np.concatenate([clips.clips[i][1:] for i in which])
        s = np.concatenate([np.full(len(clips.clips[i]) - 1, clips.subjects[i]) for i in which])
        r = np.asarray([first[int(v)] for v in s], np.int64)
        if self.val_pairs and len(a) > self.val_pairs:
            keep = np.linspace(0, len(a) - 1, self.val_pairs).round().astype(np.int64)
            a, b, s, r = a[keep], b[keep], s[keep], r[keep]
        return a, b, s, r

    def _measure(self, model: nn.Module, clips: ClipSet, which: np.ndarray, device: torch.device,
                 own_subject: bool) -> dict[str, float]:
        a, b, subjects, refs = self._pairs(clips, which)
        sums = {"rec": 0.0, "temporal": 0.0, "diversity": 0.0, "mse": 0.0}
        n = 0
        for s in range(0, len(a), 64):
            x = to_tensor(clips.images[np.concatenate([a[s : s + 64], b[s : s + 64]])]).to(device)
            k = x.shape[0]
            if own_subject:
                ids = torch.from_numpy(np.concatenate([subjects[s : s + 64]] * 2)).to(device)
                subject = model.transformer.subject(ids)
            else:
                subject = self.mean_subject(model).expand(k, -1)
            reference = None
            if self.uses_reference:
                reference = to_reference(clips.clip_means[np.concatenate([refs[s : s + 64]] * 2)]).to(device)
            parts = self.losses(model, x, subject, reference=reference)
            for key in ("rec", "temporal", "diversity"):
                sums[key] += float(parts[key]) * k
            n += k
        return {key: v / max(1, n) for key, v in sums.items() if key != "mse"}

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        out: dict[str, float] = {}
        probe = self._measure(model, self.train, self.train_probe, device, own_subject=True)
        out["train_probe_temporal"] = probe["temporal"]
        out["train_probe_psnr"] = float(10 * np.log10(1.0 / max(probe["rec"], 1e-10)))
        if len(self.val):
            v = self._measure(model, self.val, np.arange(len(self.val)), device, own_subject=False)
            out.update({"val_rec": v["rec"], "val_temporal": v["temporal"], "val_diversity": v["diversity"],
                        "val_psnr": float(10 * np.log10(1.0 / max(v["rec"], 1e-10)))})
            out["val_temporal_ratio"] = v["temporal"] / max(probe["temporal"], 1e-12)
        return out


def freeze_transformer(model: ExpressionAutoencoder) -> None:
    """Fine-tune the rest: every expression-transformer weight frozen except the subject table (the identities)."""
    for name, p in model.transformer.named_parameters():
        p.requires_grad_(name.startswith("subject_table."))


# -- enrollment -----------------------------------------------------------------------------------------------
def enrollment_reference(images: torch.Tensor) -> torch.Tensor:
    """The reference face of someone enrolled on ``images`` [N, 3, S, S]: their mean, [3, S, S]."""
    return images.mean(0)


def enroll(transformer: ExpressionTransformer, reconstruction: ReconstructionModel, images: torch.Tensor,
           start: torch.Tensor, *, steps: int = 100, lr: float = 0.05) -> torch.Tensor:
    """A subject embedding for someone new: both networks frozen, only the vector is optimised.

    ``images`` float [N, 3, S, S] in [0, 1] (the person's first frames), ``start``
    [D] (the mean subject). Returns [D]. A conv+ref decoder renders from
    :func:`enrollment_reference` of the same frames while the vector is fitted.
    """
    cfg = transformer.config
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std).view(1, 3, 1, 1)
    x = (images - mean) / std
    vec = start.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([vec], lr=lr)
    modes = (transformer.training, reconstruction.training)
    transformer.eval()
    reconstruction.eval()
    frozen = [p for p in (*transformer.parameters(), *reconstruction.parameters()) if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    reference = None
    if reconstruction.uses_reference:
        reference = enrollment_reference(images)[None]
    try:
        for _ in range(steps):
            subject = vec[None].expand(len(x), -1)
            rec = reconstruction(subject, transformer(x, subject), reference)
            loss = F.mse_loss(rec, images)
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        for p in frozen:
            p.requires_grad_(True)
        transformer.train(modes[0])
        reconstruction.train(modes[1])
    return vec.detach()
