"""What the process executor itself costs: latency added by chains of pass-through nodes, and memory on a long run.

    python benchmarks/overhead.py --json overhead.json

Latency: a synthetic 1920×1080 source feeds a chain of 0, 1, 3 and 5
``passthrough`` nodes ending in a sink that does nothing; the sink records the
end-to-end latency from ``t_capture`` (the engine's own per-sink statistic).
``max_in_flight`` is 1, so every frame crosses an idle pipeline and the figure is
pure engine overhead, not queueing. ``p50_us``/``p99_us`` are what the chain
*adds* to the bare source → sink hop (``e2e_*`` hold the raw figures); every
pass-through runs in its own process (``placement="separate"``: the default placement
would fuse these light nodes into one worker, which is what ``grouped_results`` shows). ``grouped_results`` gives the
same chains placed in one ``group:`` (one process, in-process routing).
``paced_results`` repeats the 5-node chain with frames 1/30 s apart, as a camera
delivers them: every worker then sleeps between frames and wakes with cold caches,
which costs each hop more than back-to-back frames do (``--paced-frames 0`` skips it).

Memory: a long run (10,000 frames by default) through a 3-node chain; resident
memory of the supervisor and every worker is summed after warm-up and again near
the end; the JSON reports the growth and whether any segment was left in /dev/shm.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from typing import Any

import numpy as np
import psutil

import facegraph
from facegraph import ANY, Graph, Input, Node, register
from facegraph._process import segments_left_by_this_process


@register("bench.null")
class NullSink(Node):
    """Takes a packet and does nothing: the end of the measured chain."""

    value = Input(ANY)

    def process(self, value: Any) -> None:
        return None


def chain_graph(
    n: int, frames: int, width: int, height: int, group: str | None = None, fps: float | None = None
) -> Graph:
    g = Graph(f"chain{n}")
    pace = {"realtime": True, "fps": fps} if fps else {}
    prev = g.add("synthetic", id="src", frames_total=frames, width=width, height=height, **pace).frame
    for i in range(n):
        prev = g.add("passthrough", id=f"p{i}", value=prev, group=group).out
    g.add("bench.null", id="sink", value=prev)
    return g


def latency(n: int, frames: int, group: str | None = None, fps: float | None = None) -> np.ndarray:
    run = facegraph.run(chain_graph(n, frames, 1920, 1080, group, fps), executor="process", max_in_flight=1,
                        placement="separate")
    run.wait()
    lat = np.frombuffer(run.stats.nodes["sink"].latency_ns, dtype=np.int64)
    return lat[min(20, len(lat) // 5) :] / 1000  # skip the warm-up frames


def memory(frames: int, width: int, height: int) -> dict[str, Any]:
    run = facegraph.run(chain_graph(3, frames, width, height), executor="process", placement="separate")
    first = last = 0.0
    warm = min(500, frames // 10)
    for result in run:
        if result.frame_id in (warm, frames - 10):
            pids = [os.getpid(), *run.options.extra["workers"].values()]
            rss = sum(psutil.Process(p).memory_info().rss for p in pids if psutil.pid_exists(p)) / 2**20
            first, last = (rss, last) if result.frame_id == warm else (first, rss)
    growth = (last - first) / first * 100 if first else 0.0
    return {
        "frames": frames,
        "width": width,
        "height": height,
        "rss_after_warmup_mb": round(first, 1),
        "rss_at_end_mb": round(last, 1),
        "growth_pct": round(growth, 2),
        "fps": round(run.stats.summary()["fps"], 1),
        "segments_left": segments_left_by_this_process(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--frames", type=int, default=200, help="frames per latency run")
    ap.add_argument("--paced-frames", type=int, default=150, help="frames of the paced (30 FPS) runs (0 skips them)")
    ap.add_argument("--long-frames", type=int, default=10_000, help="frames of the memory run (0 skips it)")
    ap.add_argument("--long-size", default="640x480", help="frame size of the memory run")
    args = ap.parse_args()
    base = latency(0, args.frames)
    b50 = float(np.percentile(base, 50))
    results = []
    print(f"source → sink alone: p50 {b50:.1f} us p99 {np.percentile(base, 99):.1f} us", flush=True)
    for n in (1, 3, 5):
        lat = latency(n, args.frames)
        p50, p99 = float(np.percentile(lat, 50)), float(np.percentile(lat, 99))
        row = {
            "chain": n,
            "p50_us": round(p50 - b50, 1),
            "p99_us": round(p99 - b50, 1),
            "e2e_p50_us": round(p50, 1),
            "e2e_p99_us": round(p99, 1),
            "height": 1080,
            "width": 1920,
        }
        results.append(row)
        print(
            f"chain {n}: adds p50 {row['p50_us']:.1f} us, p99 {row['p99_us']:.1f} us (end to end p50 {p50:.1f} us)",
            flush=True,
        )
    grouped = []
    for n in (1, 3, 5):
        lat = latency(n, args.frames, group="chain")
        grouped.append(
            {
                "chain": n,
                "p50_us": round(float(np.percentile(lat, 50)) - b50, 1),
                "p99_us": round(float(np.percentile(lat, 99)) - b50, 1),
            }
        )
        print(
            f"chain {n} in one group: adds p50 {grouped[-1]['p50_us']:.1f} us, p99 {grouped[-1]['p99_us']:.1f} us",
            flush=True,
        )
    paced = []
    if args.paced_frames:
        base30 = float(np.percentile(latency(0, args.paced_frames, fps=30.0), 50))
        lat = latency(5, args.paced_frames, fps=30.0)
        p50, p99 = float(np.percentile(lat, 50)), float(np.percentile(lat, 99))
        paced.append({"chain": 5, "fps": 30.0, "p50_us": round(p50 - base30, 1), "p99_us": round(p99 - base30, 1)})
        print(
            f"chain 5 at 30 FPS: adds p50 {paced[-1]['p50_us']:.1f} us, p99 {paced[-1]['p99_us']:.1f} us "
            f"(source → sink alone p50 {base30:.1f} us)",
            flush=True,
        )
    out: dict[str, Any] = {
        "results": results,
        "grouped_results": grouped,
        "paced_results": paced,
        "baseline_p50_us": round(b50, 1),
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "load_avg": os.getloadavg(),
    }
    if args.long_frames:
        w, h = (int(x) for x in args.long_size.split("x"))
        out["memory"] = mem = memory(args.long_frames, w, h)
        print(
            f"{mem['frames']} frames at {w}x{h}: RSS {mem['rss_after_warmup_mb']} → {mem['rss_at_end_mb']} MB "
            f"({mem['growth_pct']:+.2f} %), {mem['fps']} FPS, segments left: {mem['segments_left']}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
