"""The nftables ruleset's generation id (NFT_MSG_GETGEN over NETLINK_NETFILTER): a counter
the kernel bumps at every committed nftables transaction of the namespace, whoever makes it
(nft, firewalld, iptables-nft, shoal). One small request, about as cheap as a stat: it tells
whether anyone but shoal changed the firewall since shoal last looked."""

from __future__ import annotations

import socket
import struct

from .netlink import NETLINK_NETFILTER, NFGENMSG, nfgenmsg, parse_attrs, shared

NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETGEN = 16
NFTA_GEN_ID = 1
GETGEN = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN


def request() -> bytes:
    """The body of a GETGEN request (nfgenmsg, family unspecified, version 0)."""
    return nfgenmsg(socket.AF_UNSPEC)


def parse(body: bytes) -> int | None:
    """The generation id in a NFT_MSG_NEWGEN answer's body."""
    raw = parse_attrs(body, NFGENMSG.size).get(NFTA_GEN_ID)
    return struct.unpack("!I", raw)[0] if raw is not None and len(raw) == 4 else None


def generation() -> int | None:
    """The current generation id, or None where nftables is not there (no nf_tables)."""
    try:  # (one socket kept for the process: see netlink.shared)
        body = shared(NETLINK_NETFILTER).get(GETGEN, request(), "nftables generation")
    except OSError:
        return None
    return parse(body) if body else None
