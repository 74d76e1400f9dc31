"""shoal trusts nothing it did not make: the tools it runs, its directories and what is in
them, another shoal root's objects, and the input it is given (issue 7, items 1, 2, 5, 11,
13, 14)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .harness import HOST_ADDR, OUTSIDE_ADDR, Host
from .test_firewall import _tcp_server

FAKE_TOOL = "#!/bin/sh\necho pwned >> {marker}\nexit 0\n"


def shoal_env(host: Host, root: str | None = None, run_dir: str | None = None,
              env: dict[str, str] | None = None, cwd: str | None = None,
              *args: str) -> subprocess.CompletedProcess[str]:
    cmd = ["nsenter", f"--net={host.ns}", sys.executable, "-m", "shoal",
           "--root", host.root if root is None else root,
           "--run-dir", host.run_dir if run_dir is None else run_dir, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                          env=env or host.env(), cwd=cwd or str(host.base))


def one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    lines = res.stderr.strip().splitlines()
    assert res.returncode != 0, res
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    return lines[0]


# -- item 1: system tools are found in a fixed path, run from "/" with a clean environment --


def _plant_tools(base: Path, names: list[str]) -> tuple[Path, str]:
    fake = base / "fakebin"
    fake.mkdir()
    marker = str(base / "pwned")
    for name in names:
        tool = fake / name
        tool.write_text(FAKE_TOOL.format(marker=marker))
        tool.chmod(0o755)
    return fake, marker


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_firewall_tools_ignore_the_callers_path(host: Host, backend: str) -> None:
    tools = ["iptables-restore", "iptables-save", "ebtables-restore", "ebtables-save", "nft"]
    fake, marker = _plant_tools(host.base, tools)
    # the fake tools come first in PATH, and again through an empty entry (the cwd)
    env = {**host.env(), "PATH": f"{fake}::{os.environ['PATH']}",
           "SHOAL_FIREWALL_BACKEND": backend,
           # no libnftables: the nftables backend has to run the nft command
           "SHOAL_LIBNFTABLES": "/nonexistent/libnftables.so",
           "LD_PRELOAD": "/nonexistent/preload.so"}
    res = shoal_env(host, None, None, env, str(fake), "network", "create", "lab")
    assert res.returncode == 0, res.stderr
    assert not os.path.exists(marker), "a tool from the caller's PATH ran as root"
    if backend == "iptables":
        rules = host.in_ns(host.ns, "iptables", "-t", "nat", "-S", "SHOAL", check=True).stdout
        assert "-N SHOAL" in rules
    else:
        assert "table ip shoal" in host.in_ns(host.ns, "nft", "list", "tables",
                                              check=True).stdout


# -- item 2: directory trust ----------------------------------------------------------------


def _private_mounts(prefix: str, cmd: list[str], env: dict[str, str]
                    ) -> subprocess.CompletedProcess[str]:
    """Run cmd in a mount namespace of its own, after the shell commands in prefix."""
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           f'{prefix} && exec "$@"', "sh", *cmd],
                          capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("how", ["--root", "SHOAL_ROOT", "--run-dir", "SHOAL_RUN_DIR"])
def test_an_empty_directory_is_refused(host: Host, how: str) -> None:
    env = host.env()
    args = []
    for flag, var, value in (("--root", "SHOAL_ROOT", host.root),
                             ("--run-dir", "SHOAL_RUN_DIR", host.run_dir)):
        if how == flag:
            args += [flag, ""]
        elif how == var:
            env[var] = ""
        else:
            args += [flag, value]
    # the defaults /var/lib/shoal and /run/shoal are shadowed by empty directories in a mount
    # namespace of the test's: whatever happens, the machine's own are never written
    shoal = ["nsenter", f"--net={host.ns}", sys.executable, "-m", "shoal", *args, "network",
             "ls"]
    res = _private_mounts("mount -t tmpfs -o mode=0755 none /var/lib && "
                          "mount -t tmpfs -o mode=0755 none /run", [*shoal], env)
    line = one_line_error(res)
    assert f"{how} is empty" in line, line
    assert not os.path.exists(host.root) and not os.path.exists(host.run_dir)
    assert "shoal0" not in host.links()


def test_a_directory_owned_by_another_user_is_refused(host: Host) -> None:
    user = host.base / "user"
    user.mkdir(mode=0o700)
    os.chown(user, 65534, 65534)
    for root, run_dir in ((str(user), host.run_dir), (host.root, str(user))):
        line = one_line_error(shoal_env(host, root, run_dir, None, None, "network", "ls"))
        assert f"{user} is owned by uid 65534, not root" in line, line
        assert os.listdir(user) == [] and os.stat(user).st_mode & 0o7777 == 0o700
    assert "shoal0" not in host.links()


def test_a_directory_under_a_users_directory_is_refused(host: Host) -> None:
    # /tmp/lab owned by a user: shoal would make lab/run, but the user could swap it
    lab = host.base / "lab"
    lab.mkdir(mode=0o755)
    os.chown(lab, 65534, 65534)
    line = one_line_error(shoal_env(host, host.root, str(lab / "run"), None, None, "run",
                                    "--rm", "--", "true"))
    assert f"{lab} is owned by uid 65534" in line and str(lab / "run") in line, line
    assert os.listdir(lab) == []


def test_a_directory_others_can_write_is_refused_and_keeps_its_mode(host: Host) -> None:
    shared = host.base / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: the sticky bit must survive
    res = shoal_env(host, str(shared), None, None, None, "run", "--rm", "--", "true")
    line = one_line_error(res)
    assert res.returncode == 125
    assert "writable by group and others (mode 1777)" in line, line
    assert os.stat(shared).st_mode & 0o7777 == 0o1777
    assert os.listdir(shared) == []
    group = host.base / "group"
    group.mkdir()
    group.chmod(0o770)
    line = one_line_error(shoal_env(host, None, str(group), None, None, "network", "ls"))
    assert "writable by its group (mode 770)" in line, line
    assert os.stat(group).st_mode & 0o7777 == 0o770 and os.listdir(group) == []


def test_an_existing_directory_keeps_its_mode(host: Host) -> None:
    for path in (host.root, host.run_dir):
        os.mkdir(path)
        os.chmod(path, 0o755)
    host.shoal("run", "--rm", "--", "true")
    for path in (host.root, host.run_dir):
        assert os.stat(path).st_mode & 0o7777 == 0o755
    # what shoal makes itself is private
    made = host.base / "made" / "root"
    shoal_env(host, str(made), None, None, None, "network", "ls")
    assert os.stat(made).st_mode & 0o7777 == 0o700
    assert os.stat(made.parent).st_mode & 0o7777 == 0o755


@pytest.mark.parametrize(("where", "name"), [("root", "lock"), ("root", "shoal.db"),
                                             ("run", "boot-id")])
def test_a_planted_symlink_makes_no_file_at_its_target(host: Host, where: str,
                                                       name: str) -> None:
    directory = Path(host.root if where == "root" else host.run_dir)
    directory.mkdir(mode=0o700)
    target = host.base / "target" / name
    target.parent.mkdir()
    (directory / name).symlink_to(target)  # dangling
    res = shoal_env(host, None, None, None, None, "network", "create", "lab")
    line = one_line_error(res)
    assert f"refusing {directory / name}: it is a symbolic link" in line, line
    assert not target.exists() and os.listdir(target.parent) == []


@pytest.mark.parametrize("name", ["netns", "containers"])
def test_a_symlinked_run_subdirectory_is_never_followed(host: Host, name: str) -> None:
    host.shoal("network", "ls")
    elsewhere = host.base / "elsewhere"
    elsewhere.mkdir()
    (Path(host.run_dir) / name).symlink_to(elsewhere)
    res = host.shoal("run", "--rm", "--", "true", check=False)
    line = one_line_error(res)
    assert res.returncode == 125
    assert f"refusing {Path(host.run_dir) / name}: it is a symbolic link" in line, line
    assert os.listdir(elsewhere) == []
    assert host.shoal("ps", "-a", "-q").stdout.strip() == ""


def test_reconcile_removes_only_shoals_namespace_files(host: Host) -> None:
    host.shoal("run", "-d", "--name", "keep", "--", "sleep", "60")
    netns = Path(host.run_dir) / "netns"
    victim = host.base / "victim"
    victim.mkdir()
    (victim / ("a" * 64)).write_text("precious")
    stale = "b" * 64
    (netns / stale).write_text("")  # shoal's naming, a regular file: a leftover of shoal's
    (netns / "notes.txt").write_text("mine")  # not shoal's naming
    (netns / ("c" * 64)).symlink_to(victim / ("a" * 64))  # shoal's naming, but a symlink
    (netns / ("d" * 64)).mkdir()  # shoal's naming, but a directory
    out = host.shoal("system", "reconcile").stdout
    assert f"removed namespace {stale[:12]}" in out
    assert not (netns / stale).exists()
    assert (netns / "notes.txt").read_text() == "mine"
    assert (netns / ("c" * 64)).is_symlink() and (netns / ("d" * 64)).is_dir()
    assert (victim / ("a" * 64)).read_text() == "precious"
    assert host.shoal_json("inspect", "keep")[0]["State"]["Running"] is True
    host.shoal("rm", "-f", "keep")


def test_reconcile_never_follows_a_symlinked_netns_directory(host: Host) -> None:
    # a new run directory whose netns is a symlink to a directory holding namespace-like
    # files: the first command's reconcile must not empty it
    victim = host.base / "victim"
    victim.mkdir()
    files = ["e" * 64, "f" * 64, "other"]
    for f in files:
        (victim / f).write_text("precious")
    os.mkdir(host.run_dir, 0o700)
    (Path(host.run_dir) / "netns").symlink_to(victim)
    host.shoal("network", "ls")  # bootstraps: reconcile of a new run directory
    out = host.shoal("system", "reconcile").stdout
    assert "left" in out and "netns alone" in out, out
    assert sorted(os.listdir(victim)) == sorted(files)
    assert all((victim / f).read_text() == "precious" for f in files)


# -- item 5: two shoal roots in one network namespace ---------------------------------------


def test_a_second_root_in_the_same_namespace_is_refused(host: Host) -> None:
    host.shoal("network", "create", "lab")
    _tcp_server(host, "web", 8000, args=("-p", "8080:8000"), network="lab")
    host.shoal("run", "-d", "--name", "db", "--", "sleep", "60")
    assert host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR
    before = host.links()
    veths = {n for n in before if n.startswith("vsh")}
    bridges = {n for n in before if n.startswith("sh-")} | {"shoal0"}
    assert len(veths) == 2 and len(bridges) == 2
    root2, run2 = str(host.base / "root2"), str(host.base / "run2")
    for args in (("network", "ls"), ("run", "--rm", "--", "true"), ("system", "reconcile")):
        line = one_line_error(shoal_env(host, root2, run2, None, None, *args))
        assert f"another shoal root, {host.root}, owns" in line, line
    # the first root's objects are all there, its container reachable through its port
    after = host.links()
    assert veths | bridges <= set(after)
    assert host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR
    out = host.shoal("system", "reconcile").stdout
    assert "removed" not in out and "rolled back" not in out, out
    assert host.ip_of("web", "lab") and host.ip_of("db", "bridge")
    assert host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR
    assert host.ping_ok("db", OUTSIDE_ADDR)
    # the mark: on the bridges and on the host ends of the veths
    assert all(after[n].get("ifalias") == f"shoal root={host.root}" for n in veths | bridges)
    host.shoal("rm", "-f", "web", "db")


def test_reconcile_leaves_another_roots_links_alone(host: Host) -> None:
    host.shoal("network", "ls")
    # links with shoal's names, marked by another root: none of this root's to delete
    host.ip("link", "add", "sh-0123456789a", "type", "bridge")
    host.ip("link", "set", "sh-0123456789a", "alias", "shoal root=/elsewhere/root")
    host.ip("link", "add", "vsh0123456789a", "type", "veth", "peer", "name", "p0")
    host.ip("link", "set", "vsh0123456789a", "alias", "shoal root=/elsewhere/root")
    # an unmarked one (an older shoal's) is still this root's leftover
    host.ip("link", "add", "vsh0123456789b", "type", "veth", "peer", "name", "p1")
    out = host.shoal("system", "reconcile").stdout
    names = set(host.links())
    assert {"sh-0123456789a", "vsh0123456789a"} <= names
    assert "vsh0123456789b" not in names and "removed veth vsh0123456789b" in out


# -- item 11: reserved bridge names ----------------------------------------------------------


@pytest.mark.parametrize("name", ["vshbr0", "sh-mine", "shoal0"])
def test_a_reserved_bridge_name_is_refused(host: Host, name: str) -> None:
    host.shoal("network", "ls")
    res = host.shoal("network", "create", "-o", f"shoal.bridge.name={name}", "x", check=False)
    line = one_line_error(res)
    assert f"bridge name {name!r} is reserved" in line, line
    assert "x" not in host.shoal("network", "ls", "--format", "json").stdout.split('"')
    links = host.links()
    assert name not in links or name == "shoal0"


# -- item 13: input that must be refused ----------------------------------------------------


def test_run_in_a_missing_working_directory_is_refused(host: Host) -> None:
    for workdir, expected in (("/nonexistent", "/nonexistent does not exist"),
                              ("relative", "needs an absolute path")):
        for detach in ((), ("-d",)):
            res = host.shoal("run", *detach, "--name", "w", "-w", workdir, "--", "pwd",
                             check=False)
            assert res.returncode == 125, res
            assert expected in one_line_error(res) and res.stdout == ""
    assert host.shoal("ps", "-a", "-q").stdout.strip() == ""
    assert not [n for n in host.links() if n.startswith("vsh")]
    assert host.shoal("run", "--rm", "-w", "/tmp", "--", "pwd").stdout == "/tmp\n"


@pytest.mark.parametrize(("subnet", "why"), [
    ("127.0.0.0/8", "loopback"), ("127.5.0.0/16", "loopback"), ("224.1.0.0/16", "multicast"),
    ("0.0.0.0/8", "this network"), ("0.0.0.0/0", "this network"), ("240.0.0.0/4", "reserved"),
    ("255.255.255.255/32", "broadcast")])
def test_a_subnet_no_network_can_use_is_refused(host: Host, subnet: str, why: str) -> None:
    res = host.shoal("network", "create", "--subnet", subnet, "x", check=False)
    line = one_line_error(res)
    assert why in line and "choose another --subnet" in line, line
    assert "x" not in [n["Name"] for n in host.shoal_json("network", "inspect", "bridge",
                                                            "host", "none")]
    assert host.shoal("network", "inspect", "x", check=False).returncode != 0


def test_a_subnet_holding_a_host_address_or_route_is_refused(host: Host) -> None:
    res = host.shoal("network", "create", "--subnet", "198.51.100.0/24", "x", check=False)
    line = one_line_error(res)
    assert f"holds the host's address {HOST_ADDR}/24 on eth0" in line, line
    host.ip("route", "add", "203.0.113.0/24", "via", OUTSIDE_ADDR)
    res = host.shoal("network", "create", "--subnet", "203.0.113.128/25", "y", check=False)
    line = one_line_error(res)
    assert "overlaps the host's route to 203.0.113.0/24 on eth0" in line, line
    names = set(host.links())
    assert host.shoal("network", "inspect", "x", check=False).returncode != 0
    assert host.shoal("network", "inspect", "y", check=False).returncode != 0
    assert not [n for n in names if n.startswith("sh-")]
    # the uplink still works: the bridge did not take the outside's address
    assert host.in_ns(host.ns, "ping", "-c1", "-W2", OUTSIDE_ADDR).returncode == 0
    host.shoal("network", "create", "--subnet", "192.0.2.0/24", "ok")


# -- item 14: small things -------------------------------------------------------------------


def test_a_closed_pipe_ends_output_quietly(host: Host) -> None:
    host.shoal("network", "ls")
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `| head -1` does once it has its line
    try:
        res = subprocess.run(
            ["nsenter", f"--net={host.ns}", sys.executable, "-m", "shoal", "--root", host.root,
             "--run-dir", host.run_dir, "network", "inspect", "bridge"],
            stdout=write_end, stderr=subprocess.PIPE, text=True, env=host.env(), timeout=60)
    finally:
        os.close(write_end)
    assert res.stderr == "" and res.returncode == 141, (res.returncode, res.stderr)


@pytest.mark.parametrize("full", ["run-dir", "root"])
def test_a_full_disk_during_run_exits_125_and_leaves_nothing(host: Host, full: str) -> None:
    small = host.base / "small"
    small.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "shoal-test", small],
                   check=True)
    try:
        root = str(small) if full == "root" else host.root
        run_dir = str(small) if full == "run-dir" else host.run_dir
        assert shoal_env(host, root, run_dir, None, None, "network", "ls").returncode == 0
        filler = small / "filler"
        with open(filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        res = shoal_env(host, root, run_dir, None, None, "run", "--rm", "--", "true")
        assert res.returncode == 125, res
        line = one_line_error(res)
        assert "No space left on device" in line or "disk is full" in line, line
        filler.unlink()
        ps = shoal_env(host, root, run_dir, None, None, "ps", "-a", "-q")
        assert ps.returncode == 0 and ps.stdout.strip() == "", ps
        assert not [n for n in host.links() if n.startswith("vsh")]
        netns = Path(run_dir) / "netns"
        assert not netns.exists() or os.listdir(netns) == []
    finally:
        host.kill_processes()
        subprocess.run(["umount", "-l", small], capture_output=True)


def test_ps_shows_a_multi_line_command_on_one_line(host: Host) -> None:
    host.shoal("run", "-d", "--name", "ml", "--", "sh", "-c", "sleep 60\n\techo\x1bdone")
    out = host.shoal("ps", "--no-trunc").stdout
    lines = out.splitlines()
    assert len(lines) == 2, out
    assert "sh -c 'sleep 60\\n\\techo\\x1bdone'" in lines[1]
    assert "\x1b" not in out and "\t" not in out
    host.shoal("rm", "-f", "ml")


def test_a_run_directory_shoal_cannot_write_is_refused_before_anything_is_made(
        host: Host) -> None:
    ro = host.base / "ro"
    ro.mkdir(mode=0o755)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,mode=0755", "shoal-test", ro], check=True)
    try:
        res = shoal_env(host, None, str(ro), None, None, "network", "ls")
        line = one_line_error(res)
        assert f"cannot use the run directory {ro}: Read-only file system" in line, line
        assert os.stat(ro).st_mode & 0o7777 == 0o755
        assert "shoal0" not in host.links()
    finally:
        subprocess.run(["umount", "-l", ro], capture_output=True)


def test_a_symlink_planted_in_a_containers_directory_is_never_read(host: Host) -> None:
    secret = host.base / "secret"
    secret.write_text("root-only secret\n")
    secret.chmod(0o600)
    cid = host.shoal("run", "-d", "--name", "x", "--", "sleep", "60").stdout.strip()
    hosts = Path(host.run_dir) / "containers" / cid / "hosts"
    hosts.unlink()
    hosts.symlink_to(secret)
    # a container sharing x's sandbox copies x's hosts file: never through the symlink
    res = host.shoal("run", "--rm", "--network", "container:x", "--", "cat", "/etc/hosts",
                     check=False)
    assert res.returncode == 125 and "secret" not in res.stdout
    assert f"refusing {hosts}: it is a symbolic link" in one_line_error(res)
    host.shoal("rm", "-f", "x")
    assert secret.read_text() == "root-only secret\n"
