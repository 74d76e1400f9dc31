"""Unit tests for the CLI's listings: `network ls` and `ps` print -q, --format json and the
table through one helper, with a stand-in engine (no kernel, no store)."""

from __future__ import annotations

import json
from ipaddress import IPv4Network

import pytest

from shoal.cli import main as cli
from shoal.controller.queries import network_row
from shoal.model import CREATED, Container, Network
from shoal.render import ps_row

T0 = "2024-05-01T10:00:00.123456000Z"
NETS = [
    Network(id="1" * 64, name="bridge", driver="bridge", created=T0,
            subnet=IPv4Network("172.17.0.0/16")),
    Network(id="2" * 64, name="back", driver="bridge", created=T0, internal=True,
            labels={"team": "db"}),
]
CTRS = [
    Container(id="a" * 64, name="web", created=T0, hostname="h", cmd=["sleep", "100"], env=[],
              network_mode="bridge"),
]


class FakeQueries:
    """The reads `network ls` and `ps` make (the query layer's, on fixed records)."""

    @staticmethod
    def network_rows(filters: dict[str, list[str]], trunc: bool = True) -> list[dict[str, str]]:
        return [network_row(n, trunc) for n in NETS]

    @staticmethod
    def container_rows(all_: bool = False, trunc: bool = True,
                       filters: dict[str, list[str]] | None = None,
                       last: int = 0) -> list[dict[str, str]]:
        return [ps_row(c, CREATED, [], trunc=trunc, networks=["bridge"]) for c in CTRS]


class FakeEngine:
    queries = FakeQueries()


def listing(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    args = cli.build_parser().parse_args(list(argv))
    assert cli.dispatch(FakeEngine(), args) == 0
    return capsys.readouterr().out.splitlines()


@pytest.mark.parametrize(("argv", "ids"), [
    (("network", "ls", "-q"), ["1" * 12, "2" * 12]),
    (("network", "ls", "-q", "--no-trunc"), ["1" * 64, "2" * 64]),
    (("ps", "-a", "-q"), ["a" * 12]),
    (("ps", "-a", "-q", "--no-trunc"), ["a" * 64]),
])
def test_quiet_prints_the_ids(capsys: pytest.CaptureFixture[str], argv: tuple[str, ...],
                              ids: list[str]) -> None:
    assert listing(capsys, *argv) == ids


def test_network_ls_json_is_one_object_a_line(capsys: pytest.CaptureFixture[str]) -> None:
    lines = listing(capsys, "network", "ls", "--format", "json")
    rows = [json.loads(line) for line in lines]
    assert rows == [
        {"ID": "1" * 12, "Name": "bridge", "Driver": "bridge", "Scope": "local", "IPv6": "false",
         "Internal": "false", "Labels": "", "CreatedAt": T0},
        {"ID": "2" * 12, "Name": "back", "Driver": "bridge", "Scope": "local", "IPv6": "false",
         "Internal": "true", "Labels": "team=db", "CreatedAt": T0},
    ]
    # as Docker's {{json .}}: compact, keys sorted
    assert lines[0].startswith('{"CreatedAt":"') and ", " not in lines[0]


def test_ps_json_is_one_object_a_line(capsys: pytest.CaptureFixture[str]) -> None:
    (line,) = listing(capsys, "ps", "-a", "--format", "json")
    row = json.loads(line)
    assert (row["ID"], row["Names"], row["Command"], row["Status"], row["State"]) == (
        "a" * 12, "web", "sleep 100", "Created", "created")


def test_network_ls_table(capsys: pytest.CaptureFixture[str]) -> None:
    # Docker's tabwriter: a column is its widest cell plus 3, at least 10 wide
    assert listing(capsys, "network", "ls") == [
        "NETWORK ID     NAME      DRIVER    SCOPE",
        f"{'1' * 12}   bridge    bridge    local",
        f"{'2' * 12}   back      bridge    local",
    ]


def test_ps_table(capsys: pytest.CaptureFixture[str]) -> None:
    head, row = listing(capsys, "ps", "-a")
    assert [t.strip() for t in head.split("   ") if t] == [
        "CONTAINER ID", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert head.index("COMMAND") == row.index("sleep 100") == 12 + 3
    assert row.startswith("a" * 12) and row.endswith("web")
    assert head.index("STATUS") == row.index("Created") and head.index("NAMES") == row.index("web")


def test_both_listings_print_through_one_helper(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    monkeypatch.setattr(cli, "_print_rows", lambda rows, fmt, titles, default, *a:
                        seen.append(default) or 0)
    listing(capsys, "network", "ls")
    listing(capsys, "ps")
    assert seen == [cli.NETWORK_TABLE, cli.PS_TABLE]


def test_a_template_prints_each_row(capsys: pytest.CaptureFixture[str]) -> None:
    assert listing(capsys, "network", "ls", "--format", "{{.Name}}: {{.Driver}}") == [
        "bridge: bridge", "back: bridge"]
    assert listing(capsys, "ps", "-a", "--format", "{{.Names}} {{.Networks}} {{.State}}") == [
        "web bridge created"]
    # -q gives way to a template, as in Docker
    assert listing(capsys, "ps", "-q", "--format", "{{.Names}}") == ["web"]


def test_table_and_a_template_prints_docker_titles(capsys: pytest.CaptureFixture[str]) -> None:
    assert listing(capsys, "network", "ls", "--format", "table {{.ID}}\\t{{.Name}}") == [
        "NETWORK ID     NAME",
        f"{'1' * 12}   bridge",
        f"{'2' * 12}   back",
    ]
    assert listing(capsys, "ps", "-a", "--format",
                   "table {{.ID}}\t{{upper .Names}}\t{{.Networks}}") == [
        "CONTAINER ID   NAMES     NETWORKS",
        f"{'a' * 12}   WEB       bridge",
    ]


@pytest.mark.parametrize(("argv", "stderr"), [
    (("ps", "--format", "{{.Names"), "shoal: template parsing error: template: 1:1: "
                                      "unclosed action\n"),
    (("network", "ls", "--format", "{{.Nope}}"),
     "shoal: template: 1:3: executing at <.Nope>: can't evaluate field Nope in type "
     "*formatter.networkContext\n"),
])
def test_a_bad_template_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str],
                                               argv: tuple[str, ...], stderr: str) -> None:
    args = cli.build_parser().parse_args(list(argv))
    assert cli.dispatch(FakeEngine(), args) == 1
    out = capsys.readouterr()
    assert (out.out, out.err) == ("", stderr)
