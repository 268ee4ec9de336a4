"""The process executor: nodes in worker processes linked by zero-copy shared-memory rings.

``execute_process`` has the contract of ``execute_inline`` (same results, same
statistics); see ``_supervisor`` for the run's life cycle, ``_worker`` for a
worker, ``_shm`` for segments and rings, ``_wire`` for the messages, ``_links`` for the Unix sockets
they travel over (zmq only serves the control socket).
"""

from __future__ import annotations

from ._shm import leftover_segments
from ._supervisor import RUN_IDS, execute_process


def segments_left_by_this_process() -> list[str]:
    """Segments in /dev/shm that belong to runs started here (other programs may be running their own)."""
    return [name for run_id in RUN_IDS for name in leftover_segments(run_id)]


__all__ = ["execute_process", "leftover_segments", "segments_left_by_this_process"]
