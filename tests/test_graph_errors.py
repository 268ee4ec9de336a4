"""The broken-graph corpus: each file's first line states the exact one-line error and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from facegraph.cli import main

CORPUS = sorted((Path(__file__).parent / "broken_graphs").glob("*.yaml"))


def expected(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} lacks its '# expect:' line"
    return first.removeprefix("# expect: ").replace("{file}", str(path))


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 15


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_broken_graph_gives_its_exact_error(path, capsys):
    code = main(["validate", str(path)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == expected(path)
    assert "\n" not in err


@pytest.mark.parametrize("path", CORPUS[:3], ids=[p.stem for p in CORPUS[:3]])
def test_run_reports_the_same_error_with_exit_2(path, capsys, tmp_path):
    code = main(["run", str(path), "--output", str(tmp_path), "--quiet"])
    assert code == 2
    assert capsys.readouterr().err.strip() == "facegraph: " + expected(path)
