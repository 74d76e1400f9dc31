"""A container's /etc/resolv.conf and /etc/hosts, as a Docker user expects them: the embedded
resolver on user networks, the host's reachable servers elsewhere, --dns, --dns-search,
--dns-option, --add-host (host-gateway too), following network connect/disconnect, shown by
inspect; bad options refused with one line and nothing left behind; the host's own files
never touched. No DNS query is sent here: only the files are read."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from .harness import OUTSIDE_ADDR, Host

SLEEP = ["--", "sleep", "60"]


def resolv(host: Host, ctr: str) -> list[str]:
    """The lines of the container's resolv.conf that a resolver reads."""
    text = host.in_container(ctr, "cat", "/etc/resolv.conf").stdout
    return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]


def hosts(host: Host, ctr: str) -> list[str]:
    return host.in_container(ctr, "cat", "/etc/hosts").stdout.splitlines()


def host_file(host: Host, name: str, text: str) -> str:
    path = Path(host.base) / name
    path.write_text(text)
    return str(path)


def test_a_user_network_container_asks_the_embedded_resolver(host: Host) -> None:
    host.shoal("network", "create", "--subnet", "10.61.0.0/24", "web")
    host.shoal("run", "-d", "--name", "a", "--network", "web", *SLEEP)
    # nothing given: the search domains and options of the host's file, and Docker's ndots:0
    assert resolv(host, "a") == ["nameserver 127.0.0.11", "options ndots:0"]
    host.shoal("run", "-d", "--name", "b", "--network", "web", "--dns", "192.0.2.53",
               "--dns-search", "a.example", "--dns-search", "b.example",
               "--dns-option", "timeout:1", "--dns-opt", "attempts:2", *SLEEP)
    # --dns is where the resolver forwards: never a server of the container's file
    assert resolv(host, "b") == ["nameserver 127.0.0.11", "search a.example b.example",
                                 "options ndots:0 timeout:1 attempts:2"]
    host.shoal("run", "-d", "--name", "c", "--network", "web", "--dns-option", "ndots:3",
               *SLEEP)
    assert resolv(host, "c") == ["nameserver 127.0.0.11", "options ndots:3"]  # theirs wins


def test_the_host_files_search_and_options_reach_the_containers(host: Host) -> None:
    Path(host.resolv_conf).write_text(f"nameserver {OUTSIDE_ADDR}\nsearch lab.example\n"
                                      "options rotate\n")
    host.shoal("network", "create", "--subnet", "10.62.0.0/24", "web")
    host.shoal("run", "-d", "--name", "u", "--network", "web", *SLEEP)
    host.shoal("run", "-d", "--name", "d", *SLEEP)
    assert resolv(host, "u") == ["nameserver 127.0.0.11", "search lab.example",
                                 "options ndots:0 rotate"]
    assert resolv(host, "d") == [f"nameserver {OUTSIDE_ADDR}", "search lab.example",
                                 "options rotate"]
    host.shoal("run", "-d", "--name", "o", "--dns-search", ".", *SLEEP)  # Docker's "none"
    assert resolv(host, "o") == [f"nameserver {OUTSIDE_ADDR}", "options rotate"]


def test_the_default_bridge_gets_the_host_servers_but_no_loopback_one(host: Host) -> None:
    host.shoal("run", "-d", "--name", "plain", *SLEEP)
    assert resolv(host, "plain") == [f"nameserver {OUTSIDE_ADDR}"]  # the harness's file
    stub = host_file(host, "stub.conf", f"nameserver 127.0.0.53\nnameserver {OUTSIDE_ADDR}\n"
                                        "nameserver ::1\n")
    host.shoal("--resolv-conf", stub, "run", "-d", "--name", "stub", *SLEEP)
    assert resolv(host, "stub") == [f"nameserver {OUTSIDE_ADDR}"]
    only = host_file(host, "only.conf", "nameserver 127.0.0.53\n")
    host.shoal("--resolv-conf", only, "run", "-d", "--name", "only", *SLEEP)
    text = host.in_container("only", "cat", "/etc/resolv.conf").stdout
    assert "nameserver" not in text.replace("# no nameserver", "")  # and no public server
    assert "# no nameserver:" in text
    # a missing file is no servers, not an error
    host.shoal("--resolv-conf", str(Path(host.base) / "missing.conf"), "run", "-d",
               "--name", "missing", *SLEEP)
    assert resolv(host, "missing") == []
    # --dns replaces the host's servers there
    host.shoal("run", "-d", "--name", "given", "--dns", "192.0.2.53", "--dns", "2001:db8::53",
               *SLEEP)
    assert resolv(host, "given") == ["nameserver 192.0.2.53", "nameserver 2001:db8::53"]


