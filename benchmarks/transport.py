"""Per-hop latency and throughput of one frame going from one process to another.

    python benchmarks/transport.py --json transport.json

Compares, in one run, (a) facegraph's shared-memory ring as a producer uses it, its notices and releases
over the executor's Unix-socket links
(``facegraph``: it makes each frame in a slot it got from ``Node.output_array``, here
by writing the whole frame there, then hands it over: no copy on the way; the
consumer gets a read-only numpy view; the slot comes back with a release message),
(a') the same ring for a frame made elsewhere (``facegraph_copy``: the hop includes
copying the frame into the slot), (b) ``multiprocessing.Queue`` (pickled through a
pipe) and (c) pyzmq sending a copy of the bytes. Latency: one frame at a time, from
the moment the producer hands the frame over (for ``facegraph``: once it is made in
its slot; for the others, before any copy) to the moment the consumer holds it as an
array; throughput includes the producer's writing of every frame. The clock is
CLOCK_MONOTONIC, shared by both processes. Throughput: frames pipelined as fast as
the transport takes them. Output JSON: ``{"results": [{"transport", "height",
"width", "p50_us", "p99_us", "fps"}, ...], ...}``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import secrets
import shutil
import tempfile
import time
from typing import Any

import numpy as np
import zmq

from facegraph._process._links import Links
from facegraph._process._shm import Ring, SegmentCache, leftover_segments, unlink_segment
from facegraph._process._wire import pack, unpack

SIZES = [(480, 640), (1080, 1920)]


def _ipc(tag: str) -> str:
    return f"ipc:///tmp/fgbench-{os.getpid()}-{tag}"


def _paths() -> list[str]:
    """Socket paths of the ring benchmark's two processes (0: producer, 1: consumer), as the executor names them."""
    base = tempfile.mkdtemp(prefix="fgbench", dir="/tmp" if os.path.isdir("/tmp") else None)
    return [f"{base}/0", f"{base}/1"]


def _next(links: Links) -> list[Any]:
    links.wait(None)
    return links.messages.popleft()


# ---- consumers (run in the spawned process) ------------------------------------------------------
def ring_consumer(paths: list[str]) -> None:
    # the ring's notices and releases travel as in the executor: msgpack over the processes' Unix sockets
    links = Links(paths[1], paths)
    cache = SegmentCache()
    links.send(0, pack(["ready"]))
    while True:
        msg = _next(links)
        if msg[0] == "end":
            break
        _, t0, seg, off, dtype, shape, slot = msg
        arr = cache.view(seg, off, dtype, shape)
        _ = arr[0, 0, 0]
        t1 = time.monotonic_ns()
        del arr
        links.send(0, pack(["r", slot, t1 - t0, t1]))
    cache.close()
    links.flush_all(1.0)
    links.close()


def queue_consumer(q: Any, back: Any) -> None:
    back.put(("ready", 0, 0))
    while True:
        item = q.get()
        if item is None:
            break
        t0, frame = item
        _ = frame[0, 0, 0]
        t1 = time.monotonic_ns()
        back.put(("r", t1 - t0, t1))


def zmq_consumer(data_addr: str, back_addr: str) -> None:
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.bind(data_addr)
    push = ctx.socket(zmq.PUSH)
    push.connect(back_addr)
    push.send(pack(["ready"]))
    while True:
        parts = pull.recv_multipart()
        if parts[0] == b"end":
            break
        t0 = int(parts[0])
        h, w = (int(x) for x in parts[1].split(b","))
        frame = np.frombuffer(parts[2], np.uint8).reshape(h, w, 3)
        _ = frame[0, 0, 0]
        t1 = time.monotonic_ns()
        push.send(pack(["r", 0, t1 - t0, t1]))
    push.close(linger=1000)
    pull.close()
    ctx.term()


# ---- producers -----------------------------------------------------------------------------------
def bench_ring(frames: list[np.ndarray], n_lat: int, n_tp: int, inplace: bool = False) -> tuple[list[int], float]:
    paths = _paths()
    links = Links(paths[0], paths)
    proc = mp.get_context("spawn").Process(target=ring_consumer, args=(paths,), daemon=True)
    proc.start()
    _next(links)
    run_id = secrets.token_hex(4)
    names = iter(f"fg{run_id}_0_{i}" for i in range(1000))
    ring = Ring(lambda: next(names), nslots=4)
    slots: dict[int, Any] = {}

    def send(i: int) -> None:
        frame = frames[i % len(frames)]
        if inplace:
            # a producer using Node.output_array: it makes the frame in a slot (here it writes the
            # whole frame there, as a decoder would), then hands it over; the hop starts at the hand-over
            gen, slot, arr = ring.array(frame.shape, frame.dtype)
            np.copyto(arr, frame)
            off = slot * gen.slot_size
            t0 = time.monotonic_ns()
        else:  # a frame made elsewhere: the hop includes copying it into a slot
            t0 = time.monotonic_ns()
            gen, slot, offs = ring.write([frame])
            off = offs[0]
        slots[slot] = gen
        links.send(1, pack(["d", t0, gen.name, off, frame.dtype.str, list(frame.shape), slot]))

    def take() -> list[Any]:
        msg = _next(links)
        ring.release(slots.pop(msg[1]), msg[1])
        return msg

    try:
        lat = []
        for i in range(n_lat):
            send(i)
            lat.append(take()[2])
        start = time.monotonic_ns()
        sent = done = 0
        last = start
        while done < n_tp:
            while sent < n_tp and ring.gens[-1].free:
                send(sent)
                sent += 1
            last = take()[3]
            done += 1
        fps = n_tp / ((last - start) / 1e9)
        links.send(1, pack(["end"]))
        links.flush_all(1.0)
        proc.join(10)
    finally:
        ring.close()
        for name in leftover_segments(run_id):
            unlink_segment(name)
        links.close()
        shutil.rmtree(os.path.dirname(paths[0]), ignore_errors=True)
    return lat, fps


