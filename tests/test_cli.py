"""The command line: exit codes, one-line messages, listing and drawing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from facegraph.cli import main

GRAPH = """\
name: tiny
nodes:
  cam: {type: synthetic, params: {frames_total: 12, width: 32, height: 24}}
  slow: {type: delay, params: {ms: 0.0}, inputs: {value: cam.frame}}
"""


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(GRAPH)
    return path


def test_run_inline_writes_stats(tiny, tmp_path, capsys):
    stats = tmp_path / "stats.json"
    code = main(["run", str(tiny), "--executor", "inline", "--output", str(tmp_path / "out"), "--stats", str(stats)])
    assert code == 0
    summary = json.loads(stats.read_text())
    assert summary["frames_out"] == 12 and summary["nodes"]["slow"]["packets_in"] == 12
    assert "12 frames" in capsys.readouterr().out


def test_max_frames_and_set(tiny, tmp_path):
    stats = tmp_path / "stats.json"
    args = ["run", str(tiny), "--executor", "inline", "--quiet", "--output", str(tmp_path), "--stats", str(stats)]
    assert main([*args, "--max-frames", "5", "--set", "slow.ms=0.5"]) == 0
    assert json.loads(stats.read_text())["frames_out"] == 5


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "slow.ms=-3"], "node 'slow' (delay): parameter 'ms' must be >= 0, got -3.0"),
        (["--set", "slo.ms=1"], "--set names no node 'slo'; did you mean 'slow'?"),
        (["--set", "slow"], "--set expects node.param=value, got 'slow'"),
    ],
)
def test_bad_arguments_exit_2(tiny, tmp_path, capsys, extra, message):
    assert main(["run", str(tiny), "--quiet", "--output", str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().err


def test_failure_while_running_exits_1_and_logs_traceback(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", str(tiny), "--executor", "inline", "--quiet", "--output", str(out), "--set", "slow.fail_at=4"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith("facegraph: node 'slow' (delay) failed at frame 4: RuntimeError")
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert "Traceback" in (out / "facegraph-error.log").read_text()


def test_unwritable_output_folder(tiny, tmp_path, capsys, monkeypatch):
    """A folder the run may not write to: exit 2, one line. Root may write anywhere, so as root (CI)
    the folder's refusal is simulated where the CLI probes it."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:
        real = Path.write_bytes

        def refuse(self, data):
            if self.name == ".facegraph-write-test":
                raise PermissionError(13, "Permission denied", str(self))
            return real(self, data)

        monkeypatch.setattr(Path, "write_bytes", refuse)
    assert main(["run", str(tiny), "--quiet", "--output", str(locked / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "output folder cannot be written (Permission denied)" in err and len(err.splitlines()) == 1


def test_unwritable_output_path_is_a_file(tiny, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["run", str(tiny), "--quiet", "--output", str(blocker / "sub")]) == 2
    assert "output folder cannot be written" in capsys.readouterr().err


def test_missing_graph_file(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"{tmp_path / 'nope.yaml'}: no such graph file"


def test_nodes_lists_ports_and_describes_one(capsys):
    assert main(["nodes"]) == 0
    out = capsys.readouterr().out
    assert "synthetic:" in out and "out: frame: Frame" in out
    assert main(["nodes", "delay"]) == 0
    out = capsys.readouterr().out
    assert "param  ms: float (default 1.0, >= 0)" in out
    assert main(["nodes", "dely"]) == 2
    assert "did you mean 'delay'" in capsys.readouterr().err


def test_graph_mermaid_and_dot(tiny, capsys):
    assert main(["graph", str(tiny), "--format", "mermaid"]) == 0
    assert "n_cam -->" in capsys.readouterr().out
    assert main(["graph", str(tiny), "--format", "dot"]) == 0
    assert '"cam" -> "slow"' in capsys.readouterr().out


def test_validate_ok(tiny, capsys):
    assert main(["validate", str(tiny)]) == 0
    assert "ok (2 nodes)" in capsys.readouterr().out


NEEDS_MODEL = """\
name: needs
nodes:
  cam: {type: synthetic, params: {frames_total: 3}}
  faces: {type: detect, inputs: {frame: cam.frame}}
  crops: {type: align, inputs: {frame: cam.frame, faces: faces.faces}}
  emb: {type: embed, params: {model: buffalo_l/w600k_r50}, inputs: {crops: crops.crops}}
"""


def test_models_not_fetched_are_notes_for_validate_and_errors_for_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FACEGRAPH_MODELS", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    path = tmp_path / "needs.yaml"
    path.write_text(NEEDS_MODEL)
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ok (4 nodes)" in out
    assert f"note: {path}:6: node 'emb' (embed): needs model buffalo_l/w600k_r50 (facegraph models fetch" in out
    assert main(["validate", "--strict", str(path)]) == 2
    assert main(["run", str(path), "--quiet", "--output", str(tmp_path / "o")]) == 2
    assert "needs model buffalo_l/w600k_r50" in capsys.readouterr().err


def test_missing_input_video_is_refused_before_any_worker(tmp_path, capsys):
    graph = tmp_path / "g.yaml"
    graph.write_text("name: g\nnodes:\n  cam: {type: decode, params: {source: sample}}\n"
                     "  tail: {type: passthrough, inputs: {value: cam.frame}}\n")
    missing = tmp_path / "gone.mp4"
    assert main(["run", str(graph), "--source", str(missing), "--quiet", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"facegraph: {graph}:3: node 'cam' (decode): needs input '{missing}': no such file or folder " \
                  "(give one with --source)"
    assert main(["validate", str(graph)]) == 0  # the graph's own source ('sample') is there


def test_every_command_builds_without_torch(tmp_path):
    """A plain install has no torch: the CLI still works and the training commands say what they need."""
    import subprocess
    import sys

    code = (
        "import builtins, sys\n"
        "real = builtins.__import__\n"
        "def fake(name, *a, **k):\n"
        "    if name.split('.')[0] in ('torch', 'sklearn', 'timm', 'ray', 'coremltools'):\n"
        "        raise ImportError(f\"No module named '{name}'\", name=name)\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = fake\n"
        "from facegraph.cli import main\n"
        "print('validate', main(['validate', sys.argv[1]]))\n"
        "print('train', main(['train', 'fer', '--data', sys.argv[2]]))\n"
    )
    graph = Path(__file__).resolve().parents[1] / "graphs" / "webcam_au.yaml"
    out = subprocess.run([sys.executable, "-c", code, str(graph), str(tmp_path)], capture_output=True, text=True,
                         timeout=120)
    assert "validate 0" in out.stdout and "train 2" in out.stdout, out.stdout + out.stderr
    assert "needs PyTorch: pip install 'facegraph[train]'" in out.stderr


@pytest.mark.parametrize("order", [0, 1])
def test_set_values_of_one_node_are_checked_together(tmp_path, order):
    """`--set mesh.backend=onnx` needs `mesh.model`: valid whichever comes first on the command line."""
    from facegraph.cli import load_graph

    model = tmp_path / "pts68.onnx"
    model.write_bytes(b"")  # the parameter check looks at the value; the file is opened only when the node is built
    sets = ["mesh.backend=onnx", f"mesh.model={model}"]
    graph_file = Path(__file__).parent.parent / "graphs" / "video_au.yaml"
    graph = load_graph(str(graph_file), None, sets[::-1] if order else sets)
    assert graph.nodes["mesh"].params["backend"] == "onnx" and graph.nodes["mesh"].params["model"] == str(model)
