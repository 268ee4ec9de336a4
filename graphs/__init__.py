"""The shipped graphs, installed as ``facegraph.nodes.graphs`` so ``facegraph.analyze(graph="video_au")`` finds them."""
