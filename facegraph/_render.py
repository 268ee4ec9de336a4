"""Pictures of a graph: Mermaid (for Markdown), DOT (for Graphviz) and PNG via Graphviz's ``dot``."""

from __future__ import annotations

import shutil
import subprocess

from ._errors import RunError
from ._graph import Graph


def to_mermaid(graph: Graph) -> str:
    lines = ["flowchart LR"]
    for spec in graph:
        lines.append(f'    {_safe(spec.id)}["{spec.id}<br/><small>{spec.type}</small>"]')
    for spec in graph:
        for port, ref in spec.inputs.items():
            kind = spec.cls.inputs[port].type.name
            label = ref.port if ref.port == port else f"{ref.port} → {port}"
            lines.append(f'    {_safe(ref.node)} -->|"{label}: {kind}"| {_safe(spec.id)}')
    return "\n".join(lines) + "\n"


def to_dot(graph: Graph) -> str:
    lines = [f'digraph "{graph.name}" {{', "  rankdir=LR;", '  node [shape=box, style=rounded, fontname="Helvetica"];']
    for spec in graph:
        lines.append(f'  "{spec.id}" [label="{spec.id}\\n({spec.type})"];')
    for spec in graph:
        for port, ref in spec.inputs.items():
            kind = spec.cls.inputs[port].type.name
            lines.append(f'  "{ref.node}" -> "{spec.id}" [label="{ref.port}→{port}\\n{kind}", fontsize=10];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_png(graph: Graph) -> bytes:
    dot = shutil.which("dot")
    if dot is None:
        raise RunError(
            "PNG needs Graphviz's 'dot' program (apt install graphviz / brew install graphviz); "
            "use --format dot or mermaid instead"
        )
    done = subprocess.run([dot, "-Tpng"], input=to_dot(graph).encode(), capture_output=True, check=False)
    if done.returncode:
        raise RunError(f"dot failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def _safe(node_id: str) -> str:
    return "n_" + "".join(c if c.isalnum() else "_" for c in node_id)
