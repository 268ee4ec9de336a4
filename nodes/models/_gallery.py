"""Face galleries for ``identify``: build from a folder of photos or load an .npz, cache, and match.

A gallery folder holds one sub-folder per person (``gallery/Ada/1.jpg``), or
images directly named after the person (``gallery/Ada.jpg``). Images that are
already 112×112 are taken as ArcFace-aligned crops; larger ones go through
mediapipe's BlazeFace (bundled, no download), and the largest face is aligned
to the ArcFace template from its eyes, nose and mouth centre.

Embedding a gallery costs a detector and a recognition pass per image, so the
result is cached as ``<gallery>/.facegraph-gallery-<model hash>.npz`` (or in
the models folder when the gallery folder is read-only), keyed by the images'
names, sizes and mtimes and by the detector; a change to any of them, or
another model, rebuilds it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facegraph import ModelError, SourceError

log = logging.getLogger("facegraph.identify")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".webp", ".tif", ".tiff"}
CACHE_PREFIX = ".facegraph-gallery-"
FORMAT = 1


@dataclass
class Gallery:
    """People and their vectors: ``vectors[i]`` (unit length) belongs to ``people[labels[i]]``."""

    people: list[str]
    vectors: np.ndarray
    labels: np.ndarray
    files: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.people)

    @classmethod
    def from_rows(cls, names: list[str], vectors: np.ndarray, files: list[str] | None = None) -> Gallery:
        """One row per vector, names repeated for a person with several vectors."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(names):
            raise ModelError(f"gallery needs vectors [M,D] with M names; got {vectors.shape} and {len(names)} names")
        people = sorted(set(names))
        index = {p: i for i, p in enumerate(people)}
        labels = np.array([index[n] for n in names], dtype=np.int32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return cls(people, vectors / np.maximum(norms, 1e-12), labels, list(files or []))

    @classmethod
    def load(cls, path: Path) -> Gallery:
        """An .npz with ``names`` (str[M]) and ``vectors`` (float[M,D]); other keys are ignored."""
        try:
            with np.load(path, allow_pickle=False) as data:
                lacking = [k for k in ("names", "vectors") if k not in data.files]
                if lacking:
                    raise ModelError(f"{path}: gallery .npz lacks '{lacking[0]}'; it needs 'names' and 'vectors'")
                names = [str(n) for n in data["names"]]
                vectors = data["vectors"]
                files = [str(f) for f in data["files"]] if "files" in data.files else []
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path}: not a readable gallery .npz ({exc})") from None
        return cls.from_rows(names, vectors, files)

    def save(self, path: Path, key: str = "") -> None:
        """Write atomically (``names``/``vectors`` rows, plus the cache key)."""
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
        names = np.array([self.people[i] for i in self.labels], dtype=str)
        np.savez(tmp, names=names, vectors=self.vectors, files=np.array(self.files, dtype=str),
                 skipped=np.array(self.skipped, dtype=str), key=np.array(key), format=np.array(FORMAT))
        os.replace(tmp, path)

    def scores(self, embeddings: np.ndarray, reduce: str = "mean") -> np.ndarray:
        """Cosine similarity float32[N, people]: against each person's mean vector, or their best single vector."""
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.shape[1] != self.dim:
            raise ModelError(
                f"gallery vectors are {self.dim}-D but the embeddings are {emb.shape[1]}-D; "
                "build the gallery with the same model as the 'embed' node"
            )
        out = np.empty((len(emb), len(self.people)), dtype=np.float32)
        for p in range(len(self.people)):
            rows = self.vectors[self.labels == p]
            if reduce == "mean":
                centre = rows.mean(0)
                out[:, p] = emb @ (centre / max(float(np.linalg.norm(centre)), 1e-12))
            else:
                out[:, p] = (emb @ rows.T).max(1)
        return out

    def match(self, embeddings: np.ndarray, threshold: float, reduce: str = "mean",
              unknown: str = "") -> tuple[list[str], np.ndarray]:
        """Best person per embedding (``unknown`` below ``threshold``) and its cosine score."""
        if len(embeddings) == 0 or not self.people:
            return [unknown] * len(embeddings), np.full(len(embeddings), -1.0, np.float32)
        s = self.scores(embeddings, reduce)
        best = s.argmax(1)
        score = s[np.arange(len(s)), best].astype(np.float32)
        names = [self.people[b] if sc >= threshold else unknown for b, sc in zip(best, score, strict=True)]
        return names, score


