"""A run's collected results, and turning them into a pandas DataFrame.

The engine knows no faces, so it does not know what a row is: node packages
register a *table maker* (``register_table``) that says, for a graph it
understands, which outputs a table needs and how results become rows. The face
package registers one built on its table sinks' own row and column code, so
``Results.to_pandas()`` gives what ``sink.csv`` writes. A graph no maker knows
gets one row per frame with the packets' scalar fields.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from ._graph import Graph, OutputRef

if TYPE_CHECKING:
    import pandas

    from ._run import Result


class TableMaker(Protocol):
    """What a node package registers to turn a graph's results into a table."""

    def outputs(self, graph: Graph) -> list[OutputRef] | None:
        """The outputs the table is made from, or None when this maker has no table for the graph."""

    def to_pandas(self, graph: Graph, results: Iterable[Result]) -> pandas.DataFrame:
        """The table of these results (collected with at least ``outputs(graph)``)."""


_MAKERS: list[TableMaker] = []


def register_table(maker: TableMaker) -> None:
    """Add a table maker (node packages call this when imported); later registrations are asked first."""
    if maker not in _MAKERS:
        _MAKERS.insert(0, maker)


def table_maker(graph: Graph) -> TableMaker | None:
    from ._registry import node_types

    node_types()  # the node packages register their makers as they load
    for maker in _MAKERS:
        if maker.outputs(graph) is not None:
            return maker
    return None


def table_outputs(graph: Graph) -> list[OutputRef]:
    """The outputs a run must collect for ``Results.to_pandas()`` (empty when no maker knows the graph)."""
    maker = table_maker(graph)
    return list(maker.outputs(graph) or []) if maker is not None else []


class Results(list):
    """The per-frame results of one run, in frame order, with the graph that made them."""

    def __init__(self, graph: Graph, results: Iterable[Result] = ()) -> None:
        super().__init__(results)
        self.graph = graph

    def to_pandas(self) -> pandas.DataFrame:
        """A DataFrame: the graph's table (one row per face per frame for face graphs), else one row per frame."""
        maker = table_maker(self.graph)
        if maker is not None:
            return maker.to_pandas(self.graph, self)
        return _frame_table(self)


def _frame_table(results: Iterable[Result]) -> pandas.DataFrame:
    """One row per frame: frame_id, source, and every scalar field as ``node.port.field``."""
    import numpy as np
    import pandas as pd

    rows = []
    for result in results:
        row: dict[str, Any] = {"frame_id": result.frame_id, "source": result.source}
        for key, packet in result.packets.items():
            for name, value in packet.fields.items():
                if isinstance(value, (int, float, str, bool, np.generic)) or (
                    isinstance(value, np.ndarray) and value.ndim == 0
                ):
                    row[f"{key}.{name}"] = value.item() if hasattr(value, "item") else value
        rows.append(row)
    return pd.DataFrame.from_records(rows)
