"""``sink.csv``: OpenFace 2.2-compatible CSV, one row per face per frame.

Columns follow OpenFace's names, order and number formats for the measures the
graph computes (see ``nodes/io/_openface.py``); measures it does not compute are left
out, never filled in. facegraph's own columns (track_id, box, identity, prob_*,
emb_*) follow. The header is fixed when the first row is written; every frame's
rows are flushed to disk, so a crash keeps every complete row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from facegraph import Packet, Param, register

from . import _openface as of
from ._table import ResultSink, Schema, backend_note, expand_vectors, load_revision


@register("sink.csv")
class CsvSink(ResultSink):
    """Writes OpenFace-style rows; read with ``pandas.read_csv(path, skipinitialspace=True)``."""

    path = Param(str, "results.csv", doc="output file, relative to the run's output folder")
    separator = Param(str, ", ", choices=(", ", ","), doc="', ' as OpenFace writes, or ',' for strict CSV readers")
    other_landmarks = Param(bool, False, doc="also write non-68-point landmarks (468 FaceMesh ...) as lmk_x_i/lmk_y_i")
    extras = Param(bool, True, doc="write facegraph's own columns (track_id, box, ...) after OpenFace's")

    cost = 0.4  # about 160 formatted numbers per face

    def open_output(self) -> None:
        from ._video import prepare_output

        self.file_path = prepare_output(self.context.output_path(self.path))
        self.file = open(self.file_path, "w", encoding="utf-8", newline="")
        self.columns: list[str] | None = None
        self.rows = 0
        # strict CSV: the csv module writes the rows; OpenFace's ", ": the module quotes the cells (see _write_row)
        self._writer = csv.writer(self.file, lineterminator="\n") if self.separator == "," else None

    def _header(self) -> None:
        self.schema.frozen = True
        self.columns = csv_columns(self.schema, self.other_landmarks, self.extras)
        self._cells = [(c, of.cell_formatter(c)) for c in self.columns]
        self._write_row(self.columns)

    def _write_row(self, cells: Iterable[str]) -> None:
        """One row; a text cell with a comma, a quote or a line break stays one field.

        csv.writer takes a one-character delimiter only, and OpenFace's is ", ": then
        the csv module quotes each cell (QUOTE_MINIMAL, so numbers and plain names are
        written as before) and the row is joined here. ``csv.reader(f,
        skipinitialspace=True)`` and ``pandas.read_csv(..., skipinitialspace=True)``
        read it back field for field.
        """
        if self._writer is not None:
            self._writer.writerow(cells)
        else:
            self.file.write(self.separator.join(_quote(c) for c in cells) + "\n")

    def write_frame(self, faces: Packet, packets: dict[str, Packet | None], records: list[dict[str, Any]]) -> None:
        if not records:
            return
        if self.columns is None:
            self._header()
        cells = self._cells
        for rec in records:
            row = expand_vectors(rec)
            if self._writer is not None:
                self._writer.writerow([cell(row.get(c)) for c, cell in cells])
                continue
            # only a text value can need quoting: a formatted number never holds , " or a line break
            out = []
            for c, cell in cells:
                value = row.get(c)
                out.append(_quote(value) if isinstance(value, str) else cell(value))
            self.file.write(self.separator.join(out) + "\n")
        self.rows += len(records)
        self.file.flush()

    def flush(self) -> None:
        """End of stream: close the file, then write the AU node's post-processed values into it, if any."""
        self.close()
        revision = load_revision(self.schema.revise) if hasattr(self, "schema") else None
        if revision is not None and self.rows:
            self._revise(revision)
        if getattr(self, "schema", None) is not None and self.schema.au_backend:
            backend_note(self.file_path, self.schema.au_backend, [c for c, _ in self.schema.aus + self.schema.presence],
                         self.schema.au_landmarks)
        return None

    def _revise(self, revision: dict) -> None:
        """Rewrite the AU cells of every row the AU node post-processed (OpenFace's PostprocessOutputFile)."""
        with open(self.file_path, encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh, skipinitialspace=True))
        header, body = rows[0], rows[1:]
        at = {c: k for k, c in enumerate(header)}
        frame_at, face_at = at["frame"], at["face_id"]
        tmp = self.file_path.with_name(f".{self.file_path.name}.part")
        self.file = open(tmp, "w", encoding="utf-8", newline="")
        self._writer = csv.writer(self.file, lineterminator="\n") if self.separator == "," else None
        self._write_row(header)
        for row in body:
            hit = revision.get((int(row[frame_at]) - 1, int(row[face_at])))
            if hit is not None and hit[1] and row[at["success"]] == "1":
                for col, value in hit[0].items():
                    if col in at:
                        row[at[col]] = of.format_value(col, value)
            self._write_row(row)
        self.file.close()
        tmp.replace(self.file_path)

    def close(self) -> None:
        file = getattr(self, "file", None)
        if file is None or file.closed:
            return
        if self.columns is None:  # no face all run: still leave the header of what the graph computes
            self._header()
        file.close()


def csv_columns(schema: Schema, other_landmarks: bool, extras: bool) -> list[str]:
    """The CSV's columns for a schema (also the DataFrame's: ``Results.to_pandas`` uses this)."""
    cols = schema.columns(expand=True, other_landmarks=other_landmarks)
    if not extras:
        cols = [c for c in cols if c in of.BASE or c in of.POSE or c in of.LANDMARKS_68 or c.startswith("AU")]
    return cols


_QUOTER_BUFFER = io.StringIO()
_QUOTER = csv.writer(_QUOTER_BUFFER, lineterminator="")
_SPECIAL = frozenset(',"\r\n')


def _quote(cell: str) -> str:
    """A cell as csv.writer writes it (numbers never need it; text with , " or a line break does)."""
    if not _SPECIAL.intersection(cell) and cell == cell.lstrip():
        return cell
    _QUOTER_BUFFER.seek(0)
    _QUOTER_BUFFER.truncate()
    _QUOTER.writerow([cell])
    text = _QUOTER_BUFFER.getvalue()
    return text if text.startswith('"') else f'"{text}"'  # a leading space: quoted, or a reader would strip it
