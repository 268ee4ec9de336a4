"""The process executor gives the inline executor's results, drops only at a live entrance, leaves nothing behind."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _process_checks import children, nothing_left_behind  # noqa: F401 - autouse fixture

import facegraph
from facegraph import ANY, FRAME, Graph, Input, Node, Output, register
from facegraph.testing import collect, results_equal


@register("test.proc.scale")
class Halve(Node):
    """A new array per frame (written into the ring, not forwarded)."""

    frame = Input(FRAME)
    out = Output(FRAME)

    def process(self, frame: Any) -> dict[str, Any]:
        return {"out": {"image": (frame.image // 2).astype(np.uint8), "timestamp": frame.timestamp}}


@register("test.proc.join")
class Join(Node):
    """Two required inputs and an optional one, joined by frame_id; odd small values travel exactly."""

    a = Input(FRAME)
    b = Input(FRAME)
    c = Input(ANY, optional=True)
    out = Output(ANY)

    def process(self, a: Any, b: Any, c: Any = None) -> dict[str, Any]:
        diff = a.image.astype(np.int16) - b.image
        return {
            "out": {
                "diff": diff,
                "pair": (a.frame_id, b.frame_id),
                "c": c is not None,
                "mean": np.float32(diff.mean()),
                "names": ["x", "y"],
                "empty": np.zeros((0, 4), np.float32),
            }
        }


@register("test.proc.sometimes")
class Sometimes(Node):
    """Emits nothing for every third frame: consumers must not stall."""

    value = Input(ANY)
    out = Output(ANY)

    def process(self, value: Any) -> dict[str, Any] | None:
        return None if value.frame_id % 3 == 0 else {"out": dict(value.fields)}


@register("test.proc.grow")
class Grow(Node):
    """Packets that get bigger every frame: the ring must grow, never fail."""

    value = Input(ANY)
    out = Output(ANY)

    def process(self, value: Any) -> dict[str, Any]:
        return {"out": {"blob": np.full(5000 * (value.frame_id + 1) ** 2, value.frame_id, np.uint8)}}


@register("test.proc.sink")
class CountSink(Node):
    """No outputs: completion comes from the sink's own report."""

    value = Input(ANY)

    def process(self, value: Any) -> None:
        return None


@register("test.proc.alloc")
class Alloc(Node):
    """Makes its outputs in place with output_array: two emitted arrays, one allocated and dropped."""

    frame = Input(FRAME)
    out = Output(ANY)
    side = Output(ANY)

    def process(self, frame: Any) -> dict[str, Any]:
        image = self.output_array("out", frame.image.shape, np.uint8)
        np.copyto(image, frame.image)
        image[:4] = 255 - image[:4]
        scores = self.output_array("out", (3,), np.float32)
        scores[:] = [frame.frame_id, image.mean(), 0.5]
        unused = self.output_array("out", (1000,), np.uint8)  # not emitted: must come back
        unused[:] = 1
        other = self.output_array("side", 7, "int64")
        other[:] = frame.frame_id
        if frame.frame_id % 4 == 3:
            return {"out": {"image": image, "scores": scores}}  # 'side' allocated but skipped this frame
        return {"out": {"image": image, "scores": scores, "again": image}, "side": {"ids": other}}


def test_output_array_is_numpy_inline():
    node = Alloc("a")
    arr = node.output_array("out", (2, 3), np.float32)
    assert type(arr) is np.ndarray and arr.shape == (2, 3) and arr.flags.writeable
    with pytest.raises(ValueError, match="no output port 'nope'"):
        node.output_array("nope", 3)


def alloc_graph(group: str | None = None) -> Graph:
    g = Graph("alloc")
    src = source(g, frames=16)
    a = g.add("test.proc.alloc", id="a", frame=src.frame, group=group)
    p = g.add("passthrough", id="p", value=a.out)
    g.add("test.proc.join", id="j", a=src.frame, b=src.frame, c=a.side, group=group)
    g.add("test.proc.sink", id="sink", value=p.out, group=group)
    g.add("passthrough", id="q", value=a.side)
    return g


