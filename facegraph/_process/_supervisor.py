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
from .._ports import Packet
from .._run import Result, RunOptions
from .._stats import NodeStats, RunStats
from ._plan import THREAD_ENV, WorkerPlan, plan
from ._shm import SegmentCache, leftover_segments, unlink_segment
from ._wire import SHM, pack, unpack
from ._worker import worker_main

log = logging.getLogger("facegraph")
RUN_IDS: list[str] = []  # every run started by this process, so tests can check that each left nothing behind
_env_lock = threading.Lock()


def execute_process(graph: Graph, options: RunOptions, stats: RunStats) -> Iterator[Result]:
    """Nodes in worker processes linked by shared-memory rings; same results as ``execute_inline``."""
    sup = Supervisor(graph, options, stats)
    with _sigterm_as_interrupt():
        try:
            sup.start()
            yield from sup.results()
        finally:
            sup.shutdown()


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM takes the same clean path as Ctrl-C (only possible from the main thread)."""
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


class Supervisor:
    def __init__(self, graph: Graph, options: RunOptions, stats: RunStats) -> None:
        self.graph = graph
        self.options = options
        self.stats = stats
        self.run_id = secrets.token_hex(4)
        RUN_IDS.append(self.run_id)
        options.extra["run_id"] = self.run_id
        self.wanted = list(options.outputs or graph.leaf_outputs())
        self.wanted_keys = {str(r) for r in self.wanted}
        self.workers, self.collected = plan(graph, self.wanted)
        self.procs: dict[int, multiprocessing.process.BaseProcess] = {}
        self.byes: dict[int, list[Any]] = {}
        self.live: dict[int, list[Any]] = {}
        self.segments: set[str] = set()
        self.failure: NodeFailure | None = None
        self.frames: dict[int, list[Any]] = {}  # fid → [t_capture, source, reports, packets]
        self.next_fid = 0
        self.completed = 0
        self.pending: list[list[Any]] = []
        self.dir = tempfile.mkdtemp(prefix="fg")
        self.ctx = zmq.Context()
        self.inbox = self.ctx.socket(zmq.PULL)
        self.inbox.setsockopt(zmq.LINGER, 0)
        self.addresses = [f"ipc://{self.dir}/0"] + [f"ipc://{self.dir}/{w.index}" for w in self.workers]
        self.inbox.bind(self.addresses[0])
        self.control = self.ctx.socket(zmq.REP)
        self.control.setsockopt(zmq.LINGER, 0)
        self.control_address = f"ipc://{self.dir}/control"
        self.control.bind(self.control_address)
        options.extra["control"] = self.control_address
        self.peers: dict[int, zmq.Socket] = {}
        self.cache = SegmentCache()
        self.stop_timeout = float(options.extra.get("stop_timeout", 1.5))
        self.source_worker = self.workers[0].index
        restart = [s.id for s in graph.nodes.values() if s.restart]
        if restart:
            log.warning(
                "restart: is not supported by the process executor yet; a crash of %s ends the run", ", ".join(restart)
            )

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
        for w in self.workers:
            self.send(w.index, pack(["g"]))

    def worker_config(self, w: WorkerPlan, modules: list[str]) -> dict[str, Any]:
        from copy import copy

        context = copy(self.options.context)
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
            "local": w.local,
            "remote": w.remote,
            "to_main": w.to_main,
            "sinks": w.sinks,
            "context": context,
            "validate": self.options.validate,
            "max_in_flight": max(1, int(self.options.max_in_flight)),
            "max_frames": self.options.max_frames,
            "nslots": max(1, int(self.options.max_in_flight)) + 2,
        }

    # ---- messages ------------------------------------------------------------------------------
    def send(self, dest: int, data: bytes) -> None:
        sock = self.peers.get(dest)
        if sock is None:
            sock = self.peers[dest] = self.ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 0)
            sock.connect(self.addresses[dest])
        try:
            sock.send(data, zmq.NOBLOCK)
        except zmq.Again:
            pass  # only when the peer is gone; the sentinel tells us that

    def poll(self, timeout_ms: int | None) -> list[list[Any]]:
        """Wait for messages, a worker's death or a control request; handle what does not concern the caller."""
        poller = zmq.Poller()
        poller.register(self.inbox, zmq.POLLIN)
        poller.register(self.control, zmq.POLLIN)
        running = {p.sentinel: i for i, p in self.procs.items() if i not in self.byes and p.exitcode is None}
        for fd in running:
            poller.register(fd, zmq.POLLIN)
        events = dict(poller.poll(timeout_ms))
        out = self.drain()
        if self.control in events:
            self.answer_control()
        for fd, index in running.items():
            if fd in events:
                self.on_exit(index)
        return out

    def drain(self) -> list[list[Any]]:
        out = []
        while True:
            try:
                msg = unpack(self.inbox.recv(zmq.NOBLOCK))
            except zmq.Again:
                return out
            kind = msg[0]
            if kind == "seg":
                self.segments.add(msg[1])
            elif kind == "err":
                if self.failure is None:
                    _, node, type_name, cause, fid, tb = msg
                    self.failure = NodeFailure(node, type_name, cause, frame_id=fid, traceback=tb)
                    log.debug("%s\n%s", self.failure, tb)  # the caller reports it; the CLI writes the log file
            elif kind == "bye":
                self.byes[msg[1]] = msg
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
            if self.inbox.poll(50):  # an 'err' or 'bye' sent just before exiting may still be on its way
                self.pending.extend(self.drain())
        if index in self.byes or self.failure is not None:
            return
        w = self.workers[index - 1]
        code = proc.exitcode
        if code is not None and code < 0:
            cause = f"worker died by signal {signal.Signals(-code).name}"
        else:
            cause = f"worker exited with code {code}"
        nid = w.nodes[0]
        self.failure = NodeFailure(nid, self.graph.nodes[nid].type, cause)
        log.debug("%s (worker %s, pid %s)", self.failure, w.name, proc.pid)

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
            self.raise_failure()
            releases: dict[int, list[int]] = {}
            for msg in msgs:
                kind = msg[0]
                if kind == "d":
                    _, sender, token, node, port, fid, t, source, meta = msg
                    entry = self.frame(fid, t, source)
                    key = f"{node}.{port}"
                    if key in self.wanted_keys:
                        entry[3][key] = Packet(fid, t, source, self.copy_fields(meta))
                    if token >= 0:
                        releases.setdefault(sender, []).append(token)
                    entry[2] += 1
                elif kind == "s":
                    entry = self.frame(msg[3], msg[4], msg[5])
                    entry[2] += 1
                elif kind == "start":
                    if self.options.on_start:
                        self.options.on_start(msg[1])
            for sender, tokens in releases.items():
                self.send(sender, pack(["r", *tokens]))
            while self.next_fid in self.frames and self.frames[self.next_fid][2] >= expected:
                t, source, _, packets = self.frames.pop(self.next_fid)
                result = Result(self.next_fid, t, source, packets)
                self.next_fid += 1
                self.completed += 1
                self.send(self.source_worker, pack(["c", 1]))
                yield result

    def frame(self, fid: int, t: int, source: str) -> list[Any]:
        entry = self.frames.get(fid)
        if entry is None:
            entry = self.frames[fid] = [t, source, 0, {}]
        return entry

    def copy_fields(self, meta: list[list[Any]]) -> dict[str, Any]:
        import pickle

        fields: dict[str, Any] = {}
        for item in meta:
            if item[1] == SHM:
                fields[item[0]] = self.cache.view(item[2], item[3], item[4], item[5]).copy()
            elif item[1] == 1:
                fields[item[0]] = item[2]
            else:
                fields[item[0]] = pickle.loads(item[2])
        return fields

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
            self.fill_stats()
            self.cache.close()
            for name in self.segments | set(leftover_segments(self.run_id)):
                unlink_segment(name)
            for sock in self.peers.values():
                sock.close(0)
            self.inbox.close(0)
            self.control.close(0)
            self.ctx.term()
            shutil.rmtree(self.dir, ignore_errors=True)

    def fill_stats(self) -> None:
        nodes: dict[str, NodeStats] = {}
        for w in self.workers:
            proc = self.procs.get(w.index)
            bye = self.byes.get(w.index)
            got = {}
            cpu = rss = 0.0
            if bye is not None:
                _, _, dicts, cpu, rss, admitted = bye
                got = {nid: NodeStats.from_dict(d) for nid, d in dicts.items()}
                if w.index == self.source_worker:
                    self.stats.frames_in = admitted
            for nid in w.nodes:
                st = got.get(nid) or NodeStats(nid, self.graph.nodes[nid].type)
                st.worker, st.pid, st.cpu_s, st.peak_rss_mb = w.name, proc.pid if proc else 0, cpu, rss
                nodes[nid] = st
        if self.source_worker not in self.byes:
            self.stats.frames_in = self.completed
        source_id = self.workers[0].nodes[0]
        self.stats.dropped = nodes[source_id].drops if source_id in nodes else 0
        self.stats.nodes = {nid: nodes[nid] for nid in self.graph.order() if nid in nodes}


@contextmanager
def _thread_env(threads: int) -> Iterator[None]:
    """Thread-pool sizes a spawned worker sees from its first import on (numpy's BLAS reads them at load)."""
    with _env_lock:
        old = {k: os.environ.get(k) for k in THREAD_ENV}
        for k in THREAD_ENV:
            os.environ[k] = str(threads)
        try:
            yield
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
