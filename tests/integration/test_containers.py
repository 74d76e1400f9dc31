"""Containers on the real kernel: sandboxes, endpoints, traffic, lifecycle, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from .harness import Host

SERVE = ["python3", "-m", "http.server", "8000", "--bind", "0.0.0.0"]


def _serving(host: Host, name: str, network: str) -> str:
    host.shoal("run", "-d", "--name", name, "--network", network, "--", *SERVE)
    addr = host.ip_of(name, network)
    host.wait_for(lambda: host.tcp_ok(name, "127.0.0.1", 8000), what=f"{name} to listen")
    return addr


def test_foreground_run_streams_output_and_exit_code(host: Host) -> None:
    res = host.shoal("run", "--rm", "--hostname", "box1", "--", "sh", "-c",
                     "hostname; cat /etc/hostname; echo err >&2; exit 3", check=False)
    assert res.returncode == 3
    assert res.stdout.split() == ["box1", "box1"]
    assert "err" in res.stderr
    assert host.shoal("ps", "-a", "-q").stdout.strip() == ""  # --rm removed it


def test_sandbox_has_eth0_with_derived_mac_route_and_no_ipv6_autoconf(host: Host) -> None:
    host.shoal("run", "-d", "--name", "c", "--", "sleep", "60")
    info = host.shoal_json("inspect", "c")[0]
    net = info["NetworkSettings"]["Networks"]["bridge"]
    assert net["IPAddress"] == "172.17.0.2" and net["Gateway"] == "172.17.0.1"
    assert net["MacAddress"] == "02:42:ac:11:00:02" and net["IPPrefixLen"] == 16
    assert info["State"]["Status"] == "running" and info["State"]["Pid"] > 0
    sandbox = info["NetworkSettings"]["SandboxKey"]
    links = host.links(ns=sandbox)
    assert set(links) == {"lo", "eth0"}
    assert links["eth0"]["address"] == "02:42:ac:11:00:02"
    addrs = host.ip_json("addr", "show", "eth0", ns=sandbox)[0]["addr_info"]
    assert [(a["family"], a["local"], a["prefixlen"]) for a in addrs] == [
        ("inet", "172.17.0.2", 16)]  # and no fe80:: link-local
    routes = host.ip_json("route", ns=sandbox)
    assert {"dst": "default", "gateway": "172.17.0.1"}.items() <= routes[0].items()
    # the host end is on the default bridge, up, without IPv6 link-local either
    peer = "vsh" + net["EndpointID"][:12]
    hl = host.links()
    assert hl[peer]["master"] == "shoal0" and "UP" in hl[peer]["flags"]
    assert not [a for link in host.ip_json("-6", "addr", "show", peer)
                for a in link.get("addr_info", [])]
    # /etc/hosts inside names the container
    hosts = host.in_container("c", "cat", "/etc/hosts").stdout
    assert f"172.17.0.2\t{info['Config']['Hostname']}" in hosts
    assert host.in_container("c", "hostname").stdout.strip() == info["Id"][:12]


def test_containers_on_one_network_reach_each_other_and_gateway(host: Host) -> None:
    host.shoal("network", "create", "app")
    web = _serving(host, "web", "app")
    host.shoal("run", "-d", "--name", "client", "--network", "app", "--", "sleep", "60")
    assert host.ping_ok("client", web)
    assert host.ping_ok("client", "172.18.0.1")
    assert host.tcp_ok("client", web, 8000)
    got = host.in_container("client", "python3", "-c",
                            f"import urllib.request as u; print(u.urlopen('http://{web}:8000/')"
                            ".status)").stdout.strip()
    assert got == "200"
    # the host reaches containers through the bridge's gateway address
    assert os.system(f"nsenter --net={host.ns} ping -c1 -W2 {web} >/dev/null") == 0


def test_network_none_has_only_lo(host: Host) -> None:
    res = host.shoal("run", "--rm", "--network", "none", "--", "ip", "-o", "link")
    names = [line.split(":")[1].strip() for line in res.stdout.splitlines()]
    assert names == ["lo"]
    assert "UP" in res.stdout  # lo is up


def test_network_host_shares_the_host_namespace(host: Host) -> None:
    res = host.shoal("run", "--rm", "--network", "host", "--", "ip", "-o", "addr")
    assert "198.51.100.2/24" in res.stdout  # the sandboxed host's own uplink address


def test_container_mode_shares_another_sandbox(host: Host) -> None:
    host.shoal("run", "-d", "--name", "owner", "--", "sleep", "60")
    res = host.shoal("run", "--rm", "--network", "container:owner", "--", "ip", "-o", "addr")
    assert "172.17.0.2/16" in res.stdout
    res = host.shoal("rm", "-f", "owner", check=False)
    assert res.returncode == 0


def test_connect_and_disconnect_running_container(host: Host) -> None:
    host.shoal("network", "create", "front")
    host.shoal("network", "create", "back")
    db = _serving(host, "db", "back")
    host.shoal("run", "-d", "--name", "app", "--network", "front", "--", "sleep", "60")
    assert not host.tcp_ok("app", db, 8000)  # not on back yet
    host.shoal("network", "connect", "--alias", "api", "back", "app")
    sandbox = host.sandbox("app")
    assert set(host.links(ns=sandbox)) == {"lo", "eth0", "eth1"}
    addrs = host.ip_json("addr", "show", "eth1", ns=sandbox)[0]["addr_info"]
    assert [a["local"] for a in addrs] == ["172.19.0.3"]
    assert host.tcp_ok("app", db, 8000)
    info = host.shoal_json("inspect", "app")[0]["NetworkSettings"]["Networks"]
    assert set(info) == {"front", "back"} and info["back"]["Aliases"] == ["api"]
    members = host.shoal_json("network", "inspect", "back")[0]["Containers"]
    assert {m["Name"] for m in members.values()} == {"db", "app"}
    # the default route stays on the first network
    routes = host.ip_json("route", "show", "default", ns=sandbox)
    assert routes[0]["dev"] == "eth0"
    res = host.shoal("network", "connect", "back", "app", check=False)
    assert res.returncode != 0 and "already connected" in res.stderr

    host.shoal("network", "disconnect", "back", "app")
    assert set(host.links(ns=sandbox)) == {"lo", "eth0"}
    assert not host.tcp_ok("app", db, 8000)
    res = host.shoal("network", "disconnect", "back", "app", check=False)
    assert res.returncode != 0 and "not connected" in res.stderr


def test_connect_refused_for_host_and_none_modes(host: Host) -> None:
    host.shoal("network", "create", "n")
    host.shoal("run", "-d", "--name", "h", "--network", "host", "--", "sleep", "60")
    host.shoal("run", "-d", "--name", "z", "--network", "none", "--", "sleep", "60")
    for ctr in ("h", "z"):
        res = host.shoal("network", "connect", "n", ctr, check=False)
        assert res.returncode != 0 and "cannot be connected" in res.stderr
    host.shoal("run", "-d", "--name", "b", "--", "sleep", "60")
    for net in ("host", "none"):
        res = host.shoal("network", "connect", net, "b", check=False)
        assert res.returncode != 0 and "cannot be connected" in res.stderr


def test_detached_lifecycle_logs_stop_rm_leaves_nothing(host: Host) -> None:
    start = time.monotonic()
    cid = host.shoal("run", "-d", "--name", "svc", "--", "sh", "-c",
                     "echo hello; exec sleep 60").stdout.strip()
    assert time.monotonic() - start < 10 and len(cid) == 64
    ps = host.shoal("ps").stdout.splitlines()
    assert ps[0].split()[:2] == ["CONTAINER", "ID"] and cid[:12] in ps[1] and "Up" in ps[1]
    host.wait_for(lambda: "hello" in host.shoal("logs", "svc").stdout, what="log output")
    info = host.shoal_json("inspect", "svc")[0]
    sandbox = info["NetworkSettings"]["SandboxKey"]
    peer = "vsh" + info["NetworkSettings"]["Networks"]["bridge"]["EndpointID"][:12]
    pid = info["State"]["Pid"]

    host.shoal("stop", "-t", "5", "svc")
    state = host.shoal_json("inspect", "svc")[0]["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 143  # SIGTERM
    assert not os.path.exists(f"/proc/{pid}")
    assert host.shoal("ps", "-q").stdout.strip() == ""
    assert cid[:12] in host.shoal("ps", "-a").stdout
    # stopping releases the sandbox: namespace unmounted, veth destroyed by the kernel
    assert sandbox not in host.mounts() and not os.path.exists(sandbox)
    host.wait_for(lambda: peer not in host.links(), what="veth removal")
    host.shoal("rm", "svc")
    assert host.shoal("ps", "-a", "-q").stdout.strip() == ""
    assert not os.path.exists(os.path.join(host.run_dir, "containers", cid))
    assert os.listdir(os.path.join(host.run_dir, "netns")) == []


def test_rm_force_running_container_leaves_no_veth_namespace_or_address(host: Host) -> None:
    host.shoal("network", "create", "n")
    host.shoal("run", "-d", "--name", "x", "--network", "n", "--", "sleep", "60")
    info = host.shoal_json("inspect", "x")[0]
    sandbox = info["NetworkSettings"]["SandboxKey"]
    peer = "vsh" + info["NetworkSettings"]["Networks"]["n"]["EndpointID"][:12]
    res = host.shoal("rm", "x", check=False)
    assert res.returncode != 0 and "is running" in res.stderr
    host.shoal("rm", "-f", "x")
    assert sandbox not in host.mounts()
    host.wait_for(lambda: peer not in host.links(), what="veth removal")
    assert [p for p in host.links() if p.startswith("vsh")] == []
    assert host.shoal_json("network", "inspect", "n")[0]["Containers"] == {}
    # the address is free again: a static --ip may take it
    host.shoal("run", "-d", "--name", "y", "--network", "n", "--ip", "172.18.0.2", "--",
               "sleep", "60")
    assert host.ip_of("y", "n") == "172.18.0.2"


def test_detached_rm_removes_container_when_its_command_exits(host: Host) -> None:
    host.shoal("run", "-d", "--rm", "--name", "brief", "--", "sh", "-c", "sleep 0.3")
    host.wait_for(lambda: "brief" not in host.shoal("ps", "-a").stdout, what="auto removal")
    assert os.listdir(os.path.join(host.run_dir, "netns")) == []


def test_addresses_static_and_allocated(host: Host) -> None:
    host.shoal("network", "create", "--subnet", "10.30.0.0/29", "small")
    host.shoal("run", "-d", "--name", "s1", "--network", "small", "--ip", "10.30.0.5", "--",
               "sleep", "60")
    res = host.shoal("run", "-d", "--name", "s2", "--network", "small", "--ip", "10.30.0.5",
                     "--", "sleep", "60", check=False)
    assert res.returncode != 0 and "already in use" in res.stderr
    res = host.shoal("run", "-d", "--network", "small", "--ip", "10.31.0.5", "--", "sleep", "1",
                     check=False)
    assert res.returncode != 0 and "not a usable address" in res.stderr
    res = host.shoal("run", "-d", "--ip", "172.17.0.9", "--", "sleep", "1", check=False)
    assert res.returncode != 0 and "user-defined networks only" in res.stderr
    # a /29 has 10.30.0.2-6 for containers (.1 is the gateway): 5 taken by s1
    got = []
    for i in range(4):
        host.shoal("run", "-d", "--name", f"d{i}", "--network", "small", "--", "sleep", "60")
        got.append(host.ip_of(f"d{i}", "small"))
    assert sorted(got) == ["10.30.0.2", "10.30.0.3", "10.30.0.4", "10.30.0.6"]
    res = host.shoal("run", "-d", "--network", "small", "--", "sleep", "60", check=False)
    assert res.returncode != 0 and "no free address" in res.stderr
    assert len(host.shoal("ps", "-a", "-q").stdout.split()) == 5  # nothing half-made


@pytest.mark.parametrize(("args", "message"), [
    (["--network", "nope"], "no such network: nope"),
    (["--network", "container:nope"], "no such container: nope"),
    (["--name", "bad/name"], "invalid container name"),
    (["--hostname=-x"], "invalid hostname"),
    (["--network", "host", "--hostname", "h"], "conflicting options"),
    (["--ip", "300.1.1.1"], "invalid --ip"),
    (["-e", "=x"], "invalid environment variable"),
])
def test_bad_run_leaves_nothing_behind(host: Host, args: list[str], message: str) -> None:
    host.shoal("network", "ls")
    links_before = set(host.links())
    res = host.shoal("run", *args, "--", "sleep", "1", check=False)
    assert res.returncode == 125
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], res.stderr
    assert host.shoal("ps", "-a", "-q").stdout.strip() == ""
    assert set(host.links()) == links_before
    assert not os.listdir(os.path.join(host.run_dir, "netns")) if os.path.isdir(
        os.path.join(host.run_dir, "netns")) else True


def test_missing_command_exits_127_and_cleans_up(host: Host) -> None:
    for detach in ([], ["-d"]):
        res = host.shoal("run", "--rm", *detach, "--", "no-such-command-xyz", check=False)
        assert res.returncode == 127, res.stderr
        assert "no-such-command-xyz" in res.stderr
    assert host.shoal("ps", "-a", "-q").stdout.strip() == ""
    host.wait_for(lambda: not [p for p in host.links() if p.startswith("vsh")],
                  what="veth removal")


def test_duplicate_name_and_unknown_container(host: Host) -> None:
    host.shoal("run", "-d", "--name", "one", "--", "sleep", "60")
    res = host.shoal("run", "-d", "--name", "one", "--", "sleep", "60", check=False)
    assert res.returncode == 125 and "already in use" in res.stderr
    assert len(host.shoal("ps", "-a", "-q").stdout.split()) == 1
    for args in (["inspect", "ghost"], ["stop", "ghost"], ["rm", "ghost"], ["logs", "ghost"],
                 ["exec", "ghost", "--", "true"]):
        res = host.shoal(*args, check=False)
        assert res.returncode != 0 and "no such container: ghost" in res.stderr


def test_exec_runs_inside_the_container(host: Host) -> None:
    host.shoal("run", "-d", "--name", "e", "--hostname", "inside", "-e", "GREETING=hi",
               "--", "sleep", "60")
    res = host.in_container("e", "sh", "-c", "hostname; echo $GREETING; ip -o -4 addr show eth0")
    lines = res.stdout.splitlines()
    assert lines[0] == "inside" and lines[1] == "hi" and "172.17.0.2/16" in lines[2]
    assert host.in_container("e", "sh", "-c", "exit 7", check=False).returncode == 7
    # the sandboxes' namespace mounts are not in the container's mount namespace (where
    # copies would keep other containers' namespaces alive after they are removed)
    mountinfo = host.in_container("e", "cat", "/proc/self/mountinfo").stdout
    assert " - nsfs " not in mountinfo
    assert " - nsfs " in open("/proc/self/mountinfo").read()


def test_not_root_is_a_clear_error(host: Host) -> None:
    res = host.python(
        "import subprocess, sys; r = subprocess.run(['setpriv', '--bounding-set', "
        "'-net_admin,-sys_admin', '--inh-caps', '-all', sys.executable, '-m', 'shoal', "
        f"'--root', '{host.root}', '--run-dir', '{host.run_dir}', 'network', 'ls'], "
        "capture_output=True, text=True); print(r.returncode); print(r.stderr)")
    code, message = res.stdout.split("\n", 1)
    assert code != "0" and "must run as root" in message


def test_interactive_foreground_run_reads_stdin(host: Host) -> None:
    cmd = ["nsenter", f"--net={host.ns}", sys.executable, "-m", "shoal", "--root", host.root,
           "--run-dir", host.run_dir, "run", "-i", "--rm", "--", "tr", "a-z", "A-Z"]
    res = subprocess.run(cmd, input="shoal\n", capture_output=True, text=True, timeout=60,
                         env=host.env())
    assert res.returncode == 0 and res.stdout == "SHOAL\n"
    # without -i the command's stdin is empty, as with docker run
    res = subprocess.run(cmd[:-6] + ["--rm", "--", "cat"], input="ignored\n",
                         capture_output=True, text=True, timeout=60, env=host.env())
    assert res.returncode == 0 and res.stdout == ""


def test_concurrent_runs_get_distinct_addresses_and_all_work(host: Host) -> None:
    host.shoal("network", "create", "--subnet", "10.40.0.0/24", "busy")
    cmd = ["nsenter", f"--net={host.ns}", sys.executable, "-m", "shoal", "--root", host.root,
           "--run-dir", host.run_dir, "run", "-d", "--network", "busy", "--", "sleep", "60"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=host.env()) for _ in range(12)]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    assert all(code == 0 for _, _, code in results), [err for _, err, _ in results]
    members = host.shoal_json("network", "inspect", "busy")[0]["Containers"]
    addrs = [m["IPv4Address"] for m in members.values()]
    assert len(addrs) == 12 and len(set(addrs)) == 12
    first = next(iter(members.values()))["Name"]
    for m in members.values():
        assert host.ping_ok(first, m["IPv4Address"].split("/")[0])


def test_container_cannot_see_shoals_state_or_run_directory(host: Host) -> None:
    host.shoal("run", "-d", "--name", "c", "--", "sleep", "60")
    for path in (host.root, host.run_dir):
        assert os.listdir(path)  # the host sees them
        res = host.in_container("c", "ls", "-A", path)
        assert res.returncode == 0 and res.stdout.strip() == "", path
    # while /etc/hosts, bound from the run directory, is still the container's own
    assert "172.17.0.2" in host.in_container("c", "cat", "/etc/hosts").stdout


def test_a_command_starts_clean_no_ignored_signals_no_inherited_fds(host: Host) -> None:
    """The container's process starts as a fresh exec would: Python's ignored SIGPIPE and
    SIGXFSZ and the supervisor's ignored SIGHUP do not leak into it, and no file descriptor
    past 2 does (the state database, the lock, the supervisor's report pipe)."""
    # (the newline at the end: a log shows a line once it is whole, as Docker's does)
    probe = "grep SigIgn /proc/self/status; ls /proc/self/fd | tr '\\n' ' '; echo"
    # what a command started directly here ignores (inherited from whatever started the
    # tests; subprocess resets Python's own SIGPIPE and SIGXFSZ, as shoal must)
    direct = host.in_ns(host.ns, "sh", "-c", probe, check=True).stdout.splitlines()[0]
    assert int(direct.split()[1], 16) & (1 << 0 | 1 << 12 | 1 << 24) == 0  # HUP, PIPE, XFSZ
    res = host.shoal("run", "--rm", "--", "sh", "-c", probe)
    assert res.stdout.splitlines()[0] == direct
    host.shoal("run", "-d", "--name", "bg", "--", "sh", "-c", f"{probe}; sleep 60")
    host.wait_for(lambda: "SigIgn" in host.shoal("logs", "bg").stdout, what="log output")
    ign, fds = host.shoal("logs", "bg").stdout.splitlines()[:2]
    assert ign == direct
    # 0-2, and the one `ls` opened to list the directory
    assert sorted(int(fd) for fd in fds.split()) == [0, 1, 2, 3]


def test_a_command_that_is_not_executable_exits_126(host: Host) -> None:
    res = host.shoal("run", "--rm", "--", "/etc/hosts", check=False)
    assert res.returncode == 126
    assert res.stderr.strip() == "shoal: cannot run '/etc/hosts': permission denied"
    assert host.shoal("ps", "-a", "-q").stdout == ""


def test_a_full_bridge_is_a_clear_error_that_leaves_nothing(host: Host) -> None:
    """A Linux bridge holds 1023 ports (then EXFULL, "Exchange full", as docker0 users meet
    it). Filled here by hand with veths, so the kernel's own refusal is what shoal turns into
    its message."""
    host.shoal("network", "create", "-o", "shoal.bridge.name=br-full", "full")
    batch = "".join(f"link add fa{i} type veth peer name fb{i}\nlink set fa{i} master br-full\n"
                    for i in range(1023))
    res = subprocess.run(["nsenter", f"--net={host.ns}", "ip", "-batch", "-"], input=batch,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    links_before = set(host.links())
    res = host.shoal("run", "--rm", "--network", "full", "--", "true", check=False)
    assert res.returncode == 125
    assert res.stderr.strip() == (
        "shoal: network full is full: its Linux bridge br-full holds at most 1023 ports; put "
        "further containers on another network (shoal network create)")
    assert set(host.links()) == links_before
    assert host.shoal("ps", "-a", "-q").stdout == ""
    assert host.shoal_json("network", "inspect", "full")[0]["Containers"] == {}


def test_shoal_counts_a_bridges_ports_before_plugging_one(host: Host) -> None:
    """With its own containers filling the bridge, shoal refuses before creating anything
    (the limit lowered to 2 here, in-process, so that the test stays quick)."""
    host.shoal("network", "create", "small")
    code = f"""
import shoal.drivers.bridge, shoal.controller
from shoal.errors import Conflict
shoal.drivers.bridge.MAX_PORTS = 2
engine = shoal.controller.Engine.open({host.root!r}, {host.run_dir!r})
for i in range(2):
    engine.create_container(shoal.controller.RunSpec(cmd=["true"], network="small", name=f"c{{i}}"))
try:
    engine.create_container(shoal.controller.RunSpec(cmd=["true"], network="small", name="c2"))
except Conflict as e:
    print(e)
"""
    out = host.python(code).stdout.strip()
    assert out.startswith("network small is full: its Linux bridge sh-")
    names = sorted(json.loads(line)["Names"] for line in
                   host.shoal("ps", "-a", "--format", "json").stdout.splitlines())
    assert names == ["c0", "c1"]
    assert len([n for n in host.links() if n.startswith("vsh")]) == 2


MCAST_RECV = """
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", 5007))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
             struct.pack("4s4s", socket.inet_aton("239.1.2.3"), socket.inet_aton(sys.argv[1])))
s.settimeout(10)
print(s.recvfrom(100)[0].decode(), flush=True)
"""


def test_bridge_ports_carry_no_ipv6_and_multicast_floods_between_containers(host: Host
                                                                            ) -> None:
    """A new network's bridge has multicast snooping off and its ports no IPv6 (both made
    each attach cost more the more containers a bridge held); multicast between containers
    still arrives, flooded as on a bridge without a querier."""
    host.shoal("network", "create", "-o", "shoal.bridge.name=br-m", "m")
    assert host.ip_json("-d", "link", "show", "br-m")[0]["linkinfo"]["info_data"][
        "mcast_snooping"] == 0
    host.shoal("run", "-d", "--name", "rx", "--network", "m", "--", "sleep", "60")
    host.shoal("run", "-d", "--name", "tx", "--network", "m", "--", "sleep", "60")
    peer = "vsh" + host.shoal_json("inspect", "rx")[0]["NetworkSettings"]["Networks"]["m"][
        "EndpointID"][:12]
    assert host.in_ns(host.ns, "sysctl", "-n", f"net.ipv6.conf.{peer}.disable_ipv6",
                      check=True).stdout.strip() == "1"
    assert not [r for r in host.ip_json("-6", "route", "show", "table", "all")
                if r.get("dev") == peer]
    rx = subprocess.Popen(["nsenter", f"--net={host.sandbox('rx')}", sys.executable, "-c",
                           MCAST_RECV, host.ip_of("rx", "m")], stdout=subprocess.PIPE, text=True)
    try:
        send = ("import socket, time\n"
                "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                "for _ in range(20):\n"
                "    s.sendto(b'hello group', ('239.1.2.3', 5007)); time.sleep(0.1)\n")
        host.in_container("tx", sys.executable, "-c", send, check=True)
        out, _ = rx.communicate(timeout=15)
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait()
    assert out.strip() == "hello group"
