"""What the benchmark scripts share: finding the shared video, checking the graph can run, printing rows."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEGRAPH_SHARED", REPO.parent / "shared"))
DEFAULT_GRAPH = REPO / "graphs" / "webcam_au.yaml"
DEFAULT_VIDEO = SHARED / "data" / "videos" / "openface_2015-10-15-15-14.avi"
RESULTS = REPO / "benchmarks" / "results"


def fail(message: str) -> None:
    print(f"benchmark: {message}", file=sys.stderr)
    sys.exit(2)


def load_checked(graph_path: Path, source: Path | str | None, sets: list[str] | None = None) -> Any:
    """The graph pointed at ``source``, or exit with a clear message when it cannot run here."""
    from facegraph import FacegraphError
    from facegraph.cli import load_graph

    if not graph_path.exists():
        fail(f"{graph_path} does not exist yet (the default AU graph ships with the face nodes)")
    if source is not None and not Path(source).exists():
        fail(f"{source}: video not found (set FACEGRAPH_SHARED to the folder holding data/videos)")
    try:
        graph = load_graph(str(graph_path), str(source) if source is not None else None, sets)
    except FacegraphError as exc:
        fail(f"{graph_path} cannot be loaded: {exc} (are all its node types installed?)")
    problems = graph.requirements()
    if problems:
        fail(f"{graph_path} cannot run here: " + "; ".join(problems))
    return graph


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def top_nodes(summary: dict[str, Any], n: int = 3) -> str:
    """The ``n`` costliest nodes by mean service time: where the time goes."""
    nodes = sorted(summary["nodes"].items(), key=lambda kv: -kv[1]["service_ms_mean"])[:n]
    return ", ".join(f"{nid} {s['service_ms_mean']:.1f}" for nid, s in nodes)
