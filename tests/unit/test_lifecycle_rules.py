"""The lifecycle's pure parts: --restart, the policy's decisions and Docker's backoff, kill's
signals, Docker's sizes, the shapes of top's table and of version (no root, no kernel)."""

from __future__ import annotations

import signal

import pytest

from shoal.cli.lifecycle import ps_table, short_version, version_info
from shoal.cli.main import build_parser, main
from shoal.controller.lifecycle import (
    Backoff,
    back_after_boot,
    bytes_size,
    human_size,
    parse_restart,
    parse_signal,
    wants_restart,
)
from shoal.errors import InvalidArgument
from shoal.model import EXITED, RUNNING, Container


def _ctr(**fields: object) -> Container:
    base = {"id": "a" * 64, "name": "c", "created": "", "hostname": "h", "cmd": ["true"],
            "env": [], "network_mode": "bridge", "status": RUNNING}
    return Container(**{**base, **fields})


@pytest.mark.parametrize(("text", "want"), [
    ("no", ("no", 0)), ("always", ("always", 0)), ("unless-stopped", ("unless-stopped", 0)),
    ("on-failure", ("on-failure", 0)), ("on-failure:5", ("on-failure", 5)),
    ("on-failure:0", ("on-failure", 0)),
])
def test_restart_policies(text: str, want: tuple[str, int]) -> None:
    assert parse_restart(text) == want


@pytest.mark.parametrize("text", ["", "sometimes", "always:3", "no:1", "on-failure:x",
                                  "on-failure:-1", "on-failure:", "ALWAYS"])
def test_bad_restart_policies_are_one_line_errors(text: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_restart(text)
    assert "\n" not in str(e.value) and "restart policy" in str(e.value)


def test_the_policy_decides_as_dockers() -> None:
    assert not wants_restart(_ctr(), 1)  # no
    assert wants_restart(_ctr(restart_policy="always"), 0)
    assert wants_restart(_ctr(restart_policy="unless-stopped"), 0)
    assert not wants_restart(_ctr(restart_policy="always", stopped_by_user=True), 0)
    assert not wants_restart(_ctr(restart_policy="always", status=EXITED), 0)
    failing = _ctr(restart_policy="on-failure", restart_max=2)
    assert not wants_restart(failing, 0)
    assert wants_restart(failing, 1) and wants_restart(failing.replace(restart_count=1), 1)
    assert not wants_restart(failing.replace(restart_count=2), 1)
    assert wants_restart(_ctr(restart_policy="on-failure", restart_count=99), 2)  # no limit


def test_after_a_reboot() -> None:
    assert back_after_boot(_ctr(restart_policy="always", stopped_by_user=True))
    assert back_after_boot(_ctr(restart_policy="unless-stopped"))
    assert not back_after_boot(_ctr(restart_policy="unless-stopped", stopped_by_user=True))
    assert not back_after_boot(_ctr(restart_policy="on-failure"))
    assert not back_after_boot(_ctr())


def test_backoff_doubles_from_100ms_and_resets_after_10s_up() -> None:
    b = Backoff()
    assert [b.next(0.5) for _ in range(4)] == [0.1, 0.2, 0.4, 0.8]
    assert b.next(10.0) == 0.1
    assert b.next(1.0) == 0.2
    for _ in range(20):
        last = b.next(0)
    assert last == 60.0


@pytest.mark.parametrize(("text", "sig"), [
    ("KILL", signal.SIGKILL), ("SIGTERM", signal.SIGTERM), ("term", signal.SIGTERM),
    ("hup", signal.SIGHUP), ("9", 9), ("15", 15), ("SIGUSR1", signal.SIGUSR1),
])
def test_signals(text: str, sig: int) -> None:
    assert parse_signal(text) == sig


@pytest.mark.parametrize("text", ["", "NOPE", "SIG", "0", "999", "-9", "SIG_DFL"])
def test_bad_signals(text: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid signal"):
        parse_signal(text)


@pytest.mark.parametrize(("n", "decimal", "binary"), [
    (0, "0B", "0B"), (648, "648B", "648B"), (1234, "1.23kB", "1.205KiB"),
    (1_500_000, "1.5MB", "1.431MiB"), (8 * 1024**3, "8.59GB", "8GiB"),
])
def test_sizes_as_go_units_prints_them(n: int, decimal: str, binary: str) -> None:
    assert human_size(n) == decimal
    assert bytes_size(n) == binary


def test_top_table_is_dockers_tabwriter() -> None:
    out = ps_table(["UID", "PID", "CMD"], [["root", "12", "sleep 1"], ["nobody", "3", "x"]])
    assert out.splitlines() == [
        "UID" + " " * 17 + "PID" + " " * 17 + "CMD",
        "root" + " " * 16 + "12" + " " * 18 + "sleep 1",
        "nobody" + " " * 14 + "3" + " " * 19 + "x",
    ]


def test_version_needs_no_engine(monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    import shoal.controller

    monkeypatch.setattr(shoal.controller, "Engine", None)  # never reached
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == short_version() + "\n"
    assert short_version().startswith("shoal version ")
    assert main(["version"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Client:"
    assert [line[:20].strip() for line in lines[1:]] == [
        "Version:", "API version:", "Python version:", "OS/Arch:"]
    assert lines[4].endswith(version_info()["OS/Arch"]) and "linux/" in lines[4]
    assert main(["version", "--format", "json"]) == 0
    assert '"Client": {"Version"' in capsys.readouterr().out


def test_the_lifecycle_commands_parse() -> None:
    p = build_parser()
    args = p.parse_args(["kill", "-s", "TERM", "a", "b"])
    assert (args.command, args.signal, args.names) == ("kill", "TERM", ["a", "b"])
    assert p.parse_args(["kill", "a"]).signal == "KILL"
    args = p.parse_args(["restart", "-t", "3", "a"])
    assert (args.time, args.names) == (3.0, ["a"])
    args = p.parse_args(["top", "web", "-o", "pid,comm"])
    assert (args.container, args.ps_args) == ("web", ["-o", "pid,comm"])
    args = p.parse_args(["stats", "--no-stream"])
    assert args.names == [] and args.no_stream
    assert p.parse_args(["stats", "a", "b", "--no-stream"]).names == ["a", "b"]
    assert p.parse_args(["rename", "a", "b"]).new == "b"
    assert p.parse_args(["run", "-d", "--restart", "always", "--", "x"]).restart == "always"
