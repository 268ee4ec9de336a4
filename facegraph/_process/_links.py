"""Messages between the processes of a run: Unix-domain stream sockets, msgpack, no helper threads.

Every process (the supervisor and each worker) listens on one socket in the run's
private directory; a peer connects once, on its first message, and keeps the
connection. msgpack is self-delimiting, so the stream needs no framing of its own:
the receiver feeds what it reads into a ``msgpack.Unpacker``. zmq, which the
executor used before, moves every message through an I/O thread at both ends: on a
loaded machine those thread switches cost more than the rest of a hop together.
Stream sockets (not SOCK_SEQPACKET) because macOS has no Unix seqpacket sockets.

A send never blocks: what the kernel does not take at once waits in the link's
outbox and goes out when the socket is writable again (``poll``/``wait`` see to it),
so two processes sending to each other can never deadlock, whatever the socket
buffer sizes. Flow control (``max_in_flight``) keeps those outboxes small.
A send to a peer that is gone is dropped: the supervisor learns of deaths from the
process sentinels, not from the sockets.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import time
from collections import deque
from typing import Any

import msgpack

BUFFER = 1 << 20  # socket buffers: a frame's notices never fill them
_READ = 1 << 18
POLLIN, POLLOUT = select.POLLIN, select.POLLOUT


def _tune(sock: socket.socket) -> None:
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, BUFFER)
        except OSError:
            pass


class Links:
    """This process's end: a listening socket, connections in (read), connections out (written), an inbox.

    ``addresses[i]`` is the socket path of process ``i`` (0 is the supervisor); a
    restarted worker listens at a new path, and ``forget`` drops the connection to
    its dead predecessor so the next send connects afresh.
    """

    def __init__(self, path: str, addresses: list[str]) -> None:
        self.path = path
        self.addresses = addresses
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(128)
        self.listener.setblocking(False)
        self.poller = select.poll()
        self.poller.register(self.listener.fileno(), POLLIN)
        self.ins: dict[int, tuple[socket.socket, msgpack.Unpacker]] = {}  # fd → connection in
        self.outs: dict[int, socket.socket] = {}  # process index → connection out
        self.out_fds: dict[int, int] = {}  # fd of a connection out with an outbox → process index
        self.outbox: dict[int, bytearray] = {}  # process index → bytes the kernel has not taken yet
        self.messages: deque[list[Any]] = deque()
        self._buf = bytearray(_READ)  # reads land here: no fresh 256 KB bytes object per read
        self._view = memoryview(self._buf)

    # ---- sending -------------------------------------------------------------------------------
    def send(self, dest: int, data: bytes) -> None:
        sock = self.outs.get(dest)
        if sock is None:
            sock = self._connect(dest)
            if sock is None:
                return
        pending = self.outbox.get(dest)
        if pending is not None:
            pending += data
            return
        try:
            n = sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError:  # the peer is gone
            self.forget(dest)
            return
        if n < len(data):
            self.outbox[dest] = bytearray(memoryview(data)[n:])
            self.out_fds[sock.fileno()] = dest
            self.poller.register(sock.fileno(), POLLOUT)

    def _connect(self, dest: int) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        _tune(sock)
        sock.settimeout(2.0)  # a listener's backlog is never full for long; a dead one refuses at once
        try:
            sock.connect(self.addresses[dest])
        except OSError:
            sock.close()
            return None
        sock.setblocking(False)
        self.outs[dest] = sock
        return sock

    def _flush(self, dest: int) -> None:
        sock = self.outs[dest]
        pending = self.outbox[dest]
        try:
            n = sock.send(pending)
        except BlockingIOError:
            return
        except OSError:  # the peer is gone
            self.forget(dest)
            return
        del pending[:n]
        if not pending:
            del self.outbox[dest]
            del self.out_fds[sock.fileno()]
            self.poller.unregister(sock.fileno())

    def forget(self, dest: int) -> None:
        """Close the connection to ``dest`` (dead, or restarted elsewhere); what it had not taken is lost."""
        sock = self.outs.pop(dest, None)
        if sock is None:
            return
        if self.outbox.pop(dest, None) is not None:
            self.out_fds.pop(sock.fileno(), None)
            self.poller.unregister(sock.fileno())
        sock.close()

    def flush_all(self, timeout: float) -> None:
        """Before closing: wait (up to ``timeout`` seconds) until every outbox is in the kernel."""
        deadline = time.monotonic() + timeout
        while self.outbox:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.poller.poll(left * 1000)
            for dest in list(self.outbox):
                self._flush(dest)

    # ---- receiving -----------------------------------------------------------------------------
    def fds(self) -> list[tuple[int, int]]:
        """(fd, events) to watch, for a caller that polls them together with other things."""
        out = [(self.listener.fileno(), POLLIN)]
        out += [(fd, POLLIN) for fd in self.ins]
        out += [(fd, POLLOUT) for fd in self.out_fds]
        return out

    def on_events(self, events: list[tuple[int, int]]) -> None:
        """Accept, read and write as the poll said; parsed messages go to ``messages``."""
        listener = self.listener.fileno()
        for fd, _ev in events:
            if fd in self.ins:
                self._read(fd)
            elif fd == listener:
                self._accept()
            elif fd in self.out_fds:
                self._flush(self.out_fds[fd])

    def wait(self, timeout_ms: float | None) -> bool:
        """Wait until a message is in (``None``: forever; 0: just look); True when ``messages`` has some."""
        while not self.messages:
            events = self.poller.poll(timeout_ms)
            if not events:
                return False
            self.on_events(events)
            if timeout_ms is None or timeout_ms > 0:
                continue
            if not self.messages:
                return False
        return True

    def ready(self) -> bool:
        """Is a message waiting? (reads what is there, never waits)"""
        return bool(self.messages) or self.wait(0)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                raise
            sock.setblocking(False)
            _tune(sock)
            self.ins[sock.fileno()] = (sock, msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=0))
            self.poller.register(sock.fileno(), POLLIN)

    def _read(self, fd: int) -> None:
        sock, unpacker = self.ins[fd]
        try:
            n = sock.recv_into(self._buf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            n = 0
        if not n:  # the peer closed (it ended, or died): anything it sent was read before
            self.poller.unregister(fd)
            del self.ins[fd]
            sock.close()
            return
        unpacker.feed(self._view[:n])
        self.messages.extend(unpacker)

    def close(self) -> None:
        for sock, _ in self.ins.values():
            sock.close()
        for sock in self.outs.values():
            sock.close()
        self.ins.clear()
        self.outs.clear()
        self.outbox.clear()
        self.out_fds.clear()
        self.listener.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass

