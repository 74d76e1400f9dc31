"""dns/batch.py against recvfrom and sendto: the same datagrams in, each answer back to
its own sender, over real UDP sockets on the loopback of the test's host namespace (the
test's thread enters it: every socket here is made inside)."""

from __future__ import annotations

import os
import select
import socket
from collections.abc import Iterator

import pytest

from shoal.dns import batch
from shoal.kernel import ns

from .harness import Host

pytestmark = pytest.mark.skipif(not batch.available(), reason="no recvmmsg in the C library")


@pytest.fixture
def server(host: Host) -> Iterator[socket.socket]:
    with ns.entered(host.ns):  # (127.0.0.1 of the test's host; a port the kernel picks)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        yield sock
        sock.close()


def _clients(count: int) -> list[socket.socket]:
    out = []
    for _ in range(count):
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.bind(("127.0.0.1", 0))
        c.settimeout(5)
        out.append(c)
    return out


def test_a_batch_reads_what_was_sent_and_answers_each_sender(server: socket.socket) -> None:
    clients = _clients(150)  # more than one batch
    for i, c in enumerate(clients):
        c.sendto(b"q%d" % i + bytes(i), server.getsockname())
    b = batch.Batch()
    seen = {}
    while len(seen) < len(clients):
        select.select([server], [], [], 5)
        n = b.receive(server.fileno())
        for i in range(n):
            data = b.message(i)
            seen[data] = b.sender(i)
            assert b.reply(i, b"a" + data)
        assert b.send(server.fileno()) == (n, 0)
    for i, c in enumerate(clients):
        query = b"q%d" % i + bytes(i)
        assert seen[query] == c.getsockname()
        assert c.recvfrom(4096) == (b"a" + query, server.getsockname())
        c.close()
    assert b.receive(server.fileno()) == 0  # nothing left: never blocks


def test_slots_left_unanswered_are_not_sent(server: socket.socket) -> None:
    clients = _clients(5)
    for i, c in enumerate(clients):
        c.sendto(b"%d" % i, server.getsockname())
    b = batch.Batch()
    got: list[bytes] = []
    while len(got) < 5:
        select.select([server], [], [], 5)
        n = b.receive(server.fileno())
        for i in range(n):
            data = b.message(i)
            got.append(data)
            if int(data) % 2 == 0:
                b.reply(i, data * 2)
        b.send(server.fileno())
    for i, c in enumerate(clients):
        c.settimeout(0.2)
        if i % 2 == 0:
            assert c.recv(100) == b"%d" % i * 2
        else:
            with pytest.raises(TimeoutError):
                c.recv(100)
        c.close()
    # a reply longer than a slot is refused (the caller sends it itself)
    assert not b.reply(0, bytes(batch.SIZE + 1))


def test_a_large_datagram_and_a_reused_slot(server: socket.socket) -> None:
    [c] = _clients(1)
    b = batch.Batch(count=1)
    for size in (4000, 3, 4096):
        payload = os.urandom(size)
        c.sendto(payload, server.getsockname())
        select.select([server], [], [], 5)
        assert b.receive(server.fileno()) == 1
        assert b.message(0) == payload
        b.reply(0, payload[::-1])
        assert b.send(server.fileno()) == (1, 0)
        assert c.recv(8192) == payload[::-1]
    c.close()
