"""shoal as a Docker network plugin (issue 11): `shoal plugin serve` speaks libnetwork's
remote driver API over a unix socket. First driven with raw HTTP as dockerd drives it, then
by a real, private dockerd (Debian's docker.io) that finds the socket in its plugins
directory: containers of a busybox image on `docker network create -d shoal` networks."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
from typing import Any

from .harness import Host

NID = "a1" * 32  # dockerd's ids: 64 hex digits
EID, EID2, EID3 = "b2" * 32, "c3" * 32, "d4" * 32
CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self.path)


def call(sock: str, path: str, body: Any = None, raw: bytes | None = None
         ) -> tuple[int, dict[str, Any]]:
    """One request as dockerd's plugin client makes it: a POST with a JSON body."""
    conn = _UnixConnection(sock)
    try:
        data = raw if raw is not None else json.dumps(body or {}).encode()
        conn.request("POST", path, data, {"Content-Type": CONTENT_TYPE,
                                          "Accept": CONTENT_TYPE})
        resp = conn.getresponse()
        assert resp.getheader("Content-Type") == CONTENT_TYPE
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def ok(sock: str, path: str, body: Any = None) -> dict[str, Any]:
    status, out = call(sock, path, body)
    assert status == 200 and not out.get("Err"), (path, status, out)
    return out


def err(sock: str, path: str, body: Any = None, raw: bytes | None = None) -> str:
    status, out = call(sock, path, body, raw)
    assert status != 200 and out.get("Err"), (path, status, out)
    assert "\n" not in out["Err"]
    return str(out["Err"])


def start_plugin(host: Host, sock: str) -> subprocess.Popen[str]:
    """`shoal plugin serve` in the host namespace; returns once it listens."""
    proc = subprocess.Popen(
        ["nsenter", f"--net={host.ns}", sys.executable, "-m", "shoal", "--root", host.root,
         "--run-dir", host.run_dir, "plugin", "serve", "--socket", sock],
        env=host.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if "serving" not in line:
        proc.kill()
        raise AssertionError(f"shoal plugin serve did not start: {line}"
                             f"{proc.stderr.read()}")
    return proc


def stop_plugin(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def host_links(host: Host) -> set[str]:
    return set(host.links())


def state(host: Host) -> dict[str, Any]:
    """What a user sees of shoal's state: networks, handed-in sandboxes, the ruleset."""
    nets = sorted(json.loads(line)["Name"] for line in
                  host.shoal("network", "ls", "--format", "json").stdout.splitlines())
    code = ("import json; from shoal.controller import Engine; "
            f"e = Engine.open({host.root!r}, {host.run_dir!r}); "
            "print(json.dumps([[s.owner, s.path] for s in e.store.sandboxes(owned=False)] + "
            "[[ep.id, str(ep.ip)] for ep in e.store.endpoints()])); e.close()")
    rows = json.loads(host.python(code).stdout)
    return {"networks": nets, "rows": rows, "links": host_links(host),
            "ruleset": host.shoal("system", "firewall").stdout}


# -- the API, driven as dockerd drives it ----------------------------------------------------

def _create(sock: str, pool: str = "172.30.0.0/16", gw: str = "172.30.0.1/16",
            nid: str = NID, generic: dict[str, str] | None = None) -> dict[str, Any]:
    return ok(sock, "/NetworkDriver.CreateNetwork", {
        "NetworkID": nid,
        "Options": {"com.docker.network.enable_ipv6": False,
                    "com.docker.network.generic": generic or {}},
        "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": pool, "Gateway": gw}],
        "IPv6Data": []})


