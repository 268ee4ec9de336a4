"""The one training loop of the project: every model family plugs a :class:`Task` into :class:`Trainer`.

What it gives every task: AdamW or SGD, per-batch cosine-with-warm-up or step
schedules, gradient clipping, mixed precision on CUDA, early stopping with
confirmation epochs (:mod:`.stopping`), ``checkpoint_best.pt`` /
``checkpoint_final.pt`` / ``checkpoint_last.pt`` (+ every ``save_every`` epochs),
``training_history.json`` rewritten after each epoch, one report line per epoch
and a progress bar within it.

Repeatable: each epoch reseeds torch, numpy and Python from ``(seed, epoch)`` and
hands the task a generator for shuffling and augmentation, so a run resumed from
``checkpoint_last.pt`` continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from . import checkpoints
from .config import TrainConfig
from .errors import TrainingError, TrainingFailed
from .schedules import make_scheduler
from .stopping import EarlyStopping

HISTORY = "training_history.json"


class Task(Protocol):
    """What a model family tells the trainer."""

    kind: str  # the family's name, stored in checkpoints (resuming another family is refused)

    def model_config(self) -> dict[str, Any]: ...

    def build_model(self) -> nn.Module: ...

    def steps_per_epoch(self, batch_size: int) -> int: ...

    def train_batches(self, epoch: int, batch_size: int, generator: torch.Generator) -> Iterator[Any]: ...

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, dict[str, float]]: ...

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]: ...


@dataclass
class TrainResult:
    model: nn.Module
    out: Path
    best_checkpoint: Path
    final_checkpoint: Path
    best_epoch: int
    best_metrics: dict[str, float]
    epochs_run: int
    stopped: str  # "early" | "epochs"
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


def pick_device(name: str) -> torch.device:
    """``auto`` takes CUDA, then Apple's MPS, then the CPU; an explicit device that is absent is an error."""
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda: no CUDA device is available here (try --device auto)")
    if name == "mps" and not has_mps:
        raise TrainingError("--device mps: Apple's MPS is not available here (try --device auto)")
    if name not in ("cpu", "cuda", "mps"):
        raise TrainingError(f"--device must be auto, cpu, cuda or mps, got {name!r}")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """One seed per (run seed, epoch): what makes a resumed run equal to an uninterrupted one."""
    return (seed * 1_000_003 + epoch * 7919) % 2**62


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


