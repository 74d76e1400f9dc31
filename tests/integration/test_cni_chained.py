"""shoal-cni chained after the reference `bridge` plugin, as a drop-in for `portmap`: the
real /usr/lib/cni/bridge (with host-local, its state in the test's directory) makes the
bridge, the veth and the address; shoal-cni records them as an `external` network and
publishes the runtime's portMappings through shoal's maps. The plugins run inside the
harness's host namespace only, executed as libcni executes a network config list."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from .cni import REFERENCE_PLUGINS, namespace, plugin_dir, run_list, run_plugin
from .harness import HOST_ADDR, OUTSIDE_ADDR, Host
from .servers import TCP

pytestmark = pytest.mark.skipif(not os.path.exists(f"{REFERENCE_PLUGINS}/bridge"),
                                reason="the reference CNI plugins are not installed "
                                       "(Debian: containernetworking-plugins)")


def conflist(tmp_path: Path, chained: str = "shoal-cni") -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0", "name": "chain",
        "plugins": [
            {"type": "bridge", "bridge": "cni-chain0", "isGateway": True, "ipMasq": False,
             "hairpinMode": True,
             "ipam": {"type": "host-local", "subnet": "10.66.0.0/24",
                      "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(tmp_path / "ipam")}},
            {"type": chained, "capabilities": {"portMappings": True}},
        ],
    }


PORTS = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}


def test_chained_after_the_reference_bridge_publishes_its_ports(host: Host, tmp_path: Path
                                                                ) -> None:
    bindir = plugin_dir(tmp_path)
    config = conflist(tmp_path)
    ns = namespace(tmp_path, "c1.ns")
    out = run_list(host, "ADD", config, "c1", ns, bindir, runtime=PORTS)
    assert out.rc == 0, out
    res = out.json
    # the result is the bridge plugin's, passed through
    assert [i["name"] for i in res["interfaces"]][0] == "cni-chain0"
    ip = res["ips"][0]["address"].split("/")[0]
    assert ip.startswith("10.66.0.")
    net = host.shoal_json("network", "inspect", "chain")[0]
    assert net["Driver"] == "external" and net["Options"] == {
        "shoal.external.bridge": "cni-chain0"}
    assert net["Labels"] == {"shoal.cni.network": "chain"}
    [member] = net["Containers"].values()
    assert member["Name"] == "cni:c1" and member["IPv4Address"] == f"{ip}/24"
    server = host.background(ns, sys.executable, "-c", TCP, "80")
    try:
        host.wait_for(lambda: host.listening(ns, 80), what="the server in the namespace")
        assert host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR
        # a container on a network of shoal's own is isolated from it
        host.shoal("network", "create", "--subnet", "10.67.0.0/24", "mine")
        host.shoal("run", "-d", "--name", "m", "--network", "mine", "--", "sleep", "300")
        assert not host.tcp_ok("m", ip, 80)
        # CHECK through the list, then DEL in reverse order: shoal's part goes, the bridge
        # plugin removes its own
        conf_check = run_list(host, "CHECK", config, "c1", ns, bindir, runtime=PORTS, prev=res)
        assert conf_check.rc == 0, conf_check
        # shoal-cni's DEL alone: the port goes (it was shoal's), the bridge plugin's
        # interface and address stay
        mine = {"cniVersion": "1.0.0", "name": "chain", "type": "shoal-cni",
                "runtimeConfig": PORTS, "prevResult": res}
        out = run_plugin(host, "DEL", mine, "c1", ns, exe=[f"{bindir}/shoal-cni"])
        assert out.rc == 0, out
        assert host.fetch(host.outside, HOST_ADDR, 8080, timeout=1) is None
        assert ":8080" not in host.shoal("system", "firewall").stdout
        assert host.shoal_json("network", "inspect", "chain")[0]["Containers"] == {}
        assert host.in_ns(ns, "ping", "-c1", "-W1", "10.66.0.1").returncode == 0
        # then the whole list in reverse order: the bridge plugin removes its own
        out = run_list(host, "DEL", config, "c1", ns, bindir, runtime=PORTS, prev=res)
        assert out.rc == 0, out
        assert "eth0" not in host.links(ns=ns)
        # DEL again: still a success for both plugins
        assert run_list(host, "DEL", config, "c1", ns, bindir, prev=res).rc == 0
    finally:
        server.kill()
        server.wait()
    host.shoal("rm", "-f", "m")


def test_chained_attachments_reach_each_other_and_reconcile_leaves_them(host: Host,
                                                                        tmp_path: Path
                                                                        ) -> None:
    bindir = plugin_dir(tmp_path)
    config = conflist(tmp_path)
    spaces = [namespace(tmp_path, f"c{i}.ns") for i in range(2)]
    results = []
    for i, ns in enumerate(spaces):
        out = run_list(host, "ADD", config, f"c{i}", ns, bindir)
        assert out.rc == 0, out
        results.append(out.json)
    ips = [r["ips"][0]["address"].split("/")[0] for r in results]
    assert host.in_ns(spaces[0], "ping", "-c1", "-W1", ips[1]).returncode == 0
    # shoal's repairs leave the other plugin's links alone, and doctor finds nothing wrong
    host.shoal("system", "reconcile")
    assert "cni-chain0" in host.links()
    assert host.in_ns(spaces[1], "ping", "-c1", "-W1", ips[0]).returncode == 0
    doctor = host.shoal("doctor", check=False)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "bridge cni-chain0 (another plugin's) is up" in doctor.stdout


def test_the_reference_portmap_and_shoal_cni_give_the_same_reachability(host: Host,
                                                                        tmp_path: Path
                                                                        ) -> None:
    """The drop-in claim, checked against the real thing: the same list with `portmap`
    reaches the same server the same way."""
    bindir = plugin_dir(tmp_path)
    ns = namespace(tmp_path, "ref.ns")
    config = conflist(tmp_path, "portmap")
    out = run_list(host, "ADD", config, "ref", ns, bindir, runtime=PORTS)
    assert out.rc == 0, out
    server = host.background(ns, sys.executable, "-c", TCP, "80")
    try:
        host.wait_for(lambda: host.listening(ns, 80), what="the server in the namespace")
        assert host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR
        out = run_list(host, "DEL", config, "ref", ns, bindir, runtime=PORTS, prev=out.json)
        assert out.rc == 0, out
    finally:
        server.kill()
        server.wait()
