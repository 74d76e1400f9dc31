"""What the issue-8 clean-up kept: a host port's clash is judged by one check (ports.overlap)
for every pair of host addresses, as `shoal run` shows it (issue 8, "copies and dead code")."""

from __future__ import annotations

import json

import pytest

from .harness import Host


def _names(host: Host) -> list[str]:
    return sorted(json.loads(line)["Names"]
                  for line in host.shoal("ps", "-a", "--format", "json").stdout.splitlines())


@pytest.mark.parametrize(("first", "second"), [
    ("8080:80", "127.0.0.1:8080:80"),  # 0.0.0.0 takes the port on every address
    ("127.0.0.1:8080:80", "8080:80"),
    ("127.0.0.1:8080:80", "127.0.0.1:8080:81"),
])
def test_overlapping_host_addresses_clash(host: Host, first: str, second: str) -> None:
    host.shoal("run", "-d", "--name", "first", "-p", first, "--", "sleep", "60")
    res = host.shoal("run", "-d", "--name", "second", "-p", second, "--", "sleep", "60",
                     check=False)
    assert res.returncode == 125
    assert "8080/tcp is already published by container first" in res.stderr
    assert _names(host) == ["first"]


def test_distinct_host_addresses_share_a_port(host: Host) -> None:
    host.shoal("run", "-d", "--name", "first", "-p", "127.0.0.1:8080:80", "--", "sleep", "60")
    host.shoal("run", "-d", "--name", "second", "-p", "127.0.0.2:8080:80", "--", "sleep", "60")
    assert _names(host) == ["first", "second"]
    ports = host.shoal("port", "second").stdout.split()
    assert ports == ["80/tcp", "->", "127.0.0.2:8080"]


def test_one_port_given_twice_in_one_run(host: Host) -> None:
    res = host.shoal("run", "-d", "--name", "x", "-p", "8080:80", "-p", "127.0.0.1:8080:81",
                     "--", "sleep", "60", check=False)
    assert res.returncode == 125 and "host port 8080/tcp is given twice" in res.stderr
    assert _names(host) == []
