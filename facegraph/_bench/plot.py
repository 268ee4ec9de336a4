"""A PNG of a bench run: per-node service and wait time, and end-to-end latency over the run.

matplotlib is an optional extra (``pip install facegraph[plot]``), imported only here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._errors import FacegraphError


class PlotError(FacegraphError):
    exit_code = 2


def write_plot(path: str | Path, summary: dict[str, Any], *, title: str = "") -> Path:
    """Left: stacked bars of mean service and wait per node. Right: latency per frame."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError("--plot needs matplotlib: pip install 'facegraph[plot]'") from None
    nodes = summary.get("nodes", {})
    names = list(nodes)
    service = [nodes[n]["service_ms_mean"] for n in names]
    wait = [nodes[n]["wait_ms_mean"] for n in names]
    fig, (bars, line) = plt.subplots(1, 2, figsize=(12, max(3.5, 0.45 * len(names) + 1.5)))
    y = list(range(len(names)))
    bars.barh(y, service, color="#3b7dd8", label="service (mean)")
    bars.barh(y, wait, left=service, color="#c9d6e8", label="waiting for input (mean)")
    bars.set_yticks(y, names)
    bars.invert_yaxis()
    bars.set_xlabel("ms per frame")
    bars.set_title("per node")
    bars.legend(loc="lower right", fontsize="small")
    series = summary.get("latency_series") or []
    if series:
        frames, ms = zip(*series, strict=True)
        line.plot(frames, ms, lw=0.8, color="#d8553b")
        for name, color in (("p50", "#555555"), ("p95", "#999999")):
            value = summary.get("latency_ms", {}).get(name)
            if value:
                line.axhline(value, ls="--", lw=0.8, color=color, label=f"{name} {value:.1f} ms")
        line.legend(loc="upper right", fontsize="small")
    line.set_xlabel("frame")
    line.set_ylabel("end-to-end latency (ms)")
    line.set_title(f"latency ({summary.get('latency_from', 'sinks')})")
    fig.suptitle(title or f"{summary.get('executor', '')}: {summary.get('fps', 0):.1f} FPS")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
