"""``sink.hdf5``: any graph as a teacher — its 68 landmarks and AUs per face, written as training data.

Rows follow the layout of ``facegraph data hdf5`` (:mod:`..training.h5data`): the crop on the
nets' template from the landmarks, the landmarks in it, OpenFace's PDM fitted to the
landmarks (global parameters moved into the crop, local parameters), the AU intensities,
FHOG of OpenFace's alignment. Faces the AU node could not read (NaN, success 0) are skipped
and counted. Needs h5py and the PDM of OpenFace's AU models (``facegraph models fetch openface-au``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from facegraph import FRAME, Input, Node, Param, SinkError, register

from ..types import AUS, LANDMARKS

log = logging.getLogger("facegraph.nodes.sink_hdf5")


@register("sink.hdf5")
class Hdf5Sink(Node):
    """Appends one training row per face with landmarks and AUs (the file is extended when it exists)."""

    frame = Input(FRAME)
    landmarks = Input(LANDMARKS, doc="iBUG 68 points per face (the teacher's)")
    aus = Input(AUS, doc="the teacher's AU intensities (OpenFace's 17)")
    path = Param(str, "training_data.h5", doc="output file, relative to the run's output folder")
    video_name = Param(str, "", doc="the split key of these rows (default: the source's file stem)")
    pdm = Param(str, "", doc="OpenFace's In-the-wild_aligned_PDM_68.txt (default: the openface-au models')")
    hog = Param(bool, True, doc="also FHOG of OpenFace's alignment (hog_features)")
    expected_samples = Param(int, 0, ge=0, doc="rows to allocate up front")

    cost = 3.0  # PDM fit + two warps + FHOG per face

    def open(self) -> None:
        from ..face._openface_au import Pdm
        from ..io._openface import AU_INTENSITY
        from ..training import h5data
        from ..training.errors import TrainingError

        pdm_path = Path(self.pdm).expanduser() if self.pdm else _default_pdm()
        if pdm_path is None or not pdm_path.is_file():
            raise SinkError(f"sink.hdf5: OpenFace's PDM not found ({self.pdm or 'facegraph models fetch openface-au'})"
                            "; give parameter 'pdm'")
        self._pdm = Pdm.load(pdm_path)
        self._names = list(AU_INTENSITY)
        try:
            self._writer = h5data.H5Writer(self.context.output_path(self.path), expected=self.expected_samples,
                                           attrs={"au_names": self._names, "size": h5data.SIZE,
                                                  "crop": "arcface5 from the teacher's 68 landmarks"})
        except TrainingError as exc:
            raise SinkError(str(exc)) from None
        self._pending: list[tuple[str, int, float, dict[str, np.ndarray]]] = []
        self.written = self.skipped = 0

    def process(self, frame: Any, landmarks: Any, aus: Any) -> None:
        from ..training.teacher import sample

        points = np.asarray(landmarks.points, np.float64)
        if points.shape[1] != 68:
            raise SinkError(f"sink.hdf5 needs 68-point landmarks, got {points.shape[1]}")
        order = {n: i for i, n in enumerate(aus.names)}
        missing = [n for n in self._names if n not in order]
        if missing:
            raise SinkError(f"sink.hdf5: the AU packet lacks {', '.join(missing[:3])} (OpenFace's 17 are needed)")
        values = np.asarray(aus.intensity, np.float64)[:, [order[n] for n in self._names]]
        ok = aus.get("success")
        name = self.video_name or Path(str(frame.source or "video")).stem
        for i in range(min(len(points), len(values))):
            if not np.isfinite(values[i]).all() or (ok is not None and not ok[i]):
                self.skipped += 1
                continue
            fit = self._pdm.fit(points[i, :, :2])
            row = sample(frame.image, points[i, :, :2], fit.params_global, fit.local, values[i], hog=self.hog)
            quality = float(np.exp(-fit.rms / 2.0))  # a fit off the landmarks by 2 px RMS: 0.37
            self._pending.append((name, int(frame.frame_id), quality, row))
        if len(self._pending) >= 64:
            self._flush()
        return None

    def _flush(self) -> None:
        if not self._pending:
            return
        rows = [r for _, _, _, r in self._pending]
        batch = {k: [r[k] for r in rows] for k in rows[0]}
        batch["metadata/frame_indices"] = [f for _, f, _, _ in self._pending]
        batch["metadata/quality_scores"] = [q for _, _, q, _ in self._pending]
        self._writer.append(batch, [n for n, _, _, _ in self._pending])
        self.written += len(self._pending)
        self._pending.clear()

    def close(self) -> None:
        if getattr(self, "_writer", None) is None:
            return
        try:
            self._flush()
        finally:
            self._writer.close()
            self._writer = None
            log.info("sink.hdf5: %d rows written, %d faces skipped (no AUs)", self.written, self.skipped)


def _default_pdm() -> Path | None:
    from ..face.au import openface_folder

    folder = openface_folder("")
    return None if folder is None else folder / "In-the-wild_aligned_PDM_68.txt"
