"""`ps --filter` (shoal.filters) with the Docker daemon's semantics, on fixed records."""

from __future__ import annotations

import pytest

from shoal.errors import InvalidArgument
from shoal.filters import ContainerFilter, port_set
from shoal.model import EXITED, RUNNING, Container, Network

T0 = "2024-05-01T10:00:00.123456000Z"
FRONT = Network(id="f1" + "0" * 62, name="front", driver="bridge", created=T0)
BACK = Network(id="b2" + "0" * 62, name="back", driver="bridge", created=T0)
WEB = Container(id="abc" + "1" * 61, name="web", created=T0, hostname="h", cmd=["x"], env=[],
                network_mode="front", labels={"app": "shop", "tier": "front"},
                publish=[[80, "tcp", "0.0.0.0", 8080], [9000, "tcp", "0.0.0.0", 9000]],
                expose=[[80, "tcp"], [9000, "tcp"], [53, "udp"]])
DB = Container(id="def" + "2" * 61, name="webdb", created=T0, hostname="h", cmd=["x"], env=[],
               network_mode="back", labels={"app": "shop"})
ALL = [(WEB, RUNNING, [FRONT]), (DB, EXITED, [BACK, FRONT])]


def names(filters: dict[str, list[str]]) -> list[str]:
    f = ContainerFilter(filters)
    return [c.name for c, status, nets in ALL if f.matches(c, status, nets)]


@pytest.mark.parametrize(("filters", "expected"), [
    ({}, ["web", "webdb"]),
    # name: a regular expression in the name, with or without its /
    ({"name": ["web"]}, ["web", "webdb"]),
    ({"name": ["db"]}, ["webdb"]),
    ({"name": ["^/web$"]}, ["web"]),
    ({"name": ["^web$"]}, ["web"]),
    ({"name": ["nope", "db"]}, ["webdb"]),  # values of one key: or
    ({"id": ["abc"]}, ["web"]),
    ({"id": ["^def2"]}, ["webdb"]),
    # label: KEY or KEY=VALUE, and'ed
    ({"label": ["app"]}, ["web", "webdb"]),
    ({"label": ["app=shop", "tier"]}, ["web"]),
    ({"label": ["tier=back"]}, []),
    ({"status": ["exited"]}, ["webdb"]),
    ({"status": ["running", "exited"]}, ["web", "webdb"]),
    # network: a name, or a prefix of the ID
    ({"network": ["back"]}, ["webdb"]),
    ({"network": ["f1"]}, ["web", "webdb"]),
    ({"network": ["fro"]}, []),
    # publish: a container port published (tcp unless said), ranges; expose: -p, --expose
    ({"publish": ["80"]}, ["web"]),
    ({"publish": ["80/udp"]}, []),
    ({"publish": ["8080"]}, []),  # the container's port, not the host's
    ({"publish": ["8990-9010/tcp"]}, ["web"]),
    ({"expose": ["53/udp"]}, ["web"]),
    ({"expose": ["9000"]}, ["web"]),
    # keys: and
    ({"name": ["web"], "status": ["running"]}, ["web"]),
    ({"label": ["app=shop"], "network": ["back"]}, ["webdb"]),
])
def test_filters_as_docker(filters: dict[str, list[str]], expected: list[str]) -> None:
    assert names(filters) == expected


def test_a_status_filter_lists_stopped_containers_without_all() -> None:
    assert ContainerFilter({"status": ["exited"]}).wants_all
    assert not ContainerFilter({"name": ["web"]}).wants_all


@pytest.mark.parametrize(("filters", "message"), [
    ({"color": ["red"]}, "invalid filter 'color': use name=, id=, label=, status=, network=, "
                         "publish=, expose="),
    ({"status": ["up"]}, "invalid filter 'status=up': use one of created, restarting, running, "
                         "removing, paused, exited, dead"),
    ({"name": ["("]}, "invalid filter: '(' is not a regular expression"),
    ({"publish": ["0.0.0.0:80"]}, "filter for 'publish' should not contain ':': 0.0.0.0:80"),
    ({"expose": ["90-80"]}, "invalid filter 'expose=90-80': use PORT[/PROTO] or "
                            "START-END[/PROTO], e.g. 80/tcp or 8000-8080"),
    ({"expose": ["http"]}, "invalid filter 'expose=http'"),
    ({"expose": ["80/icmp"]}, "invalid filter 'expose=80/icmp'"),
])
def test_bad_filters_name_the_problem(filters: dict[str, list[str]], message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        ContainerFilter(filters)
    assert str(err.value).startswith(message)


def test_port_set() -> None:
    assert port_set("publish", "80") == {(80, "tcp")}
    assert port_set("publish", "53-55/udp") == {(53, "udp"), (54, "udp"), (55, "udp")}