def test_api_endpoint_lifecycle(host: Host) -> None:
    sock = str(host.base / "shoal.sock")
    proc = start_plugin(host, sock)
    try:
        before = state(host)
        assert ok(sock, "/Plugin.Activate") == {"Implements": ["NetworkDriver"]}
        assert ok(sock, "/NetworkDriver.GetCapabilities") == {"Scope": "local",
                                                              "ConnectivityScope": "local"}
        _create(sock, generic={"com.docker.network.bridge.enable_icc": "false"})
        name = "docker-" + NID[:12]
        net = host.shoal_json("network", "inspect", name)[0]
        assert net["IPAM"]["Config"] == [{"Subnet": "172.30.0.0/16", "Gateway": "172.30.0.1"}]
        assert net["Labels"] == {"com.docker.network.id": NID}
        assert net["Options"] == {"com.docker.network.bridge.enable_icc": "false"}
        _create(sock, generic={"com.docker.network.bridge.enable_icc": "false"})  # a retry
        bridge = "sh-" + net["Id"][:12]

        out = ok(sock, "/NetworkDriver.CreateEndpoint", {
            "NetworkID": NID, "EndpointID": EID,
            "Interface": {"Address": "172.30.0.7/16", "AddressIPv6": "", "MacAddress": ""},
            "Options": {}})
        assert out == {"Interface": {"MacAddress": "02:42:ac:1e:00:07"}}
        # the endpoint is recorded but holds nothing in the kernel until it joins
        assert host_links(host) == before["links"] | {bridge}

        key = str(host.base / "netns-of-dockerd")  # not a namespace yet at Join (runc's hook)
        out = ok(sock, "/NetworkDriver.Join", {"NetworkID": NID, "EndpointID": EID,
                                               "SandboxKey": key, "Options": {}})
        peer = out["InterfaceName"]["SrcName"]
        assert out == {"InterfaceName": {"SrcName": peer, "DstPrefix": "eth"},
                       "Gateway": "172.30.0.1"}
        links = host.links()
        host_end = "vsh" + peer[3:]
        assert links[host_end]["master"] == bridge and "UP" in links[host_end]["flags"]
        assert "UP" not in links[peer]["flags"]
        assert links[peer]["address"] == "02:42:ac:1e:00:07"
        assert not [a for a in host.ip_json("addr", "show", "dev", peer)[0]["addr_info"]
                    if a["family"] == "inet"]
        # a reconcile (any command's, or system reconcile) while dockerd sets the container
        # up must leave the endpoint alone though its SandboxKey is no namespace yet
        host.shoal("system", "reconcile")
        assert host_end in host.links()
        members = host.shoal_json("network", "inspect", name)[0]["Containers"]
        assert [(m["Name"], m["IPv4Address"]) for m in members.values()] == \
            [("docker:" + EID, "172.30.0.7/16")]
        assert host_end in host.shoal("system", "firewall").stdout  # icc off: its port

        ok(sock, "/NetworkDriver.ProgramExternalConnectivity", {
            "NetworkID": NID, "EndpointID": EID, "Options": {
                "com.docker.network.endpoint.exposedports": [{"Proto": 6, "Port": 80}],
                "com.docker.network.portmap": [
                    {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8080,
                     "HostPortEnd": 8080},
                    {"Proto": 17, "IP": "", "Port": 53, "HostIP": "", "HostPort": 5353,
                     "HostPortEnd": 5353}]}})
        rules = host.shoal("system", "firewall").stdout
        assert "8080" in rules and "5353" in rules and "172.30.0.7" in rules
        ok(sock, "/NetworkDriver.RevokeExternalConnectivity", {"NetworkID": NID,
                                                               "EndpointID": EID})
        assert "8080" not in host.shoal("system", "firewall").stdout

        assert ok(sock, "/NetworkDriver.Leave", {"NetworkID": NID, "EndpointID": EID}) == {}
        assert host_end not in host.links() and peer not in host.links()
        ok(sock, "/NetworkDriver.Leave", {"NetworkID": NID, "EndpointID": EID})  # again
        ok(sock, "/NetworkDriver.DeleteEndpoint", {"NetworkID": NID, "EndpointID": EID})
        ok(sock, "/NetworkDriver.DeleteEndpoint", {"NetworkID": NID, "EndpointID": EID})
        ok(sock, "/NetworkDriver.DeleteNetwork", {"NetworkID": NID})
        ok(sock, "/NetworkDriver.DeleteNetwork", {"NetworkID": NID})
        assert state(host) == before
    finally:
        stop_plugin(proc)
    assert proc.returncode == 0 and not os.path.exists(sock)


