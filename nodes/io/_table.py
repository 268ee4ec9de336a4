"""Per-face rows for the table sinks (csv, jsonl, parquet) and the zmq sink, written once.

``ResultSink`` declares the inputs every result sink shares (``faces`` required;
``frame``, ``landmarks``, ``pose``, ``aus``, ``embeddings``, ``identities`` and
``probs`` optional) and turns each frame's packets into one record per face.
``Schema`` fixes the columns from what the graph computes: it watches the
packets until the first row is written (so a video that starts without a face
still gets the right header) and never changes after.

Per-face arrays of the optional inputs are matched to the faces by ``track_id``
when both carry one, else by position when the counts agree; a face with no
match gets empty cells, never made-up values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facegraph import FRAME, Input, Node, Packet, Param

from ..types import AUS, EMBEDDINGS, FACES, IDENTITIES, LANDMARKS, POSE, PROBS
from . import _openface as of


@dataclass
class Schema:
    """Which column groups exist; frozen once the first row is out."""

    pose: bool = False
    gaze: bool = False
    lmk68: bool = False
    lmk_other: tuple[int, int] | None = None  # (K, D) of a non-68-point scheme
    aus: list[tuple[str, str]] = field(default_factory=list)  # (column, packet name)
    presence: list[tuple[str, str]] = field(default_factory=list)  # (AUxx_c column, packet name)
    au_backend: str | None = None
    au_landmarks: str | None = None  # the 68 points the AUs were read from (facemesh468, facemesh468+dlib68, …)
    revise: str | None = None  # where the AU node leaves its post-processed values at end of stream
    track: bool = False
    identity: bool = False
    probs: list[str] = field(default_factory=list)
    emb_dim: int | None = None
    extra: list[str] = field(default_factory=list)  # constant columns asked for by the sink's `constants`
    frozen: bool = False

    def observe(self, packets: dict[str, Packet | None]) -> None:
        aus = packets.get("aus")
        if aus is not None and aus.get("revise"):
            self.revise = str(aus.revise)
        if self.frozen:
            return
        faces, lmk, pose, aus = (packets.get(k) for k in ("faces", "landmarks", "pose", "aus"))
        emb, ids, probs = (packets.get(k) for k in ("embeddings", "identities", "probs"))
        if faces is not None and faces.get("track_id") is not None:
            self.track = True
        if pose is not None:
            self.pose = True
        if lmk is not None:
            k, d = lmk.points.shape[1:]
            if k == 68:
                self.lmk68 = True
            else:
                self.lmk_other = (int(k), int(d))
        if aus is not None and not self.aus:
            self.aus = of.au_columns(list(aus.names))
            if aus.get("presence_names") is not None:
                self.presence = of.presence_columns(list(aus.presence_names))
            self.au_backend = aus.get("backend")
            self.au_landmarks = aus.get("landmarks_from")
        if aus is not None and aus.get("gaze") is not None:
            self.gaze = True
        if ids is not None:
            self.identity = True
        if probs is not None and not self.probs:
            self.probs = [str(label) for label in probs.labels]
        if emb is not None:
            self.emb_dim = int(emb.vec.shape[1])

    def columns(self, *, expand: bool, other_landmarks: bool = True) -> list[str]:
        """Column names in order; ``expand`` spreads vectors over scalar columns (CSV)."""
        cols = list(of.BASE)
        if self.gaze:
            cols += of.GAZE
        if self.pose:
            cols += of.POSE
        if self.lmk68:
            cols += of.LANDMARKS_68
        cols += [c for c, _ in self.aus]
        cols += [c for c, _ in self.presence]
        if self.track:
            cols.append("track_id")
        cols += ["box_x1", "box_y1", "box_x2", "box_y2"]
        if self.identity:
            cols += ["identity", "identity_score"]
        cols += [f"prob_{label}" for label in self.probs]
        if self.emb_dim:
            cols += [f"emb_{i}" for i in range(self.emb_dim)] if expand else ["embedding"]
        if self.lmk_other and other_landmarks:
            k, d = self.lmk_other
            if expand:
                for axis in "xyz"[:d]:
                    cols += [f"lmk_{axis}_{i}" for i in range(k)]
            else:
                cols.append("landmarks")
        return cols + self.extra


def _match(n: int, face_tids: np.ndarray | None, other: Packet | None, count: int, tids: Any) -> list[int | None]:
    """For each of the n faces, the row of ``other`` that belongs to it (None when none does)."""
    if other is None:
        return [None] * n
    if face_tids is not None and tids is not None:
        where = {int(t): i for i, t in enumerate(np.asarray(tids)) if int(t) >= 0}
        matched = [where.get(int(t)) if int(t) >= 0 else None for t in face_tids]
        if any(m is not None for m in matched) or count != n:
            return matched
    return list(range(n)) if count == n else [None] * n


def _rows_per_face(packets: dict[str, Packet | None]) -> dict[str, list[int | None]]:
    """For each per-face input, which of its rows belongs to each face of ``faces`` (by track id, else by order)."""
    faces = packets["faces"]
    n = int(faces.boxes.shape[0])
    tids = faces.get("track_id")
    out = {}
    for port, arr in (("landmarks", "points"), ("pose", "rotation"), ("aus", "intensity"), ("embeddings", "vec"),
                      ("identities", "scores"), ("probs", "p")):
        pkt = packets.get(port)
        count = 0 if pkt is None else int(np.asarray(pkt[arr]).shape[0])
        out[port] = _match(n, tids, pkt, count, None if pkt is None else pkt.get("track_id"))
    return out


def face_records(frame_id: int, packets: dict[str, Packet | None]) -> list[dict[str, Any]]:
    """One flat record per face, with OpenFace column names where OpenFace has the measure.

    Vectors stay whole under ``embedding`` and ``landmarks`` (the K×D points); the
    sinks spread them over columns as their format wants.
    """
    faces = packets["faces"]
    frame, lmk, pose, aus = (packets.get(k) for k in ("frame", "landmarks", "pose", "aus"))
    emb, ids, probs = (packets.get(k) for k in ("embeddings", "identities", "probs"))
    n = int(faces.boxes.shape[0])
    tids = faces.get("track_id")
    timestamp = None if frame is None else frame.get("timestamp")
    rows = _rows_per_face(packets)
    m_lmk, m_pose, m_aus = rows["landmarks"], rows["pose"], rows["aus"]
    m_emb, m_ids, m_probs = rows["embeddings"], rows["identities"], rows["probs"]
    out = []
    for i in range(n):
        conf = float(faces.scores[i])
        if lmk is not None and m_lmk[i] is not None and lmk.get("scores") is not None:
            conf = float(lmk.scores[m_lmk[i]])
        rec: dict[str, Any] = {"frame": frame_id + 1, "face_id": int(tids[i]) if tids is not None else i,
                               "timestamp": timestamp, "confidence": conf, "success": 1}
        if m_pose[i] is not None:
            t, r = pose.translation[m_pose[i]], pose.rotation[m_pose[i]]
            rec.update(zip(of.POSE, [*map(float, t), *map(float, r)], strict=True))
        points = None if m_lmk[i] is None else np.asarray(lmk.points[m_lmk[i]], dtype=np.float32)
        if points is not None and points.shape[0] == 68:
            rec.update(zip(of.LANDMARKS_68, [*map(float, points[:, 0]), *map(float, points[:, 1])], strict=True))
        if m_aus[i] is not None:
            read = aus.get("success") is None or int(aus.success[m_aus[i]]) == 1
            if not read:  # the backend could not read this face: OpenFace's success 0, no values
                rec["success"] = 0
            else:
                values = dict(zip(aus.names, (float(v) for v in aus.intensity[m_aus[i]]), strict=False))
                for col, name in of.au_columns(list(aus.names)):
                    rec[col] = values[name]
                if aus.get("gaze") is not None and np.all(np.isfinite(aus.gaze[m_aus[i]])):
                    g, ang = aus.gaze[m_aus[i]], aus.gaze_angle[m_aus[i]]
                    rec.update(zip(of.GAZE, [*map(float, g.reshape(-1)), *map(float, ang)], strict=True))
                if aus.get("presence") is not None:
                    present = dict(zip(aus.presence_names, (float(v) for v in aus.presence[m_aus[i]]), strict=False))
                    for col, name in of.presence_columns(list(aus.presence_names)):
                        rec[col] = present[name]
        if tids is not None:
            rec["track_id"] = int(tids[i])
        x1, y1, x2, y2 = (float(v) for v in faces.boxes[i])
        rec.update(box_x1=x1, box_y1=y1, box_x2=x2, box_y2=y2)
        if m_ids[i] is not None:
            rec["identity"] = str(ids.names[m_ids[i]])
            rec["identity_score"] = float(ids.scores[m_ids[i]])
        if m_probs[i] is not None:
            for label, p in zip(probs.labels, probs.p[m_probs[i]], strict=False):
                rec[f"prob_{label}"] = float(p)
        if m_emb[i] is not None:
            rec["embedding"] = np.asarray(emb.vec[m_emb[i]], dtype=np.float32)
        if points is not None and points.shape[0] != 68:
            rec["landmarks"] = points
        out.append(rec)
    return out


def expand_vectors(rec: dict[str, Any]) -> dict[str, Any]:
    """A record with ``embedding`` and ``landmarks`` spread over emb_i / lmk_x_i ... columns (for CSV)."""
    out = {k: v for k, v in rec.items() if k not in ("embedding", "landmarks")}
    if rec.get("embedding") is not None:
        out.update({f"emb_{i}": float(v) for i, v in enumerate(rec["embedding"])})
    if rec.get("landmarks") is not None:
        pts = rec["landmarks"]
        for d, axis in enumerate("xyz"[: pts.shape[1]]):
            out.update({f"lmk_{axis}_{i}": float(v) for i, v in enumerate(pts[:, d])})
    return out


def constant_cells(constants: dict[str, Any], source: str) -> dict[str, str]:
    """A sink's ``constants`` for one source: '{source}' becomes its file name without the extension."""
    stem = Path(str(source)).stem
    return {str(k): str(v).replace("{source}", stem) for k, v in constants.items()}


