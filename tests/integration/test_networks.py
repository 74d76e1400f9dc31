"""Networks on the real kernel: built-ins, user-defined bridges, subnet choice, errors."""

from __future__ import annotations

import json

import pytest

from .harness import Host


def test_builtin_networks_and_default_bridge(host: Host) -> None:
    out = host.shoal("network", "ls").stdout.splitlines()
    assert out[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    rows = {line.split()[1]: line.split()[2] for line in out[1:]}
    assert rows == {"bridge": "bridge", "host": "host", "none": "null"}
    links = host.links()
    assert "shoal0" in links and "UP" in links["shoal0"]["flags"]
    addrs = host.ip_json("addr", "show", "shoal0")[0]["addr_info"]
    assert [(a["local"], a["prefixlen"]) for a in addrs if a["family"] == "inet"] == [
        ("172.17.0.1", 16)]
    bridge = host.shoal_json("network", "inspect", "bridge")[0]
    assert bridge["IPAM"]["Config"] == [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]
    assert bridge["Options"]["shoal.bridge.name"] == "shoal0"


def test_create_inspect_and_remove(host: Host) -> None:
    net_id = host.shoal("network", "create", "--label", "team=blue", "isolated").stdout.strip()
    assert len(net_id) == 64
    info = host.shoal_json("network", "inspect", "isolated")[0]
    assert info["Id"] == net_id and info["Driver"] == "bridge" and info["Scope"] == "local"
    # the next free default pool after the default bridge's 172.17.0.0/16
    assert info["IPAM"]["Config"] == [{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]
    assert info["Labels"] == {"team": "blue"} and info["Internal"] is False
    assert info["Containers"] == {}
    for key in ("Name", "Created", "EnableIPv6", "Options"):
        assert key in info
    bridge = "sh-" + net_id[:12]
    assert bridge in host.links()
    addr = host.ip_json("addr", "show", bridge)[0]["addr_info"]
    assert ("172.18.0.1", 16) in [(a["local"], a["prefixlen"]) for a in addr]
    # no IPv6 link-local address: autoconfiguration is off on shoal's links
    assert not [a for a in addr if a["family"] == "inet6"]

    host.shoal("network", "rm", "isolated")
    assert bridge not in host.links()
    assert "isolated" not in host.shoal("network", "ls").stdout


def test_explicit_ipam_options_and_bridge_name(host: Host) -> None:
    host.shoal("network", "create", "--subnet", "10.20.0.0/24", "--gateway", "10.20.0.254",
               "--ip-range", "10.20.0.128/25", "--internal", "-o", "shoal.bridge.name=br-test",
               "custom")
    info = host.shoal_json("network", "inspect", "custom")[0]
    assert info["IPAM"]["Config"] == [
        {"Subnet": "10.20.0.0/24", "Gateway": "10.20.0.254", "IPRange": "10.20.0.128/25"}]
    assert info["Internal"] is True
    assert info["Options"] == {"shoal.bridge.name": "br-test"}
    addr = host.ip_json("addr", "show", "br-test")[0]["addr_info"]
    assert ("10.20.0.254", 24) in [(a["local"], a["prefixlen"]) for a in addr]
    host.shoal("run", "-d", "--name", "c1", "--network", "custom", "--", "sleep", "60")
    # dynamic addresses come from the ip-range
    assert host.ip_of("c1", "custom") == "10.20.0.128"


def test_subnet_choice_skips_host_addresses_and_routes(host: Host) -> None:
    host.ip("link", "add", "dummy0", "type", "bridge")
    host.ip("addr", "add", "172.18.5.1/24", "dev", "dummy0")
    host.ip("link", "set", "dummy0", "up")
    host.ip("route", "add", "172.19.0.0/20", "dev", "dummy0")
    host.shoal("network", "create", "n1")
    host.shoal("network", "create", "n2")
    subnets = [host.shoal_json("network", "inspect", n)[0]["IPAM"]["Config"][0]["Subnet"]
               for n in ("bridge", "n1", "n2")]
    assert subnets == ["172.17.0.0/16", "172.20.0.0/16", "172.21.0.0/16"]


def test_ls_filters_and_json(host: Host) -> None:
    host.shoal("network", "create", "--label", "env=prod", "alpha")
    host.shoal("network", "create", "--label", "env=dev", "beta")
    rows = [json.loads(line) for line in host.shoal("network", "ls", "--format", "json")
            .stdout.splitlines()]
    assert {r["Name"] for r in rows} == {"bridge", "host", "none", "alpha", "beta"}
    assert all({"ID", "Name", "Driver", "Scope"} <= set(r) for r in rows)

    def names(*flt: str) -> set[str]:
        args = [a for f in flt for a in ("--filter", f)]
        return {line.split()[1] for line in
                host.shoal("network", "ls", *args).stdout.splitlines()[1:]}

    assert names("label=env=prod") == {"alpha"}
    assert names("label=env") == {"alpha", "beta"}
    assert names("driver=null") == {"none"}
    assert names("name=alp") == {"alpha"}
    quiet = host.shoal("network", "ls", "-q", "--filter", "name=beta").stdout.split()
    assert quiet == [host.shoal_json("network", "inspect", "beta")[0]["Id"][:12]]


def test_rm_network_with_endpoints_names_them_and_prune(host: Host) -> None:
    host.shoal("network", "create", "busy")
    host.shoal("network", "create", "idle")
    host.shoal("run", "-d", "--name", "worker", "--network", "busy", "--", "sleep", "60")
    res = host.shoal("network", "rm", "busy", check=False)
    assert res.returncode != 0
    assert "worker" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "busy" in host.shoal("network", "ls").stdout
    pruned = host.shoal("network", "prune", "-f").stdout
    assert "idle" in pruned and "busy" not in pruned
    assert "idle" not in host.shoal("network", "ls").stdout
    res = host.shoal("network", "rm", "bridge", check=False)
    assert res.returncode != 0 and "pre-defined" in res.stderr


BAD_CREATES = [
    (["--subnet", "10.0.0.0/33", "x"], "invalid subnet"),
    (["--subnet", "not-a-cidr", "x"], "invalid subnet"),
    (["--subnet", "10.1.0.5/16", "x"], "it should be 10.1.0.0/16"),
    (["--subnet", "fd00::/64", "x"], "IPv6"),
    (["--subnet", "10.3.0.0/24", "--gateway", "10.4.0.1", "x"], "gateway"),
    (["--subnet", "10.3.0.0/24", "--ip-range", "10.5.0.0/25", "x"], "ip-range"),
    (["--gateway", "10.3.0.1", "x"], "need --subnet"),
    (["--subnet", "172.17.128.0/24", "x"], "overlaps network bridge"),
    (["-d", "macvlan", "x"], "unknown network driver"),
    (["-d", "host", "x"], "only one instance"),
    (["-o", "foo=bar", "x"], "unknown bridge option"),
    (["-o", "shoal.bridge.name=this-is-too-long-for-linux", "x"], "at most 15"),
    (["-o", "shoal.bridge.name=eth0", "x"], "already exists on the host"),
    (["bad name"], "invalid network name"),
    (["-bad"], ""),
    (["../etc"], "invalid network name"),
    (["bridge"], "already exists"),
]


@pytest.mark.parametrize(("args", "message"), BAD_CREATES)
def test_bad_network_create_is_one_clean_line(host: Host, args: list[str], message: str
                                              ) -> None:
    host.shoal("network", "ls")  # built-ins exist before we compare
    links_before = set(host.links())
    nets_before = host.shoal("network", "ls", "-q").stdout
    res = host.shoal("network", "create", *args, check=False)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("shoal:"), res.stderr
    assert message in lines[0]
    assert "Traceback" not in res.stderr
    assert set(host.links()) == links_before
    assert host.shoal("network", "ls", "-q").stdout == nets_before


def test_unknown_network_errors(host: Host) -> None:
    for args in (["network", "inspect", "nope"], ["network", "rm", "nope"],
                 ["network", "connect", "nope", "x"]):
        res = host.shoal(*args, check=False)
        assert res.returncode != 0 and "no such network: nope" in res.stderr


# Modules a read-only command must not import: each costs milliseconds of the 60 ms that
# `shoal network ls` may take (the time itself is measured by bench/attach.py, not here).
HEAVY = ("argparse", "re", "enum", "json", "ipaddress", "datetime", "contextlib",
         "shoal.netfilter", "shoal.firewall", "shoal.kernel", "shoal.ipam", "shoal.ports",
         "shoal.runtime.process")


@pytest.mark.parametrize("argv", [["network", "ls"], ["network", "ls", "-f", "label=team"],
                                  ["network", "ls", "--filter", "driver=bridge", "--no-trunc"]])
def test_network_ls_imports_nothing_heavy(host: Host, argv: list[str]) -> None:
    host.shoal("network", "create", "--label", "team=blue", "-o", "shoal.bridge.name=br-t", "t")
    host.shoal("run", "--name", "c", "--", "true")
    code = f"""
import io, sys
before = set(sys.modules)
from shoal.cli.main import main
sys.stdout = io.StringIO()
status = main({["--root", host.root, "--run-dir", host.run_dir, *argv]!r})
out, sys.stdout = sys.stdout.getvalue(), sys.__stdout__
print(status, sorted(m for m in set(sys.modules) - before if m in {HEAVY!r}), repr(out))
"""
    status, imported, out = host.python(code).stdout.split(" ", 2)
    assert status == "0"
    assert imported == "[]"
    assert "   t   " in out and "bridge" in out