@pytest.mark.parametrize("placement", ["cost", "separate"])
@pytest.mark.parametrize("group", [None, "g"], ids=["own_process", "grouped"])
def test_allocated_outputs_travel_without_copy_and_come_back(group, placement):
    graph = alloc_graph(group)
    inline = collect(graph, "inline", outputs=["a.out", "p.out", "q.out", "j.out"])
    run = facegraph.run(graph, executor="process", max_in_flight=3, outputs=["a.out", "p.out", "q.out", "j.out"],
                        placement=placement)
    process = list(run)
    assert len(process) == 16 and results_equal(inline, process)
    busy = run.options.extra["ring_busy"]
    assert "a.out" in busy and set(busy.values()) == {0}, busy  # every slot came back, the dropped ones too
    copied = run.options.extra.get("ring_copied_bytes", {})
    assert copied.get("a.out", 0) == 0 and copied.get("a.side", 0) == 0, copied  # made in place: no copy
    assert copied.get("src.frame", 0) == 0, copied  # the synthetic source draws into its slot too
    assert copied.get("j.out", 0) > 0, copied  # a plain array a node returns is copied into the ring




def source(g: Graph, frames: int = 12, **params: Any) -> Any:
    return g.add("synthetic", id="src", frames_total=frames, width=64, height=48, **params)


def chain() -> Graph:
    g = Graph("chain")
    src = source(g)
    a = g.add("passthrough", id="a", value=src.frame)
    h = g.add("test.proc.scale", id="h", frame=a.out)
    g.add("passthrough", id="p", value=h.out)
    return g


def fan_out() -> Graph:
    g = Graph("fanout")
    src = source(g)
    g.add("test.proc.scale", id="h", frame=src.frame)
    g.add("passthrough", id="p", value=src.frame)
    g.add("test.proc.sink", id="sink", value=src.frame)
    return g


def join(group: str | None = None) -> Graph:
    g = Graph("join")
    src = source(g)
    h = g.add("test.proc.scale", id="h", frame=src.frame, group=group)
    s = g.add("test.proc.sometimes", id="s", value=src.frame)
    g.add("test.proc.join", id="j", a=src.frame, b=h.out, c=s.out, group=group)
    return g


def sometimes() -> Graph:
    g = Graph("sometimes")
    src = source(g)
    s = g.add("test.proc.sometimes", id="s", value=src.frame)
    p = g.add("passthrough", id="p", value=s.out)
    g.add("test.proc.scale", id="h", frame=p.out)
    g.add("test.proc.sink", id="sink", value=s.out)
    return g


@pytest.mark.parametrize("placement", ["cost", "separate"])  # light nodes fused, or every node in its own process
@pytest.mark.parametrize(
    "make",
    [chain, fan_out, join, sometimes, lambda: join(group="g")],
    ids=["chain", "fan_out", "join", "emits_nothing", "group"],
)
def test_same_results_as_inline(make, placement):
    graph = make()
    inline = collect(graph, "inline")
    run = facegraph.run(graph, executor="process", placement=placement)
    process = list(run)
    assert len(process) == len(inline) == 12
    assert results_equal(inline, process)
    assert run.stats.frames_in == 12 and run.stats.dropped == 0
    assert set(run.stats.nodes) == set(graph.nodes)
    inline_stats = facegraph.run(graph).wait()
    for nid, st in run.stats.nodes.items():
        ref = inline_stats.nodes[nid]
        assert (st.packets_in, st.packets_out, st.skipped) == (ref.packets_in, ref.packets_out, ref.skipped), nid
        assert st.pid > 0 and st.worker


def test_group_shares_a_process():
    run = facegraph.run(join(group="g"), executor="process")
    run.wait()
    assert run.stats.nodes["h"].pid == run.stats.nodes["j"].pid
    assert run.stats.nodes["h"].pid != run.stats.nodes["s"].pid


def test_internal_outputs_and_max_frames():
    graph = chain()
    kwargs = {"outputs": ["src.frame", "h.out"], "max_frames": 7}
    inline = collect(graph, "inline", **kwargs)
    process = collect(graph, "process", **kwargs)
    assert len(process) == 7 and results_equal(inline, process)
    assert not process[0]["src.frame"].image.flags.writeable or process[0]["src.frame"].image.base is None


def test_results_are_private_copies():
    results = collect(chain(), "process")
    images = [r["p.out"].image for r in results]
    assert len({id(i) for i in images}) == len(images)
    assert all(i.flags.writeable for i in images)


def test_slow_consumer_file_source_never_drops():
    g = Graph("slow")
    src = source(g, frames=15)
    g.add("delay", id="slow", value=src.frame, ms=15.0)
    run = facegraph.run(g, executor="process", max_in_flight=2)
    results = list(run)
    assert [r.frame_id for r in results] == list(range(15))
    assert run.stats.dropped == 0 and run.stats.nodes["src"].drops == 0
    assert run.stats.nodes["slow"].packets_in == 15


