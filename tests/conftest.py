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
