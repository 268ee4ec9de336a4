"""Messages between processes: msgpack lists, tagged by their first item.

Data ``["d", sender, token, edge, frame_id, t_capture, source, fields]``, where
``edge`` indexes the run's list of ``node.port`` keys (``sink.`` for a sink's
completion) and each field is ``[name, 0, segment, offset, dtype, shape]`` (an
array in shared memory), ``[name, 1, value]`` (a plain msgpack value) or
``[name, 2, pickle]`` (anything else: tuples, numpy scalars, object arrays, so a
value comes back exactly as it left) or ``[name, 3, dtype, shape, bytes]`` (a small array, up to
``INLINE_MAX`` bytes, carried in the message: a packet of small arrays only needs no ring slot, no hold
and no release message back). Skip ``["s", edge, frame_id, t_capture,
source]``, end of stream ``["e", edge]``, release ``["r", receiver, token, ...]``,
credit ``["c", n]``, go ``["g"]``, stop ``["x"]``, halt (source: stop reading) ``["h"]``,
a peer restarted ``["k", worker, address]``, a restarted worker's fence ``["fence", lo, cut, eos_keys]``.
Worker → supervisor: ``ready``, ``seg``, ``start``, ``err``, ``stopreq``, ``live``, ``fenced``, ``bye``.
"""

from __future__ import annotations

import pickle
from typing import Any

import msgpack
import numpy as np

from ._shm import SegmentCache

SHM, PLAIN, PICKLED, INLINE = 0, 1, 2, 3
#: arrays up to this size travel inside the message (boxes, landmarks, AU values ...), bigger ones in rings
INLINE_MAX = 8192
_PLAIN_TYPES = (str, float, bool, bytes, type(None))


# one Packer per process, its bound method used directly: packb() builds a Packer per message, and a
# wrapper function is one more call on the hop path
pack = msgpack.Packer(use_bin_type=True).pack


def unpack(data: bytes) -> list[Any]:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def is_plain(v: Any) -> bool:
    """Does msgpack bring this back equal and of the same type?"""
    t = type(v)
    if t in _PLAIN_TYPES:
        return True
    if t is int:
        return -(2**63) <= v < 2**64
    if t is list:
        return all(is_plain(x) for x in v)
    if t is dict:
        return all(type(k) is str and is_plain(x) for k, x in v.items())
    return False


def shm_able(v: Any) -> bool:
    return type(v) is np.ndarray and not v.dtype.hasobject and v.dtype.fields is None


def small_field(name: str, v: Any) -> list[Any]:
    if type(v) in _PLAIN_TYPES or is_plain(v):  # the type test first: most small fields are plain scalars
        return [name, PLAIN, v]
    return [name, PICKLED, pickle.dumps(v, protocol=5)]


def inline_field(name: str, v: np.ndarray) -> list[Any]:
    return [name, INLINE, v.dtype.str, list(v.shape), v.tobytes()]


def small_value(item: list[Any]) -> Any:
    """The value of a ``[name, PLAIN | PICKLED, value]`` or ``[name, INLINE, dtype, shape, bytes]`` field
    (an inline array is a read-only view of the message's bytes, as a ring slot's array is read-only)."""
    kind = item[1]
    if kind == PLAIN:
        return item[2]
    if kind == INLINE:
        return np.frombuffer(item[4], dtype=item[2]).reshape(item[3])
    return pickle.loads(item[2])


def copy_fields(meta: list[list[Any]], cache: SegmentCache) -> dict[str, Any]:
    """Fields of a data message as values of their own: arrays copied out of the sender's slot."""
    return {
        item[0]: cache.view(item[2], item[3], item[4], item[5]).copy() if item[1] == SHM
        else small_value(item).copy() if item[1] == INLINE else small_value(item)
        for item in meta
    }
