"""Sandboxes handed in by another runtime (issue 8): shoal is given the path of a network
namespace it did not make, as the CNI plugin and the Docker network plugin will be, and
creates, joins and leaves endpoints in it through the controller's CNM operations. The
namespace itself is never removed by shoal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .harness import HOST_ADDR, OUTSIDE_ADDR, Host

SCRIPT = """
import json, sys
from shoal.controller import Engine
from shoal.errors import ShoalError
engine = Engine.open(ROOT, RUN)
out = {}
op = OP
if op == "attach":
    sb = engine.add_sandbox(PATH, "test:one")
    out["again"] = engine.add_sandbox(PATH, "test:one").id == sb.id
    ep = engine.connect_sandbox(sb.id, "n1")
    out.update(id=sb.id, owned=sb.owned, ip=str(ep.ip), ifname=ep.ifname)
    try:
        engine.connect_sandbox(sb.id, "n1")
    except ShoalError as e:
        out["twice"] = str(e)
elif op == "bad":
    try:
        engine.add_sandbox(PATH, "test:bad")
    except ShoalError as e:
        out["error"] = str(e)
elif op == "publish":
    from shoal.ports import parse_publish
    sb = engine.add_sandbox(PATH, "test:pub")
    if not engine.store.endpoints(sandbox_id=sb.id):
        engine.connect_sandbox(sb.id, "n1")
    out["id"] = sb.id
    out["ports"] = [[p.proto, str(p.host_ip), p.host_port, p.container_port]
                    for p in engine.publish_sandbox(sb.id, "n1", parse_publish("8080:80")
                                                    + parse_publish("5353:53/udp"))]
    for spec in ("8080:81", "9999:80"):
        try:
            engine.publish_sandbox(sb.id, "n1", parse_publish(spec))
        except ShoalError as e:
            out.setdefault("refused", []).append(str(e))
elif op == "unpublish":
    engine.unpublish_sandbox(ID, "n1")
    out["left"] = engine.store.port_rows(ID)
elif op == "remove":
    engine.remove_sandbox(ID)
    out["left"] = [e.id for e in engine.store.endpoints(sandbox_id=ID)]
    out["record"] = engine.store.sandbox_by_id(ID) is not None
engine.close()
print(json.dumps(out))
"""


def run(host: Host, op: str, path: str = "", sid: str = "") -> dict[str, object]:
    code = (SCRIPT.replace("ROOT", repr(host.root)).replace("RUN", repr(host.run_dir))
            .replace("OP", repr(op)).replace("PATH", repr(path)).replace("ID", repr(sid)))
    return json.loads(host.python(code).stdout.strip().splitlines()[-1])


def namespace(tmp_path: Path, name: str) -> str:
    """A namespace another runtime made: a file under the test's directory."""
    path = tmp_path / name
    path.touch()
    subprocess.run(["unshare", f"--net={path}", "true"], check=True)
    return str(path)


def test_a_handed_in_namespace_joins_a_network_and_leaves_it(host: Host, tmp_path: Path
                                                             ) -> None:
    host.shoal("network", "create", "--subnet", "10.88.0.0/24", "n1")
    host.shoal("run", "-d", "--name", "web", "--network", "n1", "--", "sleep", "60")
    web_ip = host.shoal_json("inspect", "web")[0]["NetworkSettings"]["Networks"]["n1"][
        "IPAddress"]
    ext = namespace(tmp_path, "ext.ns")
    out = run(host, "attach", ext)
    assert out["again"] is True and out["owned"] is False
    assert out["ifname"] == "eth0" and out["ip"].startswith("10.88.0.")
    assert "already connected to network n1" in str(out["twice"])
    addrs = host.ip_json("addr", "show", "eth0", ns=ext)
    assert out["ip"] in [a["local"] for a in addrs[0]["addr_info"]]
    assert "default via 10.88.0.1" in host.ip("route", ns=ext)
    res = host.in_ns(ext, "ping", "-c1", "-W2", web_ip)
    assert res.returncode == 0, res.stdout + res.stderr
    # the network is in use: it cannot be removed under the sandbox
    rm = host.shoal("network", "rm", "n1", check=False)
    assert rm.returncode != 0 and "active endpoints" in rm.stderr
    gone = run(host, "remove", sid=str(out["id"]))
    assert gone == {"left": [], "record": False}
    assert "eth0" not in host.links(ns=ext)  # the endpoint left the namespace ...
    assert Path(ext).exists() and host.in_ns(ext, "true").returncode == 0  # ... which stays
    host.shoal("rm", "-f", "web")
    host.shoal("network", "rm", "n1")


