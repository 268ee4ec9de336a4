"""The node base classes and their declarations: inputs, outputs and parameters.

A node declares its ports and parameters as class attributes, so the engine can
check a whole graph (types, wiring, parameters) before any node is opened, and a
worker process can rebuild any node from its type name and parameters alone.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ._errors import ParamError
from ._ports import PortType

_REQUIRED = object()


@dataclass(frozen=True)
class Input:
    """An input port. ``optional`` inputs may stay unconnected (and then arrive as None)."""

    type: PortType
    optional: bool = False
    doc: str = ""
    name: str = ""


@dataclass(frozen=True)
class Output:
    """An output port."""

    type: PortType
    doc: str = ""
    name: str = ""


@dataclass(frozen=True)
class Param:
    """A typed node parameter with an optional default, range and choices."""

    kind: type | tuple[type, ...]
    default: Any = _REQUIRED
    doc: str = ""
    ge: float | None = None
    le: float | None = None
    choices: tuple[Any, ...] | None = None
    name: str = ""

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def kind_name(self) -> str:
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        return " or ".join(k.__name__ for k in kinds)

    def check(self, value: Any) -> Any:
        """Return the value (ints widened to float where a float is asked for) or raise ParamError."""
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        if value is None and self.default is None:
            return None
        if isinstance(value, bool) and bool not in kinds and str in kinds and self.choices is not None:
            value = _yaml_word(value, self.choices)
        ok = any(_is_instance(value, k) for k in kinds)
        if not ok:
            raise ParamError(
                f"parameter '{self.name}' must be {self.kind_name()}, got {type(value).__name__} {value!r}"
            )
        if float in kinds and isinstance(value, int) and not isinstance(value, bool) and int not in kinds:
            value = float(value)
        if self.choices is not None and value not in self.choices:
            raise ParamError(
                f"parameter '{self.name}' must be one of {', '.join(repr(c) for c in self.choices)}, got {value!r}"
            )
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.ge is not None and value < self.ge:
                raise ParamError(f"parameter '{self.name}' must be >= {self.ge}, got {value!r}")
            if self.le is not None and value > self.le:
                raise ParamError(f"parameter '{self.name}' must be <= {self.le}, got {value!r}")
        return value


def _yaml_word(value: bool, choices: tuple[Any, ...]) -> Any:
    """The word YAML 1.1 read as a boolean (``off``, ``on``, ``yes``, ``no``), back, when it is one of the choices:
    ``--set au.postprocess=off`` and ``postprocess: off`` in a graph file mean the word, not False."""
    for word in (("on", "yes", "true") if value else ("off", "no", "false")):
        if word in choices:
            return word
    return value


def _is_instance(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


@dataclass
class RunContext:
    """What the run tells every node: where relative output paths go, and the run's switches."""

    output_dir: Path = field(default_factory=Path.cwd)
    graph_name: str = "graph"
    quiet: bool = True
    threads: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    #: set by the executor: ``allocator(node_id, port, shape, dtype)`` returns a writable array placed where
    #: the port's packets travel (the process executor: a slot of the port's shared-memory ring); None: numpy
    allocator: Callable[[str, str, tuple[int, ...], Any], Any] | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["allocator"] = None  # bound to one process's rings; never travels
        return state

    def output_path(self, path: str | Path) -> Path:
        """Resolve a sink's path against the run's output folder (absolute paths stay)."""
        path = Path(path).expanduser()
        return path if path.is_absolute() else self.output_dir / path


class StopRun(Exception):
    """Raised by a node (a display closed by the user, say) to end the run cleanly."""