class ResultSink(Node):
    """Base of the sinks that write per-face results; subclasses implement ``write_frame``."""

    frame = Input(FRAME, optional=True, doc="for the media timestamp")
    faces = Input(FACES)
    landmarks = Input(LANDMARKS, optional=True, doc="68 points map to OpenFace x_/y_; other schemes to lmk_*")
    pose = Input(POSE, optional=True)
    aus = Input(AUS, optional=True)
    embeddings = Input(EMBEDDINGS, optional=True)
    identities = Input(IDENTITIES, optional=True)
    probs = Input(PROBS, optional=True)
    constants = Param(
        dict,
        {},
        doc="constant columns added to every row, e.g. {session: '{source}', label: happy}; "
        "'{source}' becomes the source's file name without its extension",
    )

    def open(self) -> None:
        self.schema = Schema(extra=[str(k) for k in self.constants])
        self.open_output()

    def open_output(self) -> None:
        """Open the file or socket; raise SinkError naming the path when it cannot be written."""

    def process(self, **packets: Packet | None) -> None:
        faces = packets["faces"]
        self.schema.observe(packets)
        records = face_records(faces.frame_id, packets)
        if self.constants:
            extra = constant_cells(self.constants, faces.source)
            for rec in records:
                rec.update(extra)
        self.write_frame(faces, packets, records)
        return None

    def write_frame(self, faces: Packet, packets: dict[str, Packet | None], records: list[dict[str, Any]]) -> None:
        raise NotImplementedError


