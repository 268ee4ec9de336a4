"""One worker process: some nodes (one, a ``group:``, or the source), wired to the others by rings and Unix sockets.

The worker rebuilds its nodes from their specs (type name + parameters) and runs
them with the very ``NodeRunner``/``SourceRunner`` the inline executor uses, so
joins, skips, end of stream and statistics mean the same thing. Packets between
nodes of one worker are routed in-process; packets to other workers are written
once into the port's ring and announced by a small message.

Holds: every packet sent with shared arrays carries a token; each receiver sends
the token back (``["r", token]``) once it no longer needs the frame, and the slot
is reused when all receivers have done so. An output array that *is* one of the
worker's input views (a pass-through) is forwarded by reference instead of being
copied; the input is then held until the forwarded token comes back. An output
array a node made with ``Node.output_array`` already lies in a slot of its port's
ring and is handed on without a copy as well.

Restarts (``restart: N``, live sources): a new incarnation of a crashed worker
waits for the supervisor's fence before it touches any frame; the frames up to the
fence are lost and it emits skips for them, so every consumer's joins complete.
Consumers ignore what they already had for a frame (``last_seen``), since the
crashed incarnation may have sent part of a frame's outputs.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import resource
import signal
import sys
import time
import traceback
from collections import deque
from typing import Any

import numpy as np

from .._errors import NodeFailure
from .._node import StopRun
from .._ports import Packet
from .._registry import node_class
from .._run import FILE_IN_FLIGHT, FILE_IN_FLIGHT_BYTES, LIVE_IN_FLIGHT
from .._runner import EOS, EndOfStream, NodeRunner, Skip, SourceRunner, open_node
from .._stats import NodeStats
from ._links import Links
from ._shm import Ring, SegmentCache
from ._wire import INLINE_MAX, SHM, inline_field, pack, shm_able, small_field, small_value

log = logging.getLogger("facegraph")
MAIN = 0


def worker_main(cfg: dict[str, Any]) -> None:
    """Entry point of a spawned worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when we stop
    if cfg.get("nice"):  # a worker behind the heaviest one: it fills the gaps that one leaves (see _plan)
        try:
            os.nice(cfg["nice"])
        except OSError:  # not allowed here: run at the same priority as the others
            pass
    for module in cfg["modules"]:
        if module and module not in sys.modules:
            importlib.import_module(module)
    worker = Worker(cfg)
    try:
        worker.run()
    finally:
        worker.cleanup()


