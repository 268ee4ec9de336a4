"""``sink.csv``: OpenFace 2.2-compatible CSV, one row per face per frame.

Columns follow OpenFace's names, order and number formats for the measures the
graph computes (see ``nodes/_openface.py``); measures it does not compute are left
out, never filled in. facegraph's own columns (track_id, box, identity, prob_*,
emb_*) follow. The header is fixed when the first row is written; every frame's
rows are flushed to disk, so a crash keeps every complete row.
"""

from __future__ import annotations

from typing import Any

from facegraph import Packet, Param, register

from . import _openface as of
from ._table import ResultSink, expand_vectors


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

    def _header(self) -> None:
        self.schema.frozen = True
        cols = self.schema.columns(expand=True, other_landmarks=self.other_landmarks)
        if not self.extras:
            cols = [c for c in cols if c in of.BASE or c in of.POSE or c in of.LANDMARKS_68 or c.startswith("AU")]
        self.columns = cols
        self.file.write(self.separator.join(cols) + "\n")

    def write_frame(self, faces: Packet, packets: dict[str, Packet | None], records: list[dict[str, Any]]) -> None:
        if not records:
            return
        if self.columns is None:
            self._header()
        for rec in records:
            row = expand_vectors(rec)
            self.file.write(self.separator.join(of.format_value(c, row.get(c)) for c in self.columns) + "\n")
        self.rows += len(records)
        self.file.flush()

    def close(self) -> None:
        file = getattr(self, "file", None)
        if file is None or file.closed:
            return
        if self.columns is None:  # no face all run: still leave the header of what the graph computes
            self._header()
        file.close()
