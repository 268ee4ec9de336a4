"""The engine knows no faces: it imports no node package and no model runtime, and runs without the face stack."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import facegraph

FACE_STACK = ("facegraph.nodes", "onnxruntime", "cv2", "mediapipe", "av", "insightface", "ai_edge_litert", "ray",
              "pandas")


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_engine_modules_import_nothing_of_the_face_stack():
    done = _python(f"""
        import sys
        import facegraph, facegraph.testing, facegraph._process, facegraph._bench.machine, facegraph._bench.harness
        import facegraph._bench.report, facegraph._bench.sequential, facegraph._batch, facegraph._batch_ray
        import facegraph._results
        stack = {FACE_STACK!r}
        print(sorted(m for m in sys.modules if m.split(".")[0] in stack or m.startswith("facegraph.nodes")))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_engine_has_no_face_types():
    assert not hasattr(facegraph, "FACES") and not hasattr(facegraph, "LANDMARKS")
    import facegraph.nodes.types as types

    assert types.FACES.name == "Faces" and facegraph.port_type("Landmarks") is types.LANDMARKS
    assert types.__name__ == "facegraph.nodes.types"


def test_engine_runs_a_graph_with_the_face_stack_missing():
    """With every face-stack import failing, the engine still lists its nodes and runs a graph."""
    done = _python(f"""
        import sys
        from importlib.abc import MetaPathFinder

        class Missing(MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {FACE_STACK!r} or name.startswith("facegraph.nodes"):
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None

        sys.meta_path.insert(0, Missing())
        import facegraph
        from facegraph._bench.machine import describe_machine
        g = facegraph.Graph("t")
        src = g.add("synthetic", id="src", frames_total=3, width=32, height=24)
        g.add("passthrough", id="p", value=src.frame)
        print(len(list(facegraph.run(g))), sorted(facegraph.node_types()), describe_machine()["providers"])
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "3 ['delay', 'passthrough', 'synthetic'] {}"
    assert "built-in face nodes not loaded" in done.stderr
