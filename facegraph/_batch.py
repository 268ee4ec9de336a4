"""Batch runs: the same graph once per video, each its own run with its own output folder.

Nothing here schedules frames: a video is one ordinary ``Run`` (the process or
inline executor, unchanged), and videos run side by side on a
``concurrent.futures`` thread pool (``--jobs``) or as Ray tasks (``_batch_ray``).
What this module adds is the bookkeeping around the runs: which files are
videos, where each video's outputs go, the manifest (``batch.jsonl``, one JSON
line per event, flushed as it happens), ``--resume``, and the rule that a video
that fails is reported and skipped without stopping the others.
"""

from __future__ import annotations

import glob
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._errors import FacegraphError, NodeFailure
from ._graph import Graph
from ._node import RunContext
from ._osutil import sigterm_as_interrupt, unwritable_folder

MANIFEST = "batch.jsonl"
LIST_SUFFIXES = (".txt", ".lst", ".list")


class BatchError(FacegraphError):
    """Bad batch input (nothing matches, an unwritable output folder): exit 2 before any video runs."""

    exit_code = 2


class ManifestError(FacegraphError):
    """The manifest cannot be written mid-batch (a full or vanished disk): the batch stops, exit 1."""


@dataclass
class BatchItem:
    """One video of a batch: its path as found and the name of its output folder (its stem, made unique)."""

    video: str
    name: str