def test_api_bad_requests(host: Host) -> None:
    sock = str(host.base / "shoal.sock")
    proc = start_plugin(host, sock)
    try:
        before = state(host)
        status, out = call(sock, "/NetworkDriver.Frobnicate", {})
        assert status == 404 and "unknown call /NetworkDriver.Frobnicate" in out["Err"]
        assert "not JSON" in err(sock, "/NetworkDriver.CreateNetwork", raw=b"{nope")
        assert "NetworkID" in err(sock, "/NetworkDriver.CreateNetwork", {"IPv4Data": []})
        assert "unknown bridge option 'bogus'" in err(
            sock, "/NetworkDriver.CreateNetwork", {
                "NetworkID": NID, "Options": {"com.docker.network.generic": {"bogus": "1"}},
                "IPv4Data": [{"Pool": "172.30.0.0/16", "Gateway": "172.30.0.1/16"}]})
        assert "MTU" in err(sock, "/NetworkDriver.CreateNetwork", {
            "NetworkID": NID,
            "Options": {"com.docker.network.generic": {"com.docker.network.driver.mtu": "9"}},
            "IPv4Data": [{"Pool": "172.30.0.0/16", "Gateway": "172.30.0.1/16"}]})
        assert "IPv6" in err(sock, "/NetworkDriver.CreateNetwork", {
            "NetworkID": NID, "IPv4Data": [{"Pool": "172.30.0.0/16"}],
            "IPv6Data": [{"Pool": "fd00::/64"}]})
        assert state(host) == before  # nothing half-made
        _create(sock)
        assert "no endpoint" in err(sock, "/NetworkDriver.Join", {
            "NetworkID": NID, "EndpointID": EID, "SandboxKey": "/run/x"})
        assert "172.31.0.7" in err(sock, "/NetworkDriver.CreateEndpoint", {
            "NetworkID": NID, "EndpointID": EID, "Interface": {"Address": "172.31.0.7/16"}})
        ok(sock, "/NetworkDriver.CreateEndpoint", {
            "NetworkID": NID, "EndpointID": EID, "Interface": {"Address": "172.30.0.7/16"}})
        assert "absolute" in err(sock, "/NetworkDriver.Join", {
            "NetworkID": NID, "EndpointID": EID, "SandboxKey": "relative/key"})
        assert "portmap" in err(sock, "/NetworkDriver.ProgramExternalConnectivity", {
            "NetworkID": NID, "EndpointID": EID,
            "Options": {"com.docker.network.portmap": "8080"}})
        # the same address for a second endpoint: refused at Join, when it is taken
        ok(sock, "/NetworkDriver.CreateEndpoint", {
            "NetworkID": NID, "EndpointID": EID2, "Interface": {"Address": "172.30.0.7/16"}})
        ok(sock, "/NetworkDriver.Join", {"NetworkID": NID, "EndpointID": EID,
                                         "SandboxKey": "/run/x"})
        assert "172.30.0.7" in err(sock, "/NetworkDriver.Join", {
            "NetworkID": NID, "EndpointID": EID2, "SandboxKey": "/run/y"})
        # a host port range: one free port of it, as dockerd's bridge driver takes
        blocker = host.background(host.ns, sys.executable, "-c",
                                  "import socket,time; s=socket.socket(); "
                                  "s.bind(('0.0.0.0', 8000)); s.listen(); print('up', "
                                  "flush=True); time.sleep(60)")
        try:
            assert blocker.stdout is not None and blocker.stdout.readline().strip() == "up"
            ok(sock, "/NetworkDriver.ProgramExternalConnectivity", {
                "NetworkID": NID, "EndpointID": EID, "Options": {
                    "com.docker.network.portmap": [
                        {"Proto": 6, "Port": 80, "HostPort": 8000, "HostPortEnd": 8002},
                        {"Proto": 6, "Port": 81, "HostPort": 0, "HostPortEnd": 0}]}})
        finally:
            blocker.kill()
            blocker.wait()
        code = ("import json; from shoal.controller import Engine; "
                f"e = Engine.open({host.root!r}, {host.run_dir!r}); "
                "print(json.dumps(sorted([p.host_port, p.container_port] "
                "for p in e.store.ports()))); e.close()")
        ports = json.loads(host.python(code).stdout)
        assert ports[0] == [8001, 80] and ports[1][1] == 81 and ports[1][0] >= 1024
        # a port another endpoint has: refused, naming it; nothing of the call is kept
        ok(sock, "/NetworkDriver.Leave", {"NetworkID": NID, "EndpointID": EID2})
        ok(sock, "/NetworkDriver.CreateEndpoint", {
            "NetworkID": NID, "EndpointID": EID3, "Interface": {"Address": "172.30.0.8/16"}})
        ok(sock, "/NetworkDriver.Join", {"NetworkID": NID, "EndpointID": EID3,
                                         "SandboxKey": "/run/z"})
        assert "8001/tcp is already published by sandbox docker:" + EID in err(
            sock, "/NetworkDriver.ProgramExternalConnectivity", {
                "NetworkID": NID, "EndpointID": EID3, "Options": {
                    "com.docker.network.portmap": [
                        {"Proto": 6, "Port": 82, "HostPort": 8003, "HostPortEnd": 8003},
                        {"Proto": 6, "Port": 83, "HostPort": 8001, "HostPortEnd": 8001}]}})
        assert json.loads(host.python(code).stdout) == ports
        assert "17" in err(sock, "/NetworkDriver.ProgramExternalConnectivity", {
            "NetworkID": NID, "EndpointID": EID3, "Options": {
                "com.docker.network.portmap": [{"Proto": 99, "Port": 80, "HostPort": 1}]}})
    finally:
        stop_plugin(proc)


def test_serve_refuses_bad_sockets(host: Host) -> None:
    missing = host.shoal("plugin", "serve", "--socket", str(host.base / "no" / "s.sock"),
                         check=False)
    assert missing.returncode != 0
    assert missing.stderr.strip().count("\n") == 0
    assert "does not exist" in missing.stderr and str(host.base / "no") in missing.stderr
    plain = host.base / "file"
    plain.write_text("mine")
    res = host.shoal("plugin", "serve", "--socket", str(plain), check=False)
    assert res.returncode != 0 and "not a socket" in res.stderr
    assert plain.read_text() == "mine"
    # a stale socket (a killed plugin's) is replaced; SIGTERM removes the socket
    sock = str(host.base / "p.sock")
    proc = start_plugin(host, sock)
    proc.kill()
    proc.wait()
    assert os.path.exists(sock)
    proc = start_plugin(host, sock)
    assert ok(sock, "/Plugin.Activate") == {"Implements": ["NetworkDriver"]}
    second = host.shoal("plugin", "serve", "--socket", sock, check=False)
    assert second.returncode != 0 and "another process serves" in second.stderr
    stop_plugin(proc)
    assert proc.returncode == 0 and not os.path.exists(sock)