def test_slow_consumer_live_source_drops_at_the_entrance():
    g = Graph("live")
    src = source(g, frames=60, camera=True)
    g.add("delay", id="slow", value=src.frame, ms=20.0)
    started: list[Any] = []
    run = facegraph.run(g, executor="process", max_in_flight=2, on_start=started.append)
    results = list(run)
    stats = run.stats
    assert started == [60]
    assert stats.dropped > 0
    assert stats.nodes["src"].drops == stats.dropped
    assert stats.frames_in + stats.dropped == 60
    assert len(results) == stats.frames_in == stats.nodes["slow"].packets_in
    assert [r.frame_id for r in results] == list(range(len(results)))


def test_growing_packets_grow_the_ring():
    g = Graph("grow")
    src = source(g, frames=12)
    gr = g.add("test.proc.grow", id="gr", value=src.frame)
    g.add("passthrough", id="p", value=gr.out)
    results = collect(g, "process", max_in_flight=3)
    assert results_equal(collect(g, "inline"), results)
    assert results[-1]["p.out"].blob.nbytes == 5000 * 144


def test_slots_come_back_only_when_every_reader_is_done():
    g = Graph("readers")
    src = source(g, frames=20)
    h = g.add("test.proc.scale", id="h", frame=src.frame)
    slow = g.add("delay", id="slow", value=h.out, ms=4.0)
    fast = g.add("passthrough", id="fast", value=h.out)
    g.add("test.proc.join", id="j", a=slow.out, b=fast.out)
    g.add("test.proc.join", id="k", a=src.frame, b=h.out)
    assert results_equal(collect(g, "inline"), collect(g, "process", max_in_flight=6))
    assert results_equal(collect(g, "inline"), collect(g, "process", max_in_flight=6, placement="separate"))


def test_caller_stops_early():
    g = Graph("early")
    src = source(g, frames=200)
    g.add("delay", id="d", value=src.frame, ms=2.0)
    run = facegraph.run(g, executor="process")
    for i, _ in enumerate(run):
        if i == 3:
            break
    del run  # closes the generator: the finally of the executor stops everything


def test_control_socket_answers():
    import zmq

    from facegraph._process._wire import unpack

    g = Graph("ctl")
    src = source(g, frames=40)
    g.add("delay", id="d", value=src.frame, ms=5.0)
    run = facegraph.run(g, executor="process")
    it = iter(run)
    next(it)
    address = run.options.extra["control"]
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(address)
    sock.send(b"stats")
    for _ in range(200):  # the supervisor answers while the caller iterates
        if sock.poll(0):
            break
        next(it, None)
    reply = unpack(sock.recv(zmq.NOBLOCK))[0]
    sock.close()
    assert "frames_out" in reply and "nodes" in reply
    list(it)


def test_small_arrays_travel_inside_the_message():
    from facegraph._process._shm import SegmentCache
    from facegraph._process._wire import INLINE, INLINE_MAX, copy_fields, inline_field, pack, small_value, unpack

    boxes = np.arange(8, dtype=">f4").reshape(2, 4)[:, ::2]  # not contiguous, big-endian: both must survive
    item = unpack(pack(["d", inline_field("boxes", boxes)]))[1]
    assert item[1] == INLINE and len(item[4]) == boxes.nbytes <= INLINE_MAX
    got = small_value(item)
    assert got.dtype == boxes.dtype and np.array_equal(got, boxes) and not got.flags.writeable
    cache = SegmentCache()
    try:
        out = copy_fields([item, inline_field("none", np.zeros((0, 5, 2), np.float32))], cache)
    finally:
        cache.close()
    assert out["boxes"].flags.writeable and np.array_equal(out["boxes"], boxes)  # results are the caller's own
    assert out["none"].shape == (0, 5, 2)


def test_packets_of_small_arrays_need_no_ring():
    g = Graph("small")
    src = source(g, frames=10)
    j = g.add("test.proc.join", id="j", a=src.frame, b=src.frame)  # 'diff' is 18 KB: a ring; the rest inline
    g.add("test.proc.sometimes", id="s", value=j.out)
    run = facegraph.run(g, executor="process", placement="separate", outputs=["s.out", "j.out"])
    assert results_equal(collect(g, "inline", outputs=["s.out", "j.out"]), list(run))
    copied = run.options.extra.get("ring_copied_bytes", {})
    assert copied.get("j.out", 0) == 10 * 64 * 48 * 3 * 2  # the diff of each frame, nothing else
