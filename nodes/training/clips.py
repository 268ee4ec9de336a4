"""``facegraph data clips``: per-track face clips from videos, one subject per track and video.

The crops come from the same decode → detect → align graph as ``facegraph data
crops --video`` (:func:`facedata.crops_from_video`), so a graph's ``align`` node
hands the expression models exactly what they were trained on. On top of the crops:

* ``subjects.json``: one subject id per (video, track), the id the subject
  embedding table of ``facegraph train expression`` is indexed by;
* ``clips.json``: clips of ``clip_len`` consecutive frames of one track, every
  ``stride`` frames (random clips), or centred on the timestamps of a keywords CSV
  (``video, time, keyword``); each with its split (``train``, or ``val`` for the
  videos named in ``val_videos``, so a held-out video never leaks into training).
"""

from __future__ import annotations

import csv
import glob
import json
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import TrainingError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


@dataclass
class ClipsReport:
    videos: int
    subjects: int
    clips: dict[str, int]
    frames: int
    out: Path


def find_videos(source: str) -> list[Path]:
    """A video file, a folder of videos, or a glob; an error naming ``--source`` when nothing matches."""
    path = Path(source).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    else:
        found = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).suffix.lower() in VIDEO_SUFFIXES)
    if not found:
        raise TrainingError(f"--source {source}: no video there (a file, a folder or a glob of "
                            f"{', '.join(VIDEO_SUFFIXES)})")
    return found


def session_name(video: Path) -> str:
    return re.sub(r"[^\w.\-]", "_", video.stem)


