"""The inline executor: joins by frame, skips, end of stream, errors, results to the caller."""

from __future__ import annotations

import numpy as np
import pytest

import facegraph
from facegraph import FRAME, Graph, Input, Node, NodeFailure, Output, Param, register
from facegraph.testing import collect, results_equal, run_node, run_node_frames

LOG: list[str] = []


@register("test.brighten")
class Brighten(Node):
    """The custom node of the engine-core issue: at most 25 lines, composed with built-in nodes."""

    frame = Input(FRAME)
    out = Output(FRAME)
    add = Param(int, 10, ge=0, le=255, doc="value added to every pixel")
    every = Param(int, 1, ge=1, doc="emit only every n-th frame")

    def process(self, frame):
        if frame.frame_id % self.every:
            return None
        image = np.clip(frame.image.astype(np.int16) + self.add, 0, 255).astype(np.uint8)
        return {"out": {"image": image, "timestamp": frame.get("timestamp")}}


@register("test.blend")
class Blend(Node):
    """Two inputs of the same frame, the second optional."""

    a = Input(FRAME)
    b = Input(FRAME, optional=True)
    out = Output(FRAME)

    def open(self):
        LOG.append(f"open {self.id}")

    def process(self, a, b):
        if b is None:
            return {"out": {"image": a.image}}
        assert a.frame_id == b.frame_id
        return {"out": {"image": ((a.image.astype(np.uint16) + b.image) // 2).astype(np.uint8)}}

    def close(self):
        LOG.append(f"close {self.id}")


CUSTOM_YAML = """\
name: custom
nodes:
  cam: {type: synthetic, params: {frames_total: 8, width: 40, height: 30}}
  up: {type: test.brighten, params: {add: 25}, inputs: {frame: cam.frame}}
  same: {type: passthrough, inputs: {value: up.out}}
"""


def custom_python() -> Graph:
    g = Graph("custom")
    cam = g.add("synthetic", id="cam", frames_total=8, width=40, height=30)
    up = g.add("test.brighten", id="up", frame=cam.frame, add=25)
    g.add("passthrough", id="same", value=up.out)
    return g


def test_custom_node_python_and_yaml_give_identical_results(executor):
    from_python = collect(custom_python(), executor)
    from_yaml = collect(Graph.from_yaml(CUSTOM_YAML).check(), executor)
    assert len(from_python) == 8
    assert results_equal(from_python, from_yaml)
    first = from_python[0]["same.out"].image
    assert first.min() >= 25


def test_join_with_skips_never_stalls(executor):
    g = Graph("join")
    cam = g.add("synthetic", id="cam", frames_total=6, width=16, height=12)
    odd = g.add("test.brighten", id="odd", frame=cam.frame, every=2)
    g.add("test.blend", id="mix", a=cam.frame, b=odd.out)
    results = collect(g, executor)
    assert [r.frame_id for r in results] == list(range(6))
    assert all("mix.out" in r for r in results)


def test_required_input_skipped_skips_the_node(executor):
    g = Graph("skip")
    cam = g.add("synthetic", id="cam", frames_total=6, width=16, height=12)
    odd = g.add("test.brighten", id="odd", frame=cam.frame, every=3)
    g.add("passthrough", id="tail", value=odd.out)
    results = collect(g, executor)
    assert [r.frame_id for r in results if "tail.out" in r] == [0, 3]
    assert len(results) == 6


def test_open_and_close_always_run_inline():
    LOG.clear()
    g = Graph("fail")
    cam = g.add("synthetic", id="cam", frames_total=10, width=16, height=12)
    mix = g.add("test.blend", id="mix", a=cam.frame)
    g.add("delay", id="boom", value=mix.out, fail_at=3, ms=0.0)
    with pytest.raises(NodeFailure) as err:
        collect(g, "inline")
    assert str(err.value) == "node 'boom' (delay) failed at frame 3: RuntimeError: delay node asked to fail at frame 3"
    assert err.value.frame_id == 3 and "Traceback" in err.value.traceback
    assert LOG == ["open mix", "close mix"]


def test_run_yields_results_and_stats():
    run = facegraph.run(custom_python(), max_frames=3)
    results = list(run)
    assert [r.frame_id for r in results] == [0, 1, 2]
    stats = run.stats.summary()
    assert stats["frames_out"] == 3 and stats["nodes"]["up"]["packets_in"] == 3


def test_run_node_helper():
    frame = {"image": np.full((4, 4, 3), 100, np.uint8)}
    out = run_node(Brighten("b", add=5), {"frame": frame})
    assert out["out"]["image"].max() == 105
    outs = run_node_frames(Brighten("b", every=2), [{"frame": frame}] * 3)
    assert [bool(o) for o in outs] == [True, False, True]


def test_nodes_opened_before_a_failing_open_are_closed():
    LOG.clear()

    @register("test.cannot_open")
    class CannotOpen(Node):
        value = Input(FRAME)

        def open(self):
            raise OSError("no such device")

    g = Graph("openfail")
    cam = g.add("synthetic", id="cam", frames_total=3, width=16, height=12)
    mix = g.add("test.blend", id="mix", a=cam.frame)
    g.add("test.cannot_open", id="bad", value=mix.out)
    with pytest.raises(NodeFailure, match=r"node 'bad' \(test.cannot_open\) failed: could not open: OSError"):
        collect(g, "inline")
    assert LOG == ["open mix", "close mix"]


def test_synthetic_frames_are_drawn_from_a_c_ordered_background(monkeypatch):
    # regression: the background was column-major, so every frame was a transposing copy (20 ms at 1080p)
    copies = []
    real_copyto = np.copyto

    def watch(dst, src, *args, **kwargs):
        copies.append(src.flags["C_CONTIGUOUS"])
        return real_copyto(dst, src, *args, **kwargs)

    monkeypatch.setattr(np, "copyto", watch)
    g = Graph("synth")
    g.add("synthetic", id="src", frames_total=3, width=64, height=48)
    images = [r["src.frame"].image for r in facegraph.run(g, executor="inline", outputs=["src.frame"])]
    assert copies and all(copies)
    assert all(img.shape == (48, 64, 3) for img in images)
    assert not np.array_equal(images[0], images[1])  # the square moved
    assert images[0][0, 0].tolist() == [40, 200, 255]  # the square, in the top-left corner at frame 0
    assert images[0][-1, 0].tolist() == [0, 0, 0] and images[0][-1, -1].tolist() == [80, 80, 80]  # the gradient
