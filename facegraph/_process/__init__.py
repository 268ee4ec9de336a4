"""The process executor: nodes in worker processes linked by shared-memory rings."""
