"""facegraph's exceptions, in one tree, with one message format.

    FacegraphError
    ├── GraphError          a graph that cannot run: bad file, bad wiring, bad parameter (exit 2)
    │   └── ParamError      one parameter of one node is wrong
    ├── PortValueError      a packet field with the wrong dtype or shape
    ├── ModelError          a model file that is missing or unreadable
    ├── SourceError         input media that cannot be opened or read
    └── RunError            a failure while the graph runs (exit 1)
        └── NodeFailure     a node raised: carries node id, type, frame id and traceback

Every message reads ``file:line: node 'id' (type): what is wrong`` with the
parts that are known, so a user finds the cause without a traceback.
"""

from __future__ import annotations


def locate(
    message: str,
    *,
    file: str | None = None,
    line: int | None = None,
    node: str | None = None,
    type_name: str | None = None,
) -> str:
    """Prefix ``message`` with where it happened, in the house format."""
    parts = []
    if file:
        parts.append(f"{file}:{line}:" if line else f"{file}:")
    if node:
        parts.append(f"node '{node}' ({type_name}):" if type_name else f"node '{node}':")
    return " ".join([*parts, message])


class FacegraphError(Exception):
    """Base of every error facegraph raises on purpose."""

    exit_code = 1


class GraphError(FacegraphError):
    """The graph cannot be built or run as declared."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        node: str | None = None,
        type_name: str | None = None,
    ) -> None:
        self.detail = message
        self.file, self.line, self.node, self.type_name = file, line, node, type_name
        super().__init__(locate(message, file=file, line=line, node=node, type_name=type_name))

    def at(self, *, file: str | None = None, line: int | None = None) -> GraphError:
        """The same error, placed in a graph file (keeps a more precise line already known)."""
        return type(self)(
            self.detail,
            file=self.file or file,
            line=self.line or line,
            node=self.node,
            type_name=self.type_name,
        )


class ParamError(GraphError):
    """A node parameter that is unknown, missing, of the wrong type or out of range."""


class PortValueError(FacegraphError, ValueError):
    """A port value whose fields do not match the port type."""


class ModelError(FacegraphError):
    """A model file that is missing, unreadable or of the wrong shape."""

    exit_code = 2


class SourceError(FacegraphError):
    """Input media that cannot be opened or decoded."""


class SinkError(FacegraphError):
    """An output that cannot be written."""


class RunError(FacegraphError):
    """The run failed after it started."""


class NodeFailure(RunError):
    """A node raised while it ran; the run stopped."""

    def __init__(
        self,
        node: str,
        type_name: str,
        cause: str,
        *,
        frame_id: int | None = None,
        traceback: str = "",
    ) -> None:
        self.node, self.type_name, self.cause = node, type_name, cause
        self.frame_id, self.traceback = frame_id, traceback
        where = f" at frame {frame_id}" if frame_id is not None else ""
        super().__init__(f"node '{node}' ({type_name}) failed{where}: {cause}")
