"""The AU nodes' end-of-file revision: post-processed values the table sinks write over the live ones.

An AU node that post-processes a file (the openface backend's offline pass, ``au.nn``'s
per-track floor) names this file in its packets' ``revise`` field and writes it at flush;
``nodes/io/_table.py``'s ``load_revision`` reads it when a sink closes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_revision(path: str | Path, names: list[str], presence_names: list[str], *, frame_id: np.ndarray,
                   track_id: np.ndarray, intensity: np.ndarray, presence: np.ndarray | None,
                   success: np.ndarray) -> None:
    """Rows keyed by (frame_id, track_id); written whole or not at all (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if presence is None:
        presence = np.zeros((len(frame_id), len(presence_names)), np.float32)
    tmp = path.with_name(path.name + ".part.npz")
    np.savez(tmp, names=np.array(names), presence_names=np.array(presence_names, dtype=str), frame_id=frame_id,
             track_id=track_id, intensity=intensity, presence=presence, success=success)
    tmp.replace(path)
