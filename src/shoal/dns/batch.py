"""UDP datagrams many at a time: recvmmsg(2) and sendmmsg(2) through ctypes, which Python's
socket module does not offer.

Why: the resolver's hot path (a dict hit per query, server.py) costs less than the two
system calls around it: recvfrom and sendto, each with an address turned into a tuple and
back. Read in batches, one call takes up to COUNT queries and one call sends their
answers, each to the address it came from: the kernel wrote the senders' addresses into
the very message headers the answers are sent with, so an address is never decoded on the
hot path (only when a query is forwarded and answered later: `sender`).

Layout: one bytearray of COUNT message headers (struct mmsghdr, the kernel's layout as
ctypes computes it for this machine), one of their I/O vectors, one of SIZE-byte buffers
and one of sender addresses (sockaddr_storage). The hot loop reads and writes the lengths
through memoryviews of those arrays, never through ctypes objects. `available()` says
whether the C library has both calls (glibc and musl do); the server falls back to
recvfrom/sendto otherwise. tests/unit/test_dns_batch.py holds it to what recvfrom and
sendto do."""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import socket
import sys

COUNT = 64  # datagrams per call
SIZE = 4096  # bytes per datagram (wire.EDNS_SIZE: no answer is bigger)
NAME = 128  # sizeof(struct sockaddr_storage)
MSG_DONTWAIT = 0x40


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.c_void_p), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
                ("msg_flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        for name in ("recvmmsg", "sendmmsg"):
            fn = getattr(libc, name)
            fn.restype = ctypes.c_int
        libc.recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int,
                                  ctypes.c_void_p]
        libc.sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def available() -> bool:
    return _LIBC is not None and ctypes.sizeof(_MMsgHdr) % 8 == 0


class Batch:
    """COUNT datagram slots: `receive` fills them, `message`/`sender` read one, `reply`
    puts an answer in its slot (to go back to its sender), `send` sends every slot given
    an answer since the last `receive`."""

    def __init__(self, count: int = COUNT) -> None:
        assert _LIBC is not None
        self.count = count
        self._raw_vec = bytearray(ctypes.sizeof(_MMsgHdr) * count)
        self._raw_iov = bytearray(ctypes.sizeof(_IoVec) * count)
        self._bufs = bytearray(SIZE * count)
        self._names = bytearray(NAME * count)
        self._vec = (_MMsgHdr * count).from_buffer(self._raw_vec)
        iov = (_IoVec * count).from_buffer(self._raw_iov)
        bufs = ctypes.addressof((ctypes.c_char * len(self._bufs)).from_buffer(self._bufs))
        names = ctypes.addressof((ctypes.c_char * len(self._names)).from_buffer(self._names))
        iov_base = ctypes.addressof(iov)
        for i in range(count):
            iov[i].iov_base, iov[i].iov_len = bufs + i * SIZE, SIZE
            hdr = self._vec[i].msg_hdr
            hdr.msg_name, hdr.msg_namelen = names + i * NAME, NAME
            hdr.msg_iov, hdr.msg_iovlen = iov_base + i * ctypes.sizeof(_IoVec), 1
        self._vec_addr = ctypes.addressof(self._vec)
        stride = ctypes.sizeof(_MMsgHdr)
        # where each slot's lengths are in the arrays, as indexes of 4- and 8-byte views
        self._u32 = memoryview(self._raw_vec).cast("I")
        self._iov_len = memoryview(self._raw_iov).cast("Q" if ctypes.sizeof(
            ctypes.c_size_t) == 8 else "I")
        size_t = ctypes.sizeof(ctypes.c_size_t)
        self._len_at = [(i * stride + _MMsgHdr.msg_len.offset) // 4 for i in range(count)]
        self._namelen_at = [(i * stride + _MsgHdr.msg_namelen.offset) // 4
                            for i in range(count)]
        self._iov_at = [(i * ctypes.sizeof(_IoVec) + _IoVec.iov_len.offset) // size_t
                        for i in range(count)]
        self._buf = memoryview(self._bufs)
        self._name = memoryview(self._names)
        self._answered: list[bool] = [False] * count
        self._filled = count  # slots to restore before the next receive

    def receive(self, fd: int) -> int:
        """Read up to COUNT datagrams waiting on `fd` (never blocking): how many (0: none)."""
        u32, iov_len = self._u32, self._iov_len
        for i in range(self._filled):  # what the last batch's answers changed
            u32[self._namelen_at[i]] = NAME
            iov_len[self._iov_at[i]] = SIZE
        self._filled = 0
        assert _LIBC is not None
        n = _LIBC.recvmmsg(fd, self._vec_addr, self.count, MSG_DONTWAIT, None)
        if n < 0:
            err = ctypes.get_errno()
            if err in (_errno.EAGAIN, _errno.EINTR):
                return 0
            raise OSError(err, os.strerror(err))
        self._filled = n
        self._answered[:n] = [False] * n
        return n

    def message(self, i: int) -> bytes:
        return bytes(self._buf[i * SIZE: i * SIZE + self._u32[self._len_at[i]]])

    def sender(self, i: int) -> tuple[str, int] | tuple[str, int, int, int]:
        """The address datagram i came from, as recvfrom gives it."""
        raw = bytes(self._name[i * NAME: i * NAME + self._u32[self._namelen_at[i]]])
        family = int.from_bytes(raw[:2], sys.byteorder)  # (sa_family: the host's order)
        port = int.from_bytes(raw[2:4], "big")
        if family == socket.AF_INET6:
            return (socket.inet_ntop(socket.AF_INET6, raw[8:24]), port,
                    int.from_bytes(raw[4:8], "big"), int.from_bytes(raw[24:28], "little"))
        return socket.inet_ntoa(raw[4:8]), port

    def reply(self, i: int, data: bytes) -> bool:
        """Put an answer in slot i; False if it does not fit (send it otherwise)."""
        if len(data) > SIZE:
            return False
        self._buf[i * SIZE: i * SIZE + len(data)] = data
        self._iov_len[self._iov_at[i]] = len(data)
        self._answered[i] = True
        return True

    def send(self, fd: int) -> tuple[int, int]:
        """Send the answered slots of the last batch: (sent, dropped). A socket whose
        buffer is full drops what does not fit, as sendto's EAGAIN does."""
        assert _LIBC is not None
        sent = dropped = 0
        n, answered = self._filled, self._answered
        i = 0
        while i < n:
            if not answered[i]:
                i += 1
                continue
            j = i
            while j < n and answered[j]:
                j += 1
            while i < j:  # one run of answered slots, sent as one call
                done = _LIBC.sendmmsg(fd, self._vec_addr + i * ctypes.sizeof(_MMsgHdr),
                                      j - i, MSG_DONTWAIT)
                if done <= 0:
                    if done < 0 and ctypes.get_errno() == _errno.EINTR:
                        continue
                    dropped += 1  # the first of the run could not go: skip it
                    i += 1
                    continue
                sent += done
                i += done
        return sent, dropped
