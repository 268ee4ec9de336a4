"""The ONNX loader of every model node: a model that loads but cannot run is one ModelError at open, naming the file."""

from __future__ import annotations

import numpy as np
import pytest

from facegraph import Graph, ModelError

onnx = pytest.importorskip("onnx")
from facegraph.nodes.models._onnx import OnnxModel, provider_facts  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402


def _save(model, path):
    model.ir_version = 8
    model.opset_import[0].version = 17
    onnx.save(model, str(path))
    return path


def relu_image_model(path):
    """[N, 3, H, W] → relu: free batch and sides, runs at any size."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, "h", "w"])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    return _save(helper.make_model(graph), path)


def broken_reshape_model(path):
    """[N, 4] reshaped to [3, 3]: loads (shapes are free), fails on every run."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 3])
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [3, 3])
    graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "bad", [x], [y],
                              initializer=[shape])
    return _save(helper.make_model(graph), path)


def test_a_model_that_runs_opens_and_warms_up(tmp_path):
    model = OnnxModel(relu_image_model(tmp_path / "relu.onnx"))
    out = model.run(np.full((2, 3, 5, 7), -1.0, np.float32))[0]
    assert out.shape == (2, 3, 5, 7) and (out == 0).all()


def test_a_model_that_cannot_run_is_a_one_line_model_error(tmp_path):
    path = broken_reshape_model(tmp_path / "broken.onnx")
    with pytest.raises(ModelError, match=r"broken\.onnx: the model loads but cannot run") as info:
        OnnxModel(path, what="AU model")
    assert "\n" not in str(info.value)
    OnnxModel(path, warmup=False)  # a node that warms up at its own sizes can still open it


def test_provider_facts_name_what_each_node_would_use(tmp_path):
    g = Graph("t")
    src = g.add("synthetic", id="src", frames_total=1, width=32, height=32)
    faces = g.add("detect", id="faces", frame=src.frame)
    g.add("embed", id="emb", crops=g.add("align", id="crops", frame=src.frame, faces=faces.faces).crops,
          providers="cpu")
    facts = provider_facts(g)["ONNX Runtime"]
    assert "CPUExecutionProvider" in facts["available"]
    assert facts["used"]["emb"] == "CPUExecutionProvider" and "src" not in facts["used"]


def test_tensorrt_gets_fp16_and_an_engine_cache(tmp_path, monkeypatch):
    from facegraph.nodes.models._onnx import with_options

    monkeypatch.setenv("FACEGRAPH_TRT_CACHE", str(tmp_path / "trt"))
    got = with_options(["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    assert got[1:] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    name, options = got[0]
    assert name == "TensorrtExecutionProvider" and options["trt_fp16_enable"] is True
    assert options["trt_engine_cache_enable"] is True and options["trt_engine_cache_path"] == str(tmp_path / "trt")
    assert with_options(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