def nested_faces(packets: dict[str, Packet | None]) -> list[dict[str, Any]]:
    """Per-face results as nested plain lists and dicts (for msgpack/JSON consumers), matched like the rows."""
    faces = packets["faces"]
    lmk, pose, aus = (packets.get(k) for k in ("landmarks", "pose", "aus"))
    emb, ids, probs = (packets.get(k) for k in ("embeddings", "identities", "probs"))
    n = int(faces.boxes.shape[0])
    tids = faces.get("track_id")
    rows = _rows_per_face(packets)
    m_lmk, m_pose, m_aus = rows["landmarks"], rows["pose"], rows["aus"]
    m_emb, m_ids, m_probs = rows["embeddings"], rows["identities"], rows["probs"]
    out = []
    for i in range(n):
        face: dict[str, Any] = {
            "box": faces.boxes[i].tolist(),
            "score": float(faces.scores[i]),
            "kps": faces.kps[i].tolist(),
            "track_id": int(tids[i]) if tids is not None else -1,
        }
        if m_lmk[i] is not None:
            face["landmarks"] = lmk.points[m_lmk[i]].tolist()
        if m_pose[i] is not None:
            face["pose"] = {"R": pose.rotation[m_pose[i]].tolist(), "T": pose.translation[m_pose[i]].tolist()}
        if m_aus[i] is not None:
            face["aus"] = {str(k): float(v) for k, v in zip(aus.names, aus.intensity[m_aus[i]], strict=False)}
            if aus.get("presence") is not None:
                face["aus_c"] = {str(k): float(v) for k, v in
                                 zip(aus.presence_names, aus.presence[m_aus[i]], strict=False)}
            if aus.get("success") is not None:
                face["success"] = int(aus.success[m_aus[i]])
        if m_probs[i] is not None:
            face["probs"] = {str(k): float(v) for k, v in zip(probs.labels, probs.p[m_probs[i]], strict=False)}
        if m_ids[i] is not None:
            face["identity"] = str(ids.names[m_ids[i]])
            face["identity_score"] = float(ids.scores[m_ids[i]])
        if m_emb[i] is not None:
            face["embedding"] = emb.vec[m_emb[i]].tolist()
        out.append(face)
    return out


