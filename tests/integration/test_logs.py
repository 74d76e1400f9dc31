"""`logs` with Docker's json-file semantics: foreground runs are logged too, stdout and
stderr keep their streams, -f follows until the container exits, --tail, -t, --since and
--until; the log on disk is json-file records; a raw log of an earlier shoal still prints;
`inspect` shows LogPath, HostsPath, ResolvConfPath and HostnamePath."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

from .harness import Host

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ")  # Docker's logs -t prefix


def _exited(host: Host, name: str) -> bool:
    return host.shoal_json("inspect", name)[0]["State"]["Status"] == "exited"


def test_a_foreground_run_goes_to_the_terminal_and_to_the_log(host: Host) -> None:
    res = host.shoal("run", "--name", "fg", "--", "sh", "-c",
                     "echo out1; echo err1 >&2; echo out2; exit 4", check=False)
    assert res.returncode == 4
    assert res.stdout == "out1\nout2\n" and res.stderr == "err1\n"
    logs = host.shoal("logs", "fg")
    assert logs.stdout == "out1\nout2\n" and logs.stderr == "err1\n"


def test_the_log_is_json_file_records(host: Host) -> None:
    host.shoal("run", "-d", "--name", "bg", "--", "sh", "-c",
               "echo hello; printf 'no newline'; echo oops >&2")
    host.wait_for(lambda: _exited(host, "bg"), what="the container's exit")
    path = host.shoal_json("inspect", "bg")[0]["LogPath"]
    with open(path, "rb") as f:
        records = [json.loads(line) for line in f]
    assert [(r["log"], r["stream"]) for r in records] == [
        ("hello\n", "stdout"), ("oops\n", "stderr"), ("no newline", "stdout")]
    for r in records:
        assert set(r) == {"log", "stream", "time"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", r["time"])
    logs = host.shoal("logs", "bg")
    assert logs.stdout == "hello\nno newline" and logs.stderr == "oops\n"


def test_bytes_that_are_not_utf8_come_back_as_they_were(host: Host) -> None:
    shoal = ["nsenter", f"--net={host.ns}", sys.executable, "-m", "shoal", "--root",
             host.root, "--run-dir", host.run_dir]
    res = subprocess.run([*shoal, "run", "--name", "bin", "--", "printf",
                          "\\377\\376 caf\\303\\251\\n"], capture_output=True, timeout=60,
                         env=host.env())
    assert res.returncode == 0 and res.stdout == b"\xff\xfe caf\xc3\xa9\n"
    res = subprocess.run([*shoal, "logs", "bin"], capture_output=True, timeout=60,
                         env=host.env())
    assert res.stdout == b"\xff\xfe caf\xc3\xa9\n"


def test_tail_timestamps_since_until(host: Host) -> None:
    host.shoal("run", "--name", "t", "--", "sh", "-c",
               "echo a; echo b; sleep 1.2; echo c; echo d")
    assert host.shoal("logs", "--tail", "2", "t").stdout == "c\nd\n"
    assert host.shoal("logs", "-n", "1", "t").stdout == "d\n"
    assert host.shoal("logs", "--tail", "all", "t").stdout == "a\nb\nc\nd\n"
    assert host.shoal("logs", "--tail", "0", "t").stdout == ""
    stamped = host.shoal("logs", "-t", "t").stdout.splitlines()
    assert [STAMP.sub("", line) for line in stamped] == ["a", "b", "c", "d"]
    assert all(STAMP.match(line) for line in stamped)
    time_b, time_c = stamped[1].split()[0], stamped[2].split()[0]
    assert host.shoal("logs", "--since", time_c, "t").stdout == "c\nd\n"
    assert host.shoal("logs", "--until", time_b, "t").stdout == "a\nb\n"
    assert host.shoal("logs", "--since", time_b, "--until", time_c, "t").stdout == "b\nc\n"
    # relative durations and Unix seconds, as Docker takes them
    assert host.shoal("logs", "--since", "1h", "t").stdout == "a\nb\nc\nd\n"
    assert host.shoal("logs", "--until", "1h", "t").stdout == ""
    assert host.shoal("logs", "--since", str(int(time.time()) + 60), "t").stdout == ""
    assert host.shoal("logs", "--since", "0", "t").stdout == "a\nb\nc\nd\n"
    # tail first, then the times (as Docker's json-file reader does)
    assert host.shoal("logs", "--tail", "3", "--until", time_c, "t").stdout == "b\nc\n"
    res = host.shoal("logs", "--since", "yesterday", "t", check=False)
    assert res.returncode == 2 and res.stderr.startswith("shoal: invalid value for --since:")
    res = host.shoal("logs", "--tail", "x", "t", check=False)
    assert res.returncode != 0 and "--tail" in res.stderr


def test_follow_prints_as_it_comes_and_returns_when_the_container_exits(host: Host) -> None:
    go = host.base / "go"  # the rest of its output waits for the test (never for a sleep)
    host.shoal("run", "-d", "--name", "f", "--", "sh", "-c",
               f"echo one; while [ ! -e {go} ]; do sleep 0.05; done; echo two >&2; sleep 0.5; "
               "echo three")
    cmd = ["nsenter", f"--net={host.ns}", sys.executable, "-m", "shoal", "--root", host.root,
           "--run-dir", host.run_dir, "logs", "-f", "f"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=host.env())
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "one\n"  # before the container has exited
        assert not _exited(host, "f")
        go.touch()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and out == "three\n" and err == "two\n"
    assert _exited(host, "f")
    # of an exited container, -f prints what there is and returns (host.shoal's timeout)
    assert host.shoal("logs", "-f", "f").stdout == "one\nthree\n"


def _proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_follow_waits_for_the_last_output_of_a_process_that_has_exited(host: Host) -> None:
    """The container's last line is in the pipe and its process has exited, but its
    supervisor (stopped here, as a loaded machine may leave it unscheduled) has not copied
    the line to the log yet: -f waits for it instead of returning without it."""
    go = host.base / "go"
    host.shoal("run", "-d", "--name", "w", "--", "sh", "-c",
               f"echo one; while [ ! -e {go} ]; do sleep 0.05; done; echo last")
    pid = int(host.shoal("inspect", "-f", "{{.State.Pid}}", "w").stdout)
    with open(f"/proc/{pid}/status") as f:
        supervisor = int(re.search(r"^PPid:\s+(\d+)", f.read(), re.M).group(1))
    cmd = ["nsenter", f"--net={host.ns}", sys.executable, "-m", "shoal", "--root", host.root,
           "--run-dir", host.run_dir, "logs", "-f", "w"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=host.env())
    os.kill(supervisor, signal.SIGSTOP)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "one\n"
        go.touch()
        host.wait_for(lambda: _proc_state(pid) == "Z", what="the container's process to exit")
        try:  # the follower saw the process gone: it must wait for the supervisor
            proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass
        assert proc.returncode is None, proc.communicate()
        os.kill(supervisor, signal.SIGCONT)
        out, err = proc.communicate(timeout=60)
    finally:
        os.kill(supervisor, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out, err) == (0, "last\n", "")


def test_a_process_left_running_does_not_hold_the_container_up(host: Host) -> None:
    """The main process exits while a child it started keeps the output pipe open: the
    container exits with the main process (the supervisor does not wait for the pipe), its
    output is logged, and what it left is killed."""
    host.shoal("run", "-d", "--name", "l", "--", "sh", "-c",
               "sleep 300 & echo main-done")
    started = time.monotonic()
    host.wait_for(lambda: _exited(host, "l"), timeout=10, what="the container's exit")
    assert time.monotonic() - started < 8
    assert host.shoal("logs", "l").stdout == "main-done\n"
    # in the foreground too
    started = time.monotonic()
    res = host.shoal("run", "--rm", "--", "sh", "-c", "sleep 300 & echo fg-done; exit 2",
                     check=False)
    assert res.returncode == 2 and res.stdout == "fg-done\n"
    assert time.monotonic() - started < 8
    assert host.cgroups() == [] or all(
        "populated 0" in open(os.path.join(p, "cgroup.events")).read()
        for p in host.cgroups())


def test_a_command_that_writes_without_a_reader_does_not_block(host: Host) -> None:
    """More output than a pipe holds (64 KiB), with nobody running `logs`: the supervisor
    reads it all, the command finishes."""
    host.shoal("run", "-d", "--name", "big", "--", "sh", "-c",
               "yes 0123456789abcdef | head -c 3000000; echo; echo end")
    host.wait_for(lambda: _exited(host, "big"), timeout=20, what="the container's exit")
    out = host.shoal("logs", "--tail", "1", "big").stdout
    assert out == "end\n"
    assert len(host.shoal("logs", "big").stdout) == 3000000 + len("\nend\n")


def test_a_raw_log_of_an_earlier_shoal_still_prints(host: Host) -> None:
    host.shoal("run", "--name", "old", "--", "true")
    path = host.shoal_json("inspect", "old")[0]["LogPath"]
    with open(path, "wb") as f:
        f.write(b"written by an earlier shoal\nline two\n")
    assert host.shoal("logs", "old").stdout == "written by an earlier shoal\nline two\n"
    assert host.shoal("logs", "--tail", "1", "old").stdout == "line two\n"


def test_logs_refuses_a_symlinked_log(host: Host) -> None:
    host.shoal("run", "--name", "s", "--", "true")
    path = host.shoal_json("inspect", "s")[0]["LogPath"]
    os.unlink(path)
    os.symlink("/etc/shadow", path)
    res = host.shoal("logs", "s", check=False)
    assert res.returncode != 0 and res.stdout == ""


def test_inspect_shows_the_files_paths(host: Host) -> None:
    host.shoal("run", "-d", "--name", "p", "--", "sh", "-c", "echo x; sleep 300")
    data = host.shoal_json("inspect", "p")[0]
    cdir = os.path.join(host.run_dir, "containers", data["Id"])
    assert data["LogPath"] == os.path.join(cdir, "log")
    assert data["HostsPath"] == os.path.join(cdir, "hosts")
    assert data["ResolvConfPath"] == os.path.join(cdir, "resolv.conf")
    assert data["HostnamePath"] == os.path.join(cdir, "hostname")
    keys = list(data)  # at the top level, in Docker's order
    assert keys.index("ResolvConfPath") < keys.index("HostnamePath") < \
        keys.index("HostsPath") < keys.index("LogPath") < keys.index("Name")
    assert host.shoal("inspect", "-f", "{{.LogPath}}", "p").stdout.strip() == data["LogPath"]
    # in network mode host, the container has files of its own too
    host.shoal("run", "-d", "--name", "h", "--network", "host", "--", "sleep", "300")
    hdata = host.shoal_json("inspect", "h")[0]
    for key in ("LogPath", "HostsPath", "ResolvConfPath", "HostnamePath"):
        assert hdata[key] and os.path.exists(hdata[key]), key
    # a file that is not there shows as "" (as Docker shows one)
    os.unlink(data["LogPath"])
    assert host.shoal_json("inspect", "p")[0]["LogPath"] == ""


def test_a_foreground_run_whose_reader_goes_ends_as_it_would_unattached(host: Host) -> None:
    cmd = (f"nsenter --net={host.ns} {sys.executable} -m shoal --root {host.root} "
           f"--run-dir {host.run_dir} run --name y -- yes | head -1")
    res = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=30,
                         env=host.env())
    assert res.stdout == "y\n"
    assert host.shoal_json("inspect", "y")[0]["State"]["ExitCode"] == 141  # 128 + SIGPIPE


def test_follow_a_foreground_run(host: Host) -> None:
    """A foreground run's CLI writes the log: `logs -f` elsewhere follows it to its end. The
    command's second line waits for a file the test makes once `logs -f` runs (no sleeps:
    the test does not depend on how loaded the machine is)."""
    go = host.base / "go"
    cmd = ["nsenter", f"--net={host.ns}", sys.executable, "-m", "shoal", "--root", host.root,
           "--run-dir", host.run_dir, "run", "--name", "fgf", "--", "sh", "-c",
           f"echo a; while [ ! -e {go} ]; do sleep 0.05; done; echo b >&2; exit 6"]
    run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=host.env())
    follow = None
    try:
        def first_line() -> bool:
            if run.poll() is not None:
                raise AssertionError(f"the run ended early ({run.returncode}): "
                                     f"{run.stderr.read() if run.stderr else ''}")
            return host.shoal("logs", "fgf", check=False).stdout == "a\n"

        host.wait_for(first_line, timeout=60, what="the first line in the log")
        follow = subprocess.Popen(
            ["nsenter", f"--net={host.ns}", sys.executable, "-m", "shoal", "--root", host.root,
             "--run-dir", host.run_dir, "logs", "-f", "fgf"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=host.env())
        go.touch()  # (b comes while logs -f follows, or it reads both once the run ended)
        logs_out, logs_err = follow.communicate(timeout=60)
        assert follow.returncode == 0 and logs_out == "a\n" and logs_err == "b\n"
        out, err = run.communicate(timeout=60)
    finally:
        for proc in (run, follow):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert run.returncode == 6 and out == "a\n" and err == "b\n"
