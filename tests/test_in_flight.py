"""How many frames the source admits at once: a file keeps FILE_IN_FLIGHT inside, a live source LIVE_IN_FLIGHT,
and an explicit ``max_in_flight`` wins; counted by causality (which frames entered before frame 0 was done)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from _process_checks import children, nothing_left_behind  # noqa: F401 - autouse fixture

import facegraph
from facegraph import ANY, FRAME, Graph, Input, Node, Output, register
from facegraph._run import FILE_IN_FLIGHT, LIVE_IN_FLIGHT


@register("test.inflight.stamp")
class Stamp(Node):
    """When each frame got past the source (its own worker, right after it)."""

    frame = Input(FRAME)
    out = Output(ANY)

    def process(self, frame: Any) -> dict[str, Any]:
        return {"out": {"entered_ns": time.monotonic_ns()}}


@register("test.inflight.slow_first")
class SlowFirst(Node):
    """Holds the first frame back, so every frame the source may admit enters before it is done."""

    value = Input(ANY)
    out = Output(ANY)

    def open(self) -> None:
        self.first = True

    def process(self, value: Any) -> dict[str, Any]:
        if self.first:
            time.sleep(0.4)
            self.first = False
        return {"out": {"entered_ns": value["entered_ns"], "done_ns": time.monotonic_ns()}}


def entered_before_first_done(max_in_flight: int | None) -> tuple[int, Any]:
    g = Graph("inflight")
    src = g.add("synthetic", id="src", frames_total=40, width=64, height=48)
    stamp = g.add("test.inflight.stamp", id="stamp", frame=src.frame)
    g.add("test.inflight.slow_first", id="slow", value=stamp.out)
    run = facegraph.run(g, executor="process", placement="separate", max_in_flight=max_in_flight)
    rows = [r["slow.out"].fields for r in run]
    assert len(rows) == 40
    first_done = rows[0]["done_ns"]
    # frame k > limit-1 can enter only after a frame was done (its credit came back): never before frame 0's
    return sum(row["entered_ns"] < first_done for row in rows), run.options.extra.get("max_in_flight")


@pytest.mark.parametrize(("asked", "expected"), [(None, FILE_IN_FLIGHT), (3, 3)])
def test_file_source_admits_its_limit(asked: int | None, expected: int) -> None:
    entered, reported = entered_before_first_done(asked)
    assert reported == expected
    assert entered == expected


def test_live_source_keeps_few_in_flight() -> None:
    g = Graph("live")
    src = g.add("synthetic", id="src", frames_total=30, width=64, height=48, camera=True)
    g.add("delay", id="slow", value=src.frame, ms=5.0)
    run = facegraph.run(g, executor="process")
    list(run)
    assert run.options.extra.get("max_in_flight") == LIVE_IN_FLIGHT
    assert FILE_IN_FLIGHT > LIVE_IN_FLIGHT


def test_a_files_limit_fits_its_frames_in_the_shared_memory_budget() -> None:
    import numpy as np

    from facegraph._ports import Packet
    from facegraph._process._worker import in_flight_for
    from facegraph._run import FILE_IN_FLIGHT_BYTES

    def frame(h: int, w: int) -> list[tuple[str, Any]]:
        return [("frame", Packet(0, 0, "t", {"image": np.zeros((h, w, 3), np.uint8), "timestamp": 0.0}))]

    assert in_flight_for(frame(480, 640)) == FILE_IN_FLIGHT
    assert in_flight_for(frame(2160, 3840)) == FILE_IN_FLIGHT_BYTES // (2160 * 3840 * 3) < FILE_IN_FLIGHT
    assert in_flight_for(frame(8640, 15360)) == LIVE_IN_FLIGHT  # never fewer than a live source keeps
    assert in_flight_for([("frame", Packet(0, 0, "t", {"n": 1}))]) == FILE_IN_FLIGHT
