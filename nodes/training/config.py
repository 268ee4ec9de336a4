"""How a model is trained, as data: importable without torch, so the command line builds on a plain install."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import TrainingError

SCHEDULES = ("cosine", "step", "constant")


@dataclass
class TrainConfig:
    """Everything about how a model is trained (not what it is: that is the task's ``model_config``)."""

    out: str = "runs/model"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"  # adamw | sgd
    momentum: float = 0.9
    schedule: str = "cosine"  # cosine | step | constant
    warmup_epochs: float = 1.0
    step_epochs: int = 10
    gamma: float = 0.1
    min_lr: float = 0.0
    clip_grad: float = 5.0  # max gradient norm; 0: no clipping
    patience: int = 5
    extra_epochs: int = 2
    monitor: str = "val_accuracy"
    mode: str = "max"
    save_every: int = 0  # also keep checkpoint_epochNNN.pt every N epochs; 0: never
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0: every core
    device: str = "auto"  # auto | cpu | cuda | mps
    amp: bool = True  # mixed precision, on CUDA only
    max_batches: int = 0  # per epoch; 0: all (a smoke test sets a few)
    progress: bool = True

    def check(self) -> None:
        if self.optimizer not in ("adamw", "sgd"):
            raise TrainingError(f"--optimizer must be adamw or sgd, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise TrainingError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.mode not in ("max", "min"):
            raise TrainingError(f"--mode must be max or min, got {self.mode!r}")
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise TrainingError(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise TrainingError(f"--lr must be > 0, got {self.lr}")
        if self.extra_epochs < 0 or self.save_every < 0 or self.threads < 0:
            raise TrainingError("--extra-epochs, --save-every and --threads must be ≥ 0")
