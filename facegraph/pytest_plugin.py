"""pytest fixture ``executor``: runs a graph test once under every executor (one that cannot load is an error).

Enabled for facegraph's own tests by ``-p facegraph.pytest_plugin`` (see pyproject), and
usable by node authors the same way.
"""

from __future__ import annotations

import pytest

from .testing import executors


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "executor" in metafunc.fixturenames:
        metafunc.parametrize("executor", executors())
