"""``sink.zmq``: per-frame results on a ZeroMQ PUB socket, msgpack-encoded, for live consumers.

Each message is one msgpack map per frame (frames without faces included)::

    {"frame_id": 12, "source": "camera 0", "t_capture": <monotonic ns>, "timestamp": 0.4,
     "faces": [{"box": [x1, y1, x2, y2], "score": 0.98, "kps": [[x, y] * 5], "track_id": 3,
                "landmarks": [[x, y], ...], "pose": {"R": [rx, ry, rz], "T": [tx, ty, tz]},
                "aus": {"AU01": 0.4, ...}, "probs": {"happy": 0.9, ...},
                "identity": "ann", "identity_score": 0.7, "embedding": [...]}]}

Keys of inputs that are not connected are absent. The socket binds to loopback
by default; a client connects a SUB socket and subscribes to b"" (see
docs/zmq_client.md). PUB drops messages for slow or absent subscribers: the
graph never waits for them.
"""

from __future__ import annotations

import time
from typing import Any

from facegraph import Packet, Param, SinkError, register

from ._table import ResultSink, nested_faces


@register("sink.zmq")
class ZmqSink(ResultSink):
    """Publishes each frame's faces as one msgpack message."""

    address = Param(str, "tcp://127.0.0.1:5556", doc="where to bind the PUB socket (tcp://0.0.0.0:5556 for all hosts)")
    settle = Param(float, 0.3, ge=0, doc="seconds to wait after binding so early subscribers get the first frames")
    hwm = Param(int, 100, ge=1, doc="messages queued per subscriber before PUB drops")

    def open_output(self) -> None:
        import zmq

        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.SNDHWM, self.hwm)
        self.sock.setsockopt(zmq.LINGER, 500)
        try:
            self.sock.bind(self.address)
        except zmq.ZMQError as exc:
            self.sock.close(0)
            self.ctx.term()
            self.sock = None
            raise SinkError(f"{self.address}: cannot bind the PUB socket ({exc})") from None
        self.sent = 0
        if self.settle:
            time.sleep(self.settle)

    def write_frame(self, faces: Packet, packets: dict[str, Packet | None], records: list[dict[str, Any]]) -> None:
        import msgpack

        frame = packets.get("frame")
        message = {
            "frame_id": faces.frame_id,
            "source": faces.source,
            "t_capture": faces.t_capture,
            "timestamp": None if frame is None else frame.get("timestamp"),
            "faces": nested_faces(packets),
        }
        self.sock.send(msgpack.packb(message, use_bin_type=True))
        self.sent += 1

    def close(self) -> None:
        sock = getattr(self, "sock", None)
        if sock is not None:
            sock.close()
            self.sock = None
            self.ctx.term()