class Trainer:
    """Trains one task with one :class:`TrainConfig`; :meth:`fit` returns the best model (weights loaded)."""

    def __init__(self, config: TrainConfig, *, resume: str | Path | None = None,
                 init_from: str | Path | None = None, command: str = "") -> None:
        config.check()
        self.config = config
        self.resume = resume
        self.init_from = init_from
        self.command = command or " ".join(sys.argv)
        self.out = Path(config.out).expanduser()
        self.device = pick_device(config.device)

    # -- pieces -------------------------------------------------------------------------------------------------
    def _optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        cfg = self.config
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
        return torch.optim.AdamW(groups, lr=cfg.lr)

    def _report(self, row: dict[str, Any], stopper: EarlyStopping, best: bool) -> None:
        metrics = "  ".join(f"{k} {v:.4f}" for k, v in row.items()
                            if k not in ("epoch", "lr", "seconds") and isinstance(v, float))
        mark = " *best" if best else f"  ({stopper.state})"
        print(f"epoch {row['epoch']:3d}/{self.config.epochs}  {metrics}  lr {row['lr']:.2e}  "
              f"{row['seconds']:.0f}s{mark}", flush=True)

    # -- the loop -----------------------------------------------------------------------------------------------
    def fit(self, task: Task) -> TrainResult:
        cfg, device = self.config, self.device
        torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
        seed_everything(cfg.seed)
        model = task.build_model().to(device)
        model_config = task.model_config()
        steps = task.steps_per_epoch(cfg.batch_size)
        if cfg.max_batches:
            steps = min(steps, cfg.max_batches)
        optimizer = self._optimizer(model)
        scheduler = make_scheduler(optimizer, schedule=cfg.schedule, epochs=cfg.epochs, steps_per_epoch=steps,
                                   warmup_epochs=cfg.warmup_epochs, step_epochs=cfg.step_epochs, gamma=cfg.gamma,
                                   min_lr=cfg.min_lr, base_lr=cfg.lr)
        use_amp = cfg.amp and device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        stopper = EarlyStopping(patience=cfg.patience, extra_epochs=cfg.extra_epochs, mode=cfg.mode)
        history: list[dict[str, Any]] = []
        start_epoch, spent = 0, 0.0
        best_metrics: dict[str, float] = {}

        if self.resume is not None:
            state = checkpoints.load(self.resume, "--resume")
            checkpoints.check_same_model(state, task.kind, model_config, "--resume")
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state.get("scaler", {}))
            stopper.load_state_dict(state["stopper"])
            history, start_epoch = list(state["history"]), int(state["epoch"])
            spent, best_metrics = float(state.get("seconds", 0.0)), dict(state.get("best_metrics", {}))
            if state.get("stopped") == "early" or start_epoch >= cfg.epochs:
                print(f"--resume {state['path']}: that run already finished (epoch {start_epoch}); "
                      "nothing to train", flush=True)
        elif self.init_from is not None:
            state = checkpoints.load(self.init_from, "--init-from")
            fresh = getattr(task, "fresh_layers", lambda config: [])(state.get("model_config", {}))
            taken = self._load_compatible(model, state["model"], fresh)
            print(f"--init-from {state['path']}: {taken} tensors taken"
                  + (f", {', '.join(fresh)} start fresh" if fresh else ""), flush=True)

        self.out.mkdir(parents=True, exist_ok=True)
        stopped = "epochs"
        epoch = start_epoch
        last_path = self.out / checkpoints.LAST

        def snapshot(done: int, stop: str | None) -> dict[str, Any]:
            return {"kind": task.kind, "model_config": model_config, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(), "stopper": stopper.state_dict(), "epoch": done,
                    "history": history, "best_metrics": best_metrics, "seconds": spent, "stopped": stop,
                    "train_config": asdict(cfg), "command": self.command}

        def write_history(stop: str | None) -> None:
            _write_json(self.out / HISTORY, {
                "kind": task.kind, "model_config": model_config, "train_config": asdict(cfg),
                "command": self.command, "device": str(device), "best_epoch": stopper.best_epoch + 1,
                "best_metrics": best_metrics, "stopped": stop, "seconds": round(spent, 1), "epochs": history})

        finished = bool(history) and (history[-1].get("stopped") == "early" or start_epoch >= cfg.epochs)
        try:
            while not finished and epoch < cfg.epochs:
                t0 = time.perf_counter()
                seed = epoch_seed(cfg.seed, epoch)
                seed_everything(seed)
                generator = torch.Generator().manual_seed(seed)
                model.train()
                total, count, logs_sum = 0.0, 0, {}
                bar = self._bar(steps, epoch)
                for b, batch in enumerate(task.train_batches(epoch, cfg.batch_size, generator)):
                    if b >= steps:
                        break
                    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                        loss, logs = task.loss(model, batch, device)
                    if not torch.isfinite(loss):
                        raise TrainingFailed(f"epoch {epoch + 1}, batch {b + 1}: loss is {loss.item()} "
                                             f"(try a lower --lr); last checkpoint: {last_path}")
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    if cfg.clip_grad:
                        scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                    scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
                    total += float(loss.detach())
                    count += 1
                    for k, v in logs.items():
                        logs_sum[k] = logs_sum.get(k, 0.0) + float(v)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{total / count:.4f}", refresh=False)
                if bar is not None:
                    bar.close()
                model.eval()
                with torch.no_grad():
                    metrics = task.validate(model, device)
                if cfg.monitor not in metrics:
                    raise TrainingError(f"--monitor {cfg.monitor}: the task reports {', '.join(sorted(metrics))}")
                seconds = time.perf_counter() - t0
                spent += seconds
                row = {"epoch": epoch + 1, "train_loss": total / max(1, count),
                       **{f"train_{k}": v / max(1, count) for k, v in logs_sum.items()},
                       **{k: float(v) for k, v in metrics.items()},
                       "lr": optimizer.param_groups[0]["lr"], "seconds": round(seconds, 2)}
                score = float(metrics[cfg.monitor])
                is_best = stopper.improved(score)
                stop = stopper.update(epoch, score)
                history.append(row)
                epoch += 1
                if is_best:
                    best_metrics = {k: float(v) for k, v in metrics.items()}
                    checkpoints.save(self.out / checkpoints.BEST, snapshot(epoch, None))
                if stop:
                    stopped = "early"
                    row["stopped"] = "early"
                checkpoints.save(last_path, snapshot(epoch, "early" if stop else None))
                if cfg.save_every and epoch % cfg.save_every == 0:
                    checkpoints.save(self.out / f"checkpoint_epoch{epoch:03d}.pt", snapshot(epoch, None))
                write_history("early" if stop else None)
                self._report(row, stopper, is_best)
                if stop:
                    print(f"early stop: no better {cfg.monitor} for {cfg.patience} + {cfg.extra_epochs} "
                          f"confirming epochs; best epoch {stopper.best_epoch + 1}", flush=True)
                    break
        except KeyboardInterrupt:
            write_history("interrupted")
            where = f"{last_path}" if last_path.exists() else "none yet"
            print(f"\ninterrupted in epoch {epoch + 1}; last checkpoint: {where}; history: {self.out / HISTORY}; "
                  f"continue with --resume {self.out}", file=sys.stderr, flush=True)
            raise
        if history and history[-1].get("stopped") == "early":
            stopped = "early"
        final_path = checkpoints.save(self.out / checkpoints.FINAL, snapshot(epoch, stopped))
        write_history(stopped)
        best_path = self.out / checkpoints.BEST
        if best_path.exists():
            model.load_state_dict(checkpoints.load(best_path, "best checkpoint")["model"])
        model.eval()
        return TrainResult(model=model, out=self.out, best_checkpoint=best_path, final_checkpoint=final_path,
                           best_epoch=stopper.best_epoch + 1, best_metrics=best_metrics, epochs_run=epoch,
                           stopped=stopped, seconds=spent, history=history)

    def _bar(self, steps: int, epoch: int) -> Any:
        if not self.config.progress:
            return None
        from tqdm import tqdm

        return tqdm(total=steps, desc=f"epoch {epoch + 1}", leave=False, unit="batch", file=sys.stderr,
                    disable=None, dynamic_ncols=True)

    @staticmethod
    def _load_compatible(model: nn.Module, weights: dict[str, torch.Tensor], fresh: list[str]) -> int:
        """Fine-tuning start: every tensor whose name and shape match, except the ``fresh`` prefixes."""
        own = model.state_dict()
        taken = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape
                 and not any(k.startswith(p) for p in fresh)}
        if not taken:
            raise TrainingError("--init-from: no layer of that checkpoint fits this model")
        own.update(taken)
        model.load_state_dict(own)
        return len(taken)

