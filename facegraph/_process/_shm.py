"""Shared-memory segments and the per-port ring: the zero-copy half of the transport.

Segments are opened with ``shm_open`` + ``mmap`` directly instead of
``multiprocessing.shared_memory``: that class registers every segment it *opens*
with CPython's resource tracker, which then unlinks segments other processes still
use (python/cpython#82300, #104291). Here ownership is explicit: the producing
worker creates and unlinks its segments; the supervisor, which is told every name
before it is created, unlinks whatever is left as a backstop.

Names are ``/fg<runid>_<n>`` (well under macOS's 31-character limit), mode 0600.
"""

from __future__ import annotations

import mmap
import os
import re
from collections.abc import Callable

import numpy as np

try:  # POSIX only; the process executor is not offered where this is missing
    import _posixshmem
except ImportError:  # pragma: no cover - Windows
    _posixshmem = None

ALIGN = 64
SEGMENT_RE = re.compile(r"^fg[0-9a-f]{8}_")


def create_segment(name: str, size: int) -> mmap.mmap:
    """Create (exclusively) and map a segment of ``size`` bytes, readable by this user only."""
    fd = _posixshmem.shm_open("/" + name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
    try:
        os.ftruncate(fd, size)
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


def open_segment(name: str) -> mmap.mmap:
    """Map an existing segment (no resource tracker involved)."""
    fd = _posixshmem.shm_open("/" + name, os.O_RDWR, mode=0o600)
    try:
        return mmap.mmap(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def unlink_segment(name: str) -> bool:
    """Remove a segment's name; mappings stay valid until closed. False when already gone."""
    try:
        _posixshmem.shm_unlink("/" + name)
        return True
    except FileNotFoundError:
        return False


def leftover_segments(run_id: str | None = None) -> list[str]:
    """facegraph segments present in /dev/shm (Linux), optionally of one run."""
    try:
        names = os.listdir("/dev/shm")
    except OSError:
        return []
    prefix = f"fg{run_id}_" if run_id else None
    return sorted(n for n in names if SEGMENT_RE.match(n) and (prefix is None or n.startswith(prefix)))


def layout(arrays: list[np.ndarray]) -> tuple[list[int], int]:
    """Offsets (64-byte aligned) of each array in a slot, and the bytes needed."""
    offsets, pos = [], 0
    for arr in arrays:
        offsets.append(pos)
        pos += (arr.nbytes + ALIGN - 1) // ALIGN * ALIGN
    return offsets, max(pos, ALIGN)


class _Generation:
    """One segment of a ring: ``nslots`` slots of ``slot_size`` bytes."""

    def __init__(self, name: str, nslots: int, slot_size: int) -> None:
        self.name = name
        self.nslots = nslots
        self.slot_size = slot_size
        self.mm = create_segment(name, nslots * slot_size)
        self.buf = np.frombuffer(self.mm, dtype=np.uint8)
        self.free = list(range(nslots - 1, -1, -1))
        self.retired = False

    def close(self) -> None:
        self.buf = None
        try:
            self.mm.close()
        except BufferError:  # a view still exists here; the mapping goes with it
            pass
        unlink_segment(self.name)


class Ring:
    """The slots of one output port. The producer writes each packet's arrays into a slot once.

    ``acquire`` never fails: when no slot is free (after ``reclaim`` had its chance)
    or a packet is bigger than a slot, a new, larger generation is allocated and the
    old one is unlinked once its last slot comes back.
    """

    def __init__(self, new_name: Callable[[], str], nslots: int = 6) -> None:
        self.new_name = new_name
        self.nslots = max(2, nslots)
        self.gens: list[_Generation] = []

    def _grow(self, need: int, more_slots: bool) -> _Generation:
        cur = self.gens[-1] if self.gens else None
        size = max(need + need // 4, 4096)
        size = (size + 4095) // 4096 * 4096
        nslots = self.nslots
        if cur is not None:
            size = max(size, cur.slot_size if more_slots else 2 * cur.slot_size)
            nslots = cur.nslots * 2 if more_slots else cur.nslots
            cur.retired = True
            if len(cur.free) == cur.nslots:
                cur.close()
                self.gens.remove(cur)
        gen = _Generation(self.new_name(), nslots, size)
        self.gens.append(gen)
        return gen

    def acquire(self, need: int, reclaim: Callable[[], None] | None = None) -> tuple[_Generation, int]:
        """A free slot of at least ``need`` bytes: (generation, slot index)."""
        gen = self.gens[-1] if self.gens else None
        if gen is None or gen.slot_size < need:
            gen = self._grow(need, more_slots=False)
        elif not gen.free and reclaim is not None:
            reclaim()
        if not gen.free:
            gen = self._grow(need, more_slots=True)
        return gen, gen.free.pop()

    def array(
        self, shape: tuple[int, ...], dtype: np.dtype, reclaim: Callable[[], None] | None = None
    ) -> tuple[_Generation, int, np.ndarray]:
        """A writable array filling the start of a fresh slot (a producer makes its output in place)."""
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        gen, slot = self.acquire(max(nbytes, 1), reclaim)
        return gen, slot, np.ndarray(shape, dtype, gen.buf, slot * gen.slot_size)

    def write(
        self, arrays: list[np.ndarray], reclaim: Callable[[], None] | None = None
    ) -> tuple[_Generation, int, list[int]]:
        """Copy ``arrays`` into a fresh slot; return (generation, slot, absolute offset of each array)."""
        offsets, need = layout(arrays)
        gen, slot = self.acquire(need, reclaim)
        base = slot * gen.slot_size
        out = []
        for arr, off in zip(arrays, offsets, strict=True):
            start = base + off
            if arr.nbytes:
                dst = np.ndarray(arr.shape, arr.dtype, gen.buf, start)
                np.copyto(dst, arr, casting="no")
            out.append(start)
        return gen, slot, out

    def release(self, gen: _Generation, slot: int) -> None:
        gen.free.append(slot)
        if gen.retired and len(gen.free) == gen.nslots:
            gen.close()
            self.gens.remove(gen)

    def busy(self) -> int:
        return sum(g.nslots - len(g.free) for g in self.gens)

    def close(self) -> None:
        for gen in self.gens:
            gen.close()
        self.gens = []


class SegmentCache:
    """Consumer side: segments mapped once by name, arrays handed out as read-only views.

    A ring reuses a few slots with the same layout frame after frame, so the view of
    a (segment, offset, dtype, shape) is made once and handed out again: making an
    ndarray touches dozens of cold cache lines in a worker that has just woken (traced
    at 25-40 µs on a 2-core VM, against 1 µs warm), a dict hit a handful. Handing the
    same object out again is safe because a slot is rewritten only after every reader
    released the previous packet in it; a node must copy what it keeps anyway.
    """

    MAX_VIEWS = 1024  # slots × fields × shapes in use; past this the cache starts afresh

    def __init__(self) -> None:
        self.maps: dict[str, np.ndarray] = {}
        self.views: dict[tuple[object, ...], np.ndarray] = {}

    def view(self, name: str, offset: int, dtype: str, shape: list[int]) -> np.ndarray:
        key = (name, offset, dtype, *shape)
        arr = self.views.get(key)
        if arr is not None:
            return arr
        buf = self.maps.get(name)
        if buf is None:
            mm = open_segment(name)
            buf = self.maps[name] = np.frombuffer(mm, dtype=np.uint8)
        arr = np.ndarray(shape, dtype, buf, offset)
        arr.flags.writeable = False
        if len(self.views) >= self.MAX_VIEWS:
            self.views.clear()
        self.views[key] = arr
        return arr

    def forget(self, name: str) -> None:
        self.maps.pop(name, None)
        self.views = {k: v for k, v in self.views.items() if k[0] != name}

    def close(self) -> None:
        self.views.clear()
        self.maps.clear()