def test_network_mode_host_and_none_and_container(host: Host) -> None:
    Path(host.resolv_conf).write_text("# the host's own file\nnameserver 127.0.0.53\n")
    out = host.shoal("run", "--rm", "--network", "host", "--", "cat", "/etc/resolv.conf").stdout
    assert out == Path(host.resolv_conf).read_text()  # a copy, loopback server and all
    out = host.shoal("run", "--rm", "--network", "host", "--dns-option", "ndots:2", "--",
                     "cat", "/etc/resolv.conf").stdout
    assert [ln for ln in out.splitlines() if ln and not ln.startswith("#")] == [
        "nameserver 127.0.0.53", "options ndots:2"]
    out = host.shoal("run", "--rm", "--network", "host", "--add-host", "db:192.0.2.9", "--",
                     "cat", "/etc/hosts").stdout
    machine = Path("/etc/hosts").read_text()
    assert out.startswith(machine) and out.endswith("192.0.2.9\tdb\n")
    Path(host.resolv_conf).write_text(f"nameserver {OUTSIDE_ADDR}\n")
    host.shoal("run", "-d", "--name", "none", "--network", "none", *SLEEP)
    assert resolv(host, "none") == [f"nameserver {OUTSIDE_ADDR}"]
    host.shoal("network", "create", "--subnet", "10.63.0.0/24", "web")
    host.shoal("run", "-d", "--name", "owner", "--network", "web", "--add-host", "db:192.0.2.9",
               *SLEEP)
    host.shoal("run", "-d", "--name", "joined", "--network", "container:owner", *SLEEP)
    assert resolv(host, "joined") == resolv(host, "owner") == [
        "nameserver 127.0.0.11", "options ndots:0"]
    assert hosts(host, "joined") == hosts(host, "owner")
    assert "192.0.2.9\tdb" in hosts(host, "joined")


def test_add_host_and_host_gateway_in_etc_hosts(host: Host) -> None:
    host.shoal("network", "create", "--subnet", "10.64.0.0/24", "web")
    host.shoal("run", "-d", "--name", "w", "--hostname", "box", "--network", "web",
               "--add-host", "db:192.0.2.9", "--add-host", "v6=2001:db8::9",
               "--add-host", "host.docker.internal:host-gateway", *SLEEP)
    assert hosts(host, "w")[-4:] == ["192.0.2.9\tdb", "2001:db8::9\tv6",
                                     "10.64.0.1\thost.docker.internal", "10.64.0.2\tbox"]
    assert hosts(host, "w")[0] == "127.0.0.1\tlocalhost"
    # on the default bridge, and in network mode host (Docker's default host-gateway-ip:
    # the default bridge's gateway, an address of the host)
    host.shoal("run", "-d", "--name", "d", "--add-host", "gw:host-gateway", *SLEEP)
    assert "172.17.0.1\tgw" in hosts(host, "d")
    out = host.shoal("run", "--rm", "--network", "host", "--add-host", "gw:host-gateway", "--",
                     "cat", "/etc/hosts").stdout
    assert out.endswith("172.17.0.1\tgw\n")
    data = host.shoal_json("inspect", "w")[0]
    assert data["HostConfig"]["ExtraHosts"] == ["db:192.0.2.9", "v6:2001:db8::9",
                                                "host.docker.internal:10.64.0.1"]


def test_the_command_and_exec_see_the_same_files_and_the_hosts_stay_as_they_were(
        host: Host) -> None:
    before = {p: Path(p).read_bytes() for p in ("/etc/resolv.conf", "/etc/hosts",
                                                host.resolv_conf)}
    host.shoal("network", "create", "--subnet", "10.65.0.0/24", "web")
    script = "cat /etc/resolv.conf /etc/hosts /etc/hostname; sleep 60"
    host.shoal("run", "-d", "--name", "x", "--network", "web", "--dns-search", "a.example",
               "--add-host", "db:192.0.2.9", "--", "sh", "-c", script)
    data = host.shoal_json("inspect", "x")[0]
    files = [data["ResolvConfPath"], data["HostsPath"], data["HostnamePath"]]
    want = "".join(Path(f).read_text() for f in files)
    host.wait_for(lambda: host.shoal("logs", "x").stdout == want, what="the command's output")
    seen = host.in_container("x", "cat", "/etc/resolv.conf", "/etc/hosts", "/etc/hostname")
    assert seen.stdout == want
    assert "nameserver 127.0.0.11" in want and "192.0.2.9\tdb" in want
    host.shoal("run", "--rm", "--dns", "192.0.2.53", "--", "true")
    host.shoal("rm", "-f", "x")
    after = {p: Path(p).read_bytes() for p in before}
    assert after == before
    with open("/proc/self/mountinfo") as f:  # nothing mounted over them out here either
        assert not [ln for ln in f if " /etc/resolv.conf " in ln or " /etc/hosts " in ln]


