"""PyTorch definitions of the networks the model nodes run (for training and ONNX export); needs the [train] extra."""
