"""What the figures were measured on: CPU, cores, GPU, inference providers, package versions.

A benchmark number means nothing without its machine; everything here is read
cheaply and never fails (an unknown becomes ``None``). The engine knows no model
runtime: a node package that runs one registers a provider-facts hook (and the
packages whose versions set its speed) when it is imported.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Callable
from importlib import metadata
from typing import Any

from .._graph import Graph

PACKAGES = ["facegraph", "numpy", "pyyaml", "pyzmq", "msgpack", "psutil", "matplotlib"]

#: ``fn(graph) -> {runtime name: {"available": [...], "used": {node id: provider}}}``
ProviderFacts = Callable[[Graph | None], dict[str, dict[str, Any]]]
_PROVIDER_FACTS: list[ProviderFacts] = []


def register_provider_facts(fn: ProviderFacts, packages: tuple[str, ...] = ()) -> ProviderFacts:
    """Add a hook that reports a runtime's providers for the machine report, and packages to version.

    Called by node packages on import (the built-in nodes register ONNX Runtime's),
    so the engine's bench stays free of any model runtime. Registering twice is a no-op.
    """
    if fn not in _PROVIDER_FACTS:
        _PROVIDER_FACTS.append(fn)
    PACKAGES.extend(p for p in packages if p not in PACKAGES)
    return fn


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


def _load_node_packages() -> None:
    """Node packages register their hooks when imported: load them as the registry does."""
    from .._registry import _load_all

    _load_all()


def providers(graph: Graph | None = None) -> dict[str, dict[str, Any]]:
    """Every registered runtime's providers; a hook that fails is reported, never raised."""
    _load_node_packages()
    out: dict[str, dict[str, Any]] = {}
    for fn in _PROVIDER_FACTS:
        try:
            out.update(fn(graph))
        except Exception as exc:  # a broken hook must not lose the rest of the report
            out[getattr(fn, "__qualname__", repr(fn))] = {"available": [], "used": {}, "error": str(exc)}
    return out


def describe_machine(graph: Graph | None = None) -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "memory_gb": _memory_gb(),
        "gpus": gpus(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "providers": providers(graph),
    }


def _memory_gb() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        return None


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that set the speed (absent ones left out)."""
    _load_node_packages()
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
