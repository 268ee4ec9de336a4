"""Training, data preparation and evaluation for the networks the model nodes run; needs the ``[train]`` extra.

``trainer`` is the one training loop every model uses (optimiser, schedule, early
stopping, checkpoints, resume, history); ``exporting`` writes checked ONNX (and
CoreML/TensorRT) files with a metadata.json a node can read; the per-model tasks
(``fer``, …) only say how to build their data, model, loss and scores.
"""
