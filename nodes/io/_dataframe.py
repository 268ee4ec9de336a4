"""Face results as a pandas DataFrame: the CSV sink's rows and columns, without the file.

Registered with the engine (``facegraph._results.register_table``) when this
package loads. For a graph with a table sink (``sink.csv`` first, else any other
per-face result sink), the table is made from exactly what that sink is fed:
the same ``Schema`` (frozen at the first row, as the sink freezes its header),
the same ``face_records`` and the same column list (``csv_columns``), so a
DataFrame and the CSV of one run hold the same rows and columns. Numbers keep
their full float32 precision (as the Parquet sink writes them); the CSV rounds
them to OpenFace's decimals, and ``_openface.format_value`` of a DataFrame
cell gives the CSV's text.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from facegraph import Graph, NodeSpec, OutputRef

from ._table import ResultSink, Schema, constant_cells, expand_vectors, face_records, load_revision, revision_hits

if TYPE_CHECKING:
    import pandas

    from facegraph import Result

#: the integer columns pandas should keep as integers (nullable where a cell can be empty)
INT_COLUMNS = ("frame", "face_id", "success", "track_id")


def table_sink(graph: Graph) -> NodeSpec | None:
    """The sink whose rows the table repeats: the first ``sink.csv`` in graph order, else the first result sink."""
    sinks = [graph.nodes[n] for n in graph.order() if issubclass(graph.nodes[n].cls, ResultSink)]
    csv = [s for s in sinks if s.type == "sink.csv"]
    return (csv or sinks or [None])[0]


class FaceTable:
    """The engine's table maker for face graphs (see ``facegraph._results.TableMaker``)."""

    def outputs(self, graph: Graph) -> list[OutputRef] | None:
        spec = table_sink(graph)
        return None if spec is None else list(dict.fromkeys(spec.inputs.values()))

    def to_pandas(self, graph: Graph, results: Iterable[Result]) -> pandas.DataFrame:
        spec = table_sink(graph)
        assert spec is not None
        params = {**{k: p.default for k, p in spec.cls.params.items() if not p.required}, **spec.params}
        return records_frame(spec.inputs, results, constants=dict(params.get("constants") or {}),
                             other_landmarks=bool(params.get("other_landmarks", False)),
                             extras=bool(params.get("extras", True)))


def records_frame(inputs: dict[str, OutputRef], results: Iterable[Result], *, constants: dict[str, Any],
                  other_landmarks: bool = False, extras: bool = True,
                  lead: dict[str, Any] | None = None) -> pandas.DataFrame:
    """The rows a table sink fed from ``inputs`` writes for these results, as one DataFrame.

    ``lead`` adds constant columns in front (``video``, ``image``), made with the rows
    rather than inserted after (a frame of hundreds of columns is slow to insert into).
    """
    import pandas as pd

    from facegraph import FacegraphError

    from .sink_csv import csv_columns

    schema = Schema(extra=[str(k) for k in constants])
    keys = {port: str(ref) for port, ref in inputs.items()}
    rows: list[dict[str, Any]] = []
    seen_faces = False
    count = 0
    for result in results:
        count += 1
        packets = {port: result.get(key) for port, key in keys.items()}
        faces = packets.get("faces")
        if faces is None:  # skipped upstream for this frame: no rows, as in the sink
            continue
        seen_faces = True
        schema.observe(packets)
        records = face_records(faces.frame_id, packets)
        if records:
            schema.frozen = True  # the CSV's header is fixed by its first row; so are these columns
        if constants:
            cells = constant_cells(constants, faces.source)
            for rec in records:
                rec.update(cells)
        rows.extend({**(lead or {}), **expand_vectors(rec)} for rec in records)
    if count and not seen_faces:
        raise FacegraphError(
            f"these results hold no '{keys.get('faces')}': collect them with Run.collect(), "
            "which asks for the table sink's inputs")
    columns = [*(lead or {}), *csv_columns(schema, other_landmarks, extras)]
    frame = pd.DataFrame.from_records(rows, columns=columns) if rows else pd.DataFrame(columns=columns)
    revision = load_revision(schema.revise)  # the AU node's post-processed values, once its run has ended
    if revision is not None and len(frame):
        _revise(frame, revision)
    for col in INT_COLUMNS:
        if col in frame.columns and len(frame):
            values = frame[col]
            frame[col] = values.astype("int64") if values.notna().all() else values.astype("Int64")
    if "success" in frame.columns and not len(frame):
        frame = frame.astype({c: "int64" for c in INT_COLUMNS if c in frame.columns})
    return frame


def _revise(frame: pandas.DataFrame, revision: dict) -> None:
    """The AU cells of every row the AU node post-processed, as the CSV and Parquet sinks rewrite them."""
    hits = revision_hits(frame["frame"], frame["face_id"], frame["success"], revision)
    for col in sorted({c for h in hits if h for c in h} & set(frame.columns)):
        values = frame[col].to_numpy(dtype="float64", copy=True)
        for k, h in enumerate(hits):
            if h:
                values[k] = h[col]
        frame[col] = values
