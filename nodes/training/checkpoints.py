"""Checkpoints: written atomically (a Ctrl-C mid-save never leaves half a file), checked when read."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .errors import TrainingError

FORMAT = "facegraph-checkpoint/1"
BEST, FINAL, LAST = "checkpoint_best.pt", "checkpoint_final.pt", "checkpoint_last.pt"


def save(path: Path, state: dict[str, Any]) -> Path:
    """``state`` plus the format tag, via a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, **state}, tmp)
    os.replace(tmp, path)
    return path


def load(path: str | Path, flag: str = "checkpoint") -> dict[str, Any]:
    """A checkpoint written by :func:`save`; a folder means its ``checkpoint_last.pt`` (then final, best)."""
    path = Path(path).expanduser()
    if path.is_dir():
        for name in (LAST, FINAL, BEST):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise TrainingError(f"{flag} {path}: folder holds no {LAST}, {FINAL} or {BEST}")
    if not path.is_file():
        raise TrainingError(f"{flag} {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises pickle, zip and runtime errors alike for a damaged file
        raise TrainingError(f"{flag} {path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise TrainingError(f"{flag} {path}: not a facegraph checkpoint (no '{FORMAT}' tag)")
    state["path"] = str(path)
    return state


def check_same_model(state: dict[str, Any], kind: str, config: dict[str, Any], flag: str = "--resume") -> None:
    """Resuming or fine-tuning needs the checkpoint's model family and configuration to match this run's."""
    if state.get("kind") != kind:
        raise TrainingError(f"{flag} {state['path']}: checkpoint holds a '{state.get('kind')}' model, "
                            f"this run trains '{kind}'")
    theirs = state.get("model_config", {})
    diff = sorted(k for k in set(theirs) | set(config) if theirs.get(k) != config.get(k))
    if diff:
        shown = ", ".join(f"{k}={theirs.get(k)!r} vs {config.get(k)!r}" for k in diff[:3])
        raise TrainingError(f"{flag} {state['path']}: checkpoint's model differs from this run's ({shown})")
