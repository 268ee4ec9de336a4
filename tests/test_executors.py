"""The executor fixture runs every executor: one that cannot load fails loudly instead of dropping out."""

from __future__ import annotations

import logging

import pytest

from facegraph import RunError, _run
from facegraph.testing import executors


def test_the_fixture_has_every_built_in_executor():
    assert executors() == ["inline", "process"]


def test_an_executor_that_cannot_load_is_an_error_for_the_fixture(monkeypatch, caplog):
    monkeypatch.setitem(_run.EXECUTORS, "broken", "facegraph._no_such_executor:execute")
    with pytest.raises(RunError, match=r"executor 'broken' cannot load \(ModuleNotFoundError"):
        executors()
    with caplog.at_level(logging.WARNING, logger="facegraph._run"):
        assert _run.available_executors() == ["inline", "process"]  # the bench names what it can run ...
    assert "executor 'broken' cannot load" in caplog.text  # ... and says why one is missing
