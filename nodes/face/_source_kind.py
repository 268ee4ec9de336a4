"""What a packet's ``source`` is: a live feed, still images, or a file that ends (offline post-processing)."""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def is_live(source: str) -> bool:
    """A camera or a stream: no end to wait for."""
    src = str(source)
    return src.startswith("camera ") or "://" in src


def is_image(source: str) -> bool:
    """A still image or a folder of them: no video to post-process."""
    path = Path(str(source))
    return path.suffix.lower() in IMAGE_SUFFIXES or path.is_dir()


def wants_postprocess(setting: str, source: str) -> bool:
    """``postprocess`` on / off / auto (on for video files, off for live sources and images)."""
    return setting == "on" or (setting == "auto" and not is_live(source) and not is_image(source))
