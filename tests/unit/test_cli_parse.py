"""Unit tests for the command line parser (nothing here needs root or touches the kernel)."""

from __future__ import annotations

import pytest

from shoal.cli.main import USAGE_EXIT, build_parser, main


@pytest.fixture(autouse=True)
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command line that parsed must never reach the engine (root, kernel) from these tests."""
    import shoal.controller

    def refuse(*args: object, **kw: object) -> None:
        raise AssertionError("main() got past argument parsing")

    monkeypatch.setattr(shoal.controller, "Engine", refuse)


def parse(line: str | list[str]):  # type: ignore[no-untyped-def]
    return build_parser().parse_args(line.split() if isinstance(line, str) else line)


# -- run -------------------------------------------------------------------------------------


def test_run_full() -> None:
    args = parse("run -d --rm --name x --network n --ip 1.2.3.4 -e A=1 -- cmd arg")
    assert args.command == "run"
    assert args.detach is True
    assert args.rm is True
    assert args.interactive is False
    assert args.name == "x"
    assert args.network == "n"
    assert args.ip == "1.2.3.4"
    assert args.env == ["A=1"]
    assert args.cmd == ["cmd", "arg"]


def test_run_dns_and_hosts_options_repeat() -> None:
    args = parse("run --dns 192.0.2.1 --dns=2001:db8::1 --dns-search a.example "
                 "--dns-search b.example --dns-option ndots:2 --dns-opt timeout:1 "
                 "--add-host db:192.0.2.9 --add-host gw:host-gateway -- cmd")
    assert args.dns == ["192.0.2.1", "2001:db8::1"]
    assert args.dns_search == ["a.example", "b.example"]
    assert args.dns_option == ["ndots:2", "timeout:1"]  # --dns-opt is Docker's spelling
    assert args.add_host == ["db:192.0.2.9", "gw:host-gateway"]
    assert args.cmd == ["cmd"]


def test_resolv_conf_is_a_global_option() -> None:
    assert parse("--resolv-conf /srv/r.conf ps").resolv_conf == "/srv/r.conf"
    assert parse("ps").resolv_conf is None  # then SHOAL_RESOLV_CONF, else /etc/resolv.conf


def test_run_defaults() -> None:
    args = parse("run sleep 10")
    assert args.detach is False
    assert args.rm is False
    assert args.name is None
    assert args.hostname is None
    assert args.network == "bridge"
    assert args.ip is None
    assert args.env == []
    assert args.network_alias == []
    assert (args.dns, args.dns_search, args.dns_option, args.add_host) == ([], [], [], [])
    assert args.workdir is None
    assert args.cmd == ["sleep", "10"]


def test_run_command_keeps_its_own_flags() -> None:
    args = parse("run -d --name x sh -c true --name y -e B=2 -d")
    assert args.name == "x"
    assert args.env == []
    assert args.cmd == ["sh", "-c", "true", "--name", "y", "-e", "B=2", "-d"]


def test_run_double_dash_inside_command_is_kept() -> None:
    args = parse("run -- cmd -- arg")
    assert args.cmd == ["cmd", "--", "arg"]


def test_run_short_h_is_hostname() -> None:
    args = parse("run -h myhost -i --net other -w /srv --network-alias a --network-alias b true")
    assert args.hostname == "myhost"
    assert args.interactive is True
    assert args.network == "other"
    assert args.workdir == "/srv"
    assert args.network_alias == ["a", "b"]


def test_run_repeated_env() -> None:
    args = parse("run -e A=1 --env B=2 -e C true")
    assert args.env == ["A=1", "B=2", "C"]


def test_run_without_command_parses_to_empty() -> None:
    assert parse("run -d").cmd == []
    assert parse("run -d --").cmd == []


# -- network ---------------------------------------------------------------------------------


def test_network_create() -> None:
    args = parse(["network", "create", "--subnet", "172.30.0.0/16", "--gateway", "172.30.0.254",
                  "--ip-range", "172.30.5.0/24", "--label", "a=b", "--label", "c=",
                  "-o", "shoal.bridge.name=br0", "--opt", "shoal.bridge.enable_icc=false",
                  "--internal", "name"])
    assert args.command == "network"
    assert args.network_command == "create"
    assert args.name == "name"
    assert args.driver == "bridge"
    assert args.subnet == "172.30.0.0/16"
    assert args.gateway == "172.30.0.254"
    assert args.ip_range == "172.30.5.0/24"
    assert args.internal is True
    assert args.label == [("a", "b"), ("c", "")]
    assert dict(args.opt) == {"shoal.bridge.name": "br0", "shoal.bridge.enable_icc": "false"}


def test_network_create_value_may_contain_equals() -> None:
    args = parse(["network", "create", "--label", "k=v=w", "n"])
    assert args.label == [("k", "v=w")]


def test_network_create_defaults() -> None:
    args = parse("network create n")
    assert (args.subnet, args.gateway, args.ip_range) == (None, None, None)
    assert args.internal is False
    assert args.label == []
    assert args.opt == []


def test_network_other_verbs() -> None:
    assert parse("network ls -q --no-trunc --format json -f name=x").filter == [("name", "x")]
    assert parse("network list").network_command == "list"
    assert parse("network rm a b").names == ["a", "b"]
    assert parse("network remove a").network_command == "remove"
    assert parse("network inspect a").names == ["a"]
    assert parse("network prune -f").force is True
    args = parse("network connect --ip 10.0.0.5 --alias x net ctr")
    assert (args.network, args.container, args.ip, args.alias) == ("net", "ctr", "10.0.0.5",
                                                                    ["x"])
    args = parse("network disconnect -f net ctr")
    assert (args.network, args.container, args.force) == ("net", "ctr", True)


def test_container_verbs() -> None:
    assert parse("ps -a -q").all is True
    assert parse("ps").format == "table"
    assert parse("inspect a b").names == ["a", "b"]
    assert parse("inspect a").format is None
    args = parse(["inspect", "-f", "{{.Name}} {{.Id}}", "a", "b"])
    assert (args.format, args.names) == ("{{.Name}} {{.Id}}", ["a", "b"])
    assert parse(["inspect", "--format={{json .}}", "a"]).format == "{{json .}}"
    args = parse(["network", "inspect", "-f", "{{.Driver}}", "n"])
    assert (args.format, args.names) == ("{{.Driver}}", ["n"])
    args = parse("exec -i -e A=1 web -- ls -l")
    assert args.container == "web"
    assert args.env == ["A=1"]
    assert args.cmd == ["ls", "-l"]
    assert parse("logs web").container == "web"
    args = parse("stop -t 2.5 a b")
    assert (args.time, args.names) == (2.5, ["a", "b"])
    assert parse("stop a").time == 10.0
    args = parse("rm -f a")
    assert (args.force, args.names) == (True, ["a"])


def test_global_options() -> None:
    args = parse("--root /tmp/r --run-dir /tmp/d ps")
    assert (args.root, args.run_dir) == ("/tmp/r", "/tmp/d")


# -- parse errors through main() ---------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--bogus"],
        ["ps", "--bogus"],
        ["run", "--bogus", "true"],
        ["network", "create", "--bogus", "n"],
        ["network", "create", "--label", "nokv", "n"],
        ["network", "create", "--label", "=v", "n"],
        ["network", "create", "-o", "=v", "n"],  # (a bare KEY is Docker's --opt encrypted)
        ["ps", "--last", "two"],  # (--format takes any Go template, as in Docker)
        ["network", "ls", "-f", "novalue"],
        ["network", "frobnicate"],
        ["network"],
        ["network", "create"],
        ["stop", "-t", "abc", "x"],
        ["stop"],
        ["frobnicate"],
        [],
        ["run", "--name"],
    ],
)
def test_parse_error_is_one_line_exit_125(argv: list[str], capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == USAGE_EXIT == 125  # as docker: its CLI exits 125 on flag errors
    out, err = capsys.readouterr()
    assert out == ""
    assert err.endswith("\n")
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("shoal: ")


def test_parse_error_names_the_problem(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["network", "create", "--label", "nokv", "n"])
    err = capsys.readouterr().err
    assert "--label" in err
    assert "KEY=VALUE" in err
    assert "'nokv'" in err
    assert "shoal network create --help" in err


def test_parse_error_unknown_flag_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["ps", "--bogus"])
    assert "--bogus" in capsys.readouterr().err


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "--help"])
    assert exc.value.code == 0
    assert "usage:" in capsys.readouterr().out


# -- Docker's flag conventions, as the parser implements them --------------------------------


def test_short_flags_combine_and_take_attached_values() -> None:
    args = parse("run -di -eA=1 -e B=2 -wsrv --name=x true")
    assert (args.detach, args.interactive) == (True, True)
    assert args.env == ["A=1", "B=2"]
    assert args.workdir == "srv" and args.name == "x"
    assert parse("ps -aq").all is True and parse("ps -aq").quiet is True


def test_booleans_take_true_or_false() -> None:
    assert parse("run --rm=false --detach=true true").rm is False
    assert parse("run --rm=false -d true").detach is True
    assert parse("ps --all=1").all is True


def test_exec_drops_the_dashes_before_its_command() -> None:
    args = parse("exec web -- sh -c 'x'")
    assert (args.container, args.cmd) == ("web", ["sh", "-c", "'x'"])
    assert parse("exec -- web ls").cmd == ["ls"]


@pytest.mark.parametrize(("argv", "needle"), [
    (["ps", "-az"], "unknown flag -z in -az"),
    (["run", "--detach=maybe", "true"], "invalid value 'maybe' for --detach"),
    (["network", "inspect"], "missing NETWORK"),
    (["network", "create", "a", "b"], "unexpected argument 'b'"),
    (["stop", "-t", "-1", "x"], "expected a number of seconds, 0 or more"),
    (["--firewall-backend", "pf", "ps"], "choose nftables or iptables"),
])
def test_usage_errors_name_the_problem(argv: list[str], needle: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == USAGE_EXIT
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["network", "--help"], ["network", "create", "-h"],
                                  ["system", "--help"]])
def test_every_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: shoal") and "options:" in out


def test_store_and_advertise_addr_are_global_options_and_opt_takes_a_bare_key() -> None:
    args = build_parser().parse_args(["--store", "etcd://10.0.0.1:2379", "--advertise-addr",
                                      "10.0.0.5", "network", "create", "-d", "overlay", "-o",
                                      "encrypted", "--attachable", "ov"])
    assert (args.store, args.advertise_addr) == ("etcd://10.0.0.1:2379", "10.0.0.5")
    assert args.opt == [("encrypted", "")] and args.attachable and args.driver == "overlay"