def test_connect_and_disconnect_rewrite_resolv_conf_and_hosts(host: Host) -> None:
    host.shoal("network", "create", "--subnet", "10.66.0.0/24", "web")
    host.shoal("run", "-d", "--name", "b", "--dns-search", "a.example", *SLEEP)
    host.shoal("run", "-d", "--name", "side", "--network", "container:b", *SLEEP)
    path = host.shoal_json("inspect", "b")[0]["ResolvConfPath"]
    inode = os.stat(path).st_ino
    assert resolv(host, "b") == [f"nameserver {OUTSIDE_ADDR}", "search a.example"]
    host.shoal("network", "connect", "web", "b")
    assert resolv(host, "b") == ["nameserver 127.0.0.11", "search a.example", "options ndots:0"]
    assert resolv(host, "side") == resolv(host, "b")  # the copy of who shares it follows
    ip = host.ip_of("b", "web")
    assert any(ln.startswith(f"{ip}\t") for ln in hosts(host, "b"))
    assert os.stat(path).st_ino == inode  # rewritten in place: the bind mount sees it
    host.shoal("network", "disconnect", "web", "b")
    assert resolv(host, "b") == [f"nameserver {OUTSIDE_ADDR}", "search a.example"]
    assert resolv(host, "side") == resolv(host, "b")
    assert not any(ln.startswith(f"{ip}\t") for ln in hosts(host, "b"))
    # a stopped container's files follow too (seen at its next start)
    host.shoal("run", "-d", "--name", "s", *SLEEP)
    host.shoal("stop", "-t", "0", "s")
    host.shoal("network", "connect", "web", "s")
    spath = host.shoal_json("inspect", "s")[0]["ResolvConfPath"]
    assert "nameserver 127.0.0.11\n" in Path(spath).read_text()


def test_inspect_shows_dockers_keys(host: Host) -> None:
    host.shoal("run", "-d", "--name", "i", "--dns", "192.0.2.53", "--dns-search", "a.example",
               "--dns-opt", "ndots:2", "--add-host", "db:192.0.2.9", *SLEEP)
    data = host.shoal_json("inspect", "i")[0]
    hc = data["HostConfig"]
    assert hc["Dns"] == ["192.0.2.53"] and hc["DnsSearch"] == ["a.example"]
    assert hc["DnsOptions"] == ["ndots:2"] and hc["ExtraHosts"] == ["db:192.0.2.9"]
    cdir = os.path.join(host.run_dir, "containers", data["Id"])
    assert data["ResolvConfPath"] == os.path.join(cdir, "resolv.conf")
    assert data["HostsPath"] == os.path.join(cdir, "hosts")
    assert data["HostnamePath"] == os.path.join(cdir, "hostname")
    assert Path(data["HostnamePath"]).read_text() == data["Config"]["Hostname"] + "\n"
    plain = host.shoal_json("inspect", host.shoal("run", "-d", *SLEEP).stdout.strip())[0]
    assert (plain["HostConfig"]["Dns"], plain["HostConfig"]["ExtraHosts"]) == ([], None)


