"""``identify``: names for face embeddings from a gallery of known people, with a cosine threshold.

The gallery is a folder of face photos per person (embedded once with
``model``, the same recognition model the ``embed`` node runs, and cached), or
an .npz of ``names`` + ``vectors``. A face whose best cosine similarity is
below ``threshold`` gets the ``unknown`` name, '' by default (the Identities
port's convention: overlays draw nothing, tables keep an empty cell); its
score is still the best similarity found. With ``smooth`` > 0, a tracked face
is named by the majority of its last ``smooth`` matches, so a name does not
flicker on a blurred frame.
"""

from __future__ import annotations

from collections import Counter, deque
from pathlib import Path
from typing import Any

import numpy as np

from facegraph import Input, Node, Output, Param, ParamError, register

from ..types import EMBEDDINGS, IDENTITIES
from . import _catalogue


@register("identify")
class Identify(Node):
    """Match embeddings against a gallery of people; '' (or ``unknown``) below the threshold."""

    embeddings = Input(EMBEDDINGS)
    identities = Output(IDENTITIES, doc="names per face, best cosine scores, track_id copied")
    gallery = Param(str, doc="folder with one sub-folder of face photos per person, or an .npz (names, vectors)")
    model = Param(str, "buffalo_l/w600k_r50", doc="recognition model for building a folder gallery (as in 'embed')")
    threshold = Param(float, 0.35, ge=-1.0, le=1.0, doc="lowest cosine similarity that names a face")
    reduce = Param(str, "mean", choices=("mean", "max"), doc="compare with each person's mean vector, or best photo")
    detector = Param(str, "mediapipe", choices=("mediapipe", "none"),
                     doc="finds faces in gallery photos; 'none': photos are aligned 112×112 crops already")
    unknown = Param(str, "", doc="name given to faces below the threshold")
    smooth = Param(int, 0, ge=0, le=1000, doc="majority over a track's last N matches; 0 = off")
    providers = Param((str, list), "auto", doc="ONNX Runtime providers for building a gallery")

    cost = 0.1  # a product with the gallery per face (building it happens in open())

    @classmethod
    def validate_params(cls, values: dict[str, Any]) -> dict[str, Any] | None:
        if not str(values["gallery"]).strip():
            raise ParamError("parameter 'gallery' must name a folder or an .npz file")
        return None

    @classmethod
    def requirements(cls, values: dict[str, Any]) -> list[str]:
        path = Path(values["gallery"]).expanduser()
        if not path.exists():
            return [f"needs gallery '{path}' (a folder with one sub-folder of photos per person, or an .npz)"]
        if path.is_dir():
            return _catalogue.model_requirements(values["model"], "recognition model")
        return []

    def open(self) -> None:
        from . import _gallery

        path = Path(self.gallery).expanduser()
        if path.is_dir():
            from ._onnx import resolve_model

            model_path = resolve_model(self.model, what="recognition model")
            model_id = _catalogue.model_hash(model_path)

            def factory():
                from ._dlib import open_embedder  # an ONNX embedder, or ours over RGB + heatmaps

                return open_embedder(str(model_path), providers=self.providers, threads=self.context.threads)

            self.book, self.cache_file, self.built = _gallery.load_or_build(path, model_id, factory, self.detector)
        else:
            self.book, self.cache_file, self.built = _gallery.Gallery.load(path), None, False
        self.recent: dict[int, deque[tuple[str, float]]] = {}
        self.last_seen: dict[int, int] = {}
        self.count = 0

    def process(self, embeddings: Any) -> dict[str, dict[str, Any]]:
        vec = np.asarray(embeddings.vec, dtype=np.float32)
        names, scores = self.book.match(vec, self.threshold, self.reduce, self.unknown)
        track_id = embeddings.get("track_id")
        self.count += 1
        if self.smooth and track_id is not None:
            names, scores = self._smooth(names, scores, np.asarray(track_id))
        out: dict[str, Any] = {"names": list(names), "scores": np.asarray(scores, dtype=np.float32)}
        if track_id is not None:
            out["track_id"] = np.asarray(track_id, dtype=np.int32)
        return {"identities": out}

    def _smooth(self, names: list[str], scores: np.ndarray, tracks: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Majority name over each track's recent matches; score = mean of the winner's recent scores."""
        out_names, out_scores = [], np.empty(len(names), np.float32)
        for i, (name, score, tid) in enumerate(zip(names, scores, tracks.tolist(), strict=True)):
            if tid < 0:  # untracked face
                out_names.append(name)
                out_scores[i] = score
                continue
            history = self.recent.setdefault(tid, deque(maxlen=self.smooth))
            history.append((name, float(score)))
            self.last_seen[tid] = self.count
            winner = Counter(n for n, _ in history).most_common(1)[0][0]
            out_names.append(winner)
            out_scores[i] = np.mean([s for n, s in history if n == winner])
        stale = [t for t, seen in self.last_seen.items() if self.count - seen > 10 * self.smooth + 30]
        for t in stale:
            self.recent.pop(t, None)
            self.last_seen.pop(t, None)
        return out_names, out_scores
