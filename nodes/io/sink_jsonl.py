"""``sink.jsonl``: one JSON object per face per frame, flushed as it goes.

Keys are the CSV's column names (OpenFace's where OpenFace has the measure,
with its precisions), except that vectors stay whole: ``embedding`` is a list
of D numbers and non-68-point ``landmarks`` a list of [x, y(, z)] points.
Frames without a face write no line (as in the CSV), so
``pandas.read_json(path, lines=True)`` gives the same table as the CSV.
"""

from __future__ import annotations

import json
from typing import Any

from facegraph import Packet, Param, register

from . import _openface as of
from ._table import ResultSink


@register("sink.jsonl")
class JsonlSink(ResultSink):
    """Writes per-face records as JSON Lines."""

    path = Param(str, "results.jsonl", doc="output file, relative to the run's output folder")

    def open_output(self) -> None:
        from ._video import prepare_output

        self.file_path = prepare_output(self.context.output_path(self.path))
        self.file = open(self.file_path, "w", encoding="utf-8")
        self.rows = 0

    def write_frame(self, faces: Packet, packets: dict[str, Packet | None], records: list[dict[str, Any]]) -> None:
        for rec in records:
            self.file.write(json.dumps(to_json(rec), separators=(",", ":")) + "\n")
        self.rows += len(records)
        if records:
            self.file.flush()

    def close(self) -> None:
        file = getattr(self, "file", None)
        if file is not None and not file.closed:
            file.close()


def to_json(rec: dict[str, Any]) -> dict[str, Any]:
    """A record with plain, rounded numbers and lists for vectors."""
    out: dict[str, Any] = {}
    for key, value in rec.items():
        if key == "embedding":
            out[key] = [float(f"{v:.6g}") for v in value.tolist()]
        elif key == "landmarks":
            out[key] = [[round(float(c), 1) for c in point] for point in value.tolist()]
        else:
            out[key] = of.round_value(key, value)
    return out
