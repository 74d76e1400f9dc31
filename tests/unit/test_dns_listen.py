"""The resolver's sockets without a namespace: their descriptors (kernel/fds.py) and the
redirect of port 53 (dns/listen.py)."""

from __future__ import annotations

import resource
import socket

import pytest

from shoal.dns import listen
from shoal.kernel import fds


def test_sockets_move_above_fd_setsize_and_stay_non_blocking() -> None:
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] <= fds.HIGH_FDS:
        listen.raise_open_files()
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] <= fds.HIGH_FDS:
        pytest.skip("the open-files limit is below 1024 here")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
    low = sock.fileno()
    high = fds.out_of_the_way(sock)
    try:
        assert high.fileno() >= fds.HIGH_FDS
        assert sock.fileno() == -1  # the low descriptor is closed, free for select() users
        assert low < fds.HIGH_FDS
        assert high.getblocking() is False and high.type == socket.SOCK_DGRAM
    finally:
        high.close()


def test_redirect_script_rewrites_port_53_of_127_0_0_11_only_and_back() -> None:
    script = listen.redirect_script(40001, 40002)
    assert "flush table ip shoal_dns" in script  # replaced whole: a new resolver, new ports
    assert "type filter hook output priority raw" in script  # before conntrack
    rules = [line.split(" output ", 1)[1] for line in script.splitlines()
             if line.startswith("add rule")]
    assert rules == [
        "ip daddr 127.0.0.11 udp dport 53 notrack udp dport set 40001",
        "ip saddr 127.0.0.11 udp sport 40001 notrack udp sport set 53",
        "ip daddr 127.0.0.11 tcp dport 53 notrack tcp dport set 40002",
        "ip saddr 127.0.0.11 tcp sport 40002 notrack tcp sport set 53",
    ]
