"""The nftables generation request and answer, byte for byte (no root, no kernel)."""

from __future__ import annotations

import struct

from shoal.kernel import nftgen


def test_the_request_is_an_nfgenmsg_of_no_family() -> None:
    assert nftgen.request() == b"\x00\x00\x00\x00"
    assert nftgen.GETGEN == (10 << 8) | 16


def test_the_generation_id_is_read_big_endian() -> None:
    body = b"\x00\x00\x00\x00" + struct.pack("=HH", 8, 1) + struct.pack("!I", 0x01020304)
    body += struct.pack("=HH", 8, 2) + struct.pack("!I", 77)  # NFTA_GEN_PROC_PID: ignored
    assert nftgen.parse(body) == 0x01020304


def test_an_answer_without_an_id_gives_none() -> None:
    assert nftgen.parse(b"\x00\x00\x00\x00") is None
    assert nftgen.parse(b"\x00\x00\x00\x00" + struct.pack("=HH", 6, 1) + b"\x01\x02\0\0") \
        is None