def bench_queue(frames: list[np.ndarray], n_lat: int, n_tp: int) -> tuple[list[int], float]:
    spawn = mp.get_context("spawn")
    q, back = spawn.Queue(maxsize=4), spawn.Queue()
    proc = spawn.Process(target=queue_consumer, args=(q, back), daemon=True)
    proc.start()
    back.get()
    lat = []
    for i in range(n_lat):
        q.put((time.monotonic_ns(), frames[i % len(frames)]))
        lat.append(back.get()[1])
    start = time.monotonic_ns()
    last = start
    for i in range(n_tp):
        q.put((time.monotonic_ns(), frames[i % len(frames)]))
    for _ in range(n_tp):
        last = back.get()[2]
    fps = n_tp / ((last - start) / 1e9)
    q.put(None)
    proc.join(10)
    return lat, fps


def bench_zmq(frames: list[np.ndarray], n_lat: int, n_tp: int) -> tuple[list[int], float]:
    ctx = zmq.Context()
    back = ctx.socket(zmq.PULL)
    back_addr, data_addr = _ipc("zb"), _ipc("zd")
    back.bind(back_addr)
    proc = mp.get_context("spawn").Process(target=zmq_consumer, args=(data_addr, back_addr), daemon=True)
    proc.start()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 4)
    push.connect(data_addr)
    back.recv()

    def send(i: int) -> None:
        frame = frames[i % len(frames)]
        h, w = frame.shape[:2]
        t0 = time.monotonic_ns()
        push.send_multipart([str(t0).encode(), f"{h},{w}".encode(), frame], copy=True)

    lat = []
    for i in range(n_lat):
        send(i)
        lat.append(unpack(back.recv())[2])
    start = time.monotonic_ns()
    last = start
    sent = done = 0
    while done < n_tp:
        while sent < n_tp and sent - done < 4:
            send(sent)
            sent += 1
        last = unpack(back.recv())[3]
        done += 1
    fps = n_tp / ((last - start) / 1e9)
    push.send_multipart([b"end"])
    proc.join(10)
    push.close(0)
    back.close(0)
    ctx.term()
    return lat, fps


BENCHES = {
    "facegraph": lambda frames, n_lat, n_tp: bench_ring(frames, n_lat, n_tp, inplace=True),
    "facegraph_copy": bench_ring,
    "mp_queue": bench_queue,
    "zmq": bench_zmq,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", metavar="PATH", help="write the results here")
    ap.add_argument("--frames", type=int, default=300, help="frames for the latency figures")
    ap.add_argument("--throughput-frames", type=int, default=300)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    results = []
    for h, w in SIZES:
        frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(4)]
        for name, fn in BENCHES.items():
            lat, fps = fn(frames, args.frames, args.throughput_frames)
            arr = np.asarray(lat[10:], dtype=np.float64) / 1000  # the first frames warm caches and page tables
            row = {
                "transport": name,
                "height": h,
                "width": w,
                "p50_us": round(float(np.percentile(arr, 50)), 1),
                "p99_us": round(float(np.percentile(arr, 99)), 1),
                "fps": round(fps, 1),
            }
            results.append(row)
            print(
                f"{name:10s} {w}x{h}: p50 {row['p50_us']:9.1f} us  p99 {row['p99_us']:9.1f} us  {row['fps']:8.1f} fps",
                flush=True,
            )
    by = {(r["transport"], r["height"]): r for r in results}
    speedup = {f"{w}x{h}": round(by[("mp_queue", h)]["p50_us"] / by[("facegraph", h)]["p50_us"], 1) for h, w in SIZES}
    speedup_copy = {
        f"{w}x{h}": round(by[("mp_queue", h)]["p50_us"] / by[("facegraph_copy", h)]["p50_us"], 1) for h, w in SIZES
    }
    out = {
        "results": results,
        "speedup_vs_mp_queue_p50": speedup,
        "speedup_copy_vs_mp_queue_p50": speedup_copy,
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "load_avg": os.getloadavg(),
    }
    print("ring vs multiprocessing.Queue (p50):", speedup, "with the copy into the slot:", speedup_copy)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
