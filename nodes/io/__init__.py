"""Sources and sinks: ``decode`` (video, camera, stream, image folder) and the ``sink.*`` nodes, with their helpers."""