def read_keywords(path: str | Path) -> dict[str, list[tuple[float, str]]]:
    """``video, time, keyword`` rows (video: file name or stem; time in seconds) by session name."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise TrainingError(f"--keywords {path}: no such file")
    out: dict[str, list[tuple[float, str]]] = defaultdict(list)
    with path.open(newline="") as f:
        reader = csv.DictReader(f, skipinitialspace=True)
        need = {"video", "time", "keyword"}
        if not need <= set(reader.fieldnames or []):
            raise TrainingError(f"--keywords {path}: needs the columns video, time, keyword "
                                f"(has {', '.join(reader.fieldnames or [])})")
        for line, row in enumerate(reader, start=2):
            try:
                t = float(row["time"])
            except ValueError:
                raise TrainingError(f"--keywords {path}, line {line}: time {row['time']!r} is not a number") from None
            out[session_name(Path(row["video"]))].append((t, row["keyword"].strip()))
    return dict(out)


def _runs(frames: list[tuple[int, float, str]], max_gap: int) -> list[list[tuple[int, float, str]]]:
    """Split one track's (frame, time, crop) rows where frames are missing (a lost face breaks a clip)."""
    runs: list[list[tuple[int, float, str]]] = []
    for item in sorted(frames):
        if runs and item[0] - runs[-1][-1][0] <= max_gap:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def build_clips(rows: Sequence[dict[str, str]], *, clip_len: int, stride: int, val_sessions: Sequence[str] = (),
                keywords: dict[str, list[tuple[float, str]]] | None = None, every: int = 1,
                min_track: int | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(subjects, clips) from a crops manifest: subjects numbered in (session, track) order."""
    by_track: dict[tuple[str, int], list[tuple[int, float, str]]] = defaultdict(list)
    for r in rows:
        by_track[(r["session"], int(r["track"]))].append((int(r["frame"]), float(r.get("time") or 0.0), r["crop"]))
    subjects: list[dict[str, Any]] = []
    clips: list[dict[str, Any]] = []
    for (session, track), frames in sorted(by_track.items()):
        if len(frames) < (min_track or clip_len):
            continue
        sid = len(subjects)
        split = "val" if session in val_sessions else "train"
        subjects.append({"id": sid, "name": f"{session}#{track}", "session": session, "track": track,
                         "frames": len(frames), "split": split})
        for run in _runs(frames, max_gap=every):
            if len(run) < clip_len:
                continue
            if keywords is not None:
                for t, word in keywords.get(session, []):
                    centre = min(range(len(run)), key=lambda i: abs(run[i][1] - t))
                    if abs(run[centre][1] - t) > 0.5:  # the face is not on screen at that time
                        continue
                    start = min(max(0, centre - clip_len // 2), len(run) - clip_len)
                    clips.append(_clip(sid, session, track, split, run[start : start + clip_len], word))
            else:
                for start in range(0, len(run) - clip_len + 1, stride):
                    clips.append(_clip(sid, session, track, split, run[start : start + clip_len], ""))
    return subjects, clips


def _clip(sid: int, session: str, track: int, split: str, run: list[tuple[int, float, str]],
          keyword: str) -> dict[str, Any]:
    return {"subject": sid, "session": session, "track": track, "split": split, "keyword": keyword,
            "start": run[0][0], "time": run[0][1], "crops": [c for _, _, c in run]}


def make_clips(source: str, out: str | Path, *, clip_len: int = 16, stride: int = 8, size: int = 224,
               keywords: str | Path | None = None, val_videos: Sequence[str] = (), every: int = 1,
               max_frames: int | None = None, detector: str = "mediapipe", progress: bool = True) -> ClipsReport:
    """Crops of every video (skipped when its session is already in the manifest), then subjects and clips."""
    from . import facedata

    if clip_len < 2:
        raise TrainingError(f"--clip-len must be ≥ 2 (the temporal loss needs neighbours), got {clip_len}")
    if stride < 1:
        raise TrainingError(f"--stride must be ≥ 1, got {stride}")
    videos = find_videos(source)
    out = Path(out).expanduser()
    kw = read_keywords(keywords) if keywords else None
    val_sessions = {session_name(Path(v)) for v in val_videos}
    unknown = sorted(val_sessions - {session_name(v) for v in videos})
    if unknown:
        raise TrainingError(f"--val-videos {unknown[0]}: not among the --source videos")
    manifest = out / "manifest.csv"
    done = {r["session"] for r in facedata.read_manifest(manifest)} if manifest.is_file() else set()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(videos), desc="videos", unit="video", disable=None)
    for video in videos:
        session = session_name(video)
        if session not in done:
            facedata.crops_from_video(video, out, session=session, size=size, every=every, max_frames=max_frames,
                                      detector=detector)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(video=session, refresh=False)
    if bar is not None:
        bar.close()
    rows = [r for r in facedata.read_manifest(manifest) if r["session"] in {session_name(v) for v in videos}]
    subjects, clips = build_clips(rows, clip_len=clip_len, stride=stride, val_sessions=sorted(val_sessions),
                                  keywords=kw, every=every)
    if not clips:
        raise TrainingError(f"--source {source}: no track is {clip_len} frames long (lower --clip-len?)")
    meta = {"clip_len": clip_len, "stride": stride, "size": size, "every": every, "framing": "arcface",
            "videos": [str(v) for v in videos], "val_sessions": sorted(val_sessions),
            "keywords": str(keywords) if keywords else None}
    (out / "subjects.json").write_text(json.dumps(subjects, indent=1) + "\n")
    (out / "clips.json").write_text(json.dumps({**meta, "clips": clips}) + "\n")
    counts = {s: sum(c["split"] == s for c in clips) for s in ("train", "val")}
    return ClipsReport(videos=len(videos), subjects=len(subjects), clips=counts, frames=len(rows), out=out)


def load_clips(folder: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(clips.json, subjects) of a clips folder; an error naming ``--clips`` when it is not one."""
    folder = Path(folder).expanduser()
    for name in ("clips.json", "subjects.json"):
        if not (folder / name).is_file():
            raise TrainingError(f"--clips {folder}: no {name} (make it with facegraph data clips)")
    try:
        return json.loads((folder / "clips.json").read_text()), json.loads((folder / "subjects.json").read_text())
    except json.JSONDecodeError as exc:
        raise TrainingError(f"--clips {folder}: damaged JSON ({exc})") from None
