"""The supervisor: starts the workers, collects results in frame order, and ends the run cleanly whatever happens.

It runs in the caller's process, inside the ``execute_process`` generator. It is
also the flow-control authority: a frame is complete when every terminal port has
reported it, and each completion is one credit back to the source worker.
On any exit (end of stream, a failing or killed worker, Ctrl-C, SIGTERM, the
caller stopping early) the ``finally`` below stops, joins and if need be kills
every worker and unlinks every segment of the run.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import zmq

from .._errors import NodeFailure
from .._graph import Graph
from .._osutil import sigterm_as_interrupt
from .._ports import Packet
from .._run import FILE_IN_FLIGHT, Result, RunOptions
from .._stats import NodeStats, RunStats
from ._links import POLLIN, Links
from ._plan import BLAS_ENV, POOL_ENV, WorkerPlan, edge_keys, plan
from ._shm import SegmentCache, leftover_segments, unlink_segment
from ._wire import copy_fields, pack
from ._worker import MAIN, worker_main

log = logging.getLogger("facegraph")
RUN_IDS: list[str] = []  # every run started by this process, so tests can check that each left nothing behind
_env_lock = threading.Lock()


def execute_process(graph: Graph, options: RunOptions, stats: RunStats) -> Iterator[Result]:
    """Nodes in worker processes linked by shared-memory rings; same results as ``execute_inline``."""
    sup = Supervisor(graph, options, stats)
    with sigterm_as_interrupt():
        try:
            sup.start()
            yield from sup.results()
        finally:
            sup.shutdown()


class Supervisor:
    def __init__(self, graph: Graph, options: RunOptions, stats: RunStats) -> None:
        self.graph = graph
        self.options = options
        self.stats = stats
        self.run_id = secrets.token_hex(4)
        RUN_IDS.append(self.run_id)
        options.extra["run_id"] = self.run_id
        # outputs=[]: the caller wants no data back (the CLI, the bench), only each frame's completion
        self.wanted = list(graph.leaf_outputs() if options.outputs is None else options.outputs)
        self.wanted_keys = {str(r) for r in self.wanted}
        self.workers, self.collected = plan(graph, self.wanted, placement=options.placement, costs=options.costs,
                                            cores=options.extra.get("cores"), renice=options.renice)
        self.edges = edge_keys(graph)  # data, skip and end messages name their edge by its index here
        self.procs: dict[int, multiprocessing.process.BaseProcess] = {}
        self.byes: dict[int, list[Any]] = {}
        self.live: dict[int, list[Any]] = {}
        self.segments: set[str] = set()
        self.failure: NodeFailure | None = None
        self.frames: dict[int, list[Any]] = {}  # fid → [t_capture, source, reports, packets]
        self.next_fid = 0
        self.completed = 0
        self.pending: list[list[Any]] = []
        self.dir = _private_dir()
        self.ctx = zmq.Context()
        # the processes' own messages travel over Unix sockets (``_links``); zmq serves the control socket
        self.addresses = [f"{self.dir}/0"] + [f"{self.dir}/{w.index}" for w in self.workers]
        self.links = Links(self.addresses[0], self.addresses)
        self.control = self.ctx.socket(zmq.REP)
        self.control.setsockopt(zmq.LINGER, 0)
        self.control_address = f"ipc://{self.dir}/control"
        self.control.bind(self.control_address)
        options.extra["control"] = self.control_address
        self.cache = SegmentCache()
        self.stop_timeout = float(options.extra.get("stop_timeout", 1.5))
        self.source_worker = self.workers[0].index
        # restart: N (live sources only): how many more times each worker may be started again
        self.restarts_left = {
            w.index: min(graph.nodes[n].restart for n in w.nodes) for w in self.workers if w.index != self.source_worker
        }
        self.incarnation = {w.index: 0 for w in self.workers}
        self.source_live: bool | None = None
        self.fencing: dict[int, dict[str, Any]] = {}  # restarted worker → the fence being built
        self.lost: set[int] = set()  # frames lost in restarts: never yielded
        self.lost_by_worker: dict[int, int] = {}
        self.kill_list: set[int] = set()  # workers that raised and are to be restarted
        self.cpu_at_go: float | None = None
        self._poller: Any = None
        self._poll_key: Any = None
        self._exits_seen: set[int] = set()  # pids whose death on_exit has handled

    # ---- start ---------------------------------------------------------------------------------
    def start(self) -> None:
        mp = multiprocessing.get_context("spawn")
        modules = sorted({self.graph.nodes[n].cls.__module__ for n in self.graph.nodes})
        for w in self.workers:
            cfg = self.worker_config(w, modules)
            proc = mp.Process(target=worker_main, args=(cfg,), name=f"facegraph-{w.name}", daemon=True)
            with _thread_env(w.threads):
                proc.start()
            self.procs[w.index] = proc
        ready: set[int] = set()
        while len(ready) < len(self.workers):
            for msg in self.poll(None):
                if msg[0] == "ready":
                    ready.add(msg[1])
            self.raise_failure()
        self.options.extra["workers"] = {w.name: self.procs[w.index].pid for w in self.workers}

        self.cpu_at_go = _own_cpu()
        for w in self.workers:
            self.send(w.index, pack(["g"]))

    def worker_config(self, w: WorkerPlan, modules: list[str], incarnation: int = 0) -> dict[str, Any]:
        from copy import copy

        context = copy(self.options.context)
        asked = self.options.max_in_flight
        context.threads = w.threads
        nodes = []
        for nid in w.nodes:
            spec = self.graph.nodes[nid]
            nodes.append({"id": nid, "type": spec.type, "params": dict(spec.params), "connected": list(spec.inputs)})
        return {
            "index": w.index,
            "name": w.name,
            "run_id": self.run_id,
            "addresses": self.addresses,
            "modules": [m for m in modules if m != "__main__"],
            "nodes": nodes,
            "edges": self.edges,
            "local": w.local,
            "remote": w.remote,
            "to_main": w.to_main,
            "sinks": w.sinks,
            "context": context,
            "validate": self.options.validate,
            "max_in_flight": None if asked is None else max(1, int(asked)),  # None: the source worker picks
            "max_frames": self.options.max_frames,
            "nslots": max(1, int(asked or FILE_IN_FLIGHT)) + 2,  # slots are touched only once used
            "incarnation": incarnation,
            "nice": w.nice,
        }

    # ---- messages ------------------------------------------------------------------------------
    def send(self, dest: int, data: bytes) -> None:
        self.links.send(dest, data)  # never blocks; dropped only when the peer is gone (its sentinel tells us)

    def poll(self, timeout_ms: int | None) -> list[list[Any]]:
        """Wait for messages, a worker's death or a control request; handle what does not concern the caller."""
        link_fds = self.links.fds()
        # every process whose exit is not handled yet, dead ones included: one that died since the last poll (and
        # was reaped by an exitcode check) still has a readable sentinel, so the poll below returns and on_exit runs
        running = {p.sentinel: i for i, p in self.procs.items() if i not in self.byes and p.pid not in self._exits_seen}
        key = (tuple(link_fds), tuple(running))
        if key != self._poll_key:  # the same sockets and processes as last time, as a rule: keep the poller
            poller = zmq.Poller()
            for fd, ev in link_fds:
                poller.register(fd, zmq.POLLIN if ev == POLLIN else zmq.POLLOUT)
            poller.register(self.control, zmq.POLLIN)
            for fd in running:
                poller.register(fd, zmq.POLLIN)
            self._poller, self._poll_key = poller, key
        events = dict(self._poller.poll(timeout_ms))
        self.links.on_events([(fd, ev) for fd, ev in link_fds if fd in events])
        out = self.drain()
        if self.control in events:
            self.answer_control()
        for fd, index in running.items():
            if fd in events:
                self._exits_seen.add(self.procs[index].pid)
                self.on_exit(index)
        return out

    def drain(self) -> list[list[Any]]:
        out = []
        messages = self.links.messages
        while True:
            if not messages and not self.links.wait(0):
                return out
            msg = messages.popleft()
            kind = msg[0]
            if kind == "seg":
                self.segments.add(msg[1])
            elif kind == "err":
                _, node, type_name, cause, fid, tb = msg
                index = self.worker_of(node)
                if index is not None and self.may_restart(index):
                    log.warning("node %s failed (%s); restarting its worker\n%s", node, cause, tb or "")
                    self.kill_list.add(index)
                    self.procs[index].kill()  # its sentinel fires; on_exit starts the next incarnation
                elif self.failure is None:
                    self.failure = NodeFailure(node, type_name, cause, frame_id=fid, traceback=tb)
                    log.debug("%s\n%s", self.failure, tb)  # the caller reports it; the CLI writes the log file
            elif kind == "bye":
                if msg[-1] == self.incarnation.get(msg[1], 0) and msg[1] not in self.kill_list:
                    self.byes[msg[1]] = msg
            elif kind == "ready" and len(msg) > 2 and msg[2] > 0:
                self.on_restarted_ready(msg[1])
            elif kind == "fenced":
                self.on_fenced(msg[1], msg[2], msg[3], msg[4])
            elif kind == "live":
                self.live[msg[1]] = msg
            elif kind == "stopreq":
                self.send(self.source_worker, pack(["h"]))
            else:
                out.append(msg)

    def on_exit(self, index: int) -> None:
        proc = self.procs[index]
        proc.join(0.5)
        deadline = time.monotonic() + 0.3
        while index not in self.byes and self.failure is None and time.monotonic() < deadline:
            if self.links.wait(50):  # an 'err' or 'bye' sent just before exiting may still be on its way
                self.pending.extend(self.drain())
        if index in self.byes or self.failure is not None:
            return
        w = self.workers[index - 1]
        code = proc.exitcode
        if code is not None and code < 0:
            cause = f"worker died by signal {signal.Signals(-code).name}"
        else:
            cause = f"worker exited with code {code}"
        if index in self.kill_list or self.may_restart(index):
            self.kill_list.discard(index)
            self.restart(index, cause)
            return
        nid = w.nodes[0]
        self.failure = NodeFailure(nid, self.graph.nodes[nid].type, cause)
        log.debug("%s (worker %s, pid %s)", self.failure, w.name, proc.pid)

    # ---- restarts ------------------------------------------------------------------------------
    def worker_of(self, node_id: str) -> int | None:
        for w in self.workers:
            if node_id in w.nodes:
                return w.index
        return None

    def may_restart(self, index: int) -> bool:
        """restart: N applies to live sources only: a file source's run fails fast, as without it."""
        return bool(self.source_live) and self.restarts_left.get(index, 0) > 0 and index not in self.fencing

    def restart(self, index: int, cause: str) -> None:
        """Start the next incarnation of worker ``index``; it waits for the fence (``on_fenced``)."""
        w = self.workers[index - 1]
        self.restarts_left[index] -= 1
        self.incarnation[index] += 1
        inc = self.incarnation[index]
        log.warning(
            "worker %s (%s) crashed: %s; restarting it (%d restart(s) left)",
            w.name, ", ".join(w.nodes), cause, self.restarts_left[index],
        )
        self.addresses[index] = f"{self.dir}/{index}r{inc}"
        self.links.forget(index)
        modules = sorted({self.graph.nodes[n].cls.__module__ for n in self.graph.nodes})
        cfg = self.worker_config(w, modules, inc)
        cfg["addresses"] = list(self.addresses)
        proc = multiprocessing.get_context("spawn").Process(
            target=worker_main, args=(cfg,), name=f"facegraph-{w.name}-{inc}", daemon=True
        )
        with _thread_env(w.threads):
            proc.start()
        self.procs[index] = proc
        self.options.extra["workers"][w.name] = proc.pid
        self.fencing[index] = {"waiting": None, "cut": -1, "eos": set()}

    def on_restarted_ready(self, index: int) -> None:
        """The new incarnation is up: every other worker forgets the dead one and says what it sent it."""
        peers = [i for i, p in self.procs.items() if i != index and i not in self.byes and p.exitcode is None]
        self.fencing[index]["waiting"] = set(peers)
        self.send(index, pack(["g"]))
        for i in peers:
            self.send(i, pack(["k", index, self.addresses[index]]))
        if not peers:
            self.on_fenced(index, None, -1, [])

    def on_fenced(self, index: int, who: int | None, last: int, eos: list[str]) -> None:
        fence = self.fencing.get(index)
        if fence is None:
            return
        fence["cut"] = max(fence["cut"], last)
        fence["eos"].update(eos)
        if who is not None and fence["waiting"] is not None:
            fence["waiting"].discard(who)
        if fence["waiting"]:
            return
        del self.fencing[index]
        lo, cut = self.next_fid, fence["cut"]
        lost = range(lo, cut + 1)
        self.lost.update(lost)
        self.lost_by_worker[index] = self.lost_by_worker.get(index, 0) + len(lost)
        if lost:
            log.warning("frames %d..%d were lost in the restart of worker %s", lo, cut, self.workers[index - 1].name)
        self.send(index, pack(["fence", lo, cut, sorted(fence["eos"])]))

    def raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure

    def answer_control(self) -> None:
        try:
            self.control.recv(zmq.NOBLOCK)
        except zmq.Again:
            return
        nodes: dict[str, Any] = {}
        workers: dict[str, Any] = {}
        for index, msg in self.live.items():
            _, _, counts, cpu, rss = msg
            w = self.workers[index - 1]
            workers[w.name] = {"pid": self.procs[index].pid, "cpu_s": cpu, "peak_rss_mb": rss, "nodes": w.nodes}
            for nid, (pin, pout, drops) in counts.items():
                nodes[nid] = {"packets_in": pin, "packets_out": pout, "drops": drops}
        reply = {"frames_out": self.completed, "in_flight": len(self.frames), "nodes": nodes, "workers": workers}
        self.control.send(pack([reply]))

    # ---- results -------------------------------------------------------------------------------
    def results(self) -> Iterator[Result]:
        expected = len(self.collected)
        while len(self.byes) < len(self.workers):
            waiting, self.pending = self.pending, []
            msgs = waiting + self.poll(0 if waiting else None) + self.pending
            self.pending = []
            releases: dict[int, list[int]] = {}
            for msg in msgs:
                kind = msg[0]
                if kind == "d":
                    _, sender, token, eid, fid, t, source, meta = msg
                    entry = self.frame(fid, t, source)
                    key = self.edges[eid]
                    if key in self.wanted_keys:
                        entry[3][key] = Packet(fid, t, source, copy_fields(meta, self.cache))
                    if token >= 0:
                        releases.setdefault(sender, []).append(token)
                    entry[2].add(key)
                elif kind == "s":
                    entry = self.frame(msg[2], msg[3], msg[4])
                    entry[2].add(self.edges[msg[1]])
                elif kind == "inflight":  # a file's limit, fitted to the size of its first frame
                    self.options.extra["max_in_flight"] = msg[1]
                elif kind == "start":
                    self.source_live = bool(msg[2]) if len(msg) > 2 else False
                    if len(msg) > 3:
                        self.options.extra["max_in_flight"] = msg[3]  # what the source worker admits at once
                    restartable = [n for i, k in self.restarts_left.items() if k for n in self.workers[i - 1].nodes]
                    if restartable and not self.source_live:
                        log.warning(
                            "restart: applies to live sources only; with this file source a crash of %s "
                            "still ends the run", ", ".join(restartable),
                        )
                    if self.options.on_start:
                        self.options.on_start(msg[1])
            for sender, tokens in releases.items():
                self.send(sender, pack(["r", MAIN, *tokens]))
            while self.next_fid in self.frames and len(self.frames[self.next_fid][2]) >= expected:
                fid = self.next_fid
                t, source, _, packets = self.frames.pop(fid)
                self.next_fid += 1
                self.send(self.source_worker, pack(["c", 1]))
                if fid in self.lost:  # lost in a restart: it left the graph, but has no result
                    self.lost.discard(fid)
                    continue
                self.completed += 1
                yield Result(fid, t, source, packets)
            self.raise_failure()  # after the frames that completed before it

    def frame(self, fid: int, t: int, source: str) -> list[Any]:
        entry = self.frames.get(fid)
        if entry is None:
            entry = self.frames[fid] = [t, source, set(), {}]
        return entry


    # ---- the end -------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop, join, kill if need be; collect statistics; unlink every segment; close sockets."""
        try:
            alive = [i for i, p in self.procs.items() if p.exitcode is None]
            if any(i not in self.byes for i in alive):
                for i in alive:
                    self.send(i, pack(["x"]))
            deadline = time.monotonic() + self.stop_timeout
            for proc in self.procs.values():
                proc.join(max(0.0, deadline - time.monotonic()))
            for proc in self.procs.values():
                if proc.exitcode is None:
                    proc.kill()
            for proc in self.procs.values():
                proc.join(2.0)
            self.drain()
        finally:
            try:
                self.fill_stats()
            finally:
                self.cache.close()
                for name in self.segments | set(leftover_segments(self.run_id)):
                    unlink_segment(name)
                self.links.close()
                self.ctx.destroy(linger=0)  # closes every socket first, so this never waits
                shutil.rmtree(self.dir, ignore_errors=True)

    def fill_stats(self) -> None:
        own = _own_cpu() - self.cpu_at_go if self.cpu_at_go is not None else 0.0
        self.stats.cpu_s += own
        self.stats.placement = [w.describe() for w in self.workers]
        self.stats.placement.append({"worker": "supervisor", "nodes": [], "why": "supervisor", "threads": 1,
                                     "load_ms": 0.0, "costs": {}, "cpu_s": round(own, 3)})
        nodes: dict[str, NodeStats] = {}
        for w in self.workers:
            proc = self.procs.get(w.index)
            bye = self.byes.get(w.index)
            got = {}
            cpu = rss = 0.0
            if bye is not None:
                _, _, dicts, cpu, rss, admitted, busy, copied, run_cpu, _ = bye
                self.stats.cpu_s += run_cpu
                self.stats.placement[w.index - 1]["cpu_s"] = round(run_cpu, 3)
                self.options.extra.setdefault("ring_busy", {}).update(busy)
                self.options.extra.setdefault("ring_copied_bytes", {}).update(copied)
                got = {nid: NodeStats.from_dict(d) for nid, d in dicts.items()}
                if w.index == self.source_worker:
                    self.stats.frames_in = admitted
            for nid in w.nodes:
                st = got.get(nid) or NodeStats(nid, self.graph.nodes[nid].type)
                st.worker, st.pid, st.cpu_s, st.peak_rss_mb = w.name, proc.pid if proc else 0, cpu, rss
                nodes[nid] = st
            for nid in w.nodes:
                nodes[nid].drops += self.lost_by_worker.get(w.index, 0)
        if self.source_worker not in self.byes:
            self.stats.frames_in = self.completed + sum(self.lost_by_worker.values())
        source_id = self.workers[0].nodes[0]
        self.stats.dropped = nodes[source_id].drops if source_id in nodes else 0
        self.stats.dropped += sum(self.lost_by_worker.values())
        self.stats.nodes = {nid: nodes[nid] for nid in self.graph.order() if nid in nodes}


def _own_cpu() -> float:
    """CPU seconds of this (the supervisor's) process so far, all its threads."""
    t = os.times()
    return t.user + t.system


def _private_dir() -> str:
    """The run's directory of sockets: private (mkdtemp makes it 0700), and short, since a Unix socket
    path may not exceed 104 bytes on macOS (108 on Linux), where $TMPDIR can be long."""
    base = tempfile.gettempdir()
    if len(base) > 60 and os.path.isdir("/tmp"):
        base = "/tmp"
    return tempfile.mkdtemp(prefix="fg", dir=base)


@contextmanager
def _thread_env(threads: int) -> Iterator[None]:
    """Thread-pool sizes a spawned worker sees from its first import on (numpy's BLAS reads them at load)."""
    with _env_lock:
        old = {k: os.environ.get(k) for k in POOL_ENV + BLAS_ENV}
        for k in POOL_ENV:
            os.environ[k] = str(threads)
        for k in BLAS_ENV:
            os.environ[k] = "1"  # tiny products only; an idle OpenBLAS thread spins (see _plan)
        try:
            yield
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
