"""Port types and packets: what travels along an edge, and the check that it is well formed.

A port type is a struct of arrays (one row per face for per-face types) plus a
few small plain values (label names, timestamps). Its declared dtypes and shape
patterns are checked when a value is built, and they also fix how a value is
laid out in a shared-memory slot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._errors import PortValueError

ShapeItem = int | str  # 3, "N" (a symbol bound across fields), "2|3" (alternatives), "*" (anything)


@dataclass(frozen=True)
class Field:
    """One named field of a port type: an array (dtype + shape pattern) or a plain value."""

    name: str
    dtype: str | None = None
    shape: tuple[ShapeItem, ...] | None = None
    kind: type | tuple[type, ...] | None = None
    required: bool = True
    doc: str = ""

    @property
    def is_array(self) -> bool:
        return self.dtype is not None

    def describe(self) -> str:
        if self.is_array:
            dims = ",".join(str(s) for s in self.shape) if self.shape is not None else "..."
            text = f"{self.name}: {self.dtype}[{dims}]"
        else:
            kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
            text = f"{self.name}: {'|'.join(k.__name__ for k in kinds if k)}"
        return text if self.required else text + "?"


def array(name: str, dtype: str, *shape: ShapeItem, required: bool = True, doc: str = "") -> Field:
    """An array field, e.g. ``array("boxes", "float32", "N", 4)``."""
    return Field(name, dtype=np.dtype(dtype).name, shape=tuple(shape), required=required, doc=doc)


def value(name: str, kind: type | tuple[type, ...], *, required: bool = True, doc: str = "") -> Field:
    """A small plain field (str, int, float, list ...) that travels as metadata."""
    return Field(name, kind=kind, required=required, doc=doc)


_TYPES: dict[str, PortType] = {}


class PortType:
    """A named set of fields. Two ports connect when their types have the same name."""

    def __init__(self, name: str, *fields: Field, doc: str = "", register: bool = True) -> None:
        self.name = name
        self.fields: dict[str, Field] = {f.name: f for f in fields}
        self.doc = doc
        if register:
            _TYPES[name] = self

    def __repr__(self) -> str:
        return f"{self.name}{{{', '.join(f.describe() for f in self.fields.values())}}}"

    def accepts(self, other: PortType) -> bool:
        """Can an output of type ``other`` feed an input of this type?"""
        return "Any" in (self.name, other.name) or other.name == self.name

    def validate(self, values: Mapping[str, Any], *, where: str = "") -> dict[str, Any]:
        """Check ``values`` against the declared fields; return them with arrays as ndarrays.

        Raises PortValueError naming the field, the expected and the actual dtype or shape.
        """
        if self.name == "Any":
            return dict(values)
        prefix = f"{where}: " if where else ""
        out: dict[str, Any] = {}
        bound: dict[str, int] = {}
        for name, field in self.fields.items():
            if name not in values or values[name] is None:
                if field.required:
                    raise PortValueError(f"{prefix}{self.name} value lacks field '{name}' ({field.describe()})")
                continue
            item = values[name]
            if field.is_array:
                out[name] = _check_array(self.name, field, item, bound, prefix)
            else:
                if field.kind is not None and not isinstance(item, field.kind):
                    raise PortValueError(
                        f"{prefix}{self.name}.{name} must be {field.describe().split(': ')[1]}, "
                        f"got {type(item).__name__}"
                    )
                out[name] = item
        extra = set(values) - set(self.fields)
        if extra:
            raise PortValueError(
                f"{prefix}{self.name} has no field {', '.join(repr(e) for e in sorted(extra))}; "
                f"its fields are {', '.join(self.fields)}"
            )
        return out


def _check_array(type_name: str, field: Field, item: Any, bound: dict[str, int], prefix: str) -> np.ndarray:
    arr = np.asarray(item)
    label = f"{prefix}{type_name}.{field.name}"
    if arr.dtype.name != field.dtype:
        raise PortValueError(f"{label} must have dtype {field.dtype}, got {arr.dtype.name}")
    pattern = field.shape
    if pattern is None:
        return arr
    expected = "(" + ", ".join(str(p) for p in pattern) + ")"
    if arr.ndim != len(pattern):
        raise PortValueError(f"{label} must have shape {expected}, got shape {arr.shape}")
    for size, want in zip(arr.shape, pattern, strict=True):
        if want == "*":
            continue
        if isinstance(want, int):
            ok = size == want
        elif "|" in want:
            ok = str(size) in want.split("|")
        elif want in bound:
            ok = size == bound[want]
        else:
            bound[want] = size
            ok = True
        if not ok:
            binding = ", ".join(f"{k}={v}" for k, v in bound.items())
            raise PortValueError(
                f"{label} must have shape {expected}{' with ' + binding if binding else ''}, got shape {arr.shape}"
            )
    return arr


def port_type(name: str) -> PortType:
    """Look up a registered port type by name."""
    try:
        return _TYPES[name]
    except KeyError:
        raise KeyError(f"unknown port type '{name}'; known: {', '.join(sorted(_TYPES))}") from None


def port_types() -> dict[str, PortType]:
    return dict(_TYPES)


class Packet:
    """One port's value for one frame of one source.

    ``fields`` holds the port type's fields (numpy arrays and small plain values);
    they are readable as attributes: ``packet.image``, ``packet.boxes``.
    Arrays in a packet may be read-only views of shared memory: copy before writing.
    """

    __slots__ = ("fields", "frame_id", "source", "t_capture")

    def __init__(self, frame_id: int, t_capture: int, source: str, fields: dict[str, Any]) -> None:
        self.frame_id = frame_id
        self.t_capture = t_capture
        self.source = source
        self.fields = fields

    def __getattr__(self, name: str) -> Any:
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(f"packet has no field '{name}' (fields: {', '.join(self.fields)})") from None

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)

    def __contains__(self, name: str) -> bool:
        return name in self.fields

    def __repr__(self) -> str:
        desc = ", ".join(
            f"{k}={v.dtype.name}{list(v.shape)}" if isinstance(v, np.ndarray) else f"{k}={v!r}"
            for k, v in self.fields.items()
        )
        return f"Packet(frame_id={self.frame_id}, source={self.source!r}, {desc})"

    def same_as(self, other: Packet) -> bool:
        """Equal identity and equal field values (arrays compared exactly)."""
        if (self.frame_id, self.source) != (other.frame_id, other.source):
            return False
        return fields_equal(self.fields, other.fields)


def fields_equal(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)):
                return False
            if x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
                return False
        elif x != y:
            return False
    return True


ANY = PortType("Any", doc="accepts any port type (generic sinks)")
FRAME = PortType(
    "Frame",
    array("image", "uint8", "H", "W", 3, doc="the picture, BGR unless the source says rgb"),
    value("timestamp", (float, int), required=False, doc="media time in seconds"),
    value("fps", (float, int), required=False, doc="the source's nominal frame rate"),
    value("shot", int, required=False,
          doc="frames with another shot number do not continue this one (each image of an unrelated folder)"),
    doc="one video frame",
)
