"""Graphs: declared in YAML or composed in Python, checked whole before any frame flows."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import GraphError, ParamError
from ._node import Node
from ._registry import node_class
from ._yamlio import LineDict, dump_yaml, load_yaml

NODE_KEYS = ("type", "params", "inputs", "group", "restart")
TOP_KEYS = ("name", "description", "nodes")


@dataclass(frozen=True)
class OutputRef:
    """``node.port``: the output a graph input is joined to."""

    node: str
    port: str

    def __str__(self) -> str:
        return f"{self.node}.{self.port}"

    @classmethod
    def parse(cls, text: Any) -> OutputRef:
        if isinstance(text, OutputRef):
            return text
        if not isinstance(text, str) or text.count(".") != 1 or not all(text.split(".")):
            raise GraphError(f"input reference must read 'node.port', got {text!r}")
        node, port = text.split(".")
        return cls(node, port)


@dataclass
class NodeSpec:
    """One node of a graph as declared: everything a worker needs to rebuild it."""

    id: str
    type: str
    params: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, OutputRef] = field(default_factory=dict)
    group: str | None = None
    restart: int = 0
    line: int | None = None
    lines: dict[str, int] = field(default_factory=dict, compare=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NodeSpec):
            return NotImplemented
        return (self.id, self.type, self.params, self.inputs, self.group, self.restart) == (
            other.id,
            other.type,
            other.params,
            other.inputs,
            other.group,
            other.restart,
        )

    @property
    def cls(self) -> type[Node]:
        return node_class(self.type)

    def build(self, context: Any = None) -> Node:
        """Instantiate the node (parameters validated, nothing opened)."""
        return self.cls(self.id, context, **self.params)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.params:
            out["params"] = dict(self.params)
        if self.inputs:
            out["inputs"] = {k: str(v) for k, v in self.inputs.items()}
        if self.group:
            out["group"] = self.group
        if self.restart:
            out["restart"] = self.restart
        return out


class NodeHandle:
    """What ``Graph.add`` returns: its attributes are the node's output ports (``cam.frame``)."""

    def __init__(self, spec: NodeSpec) -> None:
        self._spec = spec

    @property
    def id(self) -> str:
        return self._spec.id

    def __getattr__(self, port: str) -> OutputRef:
        if port.startswith("_"):
            raise AttributeError(port)
        outputs = self._spec.cls.outputs
        if port not in outputs:
            hint = difflib.get_close_matches(port, list(outputs), n=1)
            tail = f"; did you mean '{hint[0]}'?" if hint else f"; outputs: {', '.join(outputs) or 'none'}"
            raise GraphError(f"no output '{port}'{tail}", node=self._spec.id, type_name=self._spec.type)
        return OutputRef(self._spec.id, port)

    def __repr__(self) -> str:
        return f"<node {self._spec.id} ({self._spec.type})>"


