"""facegraph bench: the FPS and latency harness."""
