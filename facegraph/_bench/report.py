"""The bench report for people (a terminal table) and for machines (JSON)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

COLUMNS = (
    ("node", "node", "<"),
    ("type", "type", "<"),
    ("service_ms_mean", "service ms", ">"),
    ("service_ms_p95", "p95 ms", ">"),
    ("wait_ms_mean", "wait ms", ">"),
    ("packets", "packets", ">"),
    ("drops", "drops", ">"),
    ("worker", "worker", "<"),
    ("cpu_s", "cpu s", ">"),
    ("peak_rss_mb", "peak MB", ">"),
)


def headline(summary: dict[str, Any]) -> str:
    lat = summary.get("latency_ms", {})
    line = (
        f"{summary.get('executor', '?')}: {summary.get('fps', 0):.1f} FPS over {summary.get('frames', 0)} frames "
        f"(warm-up {summary.get('warmup', 0)}), latency p50 {lat.get('p50', 0):.1f} / p95 {lat.get('p95', 0):.1f} / "
        f"p99 {lat.get('p99', 0):.1f} ms ({summary.get('latency_from', 'sinks')}), dropped {summary.get('dropped', 0)}"
    )
    if summary.get("realtime_fps"):
        line += f" ({summary.get('dropped_pct', 0):.2f} % at {summary['realtime_fps']:g} FPS offered)"
    if "cpu_ms_per_frame" in summary:
        line += f"; CPU {summary['cpu_ms_per_frame']:.2f} ms per frame (all processes)"
    return line


def placement_text(summary: dict[str, Any], explain: bool) -> str:
    """The workers the process executor used: one line each, with the nodes' costs when ``explain``."""
    from .._process._plan import format_placement

    workers = summary.get("placement") or []
    if not workers:
        return ""
    head = f"placement by {summary.get('costs_from', 'declared')} costs:"
    if explain:
        return head + "\n" + format_placement(workers, int(summary.get("frames", 0)))
    return head + " " + "  ".join(f"[{' '.join(w['nodes'])}]×{w['threads']}" for w in workers if w["nodes"])


def sequential_line(report: dict[str, Any]) -> str:
    line = (f"sequential loop: {report['sequential_fps']:.1f} FPS; "
            f"engine ({report.get('executor')}) speed-up {report.get('speedup', 0):.2f}×")
    if "sequential_cpu_ms_per_frame" in report:
        line += (f"; CPU {report['sequential_cpu_ms_per_frame']:.2f} ms per frame "
                 f"(engine {report.get('cpu_ms_per_frame', 0):.2f})")
    return line


def node_rows(summary: dict[str, Any]) -> list[list[str]]:
    rows = []
    for nid, node in summary.get("nodes", {}).items():
        row = []
        for key, _, _ in COLUMNS:
            value = nid if key == "node" else node.get(key, "")
            row.append(f"{value:.2f}" if isinstance(value, float) else str(value))
        rows.append(row)
    return rows


def plain_table(rows: list[list[str]]) -> str:
    header = [title for _, title, _ in COLUMNS]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [
            c.ljust(w) if align == "<" else c.rjust(w) for c, w, (_, _, align) in zip(row, widths, COLUMNS, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_report(report: dict[str, Any], explain: bool = False) -> str:
    """The whole report as plain text: machine, per-run headline and node table, sequential, speed-up."""
    machine = report.get("machine", {})
    gpu = ", ".join(g["name"] for g in machine.get("gpus", [])) or "no GPU"
    runtimes = "".join(
        f"; {name}: {', '.join(facts.get('available', [])) or 'none'}"
        for name, facts in machine.get("providers", {}).items()
    )
    out = [
        f"graph {report.get('graph', '')} on {machine.get('cpu', '?')} ({machine.get('usable_cores', '?')} cores), "
        f"{gpu}{runtimes}"
    ]
    for summary in report.get("runs") or [report]:
        out += ["", headline(summary), plain_table(node_rows(summary))]
        if placed := placement_text(summary, explain):
            out.append(placed)
    if "sequential_fps" in report:
        out += ["", sequential_line(report)]
    return "\n".join(out)


def print_report(report: dict[str, Any], explain: bool = False) -> None:
    """Rich tables when rich is installed, plain text otherwise."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(format_report(report, explain))
        return
    console = Console()
    console.print(format_report({k: v for k, v in report.items() if k not in ("runs",)}).split("\n")[0])
    for summary in report.get("runs") or [report]:
        table = Table(title=headline(summary), title_justify="left")
        for _, title, align in COLUMNS:
            table.add_column(title, justify="left" if align == "<" else "right")
        for row in node_rows(summary):
            table.add_row(*row)
        console.print(table)
        if placed := placement_text(summary, explain):
            console.print(placed, markup=False, highlight=False)
    if "sequential_fps" in report:
        console.print(sequential_line(report), markup=False, highlight=False)


def write_json(path: str | Path, report: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=_plain))
    return path


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
