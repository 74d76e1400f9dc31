"""run and exec flags as Docker has them: --env-file, -u/--user, exec -w/-d/-u/-e, and flag
errors exiting 125."""

from __future__ import annotations

import grp
import os
import pwd
import time
from pathlib import Path

import pytest

from .harness import Host


def _env_of(host: Host, *args: str) -> dict[str, str]:
    out = host.shoal("run", "--rm", *args, "--", "env").stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_env_file_lines_comments_bare_keys_and_precedence(host: Host) -> None:
    first = Path(host.base, "first.env")
    first.write_text("# a comment\n\n  A=from-file\nB=one=two \nFROM_SHELL\nUNSET_HERE\n"
                     "C=first\r\n")
    second = Path(host.base, "second.env")
    second.write_text("C=second\nD='quoted'\n")
    os.environ["FROM_SHELL"] = "shell value"
    os.environ.pop("UNSET_HERE", None)
    try:
        env = _env_of(host, "--env-file", str(first), "--env-file", "second.env",
                      "-e", "A=from-flag")
    finally:
        del os.environ["FROM_SHELL"]
    assert env["A"] == "from-flag"  # -e wins over a file
    assert env["B"] == "one=two "  # the value as it is, after the first '='
    assert env["FROM_SHELL"] == "shell value"  # a bare key: the caller's value
    assert "UNSET_HERE" not in env
    assert env["C"] == "second"  # a later file wins; the \r of a CRLF line is not kept
    assert env["D"] == "'quoted'"  # no quote removal, as Docker
    assert "a comment" not in "".join(env)


@pytest.mark.parametrize(("content", "needle"), [
    (None, "cannot read env file missing.env: no such file or directory"),
    ("GOOD=1\nBAD KEY=2\n", "missing.env, line 2: variable 'BAD KEY' contains whitespace"),
    ("=value\n", "line 1: no variable name"),
    (b"A=\xff\n", "contains invalid UTF-8 at line 1"),
])
def test_env_file_errors_are_one_line_and_exit_125(host: Host, content: str | bytes | None,
                                                   needle: str) -> None:
    path = Path(host.base, "missing.env")
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    res = host.shoal("run", "--rm", "--env-file", "missing.env", "--", "true", check=False)
    assert res.returncode == 125
    assert needle in res.stderr.lower() if needle.islower() else needle in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert host.shoal("ps", "-aq").stdout.strip() == ""  # nothing was made


def test_exec_env_file_and_bare_e(host: Host) -> None:
    host.shoal("run", "-d", "--name", "c", "-e", "X=run", "--", "sleep", "60")
    Path(host.base, "x.env").write_text("X=file\nY=file\n")
    os.environ["FROM_SHELL"] = "mine"
    try:
        out = host.shoal("exec", "--env-file", "x.env", "-e", "Y=flag", "-e", "FROM_SHELL",
                         "c", "sh", "-c", "echo $X $Y $FROM_SHELL").stdout
    finally:
        del os.environ["FROM_SHELL"]
    assert out.split() == ["file", "flag", "mine"]


def _id(host: Host, *args: str) -> list[str]:
    out = host.shoal("run", "--rm", "-w", "/", *args, "--", "sh", "-c",
                     "id -u; id -g; id -G; echo $HOME").stdout
    return out.splitlines()


def test_run_user_by_name_uid_and_group(host: Host) -> None:
    nobody = pwd.getpwnam("nobody")
    daemon = grp.getgrgid(1).gr_name
    assert _id(host, "-u", "nobody") == [str(nobody.pw_uid), str(nobody.pw_gid),
                                         " ".join(map(str, sorted(set(os.getgrouplist(
                                             "nobody", nobody.pw_gid))))), nobody.pw_dir]
    # a uid no passwd entry has: gid 0 and no other groups, HOME /, as Docker
    assert _id(host, "--user", "4321") == ["4321", "0", "0", "/"]
    assert _id(host, "-u", "4321:4322") == ["4321", "4322", "4322", "/"]
    assert _id(host, "-u", f"nobody:{daemon}")[:3] == [str(nobody.pw_uid), "1", "1"]
    assert _id(host, "-u", "4321", "-e", "HOME=/tmp")[3] == "/tmp"  # -e HOME wins
    host.shoal("run", "-d", "--name", "u", "-w", "/", "-u", "4321:4322", "--", "sleep", "60")
    assert host.shoal_json("inspect", "u")[0]["Config"]["User"] == "4321:4322"
    # exec runs as the container's user, or as exec -u's
    assert host.in_container("u", "id", "-u").stdout.strip() == "4321"
    assert host.shoal("exec", "-u", "0", "u", "id", "-u").stdout.strip() == "0"
    assert host.shoal("exec", "--user", "nobody", "u", "id", "-un").stdout.strip() == "nobody"


def test_supplementary_groups_of_a_named_user(host: Host) -> None:
    member = next(((g.gr_gid, name) for g in grp.getgrall() for name in g.gr_mem
                   if _exists(name)), None)
    if member is None:
        pytest.skip("no user of this host is listed as a member of a group")
    gid, name = member
    groups = _id(host, "-u", name)[2].split()
    assert str(gid) in groups and str(pwd.getpwnam(name).pw_gid) in groups
    # a group given explicitly: that group only, as Docker
    assert _id(host, "-u", f"{name}:{gid}")[2].split() == [str(gid)]


