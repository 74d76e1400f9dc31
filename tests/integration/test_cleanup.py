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


COUNT_LISTINGS = """
import json
from shoal.doctor import FAIL, doctor
from shoal.controller import Engine
from shoal.firewall import iptables, nftables

calls = []
def counted(cls, name):
    original = getattr(cls, name)
    def wrapper(self, *a, **kw):
        if name == "show" or a[0].startswith("list ruleset"):
            calls.append(f"{cls.__name__}.{name}")
        return original(self, *a, **kw)
    setattr(cls, name, wrapper)
counted(nftables.Nftables, "run")
counted(nftables.Nftables, "show")
counted(iptables.Iptables, "show")
engine = Engine.open(ROOT, RUN)
try:
    checks = doctor(engine, "web")
finally:
    engine.close()
print(json.dumps({"calls": calls, "failed": [c.what for c in checks if c.status == FAIL],
                  "ports ok": sum("published port" in c.what and "in place" in c.what
                                  for c in checks)}))
"""


def test_doctor_reads_the_ruleset_once_per_container_not_once_per_port(fw_host: Host
                                                                         ) -> None:
    host = fw_host
    host.shoal("run", "-d", "--name", "web", "-p", "9000-9019:9000-9019", "--", "sleep", "60")
    code = COUNT_LISTINGS.replace("ROOT", repr(host.root)).replace("RUN", repr(host.run_dir))
    out = json.loads(host.python(code).stdout.strip().splitlines()[-1])
    assert out["failed"] == [] and out["ports ok"] == 20
    # the host checks read the ruleset once, the container's ports once more (and the
    # iptables backend's chains once each time): not once for each of the 20 ports
    assert len(out["calls"]) <= 4, out["calls"]
