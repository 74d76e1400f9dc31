"""Published ports that stay safe: conntrack entries flushed when a port or an address is
released or published, host ports held against host processes (and refused when a host
process has them), and hairpin to a container's own published port (issue 7, items 3, 4, 18)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .harness import HOST_ADDR, OUTSIDE_ADDR, Host
from .servers import TCP, UDP

PY = sys.executable


def _bridge_nf(host: Host, on: bool) -> None:
    """Bridge netfilter in this test's host namespace only (per namespace on new kernels)."""
    key = "net.bridge.bridge-nf-call-iptables"
    res = host.in_ns(host.ns, "sysctl", "-w", f"{key}={int(on)}")
    if res.returncode != 0:
        pytest.skip(f"bridge netfilter is not available here ({res.stderr.strip()}); "
                    "try: modprobe br_netfilter")


def _tcp_server(host: Host, name: str, port: int, *args: str) -> None:
    host.shoal("run", "-d", "--name", name, *args, "--", PY, "-c", TCP, str(port))
    host.wait_for(lambda: host.fetch(host.sandbox(name), "127.0.0.1", port) is not None,
                  what=f"{name} to listen")


# -- item 18: hairpin to one's own published port ------------------------------------------------


@pytest.mark.parametrize("bridge_nf", [True, False], ids=["br_netfilter", "no-br_netfilter"])
def test_container_reaches_its_own_published_port_through_the_host_address(
        fw_host: Host, bridge_nf: bool) -> None:
    host = fw_host
    _bridge_nf(host, bridge_nf)
    _tcp_server(host, "web", 8000, "-p", "8090:8000")
    # the container itself, through the host's address (Docker answers there)
    assert host.fetch(host.sandbox("web"), HOST_ADDR, 8090) is not None
    # and another container on the same network, as before
    host.shoal("run", "-d", "--name", "client", "--", "sleep", "60")
    assert host.fetch(host.sandbox("client"), HOST_ADDR, 8090) is not None


def test_every_bridge_port_is_in_hairpin_mode(host: Host) -> None:
    host.shoal("run", "-d", "--name", "a", "--", "sleep", "60")
    host.shoal("network", "create", "lab")
    host.shoal("run", "-d", "--name", "b", "--network", "lab", "--", "sleep", "60")
    host.shoal("network", "connect", "lab", "a")
    ports = [p for p in host.ip_json("-d", "link", "show") if p["ifname"].startswith("vsh")]
    assert len(ports) == 3
    assert all(p["linkinfo"]["info_slave_data"]["hairpin"] for p in ports)


# -- item 3: stale conntrack entries -------------------------------------------------------------

# answers every datagram with its own name, so the sender sees who answered
NAMED_UDP = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', int(sys.argv[1])))
while True:
    data, peer = s.recvfrom(100); s.sendto(sys.argv[2].encode(), peer)
"""

# keeps sending from one source port (one flow) and appends every answer to a file
SENDER = """
import socket, sys, time
addr, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.05)
s.bind(('0.0.0.0', 40999))
end = time.monotonic() + 120
with open(out, 'a') as f:
    while time.monotonic() < end:
        try:
            s.sendto(b'ping', (addr, port))
            f.write(s.recv(100).decode() + '\\n'); f.flush()
        except OSError:
            pass
        time.sleep(0.05)
