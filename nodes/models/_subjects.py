"""Subject embeddings by name: the ``subjects.npz`` beside an expression model (numpy only).

Rows: every training subject (with its subject-table id), ``mean`` (their average:
the stand-in for someone not enrolled) and each person enrolled later
(``facegraph train enroll``, id −1). A graph names a subject by name or by id.
For a conv+ref decoder each row also holds the subject's **reference face** (RGB
uint8, the model's image size): the mean of its training crops, of every training
crop for ``mean``, or of the enrollment frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facegraph import ModelError

SUBJECTS_FILE = "subjects.npz"


class SubjectStore:
    """name → embedding [D], with the training ids alongside."""

    def __init__(self, names: list[str], vectors: np.ndarray, ids: list[int] | None = None,
                 path: Path | None = None, references: np.ndarray | None = None) -> None:
        self.names, self.vectors = list(names), np.asarray(vectors, np.float32)
        self.ids = list(ids) if ids is not None else [-1] * len(self.names)
        self.path = path
        self.references = None if references is None else np.asarray(references, np.uint8)

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
                refs = np.asarray(data["references"], np.uint8) if "references" in data else None
                return cls(names, np.asarray(data["vectors"], np.float32), ids, path, refs)
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"{path}: not a subjects file ({exc})") from None

    def write(self, path: str | Path) -> Path:
        path = Path(path).expanduser()
        tmp = path.with_name(path.stem + ".tmp.npz")
        extra = {} if self.references is None else {"references": self.references}
        np.savez(tmp, names=np.asarray(self.names), vectors=self.vectors.astype(np.float32),
                 ids=np.asarray(self.ids, np.int64), **extra)
        tmp.replace(path)
        return path

    def set(self, name: str, vector: np.ndarray, sid: int = -1, reference: np.ndarray | None = None) -> None:
        """Add or replace a row; ``reference``: RGB [S, S, 3], uint8 or float in [0, 1] (conv+ref stores)."""
        vector = np.asarray(vector, np.float32)[None]
        if (reference is None) != (self.references is None) and len(self.names):
            raise ModelError(f"{self.path or 'subjects file'}: every row has a reference face or none does")
        ref = None
        if reference is not None:
            reference = np.asarray(reference)
            if reference.dtype != np.uint8:
                reference = np.clip(np.rint(reference * 255.0), 0, 255).astype(np.uint8)
            ref = reference[None]
        if name in self.names:
            self.vectors[self.names.index(name)] = vector[0]
            if ref is not None:
                self.references[self.names.index(name)] = ref[0]
        else:
            self.names.append(name)
            self.ids.append(sid)
            self.vectors = np.concatenate([self.vectors, vector]) if len(self.vectors) else vector
            if ref is not None:
                self.references = ref if self.references is None else np.concatenate([self.references, ref])

    def row(self, key: str | int, what: str = "subject") -> int:
        """The row of a name, or of a training id (an integer, or a string of digits)."""
        text = str(key).strip()
        if text in self.names:
            return self.names.index(text)
        if text.lstrip("-").isdigit() and int(text) in self.ids and int(text) >= 0:
            return self.ids.index(int(text))
        known = ", ".join(self.names[:6]) + (" …" if len(self.names) > 6 else "")
        raise ModelError(f"{what} {text!r}: not in {self.path or 'the subjects file'} (names: {known}; or a training "
                         "id; enroll someone new with facegraph train enroll)")

    def get(self, key: str | int, what: str = "subject") -> np.ndarray:
        """The embedding of a name or training id."""
        return self.vectors[self.row(key, what)]

    def reference(self, key: str | int, what: str = "subject") -> np.ndarray:
        """The reference face of a name or training id: float32 RGB [S, S, 3] in [0, 1]."""
        i = self.row(key, what)
        if self.references is None:
            raise ModelError(f"{self.path or 'the subjects file'}: no reference faces (written for a decoder "
                             "without the conv+ref head)")
        return self.references[i].astype(np.float32) / 255.0

    def __contains__(self, name: str) -> bool:
        return name in self.names
