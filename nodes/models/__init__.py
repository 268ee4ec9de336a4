"""Model nodes (embed, identify, temporal, gru, expression, reconstruct) and what loads and feeds their networks:
ONNX and TFLite sessions, the model catalogue, crop preparation, galleries, temporal windows."""
