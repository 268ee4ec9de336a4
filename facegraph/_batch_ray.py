"""The Ray executor for batches: one Ray task per video, Ray's own scheduling and retries.

Each task runs the ordinary engine on its video (the inline executor when the
task has one CPU, the process executor within its CPUs otherwise) and returns
its manifest record; a task whose worker process dies is re-run by Ray
(``max_retries``), and a small actor (``_Tracker``, no CPU) counts the attempts
and the frames, so the driver's manifest shows each retry and its progress bar
moves across the cluster. Ray is imported here only, and only when asked for.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from ._batch import BatchError, BatchItem, BatchOptions, BatchResult, Manifest, VideoSettings, record, run_video
from ._graph import Graph

log = logging.getLogger(__name__)
FRAME_REPORT_S = 0.5  # how often a task tells the tracker its frame count


def import_ray() -> Any:
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise BatchError("the ray executor needs Ray: pip install 'facegraph[ray]'") from None


class _Tracker:
    """Attempts per video and frames done, reported by the tasks and read by the driver."""

    def __init__(self) -> None:
        self.attempts: dict[str, int] = {}
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self.frames = 0

    def started(self, video: str, worker: str, total: int | None) -> int:
        n = self.attempts.get(video, 0) + 1
        self.attempts[video] = n
        self.events.append(("started", video, {"worker": worker, "attempt": n, "total": total}))
        return n

    def add_frames(self, n: int) -> None:
        self.frames += n

    def drain(self) -> tuple[list[tuple[str, str, dict[str, Any]]], int]:
        events, self.events = self.events, []
        frames, self.frames = self.frames, 0
        return events, frames


def _video_task(item: dict[str, str], graph_yaml: str, modules: list[str], settings: dict[str, Any],
                output: str, return_outputs: bool, tracker: Any) -> dict[str, Any]:
    """One video on a Ray worker: the graph rebuilt from its YAML, run by the engine, the record returned."""
    import ray

    for module in modules:
        importlib.import_module(module)
    graph = Graph.from_yaml(graph_yaml, file=settings.pop("graph_file", "<batch>"))
    bi = BatchItem(item["video"], item["name"])
    worker = f"{socket.gethostname()}:{os.getpid()}"
    scratch = Path(tempfile.mkdtemp(prefix="facegraph-ray-")) if return_outputs else None
    out_dir = (scratch or Path(output)) / bi.name
    counted = [0, time.monotonic()]

    def on_start(total: int | None, workers: dict[str, int]) -> None:
        ray.get(tracker.started.remote(bi.video, worker, total))

    def on_frame() -> None:
        counted[0] += 1
        now = time.monotonic()
        if now - counted[1] >= FRAME_REPORT_S:
            tracker.add_frames.remote(counted[0])
            counted[0], counted[1] = 0, now

    try:
        rec = run_video(graph, bi, out_dir, VideoSettings(**settings), on_start=on_start, on_frame=on_frame)
        if counted[0]:
            tracker.add_frames.remote(counted[0])
        if scratch is not None:
            rec["files"] = {rel: (out_dir / rel).read_bytes() for rel in rec.get("outputs", [])}
        return rec
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def run_ray(graph: Graph, todo: list[BatchItem], opts: BatchOptions, manifest: Manifest, result: BatchResult,
            bar: Any) -> None:
    """Submit every video as a task, record each as it finishes; Ctrl-C cancels what is still out."""
    ray = import_ray()
    started_here = False
    if not ray.is_initialized():
        try:
            if opts.address:
                ray.init(address=opts.address, log_to_driver=False, logging_level=logging.ERROR)
            else:
                ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.ERROR)
        except Exception as exc:  # a cluster that cannot be reached: one line
            raise BatchError(f"cannot start or reach Ray ({opts.address or 'local'}): {exc}") from None
        started_here = True
    tracker = ray.remote(num_cpus=0)(_Tracker).remote()
    cpus = float(opts.num_cpus_per_video)
    settings = {
        "executor": "inline" if cpus <= 1 else "process",
        "cores": max(1, int(cpus)),
        "max_frames": opts.max_frames,
        "max_in_flight": opts.max_in_flight,
        "graph_file": graph.file or "<batch>",
    }
    modules = sorted({spec.cls.__module__ for spec in graph.nodes.values()} - {"__main__"})
    task = ray.remote(_video_task).options(num_cpus=cpus, max_retries=opts.max_retries, retry_exceptions=False)
    refs: dict[Any, BatchItem] = {}
    attempts: dict[str, int] = {}
    try:
        graph_yaml = graph.to_yaml()
        output = str(opts.output.resolve())
        for item in todo:
            ref = task.remote({"video": os.path.abspath(item.video), "name": item.name}, graph_yaml, modules,
                              dict(settings), output, opts.return_outputs, tracker)
            refs[ref] = item
        pending = list(refs)
        by_abs = {os.path.abspath(i.video): i for i in todo}
        while pending:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=0.25)
            _take_events(ray, tracker, by_abs, attempts, manifest, bar, opts)
            for ref in ready:
                item = refs[ref]
                rec = _finished(ray, ref, item, opts, attempts)
                _take_events(ray, tracker, by_abs, attempts, manifest, bar, opts)
                rec["attempts"] = max(attempts.get(item.video, 1), 1)
                if rec["attempts"] > 1:
                    rec["retried"] = True
                manifest.write(rec)
                result.records.append(rec)
                bar.video_done(rec)
                if opts.on_event:
                    opts.on_event("finished", item.video, rec)
    except KeyboardInterrupt:
        result.interrupted = True
        done = {r["video"] for r in result.records}
        for ref, item in refs.items():
            if item.video in done:
                continue
            try:
                ray.cancel(ref, force=True)
            except Exception:  # already finished or gone
                pass
            if item.video in attempts:  # it had started: say so; never-started ones get no line
                rec = record(item, "interrupted", error="interrupted before the end (run again with --resume)",
                             attempts=attempts[item.video])
                manifest.write(rec)
                result.records.append(rec)
    finally:
        try:
            ray.kill(tracker)
        except Exception:
            pass
        if started_here:
            ray.shutdown()


def _take_events(ray: Any, tracker: Any, by_abs: dict[str, BatchItem], attempts: dict[str, int],
                 manifest: Manifest, bar: Any, opts: BatchOptions) -> None:
    """Starts (first tries and retries) into the manifest, frames into the bar."""
    events, frames = ray.get(tracker.drain.remote())
    if frames:
        bar.frame(frames)
    for kind, video, details in events:
        item = by_abs.get(video)
        if item is None or kind != "started":
            continue
        attempts[item.video] = details["attempt"]
        if details["attempt"] == 1:
            bar.video_started(details.get("total"))
        status = "running" if details["attempt"] == 1 else "retrying"
        manifest.write(record(item, status, attempt=details["attempt"], worker=details["worker"]))
        if opts.on_event:
            opts.on_event("started", item.video, details)


def _finished(ray: Any, ref: Any, item: BatchItem, opts: BatchOptions, attempts: dict[str, int]) -> dict[str, Any]:
    """The task's record, its files written here when they were sent back; a lost task as a failed record."""
    try:
        rec = ray.get(ref)
    except Exception as exc:  # the worker died more often than max_retries allows, or the task was cancelled
        cause = type(exc).__name__
        text = str(exc).strip().splitlines()
        detail = next((line for line in text if "died" in line or "exit" in line.lower()), text[0] if text else "")
        return record(item, "failed", error=f"Ray task lost after {attempts.get(item.video, 1)} attempt(s) "
                      f"({opts.max_retries} retries allowed): {cause}: {detail}"[:400])
    files = rec.pop("files", None)
    if files is not None:
        out_dir = opts.output / item.name
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            for rel, data in files.items():
                target = out_dir / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        except OSError as exc:
            return {**rec, "status": "failed", "error": f"{out_dir}: cannot write the returned outputs "
                    f"({exc.strerror or exc})"}
    rec["video"] = item.video  # as the user named it, not the worker's absolute path
    return rec