class Node:
    """Base of every node: declare ports and parameters at the top, then override the life cycle.

    ``open()`` loads what the node needs (models, files) and runs in the process
    that will call ``process()``; ``close()`` always runs, also after an error.
    ``process(**inputs)`` gets one Packet per connected input (None for an
    unconnected optional input) for the same frame, and returns a dict of output
    port name → field dict, or None to emit nothing for this frame.
    """

    type_name: ClassVar[str] = ""
    inputs: ClassVar[dict[str, Input]] = {}
    outputs: ClassVar[dict[str, Output]] = {}
    params: ClassVar[dict[str, Param]] = {}
    #: threads the node can put to use (its libraries' pools); the process executor gives a worker at most
    #: the most its nodes declare, and its share of the cores
    threads: ClassVar[int] = 1
    #: placement hint: milliseconds of one core per frame on a typical input (640×480, one face) when not
    #: given: 0.2 for a one-thread node, 2.0 for a node that declares threads. ``HEAVY_MS`` (1 ms) or more
    #: gets a worker of its own under the process executor; less is fused with what feeds it.
    cost: ClassVar[float | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        inputs: dict[str, Input] = {}
        outputs: dict[str, Output] = {}
        params: dict[str, Param] = {}
        for base in reversed(cls.__mro__[1:]):
            inputs.update(getattr(base, "inputs", {}))
            outputs.update(getattr(base, "outputs", {}))
            params.update(getattr(base, "params", {}))
        for name, attr in list(vars(cls).items()):
            if isinstance(attr, Input):
                inputs[name] = Input(attr.type, attr.optional, attr.doc, name)
            elif isinstance(attr, Output):
                # an output may be named like an input ('frame' in, 'frame' out): declare it under
                # another attribute with Output(FRAME, name="frame")
                outputs[attr.name or name] = Output(attr.type, attr.doc, attr.name or name)
            elif isinstance(attr, Param):
                params[name] = Param(attr.kind, attr.default, attr.doc, attr.ge, attr.le, attr.choices, name)
            else:
                continue
            delattr(cls, name)
        cls.inputs, cls.outputs, cls.params = inputs, outputs, params

    def __init__(self, node_id: str = "", context: RunContext | None = None, **params: Any) -> None:
        self.id = node_id or self.type_name
        self.context = context or RunContext()
        for name, value in self.check_params(params).items():
            setattr(self, name, value)

    @classmethod
    def check_params(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        """Validate parameters against the declarations; return all of them, defaults filled in."""
        unknown = [k for k in given if k not in cls.params]
        if unknown:
            hint = difflib.get_close_matches(unknown[0], list(cls.params), n=1)
            known = ", ".join(cls.params) or "none"
            tail = f"; did you mean '{hint[0]}'?" if hint else f"; known parameters: {known}"
            raise ParamError(f"unknown parameter '{unknown[0]}'{tail}")
        values: dict[str, Any] = {}
        for name, spec in cls.params.items():
            if name in given:
                values[name] = spec.check(given[name])
            elif spec.required:
                raise ParamError(f"missing required parameter '{name}' ({spec.kind_name()}: {spec.doc})")
            else:
                values[name] = spec.default
        values.update(cls.validate_params(values) or {})
        return values

    @classmethod
    def validate_params(cls, values: dict[str, Any]) -> dict[str, Any] | None:
        """Cross-parameter checks; raise ParamError. Runs when the graph is built."""
        return None

    @classmethod
    def requirements(cls, values: dict[str, Any]) -> list[str]:
        """Problems that stop this node from running here (a missing model file, say), found
        without opening it, so ``facegraph validate`` can report them."""
        return []

    @classmethod
    def estimate_cost(cls, values: dict[str, Any]) -> float:
        """Milliseconds of one core per frame with these (checked) parameters, for placement; override where
        the cost depends on them or on the machine (0: the node has nothing to do here)."""
        if cls.cost is not None:
            return float(cls.cost)
        return 2.0 if cls.threads > 1 else 0.2

    @classmethod
    def link_requirements(cls, values: dict[str, Any], upstream: dict[str, dict[str, Any]]) -> list[str]:
        """Problems between this node and the nodes feeding it, found before anything runs (a model
        trained on windows of another length than its upstream node makes, say).

        ``upstream`` maps each connected input port to ``{"id", "type", "params"}`` of the node
        that feeds it (its parameters checked and defaulted). The default finds none.
        """
        return []

    @classmethod
    def is_source(cls) -> bool:
        return False

    def output_array(self, port: str, shape: int | tuple[int, ...], dtype: Any = "uint8") -> Any:
        """A new writable array for a field of output ``port``, made where that port's packets travel.

        Fill it and emit it as is (the very object) in ``port``'s fields: the process
        executor then hands it on without copying it (it already lies in the port's
        shared-memory ring). Under the inline executor this is ``np.empty``. An array
        that is not emitted is given back after ``process()`` (or the source's frame)
        returns, so keep no reference to it beyond that.
        """
        import numpy as np

        if port not in type(self).outputs:
            raise ValueError(f"node {self.id}: no output port '{port}'; outputs: {', '.join(type(self).outputs)}")
        shape = (shape,) if isinstance(shape, int) else tuple(int(n) for n in shape)
        allocator = self.context.allocator
        if allocator is None:
            return np.empty(shape, dtype)
        return allocator(self.id, port, shape, dtype)

    def open(self) -> None:
        """Acquire resources. Runs in the process that will call process()."""

    def process(self, **inputs: Any) -> dict[str, dict[str, Any]] | None:
        raise NotImplementedError(f"{type(self).__name__}.process")

    def flush(self) -> dict[str, dict[str, Any]] | None:
        """Called once at end of stream, before close(); sinks finish their files here."""
        return None

    def close(self) -> None:
        """Release resources. Always runs, also after an error."""


class Source(Node):
    """A node with no inputs that produces the frames of one source.

    ``frames()`` yields one dict of output port → fields per frame; the engine
    numbers the frames and stamps their capture time. ``live`` sources (cameras,
    streams) may have frames dropped at the entrance when the graph is busy; file
    sources never drop.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.inputs:
            raise TypeError(f"source {cls.__name__} cannot declare inputs")

    @classmethod
    def is_source(cls) -> bool:
        return True

    @classmethod
    def probe(cls, source: Any) -> str | None:
        """Why ``source`` is not something this node can run on (None: it can); batch runs skip what it refuses.

        The default accepts everything; a source that can check cheaply (opening a file's
        header) says so, so a folder with notes and thumbnails among the videos runs the videos.
        """
        return None

    @property
    def live(self) -> bool:
        return False

    def total_frames(self) -> int | None:
        """How many frames the source will yield, when known (for progress bars)."""
        return None

    @property
    def source_name(self) -> str:
        return self.id

    def frames(self) -> Iterator[dict[str, dict[str, Any]]]:
        raise NotImplementedError(f"{type(self).__name__}.frames")

    def process(self, **inputs: Any) -> dict[str, dict[str, Any]] | None:
        raise TypeError("sources produce frames through frames()")