"""


def _udp_server(host: Host, name: str, *args: str) -> None:
    host.shoal("run", "-d", "--name", name, *args, "--", PY, "-c", NAMED_UDP, "53", name)


def _answers(path: str) -> list[str]:
    try:
        with open(path) as f:
            return f.read().split()
    except FileNotFoundError:
        return []


def _conntrack_lines(host: Host) -> list[str]:
    """The host namespace's IPv4 entries, from the conntrack tool if installed, else from
    /proc/net/nf_conntrack (both independent of shoal's own netlink code)."""
    if shutil.which("conntrack"):
        res = host.in_ns(host.ns, "conntrack", "-L", "-f", "ipv4")
        return [line for line in res.stdout.splitlines() if "src=" in line]
    res = host.in_ns(host.ns, "cat", "/proc/net/nf_conntrack")
    return [line for line in res.stdout.splitlines() if line.startswith("ipv4")]


def test_removed_containers_flow_does_not_reach_the_next_holder_of_its_address(
        host: Host, tmp_path: Path) -> None:
    host.shoal("network", "create", "--subnet", "10.20.0.0/24", "lab")
    _udp_server(host, "dns", "--network", "lab", "--ip", "10.20.0.10", "-p", "5353:53/udp")
    out = str(tmp_path / "answers")
    host.background(host.outside, PY, "-c", SENDER, HOST_ADDR, "5353", out)
    host.wait_for(lambda: "dns" in _answers(out), what="the flow to reach dns")
    assert any("10.20.0.10" in line for line in _conntrack_lines(host))

    host.shoal("rm", "-f", "dns")
    # the sender keeps going; nothing of its flow points at the old address any more
    host.wait_for(lambda: not any("10.20.0.10" in line for line in _conntrack_lines(host)),
                  timeout=5, what="the old address's entries to be flushed")
    # an unrelated container given the same address, publishing nothing, gets none of it
    _udp_server(host, "other", "--network", "lab", "--ip", "10.20.0.10")
    host.wait_for(lambda: host.fetch(host.sandbox("other"), "127.0.0.1", 53, "udp")
                  == "other", what="other to answer")
    seen = len(_answers(out))
    time.sleep(1.5)
    assert "other" not in _answers(out)[seen:]
    assert not any("10.20.0.10" in line and "sport=40999" in line
                   for line in _conntrack_lines(host))


def test_udp_port_published_while_a_client_sends_reaches_that_client(
        host: Host, tmp_path: Path) -> None:
    host.shoal("network", "ls")  # shoal's firewall is in place (conntrack is on)
    out = str(tmp_path / "answers")
    host.background(host.outside, PY, "-c", SENDER, HOST_ADDR, "5354", out)
    # the client's flow is tracked (to the host itself, where nothing answers)
    host.wait_for(lambda: any("dport=5354" in line for line in _conntrack_lines(host)),
                  what="the client's flow to be tracked")
    _udp_server(host, "dns", "-p", "5354:53/udp")
    host.wait_for(lambda: "dns" in _answers(out), timeout=5, what="the client to reach dns")


def test_stopped_containers_outbound_entries_are_flushed(host: Host) -> None:
    host.background(host.outside, PY, "-c", NAMED_UDP, "7001", "outside")
    host.shoal("run", "-d", "--name", "c", "--", "sleep", "60")
    addr = host.ip_of("c", "bridge")
    assert host.fetch(host.sandbox("c"), "198.51.100.1", 7001, "udp") == "outside"
    assert any(f"src={addr}" in line for line in _conntrack_lines(host))
    host.shoal("stop", "-t", "0", "c")
    # (stop returns once the exit is recorded; the supervisor flushes right after)
    host.wait_for(lambda: not any(addr in line for line in _conntrack_lines(host)),
                  timeout=5, what="the stopped container's entries to be flushed")


# -- item 4: host listeners and held ports -------------------------------------------------------

# a host process trying to take a port the way servers do (SO_REUSEADDR, even SO_REUSEPORT)
TRY_BIND = """
import socket, sys
proto, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if proto == 'udp' else socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if len(sys.argv) > 4:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
try:
    s.bind((addr, port))
    if proto == 'tcp':
        s.listen(1)
    print('bound')
except OSError as e:
    print(e.strerror)
"""

# a host service holding a port; with 'bind-only', a TCP socket bound without listening
HOST_SERVICE = """
import socket, sys, time
proto, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if proto == 'udp' else socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', port))
if proto == 'tcp' and sys.argv[3:] != ['bind-only']:
    s.listen(1)
print('ready', flush=True)
time.sleep(120)
"""


def _try_bind(host: Host, proto: str, addr: str, port: int, reuseport: bool = False) -> str:
    res = host.in_ns(host.ns, PY, "-c", TRY_BIND, proto, addr, str(port),
                     *(["reuseport"] if reuseport else []))
    return res.stdout.strip()


def _host_service(host: Host, proto: str, port: int, *args: str) -> int:
    proc = host.background(host.ns, PY, "-c", HOST_SERVICE, proto, str(port), *args)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc.pid


def _nothing_made(host: Host, port: int) -> None:
    assert host.shoal("ps", "-a", "-q").stdout.strip() == ""
    assert not [name for name in host.links() if name.startswith("vsh")]
    assert f"{port}" not in host.shoal("system", "firewall").stdout


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_publishing_a_port_a_host_process_has_is_refused_naming_it(host: Host,
                                                                   proto: str) -> None:
    host.shoal("network", "ls")
    # a host service (with SO_REUSEADDR, as servers set it) that answers with its peer
    service = host.background(host.ns, PY, "-c", TCP if proto == "tcp" else UDP, "8080")
    host.wait_for(lambda: host.fetch(host.outside, HOST_ADDR, 8080, proto) == OUTSIDE_ADDR,
                  what="the host service")
    res = host.shoal("run", "-d", "--name", "web", "-p", f"8080:80/{proto}", "--",
                     "sleep", "60", check=False)
    assert res.returncode == 125
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1
    assert f"0.0.0.0:8080/{proto}: address already in use" in err
    # nsenter execs the command: the service's pid is the one it started
    assert f"process {service.pid} ({PY} -c" in err and "publish another host port" in err
    _nothing_made(host, 8080)
    # the service keeps its traffic
    assert host.fetch(host.outside, HOST_ADDR, 8080, proto) == OUTSIDE_ADDR


def test_a_port_bound_without_listening_is_refused_too(host: Host) -> None:
    host.shoal("network", "ls")
    _host_service(host, "tcp", 8081, "bind-only")
    res = host.shoal("run", "--rm", "-p", "127.0.0.1:8081:80", "--", "true", check=False)
    assert res.returncode == 125 and "127.0.0.1:8081/tcp: address already in use" in res.stderr
    _nothing_made(host, 8081)


def test_published_ports_are_held_against_host_processes_until_released(host: Host) -> None:
    host.shoal("run", "-d", "--name", "web", "-p", "8080:80", "-p", "5353:53/udp",
               "-p", "127.0.0.1:8443:443", "--", "sleep", "60")
    for proto, addr, port in (("tcp", "0.0.0.0", 8080), ("tcp", HOST_ADDR, 8080),
                              ("tcp", "127.0.0.1", 8080), ("udp", "0.0.0.0", 5353),
                              ("tcp", "127.0.0.1", 8443), ("tcp", "0.0.0.0", 8443)):
        assert _try_bind(host, proto, addr, port) == "Address already in use", (proto, port)
        assert _try_bind(host, proto, addr, port, reuseport=True) == "Address already in use"
    # what is not published stays free: the other protocol, other addresses of 127.0.0.1's
    assert _try_bind(host, "udp", "0.0.0.0", 8080) == "bound"
    assert _try_bind(host, "tcp", HOST_ADDR, 8443) == "bound"
    host.shoal("stop", "-t", "0", "web")
    for proto, port in (("tcp", 8080), ("udp", 5353), ("tcp", 8443)):
        assert _try_bind(host, proto, "0.0.0.0", port) == "bound"
    # started again, it holds them again
    host.shoal("rm", "web")
    host.shoal("run", "-d", "--name", "web", "-p", "8080:80", "--", "sleep", "60")
    assert _try_bind(host, "tcp", "0.0.0.0", 8080) == "Address already in use"
    host.shoal("rm", "-f", "web")
    assert _try_bind(host, "tcp", "0.0.0.0", 8080) == "bound"


def test_a_port_is_held_until_the_container_exits_by_itself(host: Host) -> None:
    host.shoal("run", "-d", "--name", "brief", "-p", "8084:80", "--", "sleep", "3")
    assert _try_bind(host, "tcp", "0.0.0.0", 8084) == "Address already in use"
    host.wait_for(lambda: _try_bind(host, "tcp", "0.0.0.0", 8084) == "bound", timeout=10,
                  what="the port to be released at the container's exit")


def test_a_foreground_run_holds_its_ports_while_it_runs(host: Host) -> None:
    host.shoal("network", "create", "lab")
    env = host.env()
    cmd = ["nsenter", f"--net={host.ns}", PY, "-m", "shoal", "--root", host.root,
           "--run-dir", host.run_dir, "run", "--name", "fg", "--network", "lab",
           "-p", "8082:80", "-p", "8085:85", "--", "sleep", "4"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        host.wait_for(lambda: "fg" in host.shoal("ps").stdout, what="the foreground run")
        assert _try_bind(host, "tcp", "0.0.0.0", 8082) == "Address already in use"
        # a disconnect elsewhere has the foreground `shoal run` let go of that network's
        # ports (and it carries on)
        host.shoal("network", "connect", "bridge", "fg")
        host.shoal("network", "disconnect", "lab", "fg")
        assert _try_bind(host, "tcp", "0.0.0.0", 8085) == "bound"
        assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _try_bind(host, "tcp", "0.0.0.0", 8082) == "bound"


def test_disconnect_releases_the_networks_ports(host: Host) -> None:
    host.shoal("network", "create", "lab")
    host.shoal("run", "-d", "--name", "web", "--network", "lab", "-p", "8083:80",
               "-p", "5355:53/udp", "--", "sleep", "60")
    host.shoal("network", "connect", "bridge", "web")
    assert _try_bind(host, "tcp", "0.0.0.0", 8083) == "Address already in use"
    host.shoal("network", "disconnect", "lab", "web")
    assert _try_bind(host, "tcp", "0.0.0.0", 8083) == "bound"
    assert _try_bind(host, "udp", "0.0.0.0", 5355) == "bound"
    assert host.shoal("ps", "-q").stdout.strip()  # the container runs on


def test_random_ports_skip_ports_a_host_process_has(host: Host) -> None:
    host.shoal("network", "ls")
    host.in_ns(host.ns, "sysctl", "-w", "net.ipv4.ip_local_port_range=41000 41003", check=True)
    # bound without listening: invisible to a scan of listeners, but the bind sees it
    _host_service(host, "tcp", 41000, "bind-only")
    _host_service(host, "udp", 41001)
    host.shoal("run", "-d", "--name", "web", "-p", "80", "-p", "53/udp", "--", "sleep", "60")
    lines = sorted(host.shoal("port", "web").stdout.split("\n"))
    assert "53/udp -> 0.0.0.0:41000" in lines and "80/tcp -> 0.0.0.0:41001" in lines
    assert _try_bind(host, "tcp", "0.0.0.0", 41001) == "Address already in use"


def test_many_ports_are_held_past_the_default_open_file_limit(host: Host) -> None:
    host.shoal("network", "ls")
    # as started from a shell with the usual soft limit of 1024 open files
    cmd = ["prlimit", "--nofile=1024:4096", "nsenter", f"--net={host.ns}", PY, "-m", "shoal",
           "--root", host.root, "--run-dir", host.run_dir, "run", "-d", "--name", "many",
           "-p", "20000-21499:20000-21499", "--", "sleep", "60"]
    res = subprocess.run(cmd, env=host.env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert _try_bind(host, "tcp", "0.0.0.0", 20000) == "Address already in use"
    assert _try_bind(host, "tcp", "0.0.0.0", 21499) == "Address already in use"
    host.shoal("rm", "-f", "many")
    assert _try_bind(host, "tcp", "0.0.0.0", 21499) == "bound"


def test_doctor_tells_shoals_own_held_sockets_from_a_host_process(host: Host) -> None:
    host.shoal("run", "-d", "--name", "web", "-p", "5353:53/udp", "-p", "8080:80", "--",
               "sleep", "60")
    res = host.shoal("doctor", "web", check=False)
    assert "also bound" not in res.stdout, res.stdout
    assert "published port 0.0.0.0:5353/udp -> 53 is in place" in res.stdout
