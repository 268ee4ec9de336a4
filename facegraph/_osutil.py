"""Small OS facts the run, batch and CLI paths share: SIGTERM as Ctrl-C, and an output folder that can be written."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM takes the same clean path as Ctrl-C (only possible from the main thread; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def unwritable_folder(path: Path) -> str | None:
    """None when ``path`` exists (made if needed) and takes a file; else the one-line reason."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".facegraph-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return f"{path}: output folder cannot be written ({exc.strerror or exc})"
    return None
