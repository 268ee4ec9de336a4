"""Subject embeddings by name: the ``subjects.npz`` beside an expression model (numpy only).

Rows: every training subject (with its subject-table id), ``mean`` (their average:
the stand-in for someone not enrolled) and each person enrolled later
(``facegraph train enroll``, id −1). A graph names a subject by name or by id.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facegraph import ModelError

SUBJECTS_FILE = "subjects.npz"


class SubjectStore:
    """name → embedding [D], with the training ids alongside."""

    def __init__(self, names: list[str], vectors: np.ndarray, ids: list[int] | None = None,
                 path: Path | None = None) -> None:
        self.names, self.vectors = list(names), np.asarray(vectors, np.float32)
        self.ids = list(ids) if ids is not None else [-1] * len(self.names)
        self.path = path

    @classmethod
    def read(cls, path: str | Path) -> SubjectStore:
        path = Path(path).expanduser()
        if not path.is_file():
            raise ModelError(f"{path}: no subjects file (facegraph train expression writes {SUBJECTS_FILE} "
                             "beside its exports)")
        try:
            with np.load(path, allow_pickle=False) as data:
                names = [str(n) for n in data["names"]]
                ids = [int(i) for i in data["ids"]] if "ids" in data else None
                return cls(names, np.asarray(data["vectors"], np.float32), ids, path)
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"{path}: not a subjects file ({exc})") from None

    def write(self, path: str | Path) -> Path:
        path = Path(path).expanduser()
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(tmp, names=np.asarray(self.names), vectors=self.vectors.astype(np.float32),
                 ids=np.asarray(self.ids, np.int64))
        tmp.replace(path)
        return path

    def set(self, name: str, vector: np.ndarray, sid: int = -1) -> None:
        vector = np.asarray(vector, np.float32)[None]
        if name in self.names:
            self.vectors[self.names.index(name)] = vector[0]
        else:
            self.names.append(name)
            self.ids.append(sid)
            self.vectors = np.concatenate([self.vectors, vector]) if len(self.vectors) else vector

    def get(self, key: str | int, what: str = "subject") -> np.ndarray:
        """By name, or by training id (an integer, or a string of digits)."""
        text = str(key).strip()
        if text in self.names:
            return self.vectors[self.names.index(text)]
        if text.lstrip("-").isdigit() and int(text) in self.ids and int(text) >= 0:
            return self.vectors[self.ids.index(int(text))]
        known = ", ".join(self.names[:6]) + (" …" if len(self.names) > 6 else "")
        raise ModelError(f"{what} {text!r}: not in {self.path or 'the subjects file'} (names: {known}; or a training "
                         "id; enroll someone new with facegraph train enroll)")

    def __contains__(self, name: str) -> bool:
        return name in self.names