class Graph:
    """A dataflow graph of typed nodes."""

    def __init__(self, name: str = "graph", *, file: str | None = None, description: str = "") -> None:
        self.name = name
        self.description = description
        self.file = file
        self.nodes: dict[str, NodeSpec] = {}

    # ---- building ---------------------------------------------------------------------------
    def add(
        self,
        type_name: str,
        *,
        id: str | None = None,  # noqa: A002 - mirrors the YAML key
        group: str | None = None,
        restart: int = 0,
        **kwargs: Any,
    ) -> NodeHandle:
        """Add a node: keyword arguments that are ``node.port`` references are inputs, the rest parameters."""
        cls = node_class(type_name)
        node_id = id or self._fresh_id(type_name)
        inputs = {k: v for k, v in kwargs.items() if isinstance(v, (OutputRef, NodeHandle))}
        params = {k: v for k, v in kwargs.items() if k not in inputs}
        refs = {}
        for port, ref in inputs.items():
            if isinstance(ref, NodeHandle):
                outs = list(ref._spec.cls.outputs)
                if len(outs) != 1:
                    raise GraphError(
                        f"input '{port}' is given node '{ref.id}', which has outputs {', '.join(outs)}; "
                        "name one as node.port",
                        node=node_id,
                        type_name=type_name,
                    )
                ref = OutputRef(ref.id, outs[0])
            refs[port] = ref
        spec = NodeSpec(node_id, cls.type_name, params, refs, group, restart)
        self._insert(spec)
        return NodeHandle(spec)

    def _fresh_id(self, type_name: str) -> str:
        base = type_name.replace(".", "_")
        if base not in self.nodes:
            return base
        n = 2
        while f"{base}_{n}" in self.nodes:
            n += 1
        return f"{base}_{n}"

    def _insert(self, spec: NodeSpec) -> None:
        if spec.id in self.nodes:
            raise self._error(f"duplicate node id '{spec.id}'", spec)
        if not isinstance(spec.id, str) or not spec.id or "." in spec.id:
            raise self._error(f"node id must be a non-empty name without dots, got {spec.id!r}", spec)
        self.nodes[spec.id] = spec
        try:
            self._check_node(spec)
        except GraphError:
            del self.nodes[spec.id]
            raise

    def handle(self, node_id: str) -> NodeHandle:
        return NodeHandle(self.nodes[node_id])

    def set_param(self, node_id: str, key: str, value: Any) -> None:
        """Change one parameter (``--set node.key=value``), checked like the rest."""
        self.set_params(node_id, {key: value})

    def set_params(self, node_id: str, params: dict[str, Any]) -> None:
        """Change several parameters of one node at once, then check them together: a pair that only makes sense
        together (``backend=onnx`` with its ``model``) is valid in either order."""
        if node_id not in self.nodes:
            hint = difflib.get_close_matches(node_id, list(self.nodes), n=1)
            tail = f"; did you mean '{hint[0]}'?" if hint else f"; nodes: {', '.join(self.nodes)}"
            raise GraphError(f"--set names no node '{node_id}'{tail}", file=self.file)
        spec = self.nodes[node_id]
        old = dict(spec.params)
        spec.params.update(params)
        try:
            self._check_params(spec)
        except GraphError:
            spec.params = old
            raise

    # ---- checking ---------------------------------------------------------------------------
    def _error(self, message: str, spec: NodeSpec | None = None, key: str | None = None) -> GraphError:
        line = None
        if spec is not None:
            line = spec.lines.get(key, spec.line) if key else spec.line
        return GraphError(
            message,
            file=self.file,
            line=line,
            node=spec.id if spec else None,
            type_name=spec.type if spec else None,
        )

    def _check_params(self, spec: NodeSpec) -> dict[str, Any]:
        try:
            return spec.cls.check_params(spec.params)
        except ParamError as exc:
            name = next((k for k in spec.params if f"'{k}'" in exc.detail), None)
            line = spec.lines.get(f"params.{name}") if name else spec.lines.get("params")
            raise ParamError(
                exc.detail, file=self.file, line=line or spec.line, node=spec.id, type_name=spec.type
            ) from None

    def _check_node(self, spec: NodeSpec) -> None:
        cls = spec.cls
        self._check_params(spec)
        for port in spec.inputs:
            if port not in cls.inputs:
                hint = difflib.get_close_matches(port, list(cls.inputs), n=1)
                tail = f"; did you mean '{hint[0]}'?" if hint else f"; inputs: {', '.join(cls.inputs) or 'none'}"
                raise self._error(f"has no input '{port}'{tail}", spec, f"inputs.{port}")

    def _check_links(self, spec: NodeSpec) -> None:
        cls = spec.cls
        for port, ref in spec.inputs.items():
            if ref.node not in self.nodes:
                hint = difflib.get_close_matches(ref.node, list(self.nodes), n=1)
                tail = f"; did you mean '{hint[0]}'?" if hint else ""
                raise self._error(f"input '{port}' refers to unknown node '{ref.node}'{tail}", spec, f"inputs.{port}")
            src = self.nodes[ref.node]
            outputs = src.cls.outputs
            want = cls.inputs[port].type
            if ref.port not in outputs:
                hint = difflib.get_close_matches(ref.port, list(outputs), n=1)
                tail = f"; did you mean '{ref.node}.{hint[0]}'?" if hint else f"; its outputs: {', '.join(outputs)}"
                raise self._error(
                    f"input '{port}' refers to '{ref}', but node '{ref.node}' ({src.type}) has no output "
                    f"'{ref.port}'{tail}",
                    spec,
                    f"inputs.{port}",
                )
            got = outputs[ref.port].type
            if not want.accepts(got):
                hint = self._closest_output(want, port)
                tail = f"; did you mean '{hint}'?" if hint else ""
                raise self._error(
                    f"input '{port}' expects {want.name}, got {got.name} from '{ref}'{tail}", spec, f"inputs.{port}"
                )
        for port, decl in cls.inputs.items():
            if not decl.optional and port not in spec.inputs:
                raise self._error(
                    f"required input '{port}' ({decl.type.name}) is not connected",
                    spec,
                    "inputs" if spec.inputs else None,
                )

    def _closest_output(self, want: Any, port: str) -> str | None:
        candidates = [
            f"{s.id}.{name}"
            for s in self.nodes.values()
            for name, out in s.cls.outputs.items()
            if want.accepts(out.type)
        ]
        if not candidates:
            return None
        ranked = difflib.get_close_matches(port, [c.split(".")[1] for c in candidates], n=1, cutoff=0)
        return next(c for c in candidates if c.split(".")[1] == ranked[0]) if ranked else candidates[0]

    def check(self) -> Graph:
        """Check the whole graph (types, ports, wiring, cycles, sources); raise the first GraphError."""
        if not self.nodes:
            raise GraphError("graph has no nodes", file=self.file)
        for spec in self.nodes.values():
            self._check_node(spec)
        sources = [s.id for s in self.nodes.values() if s.cls.is_source()]
        if not sources:
            raise GraphError("graph has no source node (decode or another source)", file=self.file)
        if len(sources) > 1:
            spec = self.nodes[sources[1]]
            raise self._error(f"a graph has exactly one source, found {len(sources)} ({', '.join(sources)})", spec)
        for spec in self.nodes.values():
            self._check_links(spec)
        cycle = self._find_cycle()
        if cycle:
            order = list(self.nodes)
            first = min(range(len(cycle)), key=lambda i: order.index(cycle[i]))
            cycle = cycle[first:] + cycle[:first]
            spec = self.nodes[cycle[0]]
            raise self._error(f"cycle: {' -> '.join([*cycle, cycle[0]])}", spec)
        return self

    def requirements(self) -> list[str]:
        """What is missing for running here (model files, ...), one line per problem."""
        problems = []
        for spec in self.nodes.values():
            params = spec.cls.check_params(spec.params)
            for text in spec.cls.requirements(params):
                problems.append(str(self._error(text, spec)))
            upstream = {}
            for port, ref in spec.inputs.items():
                src = self.nodes.get(ref.node)
                if src is not None:
                    upstream[port] = {"id": src.id, "type": src.type, "params": src.cls.check_params(src.params)}
            for text in spec.cls.link_requirements(params, upstream):
                problems.append(str(self._error(text, spec)))
        return problems

    def _find_cycle(self) -> list[str] | None:
        state: dict[str, int] = {}
        stack: list[str] = []

        def visit(node: str) -> list[str] | None:
            state[node] = 1
            stack.append(node)
            for ref in self.nodes[node].inputs.values():
                up = ref.node
                if state.get(up) == 1:
                    cyc = stack[stack.index(up) :]
                    return list(reversed(cyc))
                if up not in state:
                    found = visit(up)
                    if found:
                        return found
            stack.pop()
            state[node] = 2
            return None

        for node in self.nodes:
            if node not in state:
                found = visit(node)
                if found:
                    return found
        return None

    # ---- structure --------------------------------------------------------------------------
    def order(self) -> list[str]:
        """Node ids in a stable topological order (declaration order among equals)."""
        indeg = {n: len({r.node for r in s.inputs.values()}) for n, s in self.nodes.items()}
        ready = [n for n, d in indeg.items() if d == 0]
        out: list[str] = []
        consumers = self.consumers()
        while ready:
            node = ready.pop(0)
            out.append(node)
            for down in dict.fromkeys(c for _, c, _ in consumers.get(node, [])):
                indeg[down] -= 1
                if indeg[down] == 0:
                    ready.append(down)
        if len(out) != len(self.nodes):
            raise GraphError("graph has a cycle", file=self.file)
        return out

    def consumers(self) -> dict[str, list[tuple[str, str, str]]]:
        """node id → [(its output port, consumer node id, consumer input port)]."""
        out: dict[str, list[tuple[str, str, str]]] = {}
        for spec in self.nodes.values():
            for port, ref in spec.inputs.items():
                out.setdefault(ref.node, []).append((ref.port, spec.id, port))
        return out

    def leaf_outputs(self) -> list[OutputRef]:
        """Output ports no node consumes: what ``facegraph.run`` hands back to the caller."""
        used = {ref for s in self.nodes.values() for ref in s.inputs.values()}
        return [
            OutputRef(s.id, port)
            for s in self.nodes.values()
            for port in s.cls.outputs
            if OutputRef(s.id, port) not in used
        ]

    def source(self) -> NodeSpec:
        for spec in self.nodes.values():
            if spec.cls.is_source():
                return spec
        raise GraphError("graph has no source node", file=self.file)

    def __iter__(self) -> Iterator[NodeSpec]:
        return iter(self.nodes.values())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        return self.name == other.name and list(self.nodes.values()) == list(other.nodes.values())

    def copy(self) -> Graph:
        return Graph.from_dict(self.to_dict(), file=self.file)

    # ---- YAML -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name}
        if self.description:
            data["description"] = self.description
        data["nodes"] = {n: s.to_dict() for n, s in self.nodes.items()}
        return data

    def to_yaml(self) -> str:
        return dump_yaml(self.to_dict())

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml())

    @classmethod
    def from_yaml(cls, text: str, file: str = "<string>") -> Graph:
        return cls.from_dict(load_yaml(text, file), file=file)

    @classmethod
    def load(cls, path: str | Path) -> Graph:
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise GraphError(f"{path}: no such graph file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise GraphError(f"{path}: cannot read graph file ({exc})") from None
        return cls.from_yaml(text, str(path)).check()

    @classmethod
    def from_dict(cls, data: Any, file: str | None = None) -> Graph:
        def err(message: str, line: int | None = None) -> GraphError:
            return GraphError(message, file=file, line=line)

        if not isinstance(data, dict):
            raise err(f"a graph file must be a mapping with 'name' and 'nodes', got {type(data).__name__}", 1)
        lines = getattr(data, "lines", {})
        for key in data:
            if key not in TOP_KEYS:
                hint = difflib.get_close_matches(str(key), TOP_KEYS, n=1)
                tail = f"; did you mean '{hint[0]}'?" if hint else f"; allowed: {', '.join(TOP_KEYS)}"
                raise err(f"unknown top-level key '{key}'{tail}", lines.get(key))
        name = data.get("name") or (Path(file).stem if file else "graph")
        if not isinstance(name, str):
            raise err(f"'name' must be a string, got {name!r}", lines.get("name"))
        nodes = data.get("nodes")
        if not isinstance(nodes, dict) or not nodes:
            raise err("'nodes' must be a non-empty mapping of node id → {type, params, inputs}", lines.get("nodes", 1))
        graph = cls(name, file=file, description=str(data.get("description", "")))
        for node_id, body in nodes.items():
            graph._insert(_spec_from_yaml(node_id, body, nodes, file))
        return graph


def _spec_from_yaml(node_id: Any, body: Any, nodes: Any, file: str | None) -> NodeSpec:
    line = getattr(nodes, "lines", {}).get(node_id)

    def err(message: str, at: int | None = None) -> GraphError:
        return GraphError(message, file=file, line=at or line, node=str(node_id))

    if not isinstance(body, dict):
        raise err(f"must be a mapping with 'type', got {body!r}")
    blines: dict[str, int] = getattr(body, "lines", {})
    for key in body:
        if key not in NODE_KEYS:
            hint = difflib.get_close_matches(str(key), NODE_KEYS, n=1)
            tail = f"; did you mean '{hint[0]}'?" if hint else f"; allowed: {', '.join(NODE_KEYS)}"
            raise err(f"unknown key '{key}'{tail}", blines.get(key))
    if "type" not in body:
        raise err("has no 'type'")
    type_name = body["type"]
    try:
        node_class(str(type_name))
    except GraphError as exc:
        raise err(exc.detail, blines.get("type")) from None
    params = body.get("params") or {}
    inputs = body.get("inputs") or {}
    if not isinstance(params, dict):
        raise err(f"'params' must be a mapping, got {params!r}", blines.get("params"))
    if not isinstance(inputs, dict):
        raise err(f"'inputs' must be a mapping of port: node.port, got {inputs!r}", blines.get("inputs"))
    restart = body.get("restart", 0)
    if not isinstance(restart, int) or isinstance(restart, bool) or restart < 0:
        raise err(f"'restart' must be a whole number >= 0, got {restart!r}", blines.get("restart"))
    group = body.get("group")
    if group is not None and not isinstance(group, str):
        raise err(f"'group' must be a name, got {group!r}", blines.get("group"))
    spec_lines: dict[str, int] = {k: v for k, v in blines.items()}
    spec_lines.update({f"params.{k}": v for k, v in getattr(params, "lines", {}).items()})
    spec_lines.update({f"inputs.{k}": v for k, v in getattr(inputs, "lines", {}).items()})
    refs = {}
    for port, text in inputs.items():
        try:
            refs[str(port)] = OutputRef.parse(text)
        except GraphError as exc:
            raise err(f"input '{port}': {exc.detail}", spec_lines.get(f"inputs.{port}")) from None
    return NodeSpec(str(node_id), str(type_name), _unline(params), refs, group, restart, line=line, lines=spec_lines)


def _unline(obj: Any) -> Any:
    if isinstance(obj, LineDict):
        return {k: _unline(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unline(v) for v in obj]
    return obj
