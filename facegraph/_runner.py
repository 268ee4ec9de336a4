"""Joins, skips, end of stream and timing around one node: the part both executors share.

Every output port carries exactly one packet per frame that entered the graph:
either data or a *skip* (the node emitted nothing for that frame). So a node
with several inputs always completes its join by frame_id, and a node that
emits nothing never stalls anyone downstream.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Any

from ._errors import NodeFailure, PortValueError
from ._node import Node, StopRun
from ._ports import Packet
from ._stats import NodeStats


@dataclass(frozen=True)
class Skip:
    """Nothing on this port for this frame."""

    frame_id: int
    t_capture: int
    source: str


class EndOfStream:
    """The last thing on every edge."""

    def __repr__(self) -> str:
        return "EOS"


EOS = EndOfStream()
Item = Packet | Skip | EndOfStream
Emission = tuple[str, Item]  # (output port, item)


class NodeRunner:
    """Wraps one opened node: buffers inputs per frame, calls process(), times it, emits outputs."""

    def __init__(self, node: Node, connected: list[str], validate: bool = True) -> None:
        self.node = node
        self.cls = type(node)
        self.connected = list(connected)
        self.pending: dict[int, dict[str, Packet | Skip]] = {}
        self.eos: set[str] = set()
        self.closed = False
        self.validate = validate
        self.stats = NodeStats(node.id, self.cls.type_name)
        self._idle_since = time.monotonic_ns()
        self._no_inputs: dict[str, Any] = dict.fromkeys(self.cls.inputs)  # copied per call: optional ports left None
        self._where = {port: f"output '{port}'" for port in self.cls.outputs}
        self._single = len(self.connected) == 1
        # ports whose values are checked against their type (``Any`` accepts everything: only copied)
        self._checked = {p: d.type for p, d in self.cls.outputs.items() if validate and d.type.name != "Any"}
        self._outputs = tuple(self.cls.outputs)

    def feed(self, port: str, item: Item) -> list[Emission]:
        """Take one item arriving on ``port``; return what the node emits as a result."""
        if isinstance(item, EndOfStream):
            self.eos.add(port)
            if self.eos >= set(self.connected):
                return self.finish()
            return []
        if self._single:  # nothing to join
            if type(item) is Packet:  # the common case, kept short: it runs once per node per frame
                self.stats.packets_in += 1
                kwargs = self._no_inputs.copy()
                kwargs[port] = item
                return self._run(kwargs, item.frame_id, item.t_capture, item.source)
            return self.call({port: item})
        slot = self.pending.setdefault(item.frame_id, {})
        slot[port] = item
        if len(slot) < len(self.connected):
            return []
        del self.pending[item.frame_id]
        return self.call(slot)

    def call(self, slot: dict[str, Packet | Skip]) -> list[Emission]:
        first = next(iter(slot.values()))
        frame_id, t_capture, source = first.frame_id, first.t_capture, first.source
        self.stats.packets_in += 1
        kwargs = self._no_inputs.copy()
        for port, item in slot.items():
            if isinstance(item, Skip):
                if not self.cls.inputs[port].optional:
                    return self._skip_all(frame_id, t_capture, source)
                continue
            kwargs[port] = item
        return self._run(kwargs, frame_id, t_capture, source)

    def _run(self, kwargs: dict[str, Any], frame_id: int, t_capture: int, source: str) -> list[Emission]:
        start = time.monotonic_ns()
        cpu0 = time.process_time_ns()
        waited = start - self._idle_since
        try:
            produced = self.node.process(**kwargs)
        except StopRun:
            raise
        except Exception as exc:
            raise NodeFailure(
                self.node.id,
                self.cls.type_name,
                f"{type(exc).__name__}: {exc}",
                frame_id=frame_id,
                traceback=traceback.format_exc(),
            ) from exc
        stats = self.stats
        stats.cpu_ns += time.process_time_ns() - cpu0
        stats.calls += 1
        end = time.monotonic_ns()
        self._idle_since = end
        stats.record(start, end, waited, frame_id)
        if not self.cls.outputs:
            self.stats.record_latency(end - t_capture)
        return self._emit(produced, frame_id, t_capture, source)

    def _emit(self, produced: Any, frame_id: int, t_capture: int, source: str) -> list[Emission]:
        if type(produced) is not dict:
            if produced is None:
                produced = {}
            elif not isinstance(produced, dict):
                raise NodeFailure(
                    self.node.id,
                    self.cls.type_name,
                    f"process() must return a dict of output port → fields or None, got {type(produced).__name__}",
                    frame_id=frame_id,
                )
        out: list[Emission] = []
        if not produced.keys() <= self.cls.outputs.keys():
            unknown = next(p for p in produced if p not in self.cls.outputs)
            raise NodeFailure(
                self.node.id,
                self.cls.type_name,
                f"process() returned unknown output '{unknown}'; outputs: {', '.join(self.cls.outputs)}",
                frame_id=frame_id,
            )
        checked = self._checked
        sent = 0
        for port in self._outputs:
            fields = produced.get(port)
            if fields is None:
                out.append((port, Skip(frame_id, t_capture, source)))
                continue
            if port in checked:
                try:
                    fields = checked[port].validate(fields, where=self._where[port])
                except PortValueError as exc:
                    raise NodeFailure(self.node.id, self.cls.type_name, str(exc), frame_id=frame_id) from None
            elif self.validate:  # ``Any``: a copy, so a node that reuses its dict cannot change what it sent
                fields = dict(fields)
            out.append((port, Packet(frame_id, t_capture, source, fields)))
            sent += 1
        self.stats.packets_out += sent
        return out

    def _skip_all(self, frame_id: int, t_capture: int, source: str) -> list[Emission]:
        self.stats.skipped += 1
        return [(port, Skip(frame_id, t_capture, source)) for port in self.cls.outputs]

    def finish(self) -> list[Emission]:
        """End of stream on every input: flush, close, pass EOS on."""
        try:
            self.node.flush()
        except Exception as exc:
            raise NodeFailure(
                self.node.id, self.cls.type_name, f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()
            ) from exc
        finally:
            self.close()
        return [(port, EOS) for port in self.cls.outputs]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.node.close()


def open_node(node: Node) -> None:
    """open() with failures turned into a NodeFailure that names the node."""
    try:
        node.open()
    except Exception as exc:
        from ._errors import FacegraphError

        cause = str(exc) if isinstance(exc, FacegraphError) else f"{type(exc).__name__}: {exc}"
        raise NodeFailure(
            node.id, type(node).type_name, f"could not open: {cause}", traceback=traceback.format_exc()
        ) from exc


class SourceRunner:
    """Numbers and stamps what a source yields.

    With ``pace_fps`` (or ``context.extra["pace_fps"]``, which every executor
    hands to the source node) frames come at a camera's pace: the runner sleeps
    until each tick, and when the graph is so far behind that the next tick has
    passed too, it reads and discards the frames a camera would have lost
    (counted in ``stats.drops``, except while ``extra["pace_warmup"]`` frames
    have not yet entered: warm-up; the process executor's source worker counts the
    frames it turns away at its in-flight limit by the same rule). A paced source is ``live``.
    """

    def __init__(self, node: Any, pace_fps: float | None = None) -> None:
        self.node = node
        self.cls = type(node)
        self.iterator = None
        self.next_id = 0
        self.stats = NodeStats(node.id, self.cls.type_name)
        self.closed = False
        extra = getattr(getattr(node, "context", None), "extra", None) or {}
        pace = pace_fps if pace_fps is not None else extra.get("pace_fps")
        self.period_ns = int(1e9 / float(pace)) if pace else 0
        self.pace_warmup = int(extra.get("pace_warmup", 0))
        self._tick0 = 0
        self._ticks = 0

    @property
    def live(self) -> bool:
        """True when frames may be dropped at the entrance: a live source, or a paced one."""
        return bool(self.period_ns) or bool(getattr(self.node, "live", False))

    def _pace(self) -> None:
        """Sleep until this frame's tick; first discard the frames whose time has passed."""
        now = time.monotonic_ns()
        if not self._ticks:
            self._tick0 = now
        while now >= self._tick0 + (self._ticks + 1) * self.period_ns:
            self._ticks += 1  # this frame's camera tick and the next have passed: a camera lost it
            next(self.iterator)
            if self.next_id >= self.pace_warmup:
                self.stats.drops += 1
        delay = self._tick0 + self._ticks * self.period_ns - now
        if delay > 0:
            time.sleep(delay / 1e9)
        self._ticks += 1

    def next_frame(self) -> list[Emission] | None:
        """The next frame's packets, or None at the end of the source."""
        if self.iterator is None:
            self.iterator = iter(self.node.frames())
        start = time.monotonic_ns()
        try:
            if self.period_ns:
                self._pace()
                start = time.monotonic_ns()
            produced = next(self.iterator)
        except StopIteration:
            return None
        except StopRun:
            return None
        except Exception as exc:
            from ._errors import FacegraphError

            cause = str(exc) if isinstance(exc, FacegraphError) else f"{type(exc).__name__}: {exc}"
            raise NodeFailure(
                self.node.id, self.cls.type_name, cause, frame_id=self.next_id, traceback=traceback.format_exc()
            ) from exc
        end = time.monotonic_ns()
        frame_id = self.next_id
        self.next_id += 1
        self.stats.record(start, end, 0, frame_id)
        self.stats.packets_out += 1
        return _source_emit(self.node, produced, frame_id, end)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.node.close()


def _source_emit(node: Any, produced: dict[str, Any], frame_id: int, t_capture: int) -> list[Emission]:
    source = node.source_name
    out: list[Emission] = []
    for port, decl in type(node).outputs.items():
        fields = produced.get(port)
        if fields is None:
            out.append((port, Skip(frame_id, t_capture, source)))
        else:
            try:
                fields = decl.type.validate(fields, where=f"output '{port}'")
            except PortValueError as exc:
                raise NodeFailure(node.id, type(node).type_name, str(exc), frame_id=frame_id) from None
            out.append((port, Packet(frame_id, t_capture, source, fields)))
    return out