def _exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def test_unknown_user_is_dockers_error_125_for_run_126_for_exec(host: Host) -> None:
    res = host.shoal("run", "--rm", "-u", "no-such-user-x", "--", "true", check=False)
    assert res.returncode == 125
    assert "unable to find user no-such-user-x: no matching entries in passwd file" \
        in res.stderr
    res = host.shoal("run", "--rm", "-u", "nobody:no-such-group-x", "--", "true", check=False)
    assert res.returncode == 125
    assert "unable to find group no-such-group-x: no matching entries in group file" \
        in res.stderr
    assert host.shoal("ps", "-aq").stdout.strip() == ""
    host.shoal("run", "-d", "--name", "c", "--", "sleep", "60")
    res = host.shoal("exec", "-u", "no-such-user-x", "c", "true", check=False)
    assert res.returncode == 126
    assert "unable to find user no-such-user-x: no matching entries in passwd file" \
        in res.stderr


def test_a_directory_the_user_cannot_enter_is_a_clear_126(host: Host) -> None:
    private = Path(host.base, "private")
    private.mkdir(mode=0o700)
    res = host.shoal("run", "--rm", "-u", "4321", "-w", str(private), "--", "true",
                     check=False)
    assert res.returncode == 126
    assert f"cannot change to the working directory {private}: permission denied" \
        in res.stderr


def test_exec_workdir(host: Host) -> None:
    host.shoal("run", "-d", "--name", "c", "--", "sleep", "60")
    assert host.shoal("exec", "-w", "/usr", "c", "pwd").stdout.strip() == "/usr"
    assert host.shoal("exec", "--workdir=/tmp", "c", "pwd").stdout.strip() == "/tmp"
    assert host.in_container("c", "pwd").stdout.strip() == str(host.base)  # run's default
    res = host.shoal("exec", "-w", "/no/such/dir", "c", "pwd", check=False)
    assert res.returncode == 126 and "/no/such/dir" in res.stderr
    assert host.shoal("exec", "-w", "relative", "c", "pwd", check=False).returncode == 126


def _procs(cgroup: str) -> set[int]:
    return {int(p) for p in Path(cgroup, "cgroup.procs").read_text().split()}


def test_exec_detach_returns_at_once_and_its_process_ends_with_the_container(
        host: Host) -> None:
    host.shoal("run", "-d", "--name", "c", "--", "sleep", "60")
    start = time.monotonic()
    res = host.shoal("exec", "-d", "c", "sleep", "1000")
    assert time.monotonic() - start < 10 and res.stdout == ""
    main = host.shoal_json("inspect", "c")[0]["State"]["Pid"]
    [cgroup] = [c for c in host.cgroups() if main in _procs(c)]  # the container's
    pid = None

    def found() -> bool:
        nonlocal pid
        pid = next((p for p in _procs(cgroup) if _cmdline(p) == "sleep 1000"), None)
        return pid is not None

    host.wait_for(found, what="the exec -d process in the container's cgroup")
    assert pid is not None
    host.shoal("stop", "-t", "1", "c")
    host.wait_for(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid),
                  what="the exec -d process to end with the container")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.parametrize("argv", [
    ["run", "--no-such-flag", "true"],
    ["exec", "-z", "c", "true"],
    ["network", "create"],
    ["ps", "-x"],
])
def test_flag_errors_exit_125_and_help_exits_0(host: Host, argv: list[str]) -> None:
    res = host.shoal(*argv, check=False)
    assert res.returncode == 125, res.stderr
    assert res.stderr.startswith("shoal: ") and len(res.stderr.splitlines()) == 1
    assert host.shoal(argv[0], "--help").returncode == 0


def test_network_container_mode_shares_the_hostname(host: Host) -> None:
    host.shoal("run", "-d", "--name", "a", "--hostname", "web1", "--", "sleep", "60")
    host.shoal("run", "-d", "--name", "b", "--network", "container:a", "--", "sleep", "60")
    assert host.shoal_json("inspect", "b")[0]["Config"]["Hostname"] == "web1"
    assert host.in_container("b", "hostname").stdout.strip() == "web1"
    assert host.in_container("b", "cat", "/etc/hostname").stdout.strip() == "web1"
    assert host.in_container("b", "sh", "-c", "echo $HOSTNAME").stdout.strip() == "web1"
    # without --hostname: the other's default name (its id's first 12 digits), through a chain
    host.shoal("run", "-d", "--name", "c", "--", "sleep", "60")
    host.shoal("run", "-d", "--name", "d", "--network", "container:c", "--", "sleep", "60")
    host.shoal("run", "-d", "--name", "e", "--network", "container:d", "--", "sleep", "60")
    cid = host.shoal_json("inspect", "c")[0]["Id"]
    assert host.in_container("e", "hostname").stdout.strip() == cid[:12]
    assert host.shoal_json("inspect", "e")[0]["Config"]["Hostname"] == cid[:12]


@pytest.mark.parametrize("flags", [["-p", "8080:80"], ["-p", "127.0.0.1:9090:90/udp"],
                                   ["-P", "--expose", "80"]])
def test_host_network_with_published_ports_warns_and_drops_them(host: Host,
                                                                flags: list[str]) -> None:
    res = host.shoal("run", "-d", "--name", "h", "--network", "host", *flags, "--",
                     "sleep", "60")
    assert res.stderr == "WARNING: Published ports are discarded when using host network mode\n"
    assert host.shoal("port", "h").stdout == ""
    info = host.shoal_json("inspect", "h")[0]
    assert info["HostConfig"]["PortBindings"] == {}
    assert info["HostConfig"]["NetworkMode"] == "host"
    fw = host.shoal("system", "firewall").stdout
    assert "8080" not in fw and "9090" not in fw
    # a foreground run too, and the warning comes before the command's output
    res = host.shoal("run", "--rm", "--net=host", *flags, "--", "echo", "ran")
    assert res.stdout == "ran\n" and "Published ports are discarded" in res.stderr
