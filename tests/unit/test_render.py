"""Unit tests for shoal.render: Docker-shaped inspect JSON, status texts and tables."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address, IPv4Network

import pytest

from shoal import render
from shoal.model import CREATED, EXITED, RUNNING, Container, Endpoint, Network, PublishedPort

NET_ID = "1" * 64
CTR_ID = "c" * 64
EP_ID = "e" * 64
T0 = "2024-05-01T10:00:00.123456000Z"


def stamp(ago: timedelta) -> str:
    return (datetime.now(UTC) - ago).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def make_net(**kw: object) -> Network:
    args: dict[str, object] = dict(
        id=NET_ID, name="mynet", driver="bridge", created=T0,
        subnet=IPv4Network("172.18.0.0/16"), gateway=IPv4Address("172.18.0.1"),
        bridge="sh-111111111111",
    )
    args.update(kw)
    return Network(**args)  # type: ignore[arg-type]


def make_ctr(**kw: object) -> Container:
    args: dict[str, object] = dict(
        id=CTR_ID, name="web", created=T0, hostname="cccccccccccc", cmd=["sleep", "100"],
        env=["A=1"], network_mode="mynet",
    )
    args.update(kw)
    return Container(**args)  # type: ignore[arg-type]


def make_ep(ip: str | None = "172.18.0.2", **kw: object) -> Endpoint:
    addr = IPv4Address(ip) if ip else None
    args: dict[str, object] = dict(
        id=EP_ID, sandbox_id=CTR_ID, network_id=NET_ID, ifname="eth0", ip=addr,
        mac="02:42:ac:12:00:02" if ip else None, aliases=["db"],
    )
    args.update(kw)
    return Endpoint(**args)  # type: ignore[arg-type]


# -- network_json ----------------------------------------------------------------------------


def test_network_json_keys_and_values() -> None:
    net = make_net(labels={"a": "b"}, options={"shoal.bridge.name": "br0"})
    data = render.network_json(net, [(make_ep(), make_ctr())])
    # Docker's keys, in Docker's order
    assert list(data) == ["Name", "Id", "Created", "Scope", "Driver", "EnableIPv6", "IPAM",
                          "Internal", "Attachable", "Ingress", "ConfigFrom", "ConfigOnly",
                          "Containers", "Options", "Labels"]
    assert (data["Ingress"], data["ConfigFrom"], data["ConfigOnly"]) == (
        False, {"Network": ""}, False)
    assert data["Name"] == "mynet"
    assert data["Id"] == NET_ID
    assert data["Created"] == T0
    assert data["Scope"] == "local"
    assert data["Driver"] == "bridge"
    assert data["EnableIPv6"] is False
    assert data["Internal"] is False
    assert data["IPAM"]["Driver"] == "default"
    assert data["IPAM"]["Config"] == [{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]
    assert data["Options"] == {"shoal.bridge.name": "br0"}
    assert data["Labels"] == {"a": "b"}
    assert data["Containers"] == {
        CTR_ID: {
            "Name": "web",
            "EndpointID": EP_ID,
            "MacAddress": "02:42:ac:12:00:02",
            "IPv4Address": "172.18.0.2/16",
            "IPv6Address": "",
        }
    }
    json.dumps(data)  # serialisable as is


def test_network_json_ip_range_only_when_set() -> None:
    data = render.network_json(make_net(ip_range=IPv4Network("172.18.5.0/24")), [])
    assert data["IPAM"]["Config"] == [
        {"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1", "IPRange": "172.18.5.0/24"}
    ]
    assert "IPRange" not in render.network_json(make_net(), [])["IPAM"]["Config"][0]


def test_network_json_internal_flag() -> None:
    assert render.network_json(make_net(internal=True), [])["Internal"] is True


def test_network_json_prefix_follows_subnet() -> None:
    net = make_net(subnet=IPv4Network("10.9.8.0/24"), gateway=IPv4Address("10.9.8.1"))
    data = render.network_json(net, [(make_ep("10.9.8.7"), make_ctr())])
    assert data["Containers"][CTR_ID]["IPv4Address"] == "10.9.8.7/24"


def test_network_json_without_subnet() -> None:
    net = Network(id=NET_ID, name="host", driver="host", created=T0)
    data = render.network_json(net, [])
    assert data["IPAM"]["Config"] == []
    assert data["Containers"] == {}
    assert data["Driver"] == "host"


def test_network_json_exited_member() -> None:
    data = render.network_json(make_net(), [(make_ep(None), make_ctr())])
    entry = data["Containers"][CTR_ID]
    assert entry["IPv4Address"] == ""
    assert entry["MacAddress"] == ""
    assert entry["EndpointID"] == ""


def test_network_json_copies_labels_and_options() -> None:
    net = make_net(labels={"a": "b"})
    data = render.network_json(net, [])
    data["Labels"]["x"] = "y"
    assert net.labels == {"a": "b"}


def test_network_json_several_members() -> None:
    c2 = make_ctr(id="d" * 64, name="db")
    e2 = make_ep("172.18.0.3", id="f" * 64, sandbox_id="d" * 64, mac="02:42:ac:12:00:03")
    data = render.network_json(make_net(), [(make_ep(), make_ctr()), (e2, c2)])
    assert set(data["Containers"]) == {CTR_ID, "d" * 64}
    assert data["Containers"]["d" * 64]["IPv4Address"] == "172.18.0.3/16"
    assert data["Containers"]["d" * 64]["Name"] == "db"


# -- container_json --------------------------------------------------------------------------


def test_container_json_running() -> None:
    started = stamp(timedelta(seconds=30))
    ctr = make_ctr(status=RUNNING, pid=4242, started_at=started, workdir="/srv")
    data = render.container_json(ctr, RUNNING, [(make_ep(), make_net())], "mynet")
    assert data["Id"] == CTR_ID
    assert data["Name"] == "/web"
    assert data["Created"] == T0
    assert data["Path"] == "sleep"
    assert data["Args"] == ["100"]
    assert data["State"]["Status"] == "running"
    assert data["State"]["Running"] is True
    assert data["State"]["Pid"] == 4242
    assert data["State"]["ExitCode"] == 0
    assert data["State"]["StartedAt"] == started
    assert data["Config"]["Hostname"] == "cccccccccccc"
    assert data["Config"]["Cmd"] == ["sleep", "100"]
    assert data["Config"]["Env"] == ["A=1"]
    assert data["Config"]["WorkingDir"] == "/srv"
    assert data["HostConfig"]["NetworkMode"] == "mynet"
    ns = data["NetworkSettings"]
    assert ns["IPAddress"] == "172.18.0.2"
    assert ns["Gateway"] == "172.18.0.1"
    assert ns["MacAddress"] == "02:42:ac:12:00:02"
    assert list(ns["Networks"]) == ["mynet"]
    net = ns["Networks"]["mynet"]
    assert net["NetworkID"] == NET_ID
    assert net["EndpointID"] == EP_ID
    assert net["IPAddress"] == "172.18.0.2"
    assert net["IPPrefixLen"] == 16
    assert net["Gateway"] == "172.18.0.1"
    assert net["MacAddress"] == "02:42:ac:12:00:02"
    assert net["Aliases"] == ["db"]
    assert net["IPAMConfig"] is None
    json.dumps(data)


def test_container_json_dns_options_and_files_as_docker_names_them() -> None:
    ctr = make_ctr(dns=["192.0.2.53"], dns_search=["example.com"], dns_options=["ndots:2"],
                   extra_hosts=["db:192.0.2.9", "gw:172.18.0.1"])
    data = render.container_json(ctr, RUNNING, [(make_ep(), make_net())], "mynet",
                                 files_dir="/run/shoal/containers/" + CTR_ID)
    hc = data["HostConfig"]
    assert (hc["Dns"], hc["DnsSearch"], hc["DnsOptions"]) == (
        ["192.0.2.53"], ["example.com"], ["ndots:2"])
    assert hc["ExtraHosts"] == ["db:192.0.2.9", "gw:172.18.0.1"]
    assert data["ResolvConfPath"] == f"/run/shoal/containers/{CTR_ID}/resolv.conf"
    assert data["HostnamePath"] == f"/run/shoal/containers/{CTR_ID}/hostname"
    assert data["HostsPath"] == f"/run/shoal/containers/{CTR_ID}/hosts"
    plain = render.container_json(make_ctr(), RUNNING, [], "none")
    # Docker's empty values: lists, and null for ExtraHosts
    assert (plain["HostConfig"]["Dns"], plain["HostConfig"]["DnsSearch"],
            plain["HostConfig"]["DnsOptions"], plain["HostConfig"]["ExtraHosts"]) == (
        [], [], [], None)


def test_container_json_requested_ip() -> None:
    ep = make_ep(requested_ip=IPv4Address("172.18.0.2"))
    data = render.container_json(make_ctr(status=RUNNING, pid=1), RUNNING,
                                 [(ep, make_net())], "mynet")
    assert data["NetworkSettings"]["Networks"]["mynet"]["IPAMConfig"] == {
        "IPv4Address": "172.18.0.2"
    }


def test_container_json_exited() -> None:
    ctr = make_ctr(status=EXITED, pid=4242, exit_code=3, finished_at=T0)
    data = render.container_json(ctr, EXITED, [(make_ep(None), make_net())], "mynet")
    assert data["State"]["Status"] == "exited"
    assert data["State"]["Running"] is False
    assert data["State"]["Pid"] == 0
    assert data["State"]["ExitCode"] == 3
    assert data["State"]["FinishedAt"] == T0
    net = data["NetworkSettings"]["Networks"]["mynet"]
    assert net["IPAddress"] == ""
    assert net["Gateway"] == ""
    assert net["MacAddress"] == ""
    assert net["EndpointID"] == ""
    assert net["IPPrefixLen"] == 0
    assert net["NetworkID"] == NET_ID
    ns = data["NetworkSettings"]
    assert ns["IPAddress"] == ""
    assert ns["Gateway"] == ""
    assert ns["MacAddress"] == ""


def test_container_json_exit_code_only_when_exited() -> None:
    # a stale exit code from an earlier run is not shown while running or created
    ctr = make_ctr(status=RUNNING, pid=7, exit_code=9)
    assert render.container_json(ctr, RUNNING, [], "none")["State"]["ExitCode"] == 0
    assert render.container_json(ctr, CREATED, [], "none")["State"]["ExitCode"] == 0


def test_container_json_running_status_but_effective_exited() -> None:
    # the store still says running, but the process is gone: effective status wins
    ctr = make_ctr(status=RUNNING, pid=4242)
    data = render.container_json(ctr, EXITED, [], "none")
    assert data["State"]["Running"] is False
    assert data["State"]["Pid"] == 0


@pytest.mark.parametrize("mode", ["host", "none"])
def test_container_json_host_and_none_modes(mode: str) -> None:
    ctr = make_ctr(network_mode=mode, status=RUNNING, pid=5)
    data = render.container_json(ctr, RUNNING, [], mode)
    nets = data["NetworkSettings"]["Networks"]
    assert list(nets) == [mode]
    assert nets[mode]["IPAddress"] == ""
    assert nets[mode]["Gateway"] == ""
    assert nets[mode]["MacAddress"] == ""
    assert data["HostConfig"]["NetworkMode"] == mode
    assert data["NetworkSettings"]["IPAddress"] == ""
    assert data["NetworkSettings"]["MacAddress"] == ""


def test_container_json_several_networks() -> None:
    net2 = make_net(id="2" * 64, name="other", subnet=IPv4Network("10.5.0.0/24"),
                    gateway=IPv4Address("10.5.0.1"))
    ep2 = make_ep("10.5.0.9", id="9" * 64, network_id="2" * 64, ifname="eth1",
                  mac="02:42:0a:05:00:09", aliases=[])
    data = render.container_json(make_ctr(status=RUNNING, pid=3), RUNNING,
                                 [(make_ep(), make_net()), (ep2, net2)], "mynet")
    nets = data["NetworkSettings"]["Networks"]
    assert set(nets) == {"mynet", "other"}
    assert nets["other"]["IPAddress"] == "10.5.0.9"
    assert nets["other"]["IPPrefixLen"] == 24
    assert nets["other"]["Gateway"] == "10.5.0.1"
    # the top-level address is the first endpoint's
    assert data["NetworkSettings"]["IPAddress"] == "172.18.0.2"


def test_container_json_auto_remove() -> None:
    data = render.container_json(make_ctr(auto_remove=True), CREATED, [], "none")
    assert data["HostConfig"]["AutoRemove"] is True
    assert data["State"]["Status"] == "created"


# -- status_text -----------------------------------------------------------------------------


def test_status_text_running() -> None:
    ctr = make_ctr(status=RUNNING, started_at=stamp(timedelta(minutes=2, seconds=5)))
    assert render.status_text(ctr, RUNNING) == "Up 2 minutes"
    ctr = make_ctr(status=RUNNING, started_at=stamp(timedelta(hours=3, minutes=10)))
    assert render.status_text(ctr, RUNNING) == "Up 3 hours"


def test_status_text_exited() -> None:
    ctr = make_ctr(status=EXITED, exit_code=137, finished_at=stamp(timedelta(minutes=90)))
    assert render.status_text(ctr, EXITED) == "Exited (137) 1 hour ago"
    ctr = make_ctr(status=EXITED, exit_code=0, finished_at=stamp(timedelta(days=2, hours=1)))
    assert render.status_text(ctr, EXITED) == "Exited (0) 2 days ago"


def test_status_text_created() -> None:
    assert render.status_text(make_ctr(), CREATED) == "Created"


def test_status_text_exited_before_the_exit_is_recorded() -> None:
    # the store still says running (finished_at unset) but the process is gone: `ps -a` shows
    # it as exited and must not crash on the zero timestamp
    ctr = make_ctr(status=RUNNING, pid=4242, started_at=stamp(timedelta(minutes=5)))
    assert ctr.finished_at == "0001-01-01T00:00:00Z"
    text = render.status_text(ctr, EXITED)
    assert text == "Exited"  # the exit code is not known yet
    row = render.ps_row(ctr, EXITED)
    assert row["State"] == "exited"
    assert row["Status"] == text


def test_ago_units() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    base = "2024-05-01T12:00:00.000000000Z"
    assert render._ago(base, now) == "Less than a second"
    assert render._ago("2024-05-01T11:59:59.000000000Z", now) == "1 second"
    assert render._ago("2024-05-01T11:59:15.000000000Z", now) == "45 seconds"
    assert render._ago("2024-05-01T11:59:00.000000000Z", now) == "1 minute"
    assert render._ago("2024-05-01T11:00:00.000000000Z", now) == "1 hour"
    assert render._ago("2024-05-01T09:00:00.000000000Z", now) == "3 hours"
    assert render._ago("2024-04-30T12:00:00.000000000Z", now) == "1 day"
    assert render._ago("2024-04-21T12:00:00.000000000Z", now) == "10 days"


def test_ps_row() -> None:
    ctr = make_ctr(cmd=["sh", "-c", "echo hello world; sleep 1000"])
    row = render.ps_row(ctr, CREATED)
    assert row["ID"] == CTR_ID[:12]
    assert row["Names"] == "web"
    assert row["Status"] == "Created"
    assert row["State"] == "created"
    assert len(row["Command"]) == 20
    assert row["Command"].endswith("…")
    assert render.ps_row(make_ctr(cmd=["sleep", "5"]), CREATED)["Command"] == "sleep 5"


# -- ps ports --------------------------------------------------------------------------------


def pp(container_port: int, host_port: int, proto: str = "tcp",
       host_ip: str = "0.0.0.0") -> PublishedPort:
    return PublishedPort(sandbox_id=CTR_ID, network_id=NET_ID, proto=proto,
                         host_ip=IPv4Address(host_ip), host_port=host_port,
                         container_port=container_port, dest_ip=IPv4Address("172.18.0.2"))


@pytest.mark.parametrize(("ports", "exposed", "text"), [
    ([], [], ""),
    ([pp(80, 8080)], [], "0.0.0.0:8080->80/tcp"),
    # consecutive ports on the same host ports: one range, as Docker's DisplayablePorts
    ([pp(9002, 9002), pp(9000, 9000), pp(9001, 9001)], [],
     "0.0.0.0:9000-9002->9000-9002/tcp"),
    ([pp(9000, 9000), pp(9001, 9001), pp(9003, 9003)], [],
     "0.0.0.0:9000-9001->9000-9001/tcp, 0.0.0.0:9003->9003/tcp"),
    # per protocol and per address; other mappings last
    ([pp(53, 53, "udp"), pp(53, 53), pp(54, 54), pp(80, 8080), pp(53, 53, host_ip="127.0.0.1")],
     [], "0.0.0.0:53-54->53-54/tcp, 0.0.0.0:53->53/udp, 127.0.0.1:53->53/tcp, "
         "0.0.0.0:8080->80/tcp"),
    # an exposed port without a binding
    ([pp(80, 8080)], [(80, "tcp"), (443, "tcp"), (444, "tcp")],
     "443-444/tcp, 0.0.0.0:8080->80/tcp"),
])
def test_ps_ports_as_docker_writes_them(ports: list[PublishedPort],
                                        exposed: list[tuple[int, str]], text: str) -> None:
    assert render.ps_ports(ports, exposed) == text


def test_ps_row_networks_and_labels() -> None:
    row = render.ps_row(make_ctr(labels={"b": "2", "a": "1"}), CREATED,
                        networks=["front", "back"])
    assert (row["Networks"], row["Labels"]) == ("back,front", "a=1,b=2")


def test_port_row() -> None:
    assert render.port_row(pp(80, 8080)) == {"PrivatePort": 80, "Type": "tcp",
                                             "HostIp": "0.0.0.0", "HostPort": "8080"}
