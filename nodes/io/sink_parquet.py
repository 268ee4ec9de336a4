"""``sink.parquet``: per-face results as a Parquet table, one row per face per frame.

Columns are the CSV's (OpenFace names first, then facegraph's), at full float32
precision; ``embedding`` is a fixed-size list column of D float32 and non-68-point
``landmarks`` a fixed-size list of K points of D float32. Rows are written in row
groups as they fill (``ParquetWriter``) and the file is closed in ``close()``, so a
run that stops early keeps every row group already written plus the rows in hand.
"""

from __future__ import annotations

from typing import Any

from facegraph import Packet, Param, register

from . import _openface as of
from ._table import ResultSink, load_revision, revision_hits

_INT_COLUMNS = ("frame", "face_id", "success", "track_id")


@register("sink.parquet")
class ParquetSink(ResultSink):
    """Writes per-face records with pyarrow's ParquetWriter."""

    path = Param(str, "results.parquet", doc="output file, relative to the run's output folder")
    row_group = Param(int, 512, ge=1, doc="rows per row group (written as soon as it fills)")
    compression = Param(str, "zstd", choices=("zstd", "snappy", "gzip", "none"))

    def open_output(self) -> None:
        from ._video import prepare_output

        self.file_path = prepare_output(self.context.output_path(self.path))
        self.pending: list[dict[str, Any]] = []
        self.writer: Any = None
        self.arrow_schema: Any = None
        self.rows = 0

    def write_frame(self, faces: Packet, packets: dict[str, Packet | None], records: list[dict[str, Any]]) -> None:
        self.pending.extend(records)
        if len(self.pending) >= self.row_group:
            self._write()

    def _types(self) -> Any:
        import pyarrow as pa

        self.schema.frozen = True
        fields = []
        for col in self.schema.columns(expand=False):
            if col in _INT_COLUMNS:
                kind = pa.int32()
            elif col == "timestamp":
                kind = pa.float64()
            elif col == "identity" or col in self.schema.extra:
                kind = pa.string()
            elif col == "embedding":
                kind = pa.list_(pa.float32(), self.schema.emb_dim)
            elif col == "landmarks":
                k, d = self.schema.lmk_other
                kind = pa.list_(pa.list_(pa.float32(), d), k)
            else:
                kind = pa.float32()
            fields.append(pa.field(col, kind))
        meta = {"facegraph": "per-face results; column names follow OpenFace 2.2 where it has the measure",
                "openface_columns": ",".join(c for c in self.schema.columns(expand=False) if _is_openface(c))}
        return pa.schema(fields, metadata=meta)

    def _open_writer(self) -> None:
        import pyarrow.parquet as pq

        from facegraph import SinkError

        self.arrow_schema = self._types()
        try:
            self.writer = pq.ParquetWriter(str(self.file_path), self.arrow_schema,
                                           compression=None if self.compression == "none" else self.compression)
        except OSError as exc:
            raise SinkError(f"{self.file_path}: cannot write here ({exc})") from None

    def _write(self) -> None:
        import pyarrow as pa

        if self.writer is None:
            self._open_writer()
        rows, self.pending = self.pending, []
        if not rows:
            return
        arrays = []
        for field in self.arrow_schema:
            values = [_cell(r.get(field.name)) for r in rows]
            arrays.append(pa.array(values, type=field.type))
        self.writer.write_table(pa.Table.from_arrays(arrays, schema=self.arrow_schema))
        self.rows += len(rows)

    def flush(self) -> None:
        """End of stream: close the file, then write the AU node's post-processed values into it, if any."""
        self.close()
        revision = load_revision(self.schema.revise) if hasattr(self, "schema") else None
        if revision is not None and self.writer is not None and self.rows:
            self._revise(revision)
        return None

    def _revise(self, revision: dict) -> None:
        """Rewrite the AU columns of every row the AU node post-processed."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pq.read_table(self.file_path)
        hits = revision_hits(table.column("frame").to_pylist(), table.column("face_id").to_pylist(),
                             table.column("success").to_pylist(), revision)
        for col in sorted({c for h in hits if h for c in h} & set(table.column_names)):
            old = table.column(col).to_pylist()
            new = [h[col] if h else v for h, v in zip(hits, old, strict=True)]
            idx = table.column_names.index(col)
            table = table.set_column(idx, table.schema.field(idx), pa.array(new, type=table.schema.field(idx).type))
        tmp = self.file_path.with_name(f".{self.file_path.name}.part")
        pq.write_table(table, tmp, compression=None if self.compression == "none" else self.compression)
        tmp.replace(self.file_path)

    def close(self) -> None:
        if getattr(self, "file_path", None) is None or getattr(self, "_closed", False):
            return
        self._closed = True
        try:
            self._write()
        finally:
            if self.writer is not None:
                self.writer.close()


def _cell(value: Any) -> Any:
    if value is None:
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _is_openface(column: str) -> bool:
    return column in of.BASE or column in of.POSE or column in of.LANDMARKS_68 or (
        column.startswith("AU") and column.endswith(("_r", "_c")))
