"""The trainer's command-line flags, shared by every ``facegraph train <model>`` subcommand."""

from __future__ import annotations

import argparse
from typing import Any

from .config import TrainConfig


def add_trainer_arguments(p: argparse.ArgumentParser, **defaults: Any) -> None:
    """Flags for every :class:`TrainConfig` field; ``defaults`` are the model family's own."""
    d = {**TrainConfig().__dict__, **defaults}
    p.add_argument("--out", default=d["out"], help=f"run folder: checkpoints, history, exports (default {d['out']})")
    p.add_argument("--epochs", type=int, default=d["epochs"])
    p.add_argument("--batch-size", type=int, default=d["batch_size"])
    p.add_argument("--lr", type=float, default=d["lr"], help="peak learning rate")
    p.add_argument("--weight-decay", type=float, default=d["weight_decay"])
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default=d["optimizer"])
    p.add_argument("--momentum", type=float, default=d["momentum"], help="SGD momentum (Nesterov)")
    p.add_argument("--schedule", choices=["cosine", "step", "constant"], default=d["schedule"],
                   help="cosine: with linear warm-up; step: × --gamma every --step-epochs")
    p.add_argument("--warmup-epochs", type=float, default=d["warmup_epochs"])
    p.add_argument("--step-epochs", type=int, default=d["step_epochs"])
    p.add_argument("--gamma", type=float, default=d["gamma"])
    p.add_argument("--min-lr", type=float, default=d["min_lr"])
    p.add_argument("--clip-grad", type=float, default=d["clip_grad"], help="max gradient norm (0: off)")
    p.add_argument("--patience", type=int, default=d["patience"], help="epochs without a better --monitor score")
    p.add_argument("--extra-epochs", type=int, default=d["extra_epochs"],
                   help="further epochs that must confirm an early stop")
    p.add_argument("--monitor", default=d["monitor"], help="validation score that picks the best epoch")
    p.add_argument("--mode", choices=["max", "min"], default=d["mode"])
    p.add_argument("--save-every", type=int, default=d["save_every"], help="keep a checkpoint every N epochs")
    p.add_argument("--resume", metavar="RUN|CHECKPOINT", help="continue a run exactly where it stopped")
    p.add_argument("--init-from", metavar="CHECKPOINT", help="start from these weights (fine-tuning)")
    p.add_argument("--seed", type=int, default=d["seed"])
    p.add_argument("--threads", type=int, default=d["threads"], help="torch threads (0: every core)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default=d["device"])
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument("--max-batches", type=int, default=0, help="per epoch (0: all); for a quick try")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch stays)")


def config_from(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        out=args.out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        optimizer=args.optimizer, momentum=args.momentum, schedule=args.schedule, warmup_epochs=args.warmup_epochs,
        step_epochs=args.step_epochs, gamma=args.gamma, min_lr=args.min_lr, clip_grad=args.clip_grad,
        patience=args.patience, extra_epochs=args.extra_epochs, monitor=args.monitor, mode=args.mode,
        save_every=args.save_every, seed=args.seed, threads=args.threads, device=args.device,
        amp=not args.no_amp, max_batches=args.max_batches, progress=not args.no_progress,
    )