class Worker:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.index: int = cfg["index"]
        self.ppid = os.getppid()
        self.incarnation: int = cfg.get("incarnation", 0)
        self.addresses: list[str] = list(cfg["addresses"])
        self.links = Links(self.addresses[self.index], self.addresses)
        self.send = self.links.send  # (dest, bytes): never blocks
        self.backlog: deque[list[Any]] = deque()
        self.cache = SegmentCache()
        self.rings: dict[tuple[str, str], Ring] = {}
        self.n_segments = 0
        self.next_token = self.incarnation << 40  # tokens of a restarted worker never meet its predecessor's
        self.out_holds: dict[int, list[Any]] = {}  # token → [receivers still holding it, slots, children]
        self.allocated: dict[int, tuple[Any, ...]] = {}  # id(array) → (array, node, port, ring, gen, slot)
        self.copied: dict[str, int] = {}  # "node.port" → bytes copied into its ring (not made in place)
        self.local_tokens: dict[int, list[int]] = {}  # frame_id → tokens held for consumers in this worker
        self.sent_last: dict[int, int] = {}  # worker → last frame_id sent to it (for a restart's fence)
        self.eos_sent: dict[int, set[int]] = {}  # worker → edges whose end of stream it got
        self.fenced = self.incarnation == 0
        self.held: list[list[Any]] = []  # what came before the fence
        self.in_holds: dict[tuple[int, int], list[Any]] = {}  # (sender, token) → [refs, [array ids]]
        self.frame_holds: dict[int, list[tuple[int, int]]] = {}
        # id(view) → (view, its field as it came in [name, SHM, segment, offset, dtype, shape], hold)
        self.view_index: dict[int, tuple[np.ndarray, list[Any], tuple[int, int]]] = {}
        self.releases: dict[int, list[int]] = {}  # sender → tokens to give back when we next go idle
        self.notices = bytearray()  # skip / done messages for the supervisor, sent when we next go idle
        self.outq: dict[int, bytearray] = {}  # peer → messages posted to it, sent when we next go idle
        self.runners: dict[str, NodeRunner] = {}
        self.src: SourceRunner | None = None
        self.nodes: dict[str, Any] = {}
        self.stopping = False
        self.halted = False
        self.credits = 0
        self.admitted = 0
        self.bye_sent = False
        self.cpu_at_go: float | None = None  # this process's CPU seconds when frames started to flow
        self.last_live = time.monotonic()
        # routing: messages name an edge ("node.port") by its index in cfg["edges"]
        self.edges: list[str] = cfg["edges"]
        self.eid = {key: i for i, key in enumerate(self.edges)}
        local = cfg["local"]
        self.consumers: list[list[tuple[str, str]]] = [[tuple(x) for x in local.get(k, ())] for k in self.edges]
        self.last_seen = [-1] * len(self.edges)  # per edge: last frame_id delivered (a restart raises them all)
        self.routes: dict[str, dict[str, Route]] = {}  # node → output port → where its packets go
        for spec in cfg["nodes"]:
            for key in [k for k in self.edges if k.rpartition(".")[0] == spec["id"] and not k.endswith(".")]:
                route = Route(key, self.eid[key], cfg["remote"].get(key, ()), cfg["to_main"].get(key), self.consumers)
                self.routes.setdefault(spec["id"], {})[route.port] = route
        self.sinks: dict[str, int] = {nid: self.eid[f"{nid}."] for nid in cfg["sinks"]}
        self.joiners: list[NodeRunner] = []  # runners with several inputs: the only ones that hold frames back

    # ---- sockets -------------------------------------------------------------------------------
    def recv(self) -> list[Any] | None:
        if self.backlog:
            return self.backlog.popleft()
        links = self.links
        if links.messages:
            return links.messages.popleft()
        self.flush_releases()  # all that was read is handled: give back what we are done with, then wait
        while True:
            if links.wait(1000):
                return links.messages.popleft()
            if os.getppid() != self.ppid:  # the supervisor is gone: do not outlive it
                self.stopping = True
                return None

    def reclaim(self) -> None:
        """Take in pending releases (a ring found no free slot); keep everything else for later."""
        messages = self.links.messages
        while self.links.ready():
            msg = messages.popleft()
            if msg[0] == "r":
                self.on_release(msg)
            else:
                self.backlog.append(msg)

    # ---- life cycle ----------------------------------------------------------------------------
    def build(self) -> None:
        context = self.cfg["context"]
        context.allocator = self.allocate
        for spec in self.cfg["nodes"]:
            cls = node_class(spec["type"])
            try:
                node = cls(spec["id"], context, **spec["params"])
            except Exception as exc:
                raise NodeFailure(spec["id"], spec["type"], f"could not build: {exc}") from exc
            self.nodes[spec["id"]] = node
        for spec in self.cfg["nodes"]:
            open_node(self.nodes[spec["id"]])
            if self.nodes[spec["id"]].is_source():
                self.src = SourceRunner(self.nodes[spec["id"]])
            else:
                runner = NodeRunner(self.nodes[spec["id"]], spec["connected"], self.cfg["validate"])
                self.runners[spec["id"]] = runner
                if len(runner.connected) > 1:
                    self.joiners.append(runner)

    def run(self) -> None:
        try:
            self.build()
            gc.freeze()  # what the build made lives as long as the worker: keep it out of every collection
            self.send(MAIN, pack(["ready", self.index, self.incarnation]))
            while not self.stopping:
                msg = self.recv()
                if msg is None:
                    break
                if msg[0] == "g":
                    self.cpu_at_go = usage()[0]
                    break
                self.handle(msg)
            if self.src is not None and not self.stopping:
                self.run_source()
            while not self.stopping and not self.finished():
                msg = self.recv()
                if msg is not None:
                    self.handle(msg)
                    self.maybe_live()
        except NodeFailure as exc:
            self._flush_quietly()  # what the frames before the failure produced goes out first
            self.send(MAIN, pack(["err", exc.node, exc.type_name, exc.cause, exc.frame_id, exc.traceback]))
        except Exception as exc:  # a bug of the engine: still report it against this worker
            first = self.cfg["nodes"][0]
            self.send(
                MAIN,
                pack(["err", first["id"], first["type"], f"{type(exc).__name__}: {exc}", None, traceback.format_exc()]),
            )

    def _flush_quietly(self) -> None:
        """Send what waits for the next idle moment (outputs, completion notices, releases), if we still can."""
        try:
            self.flush_releases()
        except Exception:  # the failure being reported matters more than these
            pass

    def finished(self) -> bool:
        if self.out_holds:  # packets still out there: the common case, checked first (this runs per message)
            return False
        return all(r.closed for r in self.runners.values()) and (self.src is None or self.src.closed)

    def cleanup(self) -> None:
        """Flush and close what is still open (sinks keep partial files), report, remove our segments."""
        for runner in self.runners.values():
            if not runner.closed:
                try:
                    runner.node.flush()
                except Exception:
                    _log_one_line("node %s: error while flushing", runner.node.id)
                try:
                    runner.close()
                except Exception:
                    _log_one_line("node %s: error while closing", runner.node.id)
        if self.src is not None and not self.src.closed:
            try:
                self.src.close()
            except Exception:
                _log_one_line("source: error while closing")
        # slots still taken at the end (0 after a clean end): the tests' check that nothing leaks
        busy = {f"{n}.{p}": ring.busy() for (n, p), ring in self.rings.items()}
        self.allocated.clear()
        for ring in self.rings.values():
            ring.close()
        self.cache.close()
        self.view_index.clear()
        try:
            self.flush_releases()
            cpu, rss = usage()
            run_cpu = cpu - (cpu if self.cpu_at_go is None else self.cpu_at_go)  # what the frames cost, not the start
            bye = ["bye", self.index, self.stats_dicts(), cpu, rss, self.admitted, busy, self.copied, run_cpu,
                   self.incarnation]
            self.send(MAIN, pack(bye))
        finally:
            self.links.flush_all(2.0)  # what is still in an outbox (the bye, above all) goes out first
            self.links.close()

    def stats_dicts(self) -> dict[str, Any]:
        out = {}
        if self.src is not None:
            out[self.src.node.id] = self.src.stats.to_dict()
        for nid, runner in self.runners.items():
            out[nid] = runner.stats.to_dict()
        for nid, node in self.nodes.items():
            out.setdefault(nid, NodeStats(nid, type(node).type_name).to_dict())
        return out

    def maybe_live(self) -> None:
        now = time.monotonic()
        if now - self.last_live < 1.0:
            return
        self.last_live = now
        counts = {nid: [r.stats.packets_in, r.stats.packets_out, r.stats.drops] for nid, r in self.runners.items()}
        if self.src is not None:
            counts[self.src.node.id] = [0, self.src.stats.packets_out, self.src.stats.drops]
        self.send(MAIN, pack(["live", self.index, counts, *usage()]))

    # ---- the source ----------------------------------------------------------------------------
    def run_source(self) -> None:
        src = self.src
        node = src.node
        live = src.live  # a paced file (bench --realtime) is live too: it keeps LIVE_IN_FLIGHT and drops
        asked = self.cfg["max_in_flight"]
        limit = asked or (LIVE_IN_FLIGHT if live else FILE_IN_FLIGHT)
        self.send(MAIN, pack(["start", node.total_frames(), live, limit]))
        sized = bool(asked) or live  # a file's default limit is fitted to its frames' size at the first one
        max_frames = self.cfg["max_frames"]
        while not self.stopping and not self.halted:
            self.drain()
            if max_frames is not None and self.admitted >= max_frames:
                break
            if not live:
                while self.admitted - self.credits >= limit and not self.stopping and not self.halted:
                    msg = self.recv()
                    if msg is not None:
                        self.handle(msg)
                if self.stopping or self.halted:
                    break
            emissions = src.next_frame()
            if emissions is None:
                break
            if live and self.admitted - self.credits >= limit:
                src.next_id -= 1  # frame ids stay contiguous over the frames that enter
                src.stats.packets_out -= 1
                if src.next_id >= src.pace_warmup:  # as the pacing counts: frames lost while warming up are not
                    src.stats.drops += 1
                if self.allocated:
                    self.release_unclaimed(node.id)
                continue
            self.admitted += 1
            if not sized:
                sized = True
                fitted = in_flight_for(emissions)
                if fitted != limit:
                    limit = fitted
                    self.send(MAIN, pack(["inflight", limit]))
            self.dispatch(node.id, emissions)
            if self.allocated:
                self.release_unclaimed(node.id)
            self.flush_releases()  # the frame leaves now: the next read may wait for the decoder
            self.maybe_live()
        src.close()
        if not self.stopping:
            self.dispatch(node.id, [(p, EOS) for p in type(node).outputs])

    def drain(self) -> None:
        links = self.links
        while not self.backlog:
            if not links.ready():
                return
            self.handle(links.messages.popleft())
        while self.backlog:
            self.handle(self.backlog.popleft())

    # ---- messages ------------------------------------------------------------------------------
    def handle(self, msg: list[Any]) -> None:
        kind = msg[0]
        if kind == "d":
            if self.fenced:
                self.on_data(msg)
            else:
                self.held.append(msg)
        elif kind == "s":
            if not self.fenced:
                self.held.append(msg)
                return
            _, eid, fid, t, source = msg
            if fid <= self.last_seen[eid]:
                return
            self.last_seen[eid] = fid
            self.deliver(eid, Skip(fid, t, source))
            self.release_frames()
        elif kind == "e":
            if not self.fenced:
                self.held.append(msg)
                return
            self.deliver(msg[1], EOS)
        elif kind == "r":
            self.on_release(msg)
        elif kind == "c":
            self.credits += msg[1]
        elif kind == "x":
            self.stopping = True
        elif kind == "h":
            self.halted = True
        elif kind == "k":
            self.on_peer_restarted(msg[1], msg[2])
        elif kind == "fence":
            self.on_fence(msg[1], msg[2], msg[3])

    def on_data(self, msg: list[Any]) -> None:
        """A packet from another worker: its arrays become views of the sender's slot, held until we are done.

        The path every frame takes at every hop, written to touch little: a worker that waited for
        its input runs with cold caches, and each object visited costs microseconds then.
        """
        _, sender, token, eid, fid, t, source, meta = msg
        if fid <= self.last_seen[eid]:  # lost in a restart, or already had it
            if token >= 0:
                self.releases.setdefault(sender, []).append(token)
            return
        self.last_seen[eid] = fid
        fields: dict[str, Any] = {}
        if token < 0:  # nothing in shared memory
            for item in meta:
                fields[item[0]] = small_value(item)
        else:
            hold = (sender, token)
            ids: list[int] = []
            views = self.cache.views
            index = self.view_index
            for item in meta:
                if item[1] == SHM:
                    arr = views.get((item[2], item[3], item[4], *item[5]))
                    if arr is None:
                        arr = self.cache.view(item[2], item[3], item[4], item[5])
                    index[id(arr)] = (arr, item, hold)
                    ids.append(id(arr))
                    fields[item[0]] = arr
                else:
                    fields[item[0]] = small_value(item)
            self.in_holds[hold] = [1, ids]
        packet = Packet(fid, t, source, fields)
        for consumer, in_port in self.consumers[eid]:
            self.feed(consumer, in_port, packet)
        if token >= 0:
            if any(r.pending for r in self.joiners):  # a join still needs it: release with its frame
                self.frame_holds.setdefault(fid, []).append(hold)
            else:
                self.unref(hold)
        if self.frame_holds or self.local_tokens:
            self.release_frames()

    def deliver(self, eid: int, item: Any) -> None:
        for consumer, in_port in self.consumers[eid]:
            self.feed(consumer, in_port, item)

    def feed(self, consumer: str, in_port: str, item: Any) -> None:
        runner = self.runners[consumer]
        try:
            produced = runner.feed(in_port, item)
        except StopRun:
            self.send(MAIN, pack(["stopreq"]))
            produced = [(p, Skip(item.frame_id, item.t_capture, item.source)) for p in runner.cls.outputs]
        if consumer in self.sinks:
            if isinstance(item, EndOfStream):
                if runner.closed:
                    self.send(MAIN, pack(["e", self.sinks[consumer]]))
            elif item.frame_id not in runner.pending:
                self.notices += pack(["s", self.sinks[consumer], item.frame_id, item.t_capture, item.source])
        if produced:
            self.dispatch(consumer, produced)
        if self.allocated:
            self.release_unclaimed(consumer)

    def dispatch(self, node_id: str, emissions: list[tuple[str, Any]]) -> None:
        routes = self.routes[node_id]
        for port, item in emissions:
            route = routes[port]
            if type(item) is Packet or isinstance(item, Packet):
                if route.targets:
                    token, meta = self.encode(node_id, port, item, route)
                    data = pack(["d", self.index, token, route.eid, item.frame_id, item.t_capture, item.source, meta])
                    for d in route.targets:
                        self.post(d, data)
                    for d in route.dests:
                        self.sent_last[d] = item.frame_id
                if route.done:  # the supervisor counts the frame done here; it does not take the data
                    self.notices += pack(["s", route.eid, item.frame_id, item.t_capture, item.source])
            elif isinstance(item, EndOfStream):
                data = pack(["e", route.eid])
                for d in route.dests:
                    self.post(d, data)
                    self.eos_sent.setdefault(d, set()).add(route.eid)
                if route.main:
                    self.post(MAIN, data)
            else:
                data = pack(["s", route.eid, item.frame_id, item.t_capture, item.source])
                for d in route.dests:
                    self.post(d, data)
                    self.sent_last[d] = item.frame_id
                if route.main:
                    self.notices += data
            for consumer, in_port in route.local:
                self.feed(consumer, in_port, item)

    def post(self, dest: int, data: bytes) -> None:
        """Send when this worker next goes idle: what a frame's nodes emit for one peer leaves in one send,
        and the peer wakes once for it (order per peer is kept; the source sends at once, see run_source)."""
        queued = self.outq.get(dest)
        if queued is None:
            self.outq[dest] = bytearray(data)
        else:
            queued += data

    def encode(self, node_id: str, port: str, packet: Packet, route: Route) -> tuple[int, list[Any]]:
        meta: list[Any] = []
        fresh: list[tuple[int, np.ndarray]] = []
        slots: list[tuple[Ring, Any, int]] = []
        claimed: list[int] = []
        children: list[tuple[int, int]] = []
        index = self.view_index
        for name, v in packet.fields.items():
            entry = index.get(id(v))
            if entry is not None and entry[0] is v:  # a view we were sent: pass on where it lies
                where = entry[1]
                meta.append(where if where[0] == name else [name, SHM, where[2], where[3], where[4], where[5]])
                if entry[2] not in children:
                    children.append(entry[2])
                continue
            if shm_able(v):
                made = self.allocated.get(id(v)) if self.allocated else None
                if made is not None and made[0] is v and made[1] == node_id and made[2] == port:
                    # made in its slot: announce where it lies, copy nothing (the slot stays claimed by
                    # this packet even when the same array appears in several of its fields)
                    gen, slot = made[4], made[5]
                    meta.append([name, SHM, gen.name, slot * gen.slot_size, v.dtype.str, list(v.shape)])
                    if (made[3], gen, slot) not in slots:
                        slots.append((made[3], gen, slot))
                        claimed.append(id(v))
                    continue
                if v.nbytes <= INLINE_MAX:  # small: in the message itself, no slot to hold and give back
                    meta.append(inline_field(name, v))
                    continue
                fresh.append((len(meta), v))
                meta.append([name, SHM, "", 0, v.dtype.str, list(v.shape)])
            else:
                meta.append(small_field(name, v))
        for aid in claimed:
            self.allocated.pop(aid, None)
        if fresh:
            key = route.key
            self.copied[key] = self.copied.get(key, 0) + sum(a.nbytes for _, a in fresh)
            ring = self.ring(node_id, port)
            gen, slot, offsets = ring.write([a for _, a in fresh], self.reclaim)
            slots.append((ring, gen, slot))
            for (i, _), off in zip(fresh, offsets, strict=True):
                meta[i][2] = gen.name
                meta[i][3] = off
        if not slots and not children:
            return -1, meta
        token = self.next_token
        self.next_token += 1
        holders = list(route.targets)
        if slots and route.local:
            # consumers in this worker read the slot too, maybe after a join waited: hold it for them
            holders.append(self.index)
            self.local_tokens.setdefault(packet.frame_id, []).append(token)
        self.out_holds[token] = [holders, slots, children]
        for child in children:
            self.in_holds[child][0] += 1
        return token, meta

    def ring(self, node_id: str, port: str) -> Ring:
        ring = self.rings.get((node_id, port))
        if ring is None:
            ring = self.rings[(node_id, port)] = Ring(self.new_segment_name, self.cfg["nslots"])
        return ring

    def allocate(self, node_id: str, port: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """``Node.output_array`` here: a view of a fresh slot of the port's ring, when the port leaves this worker."""
        dtype = np.dtype(dtype)
        route = self.routes[node_id][port]
        if dtype.hasobject or dtype.fields is not None or not route.targets:
            return np.empty(shape, dtype)  # never travels through a ring: a plain array is cheaper
        ring = self.ring(node_id, port)
        gen, slot, arr = ring.array(shape, dtype, self.reclaim)
        self.allocated[id(arr)] = (arr, node_id, port, ring, gen, slot)
        return arr

    def release_unclaimed(self, node_id: str) -> None:
        """Give back the slots a node allocated but did not emit (its process() or frame has returned)."""
        for aid, made in list(self.allocated.items()):
            if made[1] == node_id:
                del self.allocated[aid]
                made[3].release(made[4], made[5])

    def new_segment_name(self) -> str:
        tag = f"{self.index}r{self.incarnation}" if self.incarnation else str(self.index)
        name = f"fg{self.cfg['run_id']}_{tag}_{self.n_segments}"
        self.n_segments += 1
        self.send(MAIN, pack(["seg", name]))  # the supervisor knows it before it exists
        return name

    def on_release(self, msg: list[Any]) -> None:
        """``["r", receiver, token, ...]``: that receiver is done with these packets."""
        who = msg[1]
        for token in msg[2:]:
            hold = self.out_holds.get(token)
            if hold is None or who not in hold[0]:
                continue
            hold[0].remove(who)
            if not hold[0]:
                self.drop_hold(token)

    def drop_hold(self, token: int) -> None:
        _, slots, children = self.out_holds.pop(token)
        for ring, gen, slot in slots:
            ring.release(gen, slot)
        for child in children:
            self.unref(child)

    def unref(self, key: tuple[int, int]) -> None:
        hold = self.in_holds.get(key)
        if hold is None:
            return
        hold[0] -= 1
        if hold[0] > 0:
            return
        del self.in_holds[key]
        for aid in hold[1]:
            entry = self.view_index.get(aid)
            if entry is not None and entry[2] == key:  # a view object may come back under a newer hold
                del self.view_index[aid]
        self.releases.setdefault(key[0], []).append(key[1])

    def flush_releases(self) -> None:
        """Before waiting: the frames' completion notices to the supervisor (all of them in one send, so
        it wakes once for a frame, not once per sink), and the releases of what we are done with."""
        if self.outq:
            for dest, queued in self.outq.items():
                self.send(dest, bytes(queued))
            self.outq.clear()
        if self.notices:
            self.send(MAIN, bytes(self.notices))
            self.notices.clear()
        if self.releases:
            for sender, tokens in self.releases.items():
                self.send(sender, pack(["r", self.index, *tokens]))
            self.releases.clear()

    def release_frames(self) -> None:
        """Give back the inputs (and own slots) of every frame no node of this worker still waits on."""
        waiting = [r.pending for r in self.joiners if r.pending]  # usually none: no join half done
        if self.frame_holds:
            for fid in list(self.frame_holds):
                if waiting and any(fid in p for p in waiting):
                    continue
                for key in self.frame_holds.pop(fid):
                    self.unref(key)
        if self.local_tokens:
            for fid in list(self.local_tokens):
                if waiting and any(fid in p for p in waiting):
                    continue
                for token in self.local_tokens.pop(fid):
                    self.on_release(["r", self.index, token])

    # ---- restarts ------------------------------------------------------------------------------
    def on_peer_restarted(self, dead: int, address: str) -> None:
        """Worker ``dead`` crashed and runs again at ``address``: forget its holds, report what it was sent."""
        self.links.forget(dead)  # what was queued for the dead one is lost with it
        self.outq.pop(dead, None)
        self.addresses[dead] = address
        for token, hold in list(self.out_holds.items()):
            if dead in hold[0]:
                hold[0] = [w for w in hold[0] if w != dead]
                if not hold[0]:
                    self.drop_hold(token)
        eos = sorted(self.eos_sent.get(dead, ()))
        self.send(MAIN, pack(["fenced", dead, self.index, self.sent_last.get(dead, -1), eos]))

    def on_fence(self, lo: int, cut: int, eos_keys: list[str]) -> None:
        """This (restarted) worker: frames ``lo..cut`` are lost; skip them on every output, then go on."""
        for fid in range(lo, cut + 1):
            for spec in self.cfg["nodes"]:
                nid = spec["id"]
                if nid in self.sinks:
                    self.send(MAIN, pack(["s", self.sinks[nid], fid, 0, ""]))
                for route in self.routes.get(nid, {}).values():
                    data = pack(["s", route.eid, fid, 0, ""])
                    for d in route.dests:
                        self.send(d, data)
                        self.sent_last[d] = fid
                    if route.main:
                        self.send(MAIN, data)
        self.last_seen = [max(seen, cut) for seen in self.last_seen]  # frames up to the fence are gone
        self.fenced = True
        held, self.held = self.held, []
        for msg in held:
            self.handle(msg)
        for eid in eos_keys:
            self.deliver(eid, EOS)


class Route:
    """Where one output port's packets go: other workers, the supervisor, nodes of this worker."""

    __slots__ = ("dests", "done", "eid", "key", "local", "main", "port", "targets")

    def __init__(
        self, key: str, eid: int, dests: list[int], main: str | None, consumers: list[list[tuple[str, str]]]
    ) -> None:
        self.key = key
        self.port = key.rpartition(".")[2]
        self.eid = eid
        self.dests = tuple(dests)
        self.main = main  # "data": the supervisor takes the packets; "done": only that the frame got here
        self.done = main == "done"
        self.targets = (*self.dests, MAIN) if main == "data" else self.dests  # who gets a data message
        self.local = consumers[eid]


def in_flight_for(emissions: list[tuple[str, Any]]) -> int:
    """A file source's limit for frames like this one: FILE_IN_FLIGHT, fewer where that many would hold more
    than FILE_IN_FLIGHT_BYTES of shared memory (4K frames), never fewer than LIVE_IN_FLIGHT."""
    size = 0
    for _, item in emissions:
        if isinstance(item, Packet):
            size += sum(v.nbytes for v in item.fields.values() if isinstance(v, np.ndarray))
    if size <= 0:
        return FILE_IN_FLIGHT
    return max(LIVE_IN_FLIGHT, min(FILE_IN_FLIGHT, FILE_IN_FLIGHT_BYTES // size))


def usage() -> tuple[float, float]:
    """(CPU seconds, peak RSS in MB) of this process."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    scale = 1 / (1024 * 1024) if sys.platform == "darwin" else 1 / 1024
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss * scale


def _log_one_line(message: str, *args: Any) -> None:
    """A close-time error as one line with its cause (the traceback under --debug): it never hides the run's own."""
    import sys

    exc = sys.exc_info()[1]
    log.error(message + ": %s: %s", *args, type(exc).__name__, exc)
    log.debug("traceback", exc_info=True)
