"""What the figures were measured on: CPU, cores, GPU, ONNX Runtime providers, package versions.

A benchmark number means nothing without its machine; everything here is read
cheaply and never fails (an unknown becomes ``None``).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from typing import Any

from .._graph import Graph

PACKAGES = (
    "facegraph", "numpy", "onnxruntime", "onnxruntime-gpu", "opencv-contrib-python", "mediapipe", "av", "pyzmq",
    "msgpack", "pyarrow", "insightface", "torch", "matplotlib", "psutil",
)


def cpu_model() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo, macOS sysctl), else platform's guess."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        try:
            return subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def usable_cores() -> int | None:
    """Cores this process may run on (the affinity mask / cgroup view when there is one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def gpus() -> list[dict[str, str]]:
    """NVIDIA GPUs as nvidia-smi names them; [] without nvidia-smi."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            rows.append({"name": parts[0], "memory": parts[1], "driver": parts[2]})
    return rows


def onnx_providers(graph: Graph | None = None) -> dict[str, Any]:
    """Providers ONNX Runtime offers here, and per node the one its ``providers`` parameter picks.

    Models load inside worker processes, so this is what the node's setting
    resolves to here (``auto`` = best available), not read back from a session.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        return {"available": [], "used": {}}
    available = list(ort.get_available_providers())
    used: dict[str, str] = {}
    if graph is not None:
        try:
            from facegraph.nodes._onnx import choose_providers
        except ImportError:
            choose_providers = None
        for nid, spec in graph.nodes.items():
            if "providers" not in spec.cls.params or choose_providers is None:
                continue
            wanted = spec.params.get("providers", spec.cls.params["providers"].default)
            try:
                used[nid] = choose_providers(wanted, available)[0]
            except Exception as exc:  # a provider not available here: say so instead of failing
                used[nid] = f"unavailable ({exc})"
    return {"available": available, "used": used}


def describe_machine(graph: Graph | None = None) -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "memory_gb": _memory_gb(),
        "gpus": gpus(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "onnxruntime_providers": onnx_providers(graph),
    }


def _memory_gb() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        return None


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that set the speed (absent ones left out)."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
