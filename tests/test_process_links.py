"""The executor's message links: Unix stream sockets that never block a sender and keep each peer's order."""

from __future__ import annotations

from facegraph._process._links import Links
from facegraph._process._wire import pack


def pair(tmp_path):
    addresses = [str(tmp_path / "0"), str(tmp_path / "1"), str(tmp_path / "2")]
    return Links(addresses[0], addresses), Links(addresses[1], addresses), addresses


def pump(*links: Links, until, rounds: int = 10_000) -> None:
    """One thread plays every process: each takes what is readable and writes what is writable, never waiting."""
    for _ in range(rounds):
        if until():
            return
        for link in links:
            link.wait(0)
    raise AssertionError("the messages never arrived")


def test_messages_arrive_in_order(tmp_path):
    a, b, _ = pair(tmp_path)
    try:
        for i in range(1000):
            a.send(1, pack(["d", i, "x" * (i % 7)]))
        pump(a, b, until=lambda: len(b.messages) == 1000)
        assert [m[1] for m in b.messages] == list(range(1000))
        assert b.messages[5] == ["d", 5, "xxxxx"]
    finally:
        a.close()
        b.close()


def test_messages_split_across_reads_and_read_one_by_one_keep_their_order(tmp_path):
    """Reads that end inside a message, hold several, or exactly one: each message comes out whole, in order."""
    a, b, _ = pair(tmp_path)
    sizes = [10, 300_000, 5, 700_000, 1, 1, 270_000, 3] * 3
    got: list = []

    def take() -> int:  # what a worker does: handle what came in, then read again
        got.extend(b.messages)
        b.messages.clear()
        return len(got)

    try:
        for i, size in enumerate(sizes):
            a.send(1, pack(["d", i, b"\x07" * size]))
            if i % 3 == 0:  # sometimes read between sends: single whole messages, not only coalesced ones
                pump(a, b, until=lambda: take() > 0)
        pump(a, b, until=lambda: take() == len(sizes))
        assert [m[1] for m in got] == list(range(len(sizes)))
        assert [len(m[2]) for m in got] == sizes
    finally:
        a.close()
        b.close()


def test_big_messages_both_ways_never_block(tmp_path):
    """Far more than the socket buffers hold, sent both ways before either side reads: no send waits."""
    a, b, _ = pair(tmp_path)
    big = pack(["bye", b"\x01" * (12 << 20)])
    try:
        a.send(1, big)
        b.send(0, big)
        a.send(1, pack(["after"]))
        assert a.outbox and b.outbox  # the kernel took only part: the rest waits in the outbox
        pump(a, b, until=lambda: len(b.messages) == 2 and len(a.messages) == 1)
        assert b.messages[0][1] == b"\x01" * (12 << 20) and b.messages[1] == ["after"]
        assert a.messages[0][0] == "bye"
        assert not a.outbox and not b.outbox
    finally:
        a.close()
        b.close()


def test_a_peer_that_is_gone_is_skipped_and_a_restarted_one_reached(tmp_path):
    a, b, addresses = pair(tmp_path)
    try:
        a.send(2, pack(["r", 1]))  # nobody listens at 2: dropped, no error
        a.send(1, pack(["d", 1]))
        pump(a, b, until=lambda: len(b.messages) == 1)
        b.close()  # worker 1 dies ...
        a.send(1, pack(["d", 2]))  # ... a send may still go into the dead socket's buffer, or fail: either is fine
        a.send(1, pack(["d", 3]))
        addresses[1] = str(tmp_path / "1r1")  # ... and runs again elsewhere
        a.forget(1)
        b2 = Links(addresses[1], addresses)
        try:
            a.send(1, pack(["d", 4]))
            pump(a, b2, until=lambda: len(b2.messages) == 1)
            assert list(b2.messages) == [["d", 4]]
        finally:
            b2.close()
    finally:
        a.close()


def test_a_closed_peer_connection_is_dropped(tmp_path):
    a, b, _ = pair(tmp_path)
    try:
        a.send(1, pack(["d", 1]))
        pump(a, b, until=lambda: len(b.messages) == 1)
        assert len(b.ins) == 1
        b.messages.clear()  # (a process looks at its sockets only once it has handled what it read)
        a.close()
        pump(b, until=lambda: not b.ins)
    finally:
        b.close()