def load_revision(path: str | None) -> dict[tuple[int, int], tuple[dict[str, float], int]] | None:
    """The AU node's post-processed values: (frame_id, track_id) → ({column: value}, success); None if absent."""
    if not path or not Path(path).is_file():
        return None
    with np.load(path) as data:
        names, pnames = [str(n) for n in data["names"]], [str(n) for n in data["presence_names"]]
        cols = [c for c, _ in of.au_columns(names)]
        pcols = [c for c, _ in of.presence_columns(pnames)]
        reg_order = [names.index(n) for _, n in of.au_columns(names)]
        cls_order = [pnames.index(n) for _, n in of.presence_columns(pnames)]
        out = {}
        for f, t, r, c, ok in zip(data["frame_id"], data["track_id"], data["intensity"], data["presence"],
                                  data["success"], strict=True):
            values = dict(zip(cols, (float(r[k]) for k in reg_order), strict=True))
            values.update(zip(pcols, (float(c[k]) for k in cls_order), strict=True))
            out[(int(f), int(t))] = (values, int(ok))
    return out


def revision_hits(frames: Iterable[Any], faces: Iterable[Any], success: Iterable[Any],
                  revision: dict) -> list[dict[str, float] | None]:
    """Per table row (1-based ``frame``, ``face_id``, ``success``): the revised AU values to write, or None where
    the row keeps its own (no revision, or a face the AU node could not read)."""
    out: list[dict[str, float] | None] = []
    for f, t, ok in zip(frames, faces, success, strict=True):
        hit = revision.get((int(f) - 1, int(t))) if ok == 1 else None
        out.append(hit[0] if hit is not None and hit[1] else None)
    return out


def backend_note(path: Path, backend: str, columns: list[str], landmarks: str | None = None) -> None:
    """The sidecar ``<table>.json`` that says which AU backend made the table's AU columns (and from which
    landmarks: the openface backend's agreement depends on them)."""
    import json

    note: dict[str, Any] = {"au_backend": backend, "au_columns": columns}
    if landmarks:
        note["au_landmarks"] = landmarks
    if backend == "openface":
        note["au_models"] = "OpenFace 2.2.0 AU_predictors (OpenFace academic licence)"
    Path(str(path) + ".json").write_text(json.dumps(note, indent=1) + "\n")