def scan(folder: Path) -> list[tuple[str, Path]]:
    """(person, image) pairs: sub-folders name people; loose images are named by their stem."""
    items = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            items += [(entry.name, p) for p in sorted(entry.rglob("*"))
                      if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
        elif entry.suffix.lower() in IMAGE_SUFFIXES:
            items.append((entry.stem, entry))
    return items


def manifest_key(folder: Path, items: list[tuple[str, Path]], detector: str) -> str:
    """Hash of every image's person, relative path, size and mtime, and the detector."""
    digest = hashlib.sha256(f"v{FORMAT} {detector}\n".encode())
    for name, path in items:
        st = path.stat()
        digest.update(f"{name}\t{path.relative_to(folder)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_path(folder: Path, model_id: str) -> Path:
    """``<folder>/.facegraph-gallery-<model>.npz``, or under the models folder when the gallery is read-only."""
    if os.access(folder, os.W_OK):
        return folder / f"{CACHE_PREFIX}{model_id}.npz"
    from facegraph._modelstore import cache_dir

    tag = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]
    return cache_dir() / "galleries" / f"{folder.name}-{tag}-{model_id}.npz"


class FaceFinder:
    """Largest face of a photo → ArcFace-aligned 112×112 crop, via mediapipe's bundled BlazeFace."""

    def __init__(self, min_confidence: float = 0.5) -> None:
        import mediapipe as mp

        self.detector = mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=min_confidence
        )

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        from ..face._align import align

        h, w = image.shape[:2]
        found = self.detector.process(np.ascontiguousarray(image[..., ::-1])).detections or []
        if not found:
            return None
        best = max(found, key=lambda d: d.location_data.relative_bounding_box.width)
        kps = np.array([[k.x * w, k.y * h] for k in best.location_data.relative_keypoints[:4]], np.float32)
        return align(image, kps)[0]

    def close(self) -> None:
        self.detector.close()


def read_crop(path: Path, finder: Callable[[np.ndarray], np.ndarray | None] | None) -> np.ndarray | None:
    """An aligned crop from one gallery image: as is when 112×112 (or no detector), else the detector's."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        log.warning("%s: not a readable image; skipped", path)
        return None
    if image.shape[:2] == (112, 112) or finder is None:
        return image if image.shape[:2] == (112, 112) else cv2.resize(image, (112, 112))
    return finder(image)


def build(folder: Path, embed: Callable[[np.ndarray], np.ndarray], detector: str = "mediapipe") -> Gallery:
    """Embed every face image of a gallery folder (see the module docstring for the layout)."""
    items = scan(folder)
    if not items:
        raise SourceError(f"{folder}: gallery folder has no images (one sub-folder of face photos per person)")
    finder = FaceFinder() if detector == "mediapipe" else None
    names, crops, files, skipped = [], [], [], []
    try:
        for name, path in items:
            crop = read_crop(path, finder)
            if crop is None:
                skipped.append(str(path.relative_to(folder)))
                continue
            names.append(name)
            crops.append(crop)
            files.append(str(path.relative_to(folder)))
    finally:
        if finder is not None:
            finder.close()
    if skipped:
        log.warning("%s: no face found in %d image(s): %s", folder, len(skipped), ", ".join(skipped[:5]))
    if not crops:
        raise SourceError(f"{folder}: no face found in any of its {len(items)} gallery images")
    vectors = np.concatenate([embed(np.stack(crops[i : i + 32])) for i in range(0, len(crops), 32)])
    gallery = Gallery.from_rows(names, vectors, files)
    gallery.skipped = skipped
    return gallery


def load_or_build(folder: Path, model_id: str, embed_factory: Callable[[], Callable[[np.ndarray], np.ndarray]],
                  detector: str = "mediapipe") -> tuple[Gallery, Path, bool]:
    """The cached gallery when its key still matches, else a fresh build (saved). Returns (gallery, cache, built)."""
    items = scan(folder)
    key = manifest_key(folder, items, detector)
    path = cache_path(folder, model_id)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                stored = str(data["key"]) if "key" in data else ""
            if stored == key:
                return Gallery.load(path), path, False
        except (OSError, ValueError, ModelError):
            pass  # a damaged cache is rebuilt
    gallery = build(folder, embed_factory(), detector)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        gallery.save(path, key)
    except OSError as exc:
        log.warning("%s: gallery cache not written (%s)", path, exc)
    return gallery, path, True