def test_host_ports_published_to_a_handed_in_sandbox(host: Host, tmp_path: Path) -> None:
    """What a CNI runtime's portMappings and dockerd's ProgramExternalConnectivity ask for:
    host ports DNATed to a handed-in sandbox through shoal's maps, checked against the
    host's processes, and gone when unpublished or when the sandbox is removed."""
    from .servers import TCP, UDP

    host.shoal("network", "create", "--subnet", "10.87.0.0/24", "n1")
    ext = namespace(tmp_path, "pub.ns")
    taken = host.background(host.ns, sys.executable, "-c",
                            "import socket,time; s=socket.socket(); s.bind(('0.0.0.0', 9999));"
                            " s.listen(); print('up', flush=True); time.sleep(120)")
    try:
        assert taken.stdout is not None and taken.stdout.readline() == "up\n"
        out = run(host, "publish", ext)
        assert out["ports"] == [["tcp", "0.0.0.0", 8080, 80], ["udp", "0.0.0.0", 5353, 53]]
        first, second = out["refused"]
        assert first == ("host port 0.0.0.0:8080/tcp is already published by sandbox "
                         "test:pub")
        assert "9999" in second and "in use" in second  # a host process has it: not taken
    finally:
        taken.kill()
        taken.wait()
    servers = [host.background(ext, sys.executable, "-c", TCP, "80"),
               host.background(ext, sys.executable, "-c", UDP, "53")]
    try:
        host.wait_for(lambda: host.listening(ext, 80), what="the server in the sandbox")
        assert host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR
        assert host.fetch(host.outside, HOST_ADDR, 5353, "udp") == OUTSIDE_ADDR
        assert "8080" in host.shoal("system", "firewall").stdout
        gone = run(host, "unpublish", ext, sid=str(out["id"]))
        assert gone["left"] == []
        assert host.fetch(host.outside, HOST_ADDR, 8080, timeout=1) is None
        # published again, then the sandbox goes: its ports go with it
        again = run(host, "publish", ext)
        assert again["id"] == out["id"] and len(again["ports"]) == 2
        assert host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR
        assert run(host, "remove", sid=str(out["id"]))["record"] is False
        assert host.fetch(host.outside, HOST_ADDR, 8080, timeout=1) is None
        assert ":8080" not in host.shoal("system", "firewall").stdout
    finally:
        for proc in servers:
            proc.kill()
            proc.wait()


def test_a_path_that_is_not_a_namespace_is_refused(host: Host, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("")
    out = run(host, "bad", str(plain))
    assert out["error"] == (f"{plain} is not a network namespace: give the path of a "
                            "namespace file (e.g. /run/netns/NAME), not a symlink")
    link = tmp_path / "link.ns"
    link.symlink_to(namespace(tmp_path, "real.ns"))
    assert "is not a network namespace" in str(run(host, "bad", str(link))["error"])


def test_reconcile_releases_a_sandbox_whose_namespace_went_away(host: Host, tmp_path: Path
                                                                ) -> None:
    host.shoal("network", "create", "--subnet", "10.89.0.0/24", "n1")
    ext = namespace(tmp_path, "gone.ns")
    out = run(host, "attach", ext)
    subprocess.run(["umount", ext], check=True)
    Path(ext).unlink()
    repairs = host.shoal("system", "reconcile").stdout
    assert f"sandbox test:one: its namespace {ext} is gone; its 1 endpoint(s) were released" \
        in repairs
    # its address is free again, and the network can go
    nets = host.shoal_json("network", "inspect", "n1")
    assert nets[0]["Containers"] == {}
    host.shoal("network", "rm", "n1")
    assert out["ip"] == "10.89.0.2"
