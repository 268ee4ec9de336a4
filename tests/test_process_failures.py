"""The supervisor ends a run cleanly on a failing node, a killed worker, Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from _process_checks import as_in_a_terminal, children, nothing_left_behind  # noqa: F401 - autouse fixture

import facegraph
from facegraph import ANY, Graph, Input, Node, NodeFailure, Output, Param, register
from facegraph._process import leftover_segments


def slow_graph(frames: int = 300) -> Graph:
    g = Graph("slow")
    src = g.add("synthetic", id="src", frames_total=frames, width=64, height=48)
    d = g.add("delay", id="victim", value=src.frame, ms=5.0)
    g.add("passthrough", id="after", value=d.out)
    return g


def test_exception_in_a_node_names_it(tmp_path):
    g = Graph("fails")
    src = g.add("synthetic", id="src", frames_total=30, width=64, height=48)
    g.add("delay", id="boom", value=src.frame, ms=0.0, fail_at=5)
    run = facegraph.run(g, executor="process")
    seen = []
    with pytest.raises(NodeFailure) as info:
        for result in run:
            seen.append(result.frame_id)
    err = info.value
    assert err.node == "boom" and err.frame_id == 5
    assert "delay node asked to fail at frame 5" in err.cause
    assert "RuntimeError" in err.traceback
    assert seen == list(range(5))
    assert run.stats.nodes["boom"].packets_in == 6


@register("test.proc.unopenable")
class Unopenable(Node):
    value = Input(ANY)
    out = Output(ANY)

    def open(self) -> None:
        raise FileNotFoundError("no such model: missing.onnx")

    def process(self, value: Any) -> dict[str, Any]:
        return {"out": value.fields}


def test_open_failure_is_reported_before_any_frame():
    g = Graph("unopenable")
    src = g.add("synthetic", id="src", frames_total=5, width=64, height=48)
    g.add("test.proc.unopenable", id="model", value=src.frame)
    with pytest.raises(NodeFailure) as info:
        list(facegraph.run(g, executor="process"))
    assert info.value.node == "model"
    assert "could not open" in info.value.cause and "missing.onnx" in info.value.cause


def test_sigkill_of_a_worker_ends_the_run():
    """The run stops at the failure (not after the source's 300 frames) and leaves no worker behind."""
    run = facegraph.run(slow_graph(), executor="process", max_in_flight=4)
    it = iter(run)
    for _ in range(3):
        next(it)
    workers = dict(run.options.extra["workers"])
    pid = workers["victim"]
    os.kill(pid, signal.SIGKILL)
    after = 0
    with pytest.raises(NodeFailure) as info:
        for _ in it:
            after += 1
    assert info.value.node == "victim"
    assert info.value.cause == "worker died by signal SIGKILL"
    assert after <= 4  # at most what was already in flight (max_in_flight 4) comes out after the kill
    assert run.stats.frames_out < 300
    for name, worker in workers.items():
        gone = not psutil.pid_exists(worker) or psutil.Process(worker).status() == psutil.STATUS_ZOMBIE
        assert gone, f"worker {name} (pid {worker}) still runs after the failure"



@pytest.mark.timeout(60)
def test_a_worker_reaped_before_the_supervisor_looks_still_ends_the_run():
    """A worker that dies and is reaped (here by multiprocessing.active_children) before the supervisor polls again
    used to drop out of the poll unseen: the run then waited for its frames for ever."""
    import multiprocessing

    run = facegraph.run(slow_graph(), executor="process", max_in_flight=4)
    it = iter(run)
    for _ in range(3):
        next(it)
    pid = dict(run.options.extra["workers"])["victim"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the killed worker did not die"
        time.sleep(0.02)
    multiprocessing.active_children()  # reaps it: its exitcode is set before the supervisor's next poll
    with pytest.raises(NodeFailure) as info:
        for _ in it:
            pass
    assert info.value.node == "victim" and info.value.cause == "worker died by signal SIGKILL"

GRAPH_YAML = """\
name: interrupted
nodes:
  src: {type: synthetic, params: {frames_total: 100000, width: 64, height: 48, realtime: true, fps: 100}}
  slow: {type: delay, inputs: {value: src.frame}, params: {ms: 2}}
  last: {type: passthrough, inputs: {value: slow.out}}
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_interrupting_facegraph_run(tmp_path: Path, sig: int):
    graph = tmp_path / "g.yaml"
    graph.write_text(GRAPH_YAML)
    proc = subprocess.Popen(
        [sys.executable, "-m", "facegraph", "run", str(graph), "--output", str(tmp_path / "out"), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_in_a_terminal,
    )
    try:
        parent = psutil.Process(proc.pid)
        workers: list[psutil.Process] = []
        ours: set[str] = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and not ours:
            time.sleep(0.2)
            workers = [c for c in parent.children(recursive=True) if "resource_tracker" not in " ".join(c.cmdline())]
            ours = {Path(m.path).name for w in workers for m in w.memory_maps() if m.path.startswith("/dev/shm/fg")}
        assert len(workers) >= 2 and ours, "frames flow through rings"  # the source, slow + last fused
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert psutil.wait_procs(workers, timeout=3)[1] == []
    assert ours.isdisjoint(leftover_segments())


@register("test.proc.crash_once")
class CrashOnce(Node):
    """Dies (os._exit, no goodbye) at one frame, unless a marker file says it already did."""

    value = Input(ANY)
    out = Output(ANY)
    at = Param(int, 8)
    marker = Param(str, "")

    def process(self, value: Any) -> dict[str, Any]:
        if value.frame_id >= self.at and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(3)
        return {"out": dict(value.fields)}


@register("test.proc.pair")
class Pair(Node):
    """A join of two inputs by frame_id: it must complete for every frame, lost ones included."""

    a = Input(ANY)
    b = Input(ANY)
    out = Output(ANY)

    def process(self, a: Any, b: Any) -> dict[str, Any]:
        return {"out": {"pair": [a.frame_id, b.frame_id]}}


#: a live source long enough (6 s at 100 FPS) for a worker to be respawned on a loaded machine before it ends
LIVE_FRAMES = 600


def live_graph(tmp_path: Path, frames: int = LIVE_FRAMES, restart: int = 1, camera: bool = True) -> Graph:
    g = Graph("restart")
    src = g.add("synthetic", id="src", frames_total=frames, width=64, height=48, camera=camera, realtime=camera,
                fps=100.0)
    c = g.add("test.proc.crash_once", id="crashy", value=src.frame, marker=str(tmp_path / "crashed"), restart=restart)
    d = g.add("passthrough", id="after", value=c.out)
    g.add("test.proc.pair", id="j", a=src.frame, b=d.out)
    return g


def test_restart_keeps_a_live_run_going(tmp_path):
    run = facegraph.run(live_graph(tmp_path), executor="process", max_in_flight=3)
    results = list(run)
    stats = run.stats
    assert (tmp_path / "crashed").exists()
    lost = stats.nodes["crashy"].drops
    assert lost >= 1
    assert stats.frames_out + lost + stats.nodes["src"].drops == LIVE_FRAMES
    assert stats.frames_out + lost == stats.frames_in
    assert stats.dropped == lost + stats.nodes["src"].drops
    ids = [r.frame_id for r in results]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(r["j.out"].pair == [r.frame_id, r.frame_id] for r in results)
    assert any(fid > 8 for fid in ids)  # frames after the crash came through the new worker


def test_restart_after_sigkill(tmp_path):
    g = live_graph(tmp_path)
    g.nodes["crashy"].params["at"] = 10**9  # never crashes by itself
    run = facegraph.run(g, executor="process", max_in_flight=3)
    it = iter(run)
    for _ in range(5):
        next(it)
    pid = run.options.extra["workers"]["crashy"]
    os.kill(pid, signal.SIGKILL)
    rest = list(it)
    assert run.options.extra["workers"]["crashy"] != pid
    assert rest and run.stats.frames_out + run.stats.nodes["crashy"].drops == run.stats.frames_in
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_restart_does_not_apply_to_file_sources(tmp_path):
    run = facegraph.run(live_graph(tmp_path, camera=False), executor="process")
    with pytest.raises(NodeFailure) as info:
        list(run)
    assert info.value.node == "crashy" and "exited with code 3" in info.value.cause