@pytest.mark.parametrize(("args", "message"), [
    (["--dns", "300.1.1.1"], "invalid --dns '300.1.1.1': give the IPv4 or IPv6 address"),
    (["--dns", "dns.example"], "invalid --dns 'dns.example'"),
    (["--dns-search", "bad_domain.example"], "invalid --dns-search 'bad_domain.example'"),
    (["--dns-search", "-x.example"], "invalid --dns-search"),
    (["--dns-option", "ndots:1 rotate"], "invalid --dns-option 'ndots:1 rotate'"),
    (["--add-host", "x"], "invalid --add-host 'x': use NAME:IP or NAME:host-gateway"),
    (["--add-host", ":192.0.2.9"], "invalid --add-host ':192.0.2.9'"),
    (["--add-host", "db:300.1.1.1"], "'300.1.1.1' is not an IP address"),
    (["--add-host", "-db:192.0.2.9"], "'-db' is not a host name"),
    (["--network", "web", "--add-host", "db:nope"], "invalid --add-host 'db:nope'"),
    (["--network", "host", "--dns", "192.0.2.x"], "invalid --dns"),
])
def test_bad_options_are_one_line_and_leave_nothing(host: Host, args: list[str],
                                                    message: str) -> None:
    host.shoal("network", "create", "--subnet", "10.67.0.0/24", "web")
    links_before = set(host.links())
    res = host.shoal("run", "-d", *args, *SLEEP, check=False)
    assert res.returncode == 125
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], res.stderr
    assert host.shoal("ps", "-a", "-q").stdout.strip() == ""
    assert set(host.links()) == links_before
    netns = Path(host.run_dir) / "netns"
    assert not netns.is_dir() or not os.listdir(netns)
    containers = Path(host.run_dir) / "containers"
    assert not containers.is_dir() or not os.listdir(containers)


@pytest.mark.parametrize("flag", [["--dns", "192.0.2.53"], ["--dns-search", "a.example"],
                                  ["--dns-option", "ndots:2"], ["--add-host", "db:192.0.2.9"]])
def test_dns_options_conflict_with_network_mode_container(host: Host, flag: list[str]) -> None:
    host.shoal("run", "-d", "--name", "owner", *SLEEP)
    links_before = set(host.links())
    res = host.shoal("run", "-d", "--network", "container:owner", *flag, *SLEEP, check=False)
    assert res.returncode == 125
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"shoal: conflicting options: {flag[0]} and the network mode "
                               "container:owner")
    assert host.shoal("ps", "-a", "-q").stdout.split() == [
        host.shoal_json("inspect", "owner")[0]["Id"][:12]]
    assert set(host.links()) == links_before


def test_an_empty_resolv_conf_option_is_refused(host: Host) -> None:
    res = host.shoal("--resolv-conf", "", "ps", check=False)
    assert res.returncode != 0
    assert res.stderr.strip() == ("shoal: --resolv-conf is empty: give the host's resolv.conf, "
                                  "or leave --resolv-conf out for the default /etc/resolv.conf")


def test_python_api_takes_docker_pys_names(host: Host) -> None:
    stub = host_file(host, "api.conf", f"nameserver 127.0.0.53\nnameserver {OUTSIDE_ADDR}\n")
    script = textwrap.dedent(f"""
        import json, shoal
        client = shoal.Client(root={host.root!r}, run_dir={host.run_dir!r},
                              resolv_conf={stub!r})
        out = {{}}
        c = client.containers.run("sleep 60", name="api", detach=True, dns=["192.0.2.53"],
                                  dns_search=["a.example"], dns_opt=["ndots:2"],
                                  extra_hosts={{"db": "192.0.2.9", "gw": "host-gateway"}})
        out["hc"] = c.attrs["HostConfig"]
        out["resolv"] = c.exec_run("cat /etc/resolv.conf").output.decode()
        out["hosts"] = c.exec_run("cat /etc/hosts").output.decode()
        d = client.containers.run("sleep 60", name="api2", detach=True,
                                  extra_hosts=["x:192.0.2.10"])
        out["plain"] = d.exec_run("cat /etc/resolv.conf").output.decode()
        out["x"] = d.exec_run("cat /etc/hosts").output.decode()
        try:
            client.containers.run("true", dns=["nope"])
        except shoal.ShoalError as e:
            out["bad"] = str(e)
        print(json.dumps(out))
    """)
    out = json.loads(host.python(script).stdout)
    hc = out["hc"]
    assert (hc["Dns"], hc["DnsSearch"], hc["DnsOptions"]) == (
        ["192.0.2.53"], ["a.example"], ["ndots:2"])
    assert hc["ExtraHosts"] == ["db:192.0.2.9", "gw:172.17.0.1"]
    assert [ln for ln in out["resolv"].splitlines() if ln and ln[0] != "#"] == [
        "nameserver 192.0.2.53", "search a.example", "options ndots:2"]
    assert "192.0.2.9\tdb" in out["hosts"] and "172.17.0.1\tgw" in out["hosts"]
    # the client's resolv_conf: its loopback server left out on the default bridge
    assert [ln for ln in out["plain"].splitlines() if ln and ln[0] != "#"] == [
        f"nameserver {OUTSIDE_ADDR}"]
    assert "192.0.2.10\tx" in out["x"]
    assert out["bad"].startswith("invalid --dns 'nope'")
