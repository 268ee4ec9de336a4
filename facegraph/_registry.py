"""Node types by name: built-ins from ``facegraph.nodes``, others from the ``facegraph.nodes`` entry-point group.

A graph file names node types only; it can never import code of its own.
"""

from __future__ import annotations

import difflib
import importlib
import logging
from importlib.metadata import entry_points

from ._errors import GraphError
from ._node import Node

log = logging.getLogger(__name__)
_NODES: dict[str, type[Node]] = {}
_loaded = False


def register(type_name: str):
    """Class decorator: make a Node subclass available to graphs under ``type_name``."""

    def deco(cls: type[Node]) -> type[Node]:
        if not (isinstance(cls, type) and issubclass(cls, Node)):
            raise TypeError(f"@register('{type_name}') needs a Node subclass, got {cls!r}")
        other = _NODES.get(type_name)
        if other is not None and other is not cls and other.__qualname__ != cls.__qualname__:
            raise ValueError(f"node type '{type_name}' is already registered by {other.__module__}.{other.__name__}")
        cls.type_name = type_name
        _NODES[type_name] = cls
        return cls

    return deco


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    try:  # the built-in face nodes: a package like any plug-in, absent from an engine-only install
        importlib.import_module("facegraph.nodes")
    except ImportError as exc:
        log.warning("built-in face nodes not loaded (%s); engine nodes and plug-ins only", exc)
    for ep in entry_points(group="facegraph.nodes"):
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plug-in must not break the built-ins
            log.warning("could not load node plug-in %s (%s): %s", ep.name, ep.value, exc)
            continue
        if isinstance(obj, type) and issubclass(obj, Node) and ep.name not in _NODES:
            register(ep.name)(obj)


def node_class(type_name: str) -> type[Node]:
    """The class registered under ``type_name``; GraphError with the closest name otherwise."""
    if type_name not in _NODES:
        _load_all()
    try:
        return _NODES[type_name]
    except KeyError:
        hint = difflib.get_close_matches(str(type_name), list(_NODES), n=1)
        tail = f"; did you mean '{hint[0]}'?" if hint else "; see 'facegraph nodes'"
        raise GraphError(f"unknown node type '{type_name}'{tail}") from None


def node_types() -> dict[str, type[Node]]:
    _load_all()
    return dict(sorted(_NODES.items()))
