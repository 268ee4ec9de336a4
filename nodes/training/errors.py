"""The errors of training commands, each one line naming its file or flag."""

from __future__ import annotations

from facegraph import FacegraphError


class TrainingError(FacegraphError):
    """Bad data, flag, checkpoint or export: exit 2, nothing written is lost."""

    exit_code = 2


class TrainingFailed(FacegraphError):
    """Something broke while training ran (exit 1); the last checkpoint and history stay on disk."""

    exit_code = 1


def require_torch() -> None:
    """Training needs torch, which only the ``[train]`` extra installs: say so in one line."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise TrainingError("this command needs PyTorch: pip install 'facegraph[train]'") from None
