"""Checks shared by the process-executor tests: no worker and no shared-memory segment outlives a test."""

from __future__ import annotations

import psutil
import pytest

from facegraph._process import segments_left_by_this_process


def children() -> list[psutil.Process]:
    """This process's descendants, less multiprocessing's resource tracker (it is not ours to end)."""
    out = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if "resource_tracker" not in " ".join(proc.cmdline()):
                out.append(proc)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.fixture(autouse=True)
def nothing_left_behind():
    yield
    assert segments_left_by_this_process() == []
    assert psutil.wait_procs(children(), timeout=3)[1] == []


def as_in_a_terminal() -> None:
    """``preexec_fn`` for a child that a test Ctrl-Cs: SIGINT at its default, as a terminal gives it. A suite run
    in the background (``cmd &`` in a script, nohup) inherits SIGINT ignored, and so would the child."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
