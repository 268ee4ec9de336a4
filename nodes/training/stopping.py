"""Early stopping with confirmation: ``patience`` epochs without progress, then ``extra_epochs`` that must agree.

Validation scores are noisy, so a run that stalls for ``patience`` epochs is not
stopped at once: it trains ``extra_epochs`` more, and only when none of them beats
the best score is the stop final. An improvement during the extra epochs cancels
the stop and the count starts again.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class EarlyStopping:
    patience: int = 5
    extra_epochs: int = 2
    mode: str = "max"  # "max" for accuracy-like scores, "min" for losses
    min_delta: float = 0.0
    best: float = field(default=math.nan)
    best_epoch: int = -1
    stale: int = 0  # epochs since the best

    def __post_init__(self) -> None:
        if self.mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {self.mode!r}")
        if self.patience < 1 or self.extra_epochs < 0:
            raise ValueError("patience must be ≥ 1 and extra_epochs ≥ 0")

    def improved(self, score: float) -> bool:
        if math.isnan(self.best):
            return not math.isnan(score)
        if self.mode == "max":
            return score > self.best + self.min_delta
        return score < self.best - self.min_delta

    def update(self, epoch: int, score: float) -> bool:
        """Record one epoch's score; True when training should stop now."""
        if self.improved(score):
            self.best, self.best_epoch, self.stale = float(score), epoch, 0
            return False
        self.stale += 1
        return self.stale >= self.patience + self.extra_epochs

    @property
    def state(self) -> str:
        if self.stale >= self.patience:
            return f"confirming stop {self.stale - self.patience}/{self.extra_epochs}"
        return f"{self.stale}/{self.patience} stale"

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)
