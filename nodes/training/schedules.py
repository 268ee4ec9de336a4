"""Learning-rate schedules stepped once per batch: cosine with linear warm-up, step decay, or constant."""

from __future__ import annotations

import math

import torch

from .config import SCHEDULES


def lr_factor(step: int, *, schedule: str, total_steps: int, warmup_steps: int = 0, step_every: int = 1,
              gamma: float = 0.1, min_factor: float = 0.0) -> float:
    """The multiplier of the base learning rate at optimiser step ``step`` (0-based)."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return gamma ** ((step - warmup_steps) // max(1, step_every))
    if schedule == "cosine":
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {schedule!r} (one of {', '.join(SCHEDULES)})")


def make_scheduler(optimizer: torch.optim.Optimizer, *, schedule: str, epochs: int, steps_per_epoch: int,
                   warmup_epochs: float = 0.0, step_epochs: int = 10, gamma: float = 0.1,
                   min_lr: float = 0.0, base_lr: float = 1.0) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-batch LambdaLR; ``step_epochs`` and ``warmup_epochs`` are in epochs, converted to batches."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r} (one of {', '.join(SCHEDULES)})")
    total = epochs * steps_per_epoch
    warmup = round(warmup_epochs * steps_per_epoch)
    min_factor = min_lr / base_lr if base_lr > 0 else 0.0

    def factor(step: int) -> float:
        return lr_factor(step, schedule=schedule, total_steps=total, warmup_steps=warmup,
                         step_every=step_epochs * steps_per_epoch, gamma=gamma, min_factor=min_factor)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