@dataclass
class BatchResult:
    """What a batch did: one final record per video (done, failed, skipped or interrupted)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    frames: int = 0
    wall_s: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for r in self.records if r["status"] == status)

    @property
    def failed(self) -> int:
        return self.count("failed")


# ---- which videos --------------------------------------------------------------------------------------


def expand_sources(spec: str | Path | Sequence[str | Path]) -> list[str]:
    """The files a batch runs over: a glob (``**`` allowed), a folder's files, a list file, or a list.

    A list file (``.txt``, ``.lst``, ``.list``) holds one path per line (``#`` starts a comment);
    relative paths are relative to the list file's folder. Order is sorted for globs and folders
    and kept for lists, so a batch always runs and names things the same way.
    """
    if isinstance(spec, (list, tuple)):
        return [str(p) for p in spec]
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_dir():
        return sorted(str(p) for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise BatchError(f"{path}: cannot read the list of videos ({exc})") from None
        out = []
        for line in lines:
            line = line.split("#", 1)[0].strip()
            if line:
                p = Path(line).expanduser()
                out.append(str(p if p.is_absolute() else path.parent / p))
        return out
    if path.exists():
        return [str(path)]
    if any(ch in text for ch in "*?["):
        return sorted(p for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
    return []


def batch_items(videos: Sequence[str]) -> list[BatchItem]:
    """Output folder names: each video's stem; a stem met again gets ``-2``, ``-3`` ... in order."""
    seen: dict[str, int] = {}
    items = []
    for video in videos:
        stem = Path(video).stem or "video"
        n = seen.get(stem, 0) + 1
        seen[stem] = n
        items.append(BatchItem(video, stem if n == 1 else f"{stem}-{n}"))
    return items


def probe_items(graph: Graph, items: list[BatchItem]) -> tuple[list[BatchItem], list[dict[str, Any]]]:
    """Split items into what the graph's source can run and skipped records for the rest (non-videos)."""
    probe = getattr(graph.source().cls, "probe", None)
    runnable, skipped = [], []
    for item in items:
        why = probe(item.video) if probe is not None else None
        if why is None:
            runnable.append(item)
        else:
            skipped.append(record(item, "skipped", error=why))
    return runnable, skipped


# ---- the manifest --------------------------------------------------------------------------------------


def record(item: BatchItem, status: str, **fields: Any) -> dict[str, Any]:
    """One manifest line: video, its output folder, status, and whatever else is known."""
    rec = {"video": item.video, "output": item.name, "status": status}
    rec.update(fields)
    return rec


class Manifest:
    """``batch.jsonl``: one JSON object per event (a start, a retry, an end), appended and flushed at once.

    A line per event rather than a rewritten table: a crash, a kill or a full disk
    loses at most the line being written, and the last line per video is its state.
    """

    def __init__(self, path: Path, resume: bool) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.previous = read_manifest(path) if resume else {}
        try:
            self.file = open(path, "a" if resume else "w", encoding="utf-8")
        except OSError as exc:
            raise BatchError(f"{path}: cannot write the batch manifest ({exc.strerror or exc})") from None

    def done(self) -> set[str]:
        """Videos whose last line says done (and whose output folder is still there)."""
        out = set()
        for key, rec in self.previous.items():
            if rec.get("status") == "done" and (self.path.parent / str(rec.get("output", ""))).is_dir():
                out.add(key)
        return out

    def write(self, rec: dict[str, Any]) -> None:
        line = json.dumps({**rec, "time": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        with self.lock:
            try:
                self.file.write(line + "\n")
                self.file.flush()
            except OSError as exc:
                raise ManifestError(f"{self.path}: cannot write the batch manifest ({exc.strerror or exc}); "
                                    "finished videos keep their outputs") from None

    def close(self) -> None:
        try:
            self.file.close()
        except OSError:
            pass


def video_key(video: str) -> str:
    """How resume recognises a video: its absolute path."""
    return os.path.abspath(video)


def read_manifest(path: Path) -> dict[str, dict[str, Any]]:
    """The last record per video (by absolute path); a torn last line is ignored."""
    out: dict[str, dict[str, Any]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return out
    except OSError as exc:
        raise BatchError(f"{path}: cannot read the batch manifest ({exc.strerror or exc})") from None
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "video" in rec:
            out[video_key(str(rec["video"]))] = rec
    return out


# ---- one video -----------------------------------------------------------------------------------------


class Interrupted(Exception):
    """Raised inside a video's loop when the batch is being stopped (Ctrl-C, SIGTERM)."""


@dataclass
class VideoSettings:
    """How each video runs: the same for the local pool and for a Ray task."""

    executor: str = "process"
    cores: int | None = None
    max_frames: int | None = None
    max_in_flight: int | None = None


def run_video(
    graph: Graph,
    item: BatchItem,
    out_dir: Path,
    settings: VideoSettings,
    *,
    stop: threading.Event | None = None,
    on_start: Callable[[int | None, dict[str, int]], None] | None = None,
    on_frame: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run ``graph`` on one video into ``out_dir``; the final manifest record, never an exception.

    Failures become a ``failed`` record with the one-line error (and, for a node's
    crash, the traceback in ``facegraph-error.log`` beside the outputs); a stop
    request becomes ``interrupted``. Only KeyboardInterrupt in this thread escapes,
    after its record is made (``Interrupted`` carries it).
    """
    from ._run import Run, RunOptions, set_source

    started = time.perf_counter()
    frames = 0
    where = f"{socket.gethostname()}:{os.getpid()}"

    def finish(status: str, error: str | None = None) -> dict[str, Any]:
        return record(item, status, frames=frames, seconds=round(time.perf_counter() - started, 3),
                      outputs=list_outputs(out_dir), error=error, worker=where)

    try:
        g = graph.copy()
        set_source(g, item.video)
        g.check()
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return finish("failed", f"{out_dir}: output folder cannot be written ({exc.strerror or exc})")
        context = RunContext(output_dir=out_dir, graph_name=g.name, quiet=True)
        options = RunOptions(context=context, max_frames=settings.max_frames)
        if settings.max_in_flight:
            options.max_in_flight = settings.max_in_flight
        if settings.cores:
            options.extra["cores"] = settings.cores
        if on_start is not None:
            options.on_start = lambda total: on_start(total, dict(options.extra.get("workers", {})))
        it = iter(Run(g, settings.executor, options))
        try:
            for _ in it:
                frames += 1
                if on_frame is not None:
                    on_frame()
                if stop is not None and stop.is_set():
                    raise Interrupted
        finally:
            it.close()  # ends the run at once: workers stopped, sinks closed, segments removed
    except Interrupted:
        return finish("interrupted", "interrupted before the end (run again with --resume)")
    except KeyboardInterrupt:
        raise Interrupted(finish("interrupted", "interrupted before the end (run again with --resume)")) from None
    except NodeFailure as exc:
        from .cli import write_failure_log

        write_failure_log(out_dir, exc)
        return finish("failed", first_line(exc))
    except FacegraphError as exc:
        return finish("failed", first_line(exc))
    except MemoryError:
        return finish("failed", "out of memory")
    except OSError as exc:  # a full or read-only disk under a sink that did not wrap it
        return finish("failed", f"{getattr(exc, 'filename', '') or out_dir}: {exc.strerror or exc}")
    except Exception as exc:  # a bug: still one line, and the other videos go on
        return finish("failed", f"internal error: {type(exc).__name__}: {first_line(exc)}")
    return finish("done")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def list_outputs(out_dir: Path) -> list[str]:
    """The files a video's run left, relative to its folder."""
    try:
        return sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file())
    except OSError:
        return []


# ---- the batch -----------------------------------------------------------------------------------------


@dataclass
class BatchOptions:
    """A batch's switches; the CLI's flags map onto these one to one."""

    output: Path
    jobs: int = 1
    resume: bool = False
    executor: str = "process"  # "inline", "auto" (by the cores each job gets) or "ray" (through _batch_ray)
    max_frames: int | None = None
    max_in_flight: int | None = None
    # Ray only
    address: str | None = None
    num_cpus_per_video: float = 1
    max_retries: int = 3
    return_outputs: bool = False
    #: called on the driver with (event, video, details): "started" (details: total, workers or worker,
    #: attempt), "finished" (the record); tests use it to kill a worker mid-video
    on_event: Callable[[str, str, dict[str, Any]], None] | None = None


def prepare(graph: Graph, sources: str | Path | Sequence[str | Path], opts: BatchOptions) -> tuple[
    list[BatchItem], list[dict[str, Any]], Manifest, set[str]
]:
    """Expand and probe the sources, check the output folder, open the manifest; BatchError when hopeless."""
    videos = expand_sources(sources)
    if not videos:
        raise BatchError(f"no file matches {str(sources)!r} (a glob, a folder, or a list file of videos)")
    items, skipped = probe_items(graph, batch_items(videos))
    if not items:
        first = skipped[0]
        raise BatchError(f"none of the {len(skipped)} file(s) of {str(sources)!r} is a video "
                         f"({first['video']}: {first['error']})")
    check_output(opts.output)
    manifest = Manifest(opts.output / MANIFEST, opts.resume)
    done = manifest.done() if opts.resume else set()
    return items, skipped, manifest, done


def check_output(path: Path) -> None:
    problem = unwritable_folder(path)
    if problem:
        raise BatchError(problem)


def run_batch(
    graph: Graph, sources: str | Path | Sequence[str | Path], opts: BatchOptions, progress: Any = None
) -> BatchResult:
    """Run ``graph`` once per video of ``sources``; see the module docstring. Never raises for one video."""
    started = time.perf_counter()
    items, skipped, manifest, done = prepare(graph, sources, opts)
    result = BatchResult()
    bar = progress or NoProgress()
    try:
        for rec in skipped:
            manifest.write(rec)
            result.records.append(rec)
        todo = []
        for item in items:
            if video_key(item.video) in done:
                prev = manifest.previous[video_key(item.video)]
                result.records.append({**prev, "status": "done", "resumed": True})
                continue
            todo.append(item)
        bar.begin(len(items), len(items) - len(todo))
        if opts.executor == "ray":
            from ._batch_ray import run_ray

            run_ray(graph, todo, opts, manifest, result, bar)
        else:
            _run_local(graph, todo, opts, manifest, result, bar)
    finally:
        manifest.close()
        bar.close()
        result.wall_s = time.perf_counter() - started
    result.frames = sum(int(r.get("frames") or 0) for r in result.records if not r.get("resumed"))
    return result


def _run_local(
    graph: Graph, todo: list[BatchItem], opts: BatchOptions, manifest: Manifest, result: BatchResult, bar: Any
) -> None:
    """Videos on a thread pool of ``jobs``; each thread drives one ordinary Run (its workers are processes)."""
    jobs = max(1, min(opts.jobs, len(todo) or 1))
    cores = max(1, (os.cpu_count() or 1) // jobs)
    executor = opts.executor
    if executor == "auto":  # a job with one core cannot pipeline: its graph runs inline, with no workers to start
        executor = "inline" if jobs > 1 and cores == 1 else "process"
    settings = VideoSettings(executor=executor, cores=cores if jobs > 1 else None,
                             max_frames=opts.max_frames, max_in_flight=opts.max_in_flight)
    stop = threading.Event()

    def one(item: BatchItem) -> dict[str, Any]:
        if stop.is_set():
            return {}

        def on_start(total: int | None, workers: dict[str, int]) -> None:
            bar.video_started(total)
            manifest.write(record(item, "running", worker=f"{socket.gethostname()}:{os.getpid()}"))
            if opts.on_event:
                opts.on_event("started", item.video, {"total": total, "workers": workers, "attempt": 1})

        rec = run_video(graph, item, opts.output / item.name, settings, stop=stop, on_start=on_start,
                        on_frame=bar.frame)
        rec["attempts"] = 1
        manifest.write(rec)
        bar.video_done(rec)
        if opts.on_event:
            opts.on_event("finished", item.video, rec)
        return rec

    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="facegraph-batch")
    futures: dict[Future, BatchItem] = {pool.submit(one, item): item for item in todo}
    try:
        with sigterm_as_interrupt():
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for fut in finished:
                    _collect(fut, result)
    except KeyboardInterrupt:
        result.interrupted = True
        stop.set()
        for fut in futures:
            fut.cancel()
        for fut in futures:  # the running videos notice at their next frame and end cleanly
            if not fut.cancelled():
                _collect_blocking(fut, result)
    except BaseException:  # the manifest cannot be written: stop the other videos too
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # videos never started get no line: --resume runs them


def _collect(fut: Future, result: BatchResult) -> None:
    rec = fut.result()
    if rec:
        result.records.append(rec)


def _collect_blocking(fut: Future, result: BatchResult) -> None:
    while True:
        try:
            _collect(fut, result)
            return
        except KeyboardInterrupt:  # a second Ctrl-C while a video closes: keep waiting, it is almost done
            continue


# ---- progress ------------------------------------------------------------------------------------------


class NoProgress:
    """The progress interface, silent: the library default."""

    def begin(self, videos: int, already: int) -> None: ...
    def video_started(self, total: int | None) -> None: ...
    def frame(self, n: int = 1) -> None: ...
    def video_done(self, rec: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


class BatchProgress(NoProgress):
    """Two tqdm bars: videos, and frames over the videos started so far (thread-safe: tqdm locks)."""

    def __init__(self) -> None:
        self.videos: Any = None
        self.frames: Any = None
        self.lock = threading.Lock()

    def begin(self, videos: int, already: int) -> None:
        import sys

        from tqdm import tqdm

        self.videos = tqdm(total=videos, initial=already, unit="video", dynamic_ncols=True, file=sys.stderr,
                           position=0, leave=False)
        self.frames = tqdm(total=0, unit="frame", dynamic_ncols=True, file=sys.stderr, position=1, leave=False)

    def video_started(self, total: int | None) -> None:
        if self.frames is not None and total:
            with self.lock:
                self.frames.total += total
                self.frames.refresh()

    def frame(self, n: int = 1) -> None:
        if self.frames is not None:
            self.frames.update(n)

    def video_done(self, rec: dict[str, Any]) -> None:
        if self.videos is not None:
            self.videos.update(1)
            failed = rec.get("status") == "failed"
            if failed:
                self.videos.write(f"facegraph: {rec['video']}: failed: {rec.get('error')}")

    def close(self) -> None:
        for bar in (self.frames, self.videos):
            if bar is not None:
                bar.close()
        self.frames = self.videos = None
