"""External networks: a bridge another plugin made (here made by the test, as the reference
CNI `bridge` plugin would), to which shoal adds only its firewall. shoal-cni's chained mode
(a drop-in for `portmap`) records its containers this way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .harness import HOST_ADDR, OUTSIDE_ADDR, Host
from .servers import TCP

CODE = """
import json
from shoal.controller import Engine
from shoal.ports import parse_publish
engine = Engine.open({root!r}, {run!r})
out = {{}}
if {op!r} == "attach":
    sb = engine.add_sandbox({path!r}, "test:other-plugin")
    ep = engine.connect_sandbox(sb.id, "ext", ip="10.77.0.2", ifname="eth0")
    out["ports"] = [p.host_port for p in engine.publish_sandbox(sb.id, "ext",
                                                              parse_publish("8080:80"))]
    out.update(id=sb.id, ip=str(ep.ip))
else:
    engine.remove_sandbox({sid!r})
engine.close()
print(json.dumps(out))
"""


def api(host: Host, op: str, path: str = "", sid: str = "") -> dict[str, object]:
    code = CODE.format(root=host.root, run=host.run_dir, op=op, path=path, sid=sid)
    return json.loads(host.python(code).stdout.strip().splitlines()[-1])


def other_plugin(host: Host, tmp_path: Path) -> str:
    """What the reference bridge plugin makes: bridge br-other with the gateway, and a
    namespace whose eth0 (10.77.0.2) is a veth plugged into it."""
    host.ip("link", "add", "br-other", "type", "bridge")
    host.ip("addr", "add", "10.77.0.1/24", "dev", "br-other")
    host.ip("link", "set", "br-other", "up")
    path = tmp_path / "c1.ns"
    path.touch()
    subprocess.run(["unshare", f"--net={path}", "true"], check=True)
    host.ip("link", "add", "veth-c1", "type", "veth", "peer", "name", "eth0", "netns", str(path))
    host.ip("link", "set", "veth-c1", "master", "br-other", "up")
    host.ip("link", "set", "lo", "up", ns=str(path))
    host.ip("addr", "add", "10.77.0.2/24", "dev", "eth0", ns=str(path))
    host.ip("link", "set", "eth0", "up", ns=str(path))
    host.ip("route", "add", "default", "via", "10.77.0.1", ns=str(path))
    return str(path)


def test_shoal_publishes_ports_to_a_bridge_another_plugin_made(host: Host, tmp_path: Path
                                                               ) -> None:
    c1 = other_plugin(host, tmp_path)
    host.shoal("network", "create", "-d", "external", "-o", "shoal.external.bridge=br-other",
               "ext")
    net = host.shoal_json("network", "inspect", "ext")[0]
    assert net["Driver"] == "external"
    assert net["IPAM"]["Config"] == [{"Subnet": "10.77.0.0/24", "Gateway": "10.77.0.1"}]
    out = api(host, "attach", c1)
    assert out["ip"] == "10.77.0.2" and out["ports"] == [8080]
    server = host.background(c1, sys.executable, "-c", TCP, "80")
    try:
        host.wait_for(lambda: host.listening(c1, 80), what="the server on the other bridge")
        # the outside reaches it through shoal's map, and sees its own address arrive
        assert host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR
        # a container on a network of shoal's is isolated from it, as from any network
        host.shoal("network", "create", "--subnet", "10.78.0.0/24", "mine")
        host.shoal("run", "-d", "--name", "m", "--network", "mine", "--", "sleep", "300")
        assert not host.tcp_ok("m", "10.77.0.2", 80)
        # reconcile and doctor leave the other plugin's links alone and find nothing wrong
        host.shoal("system", "reconcile")
        assert {"br-other", "veth-c1"} <= set(host.links())
        doctor = host.shoal("doctor", check=False)
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "bridge br-other (another plugin's) is up" in doctor.stdout
        # the attachment goes: its port goes, the other plugin's links stay
        api(host, "remove", sid=str(out["id"]))
        assert host.fetch(host.outside, HOST_ADDR, 8080, timeout=1) is None
        host.shoal("network", "rm", "ext")
        assert {"br-other", "veth-c1"} <= set(host.links())
        assert "eth0" in host.links(ns=c1)
    finally:
        server.kill()
        server.wait()


def test_an_external_network_needs_a_bridge_that_exists(host: Host) -> None:
    res = host.shoal("network", "create", "-d", "external", "ext", check=False)
    assert res.returncode != 0
    assert res.stderr.strip() == ("shoal: an external network needs -o "
                                  "shoal.external.bridge=NAME: the bridge another plugin made")
    res = host.shoal("network", "create", "-d", "external", "-o",
                     "shoal.external.bridge=nosuch0", "ext", check=False)
    assert res.returncode != 0 and "there is no link nosuch0 on the host" in res.stderr
    res = host.shoal("network", "create", "-d", "external", "-o",
                     "shoal.external.bridge=shoal0", "ext", check=False)
    assert res.returncode != 0 and "is one of shoal's own" in res.stderr
    names = host.shoal("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert "ext" not in names and "none" in names
