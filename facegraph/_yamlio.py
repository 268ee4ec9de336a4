"""A safe YAML loader that remembers the line of every mapping key, for error messages."""

from __future__ import annotations

from typing import Any

import yaml

from ._errors import GraphError


class LineDict(dict):
    """A dict from YAML that knows its own line and the line of each key (1-based)."""

    line: int = 0
    lines: dict[Any, int]


class _Loader(yaml.SafeLoader):
    def __init__(self, stream: Any, file: str) -> None:
        super().__init__(stream)
        self.file = file

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> LineDict:
        self.flatten_mapping(node)
        result = LineDict()
        result.line = node.start_mark.line + 1
        result.lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise GraphError(f"mapping keys must be plain names, got {key!r}", file=self.file, line=line)
            if key in result:
                raise GraphError(
                    f"duplicate key '{key}' (first at line {result.lines[key]})", file=self.file, line=line
                )
            result[key] = self.construct_object(value_node, deep=True)
            result.lines[key] = line
        return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _Loader.construct_mapping)


def load_yaml(text: str, file: str) -> Any:
    """Parse YAML safely; malformed input becomes a GraphError at the offending line."""
    loader = _Loader(text, file)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "cannot parse"
        raise GraphError(f"malformed YAML: {problem}", file=file, line=line) from None
    except yaml.YAMLError as exc:
        raise GraphError(f"malformed YAML: {exc}", file=file) from None
    finally:
        loader.dispose()


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(_plain(data), sort_keys=False, default_flow_style=None, width=100)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
