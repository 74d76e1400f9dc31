"""shoal-cni's config parsing (pure): the reference bridge plugin's keys, host-local's,
the runtime's capability arguments, and one clear spec error for each bad input."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest

from shoal.plugins.cni import result
from shoal.plugins.cni.config import PortMapping, parse, parse_cni_args
from shoal.plugins.cni.errors import CniError


def data(**conf: Any) -> bytes:
    base: dict[str, Any] = {"cniVersion": "1.0.0", "name": "net1", "type": "shoal-cni"}
    base.update(conf)
    return json.dumps({k: v for k, v in base.items() if v is not None}).encode()


def error(raw: bytes, command: str = "ADD", args: str = "") -> CniError:
    with pytest.raises(CniError) as info:
        parse(raw, command, args)
    return info.value


def test_the_reference_bridge_config_as_podman_writes_it() -> None:
    conf = parse(data(cniVersion="0.4.0", bridge="cni-podman1", isGateway=True, ipMasq=True,
                      hairpinMode=True, mtu=1400,
                      ipam={"type": "host-local", "routes": [{"dst": "0.0.0.0/0"}],
                            "ranges": [[{"subnet": "10.89.0.0/24",
                                         "gateway": "10.89.0.1"}]]}), "ADD")
    assert conf.version == "0.4.0" and conf.name == "net1" and conf.bridge == "cni-podman1"
    assert conf.subnet == IPv4Network("10.89.0.0/24")
    assert conf.gateway == IPv4Address("10.89.0.1")
    assert conf.ip_masq is True and conf.mtu == 1400 and conf.icc is True
    assert conf.ip_range is None and conf.prev_result is None


def test_subnet_with_a_range_becomes_shoals_ip_range() -> None:
    conf = parse(data(ipam={"type": "host-local", "subnet": "10.1.0.0/24",
                            "rangeStart": "10.1.0.128", "rangeEnd": "10.1.0.254"}), "ADD")
    assert conf.ip_range == IPv4Network("10.1.0.128/25")
    e = error(data(ipam={"type": "host-local", "subnet": "10.1.0.0/24",
                         "rangeStart": "10.1.0.10", "rangeEnd": "10.1.0.20"}))
    assert e.code == 2 and "one CIDR block" in e.msg


def test_without_ipam_shoal_chooses_the_subnet() -> None:
    conf = parse(data(), "ADD")
    assert conf.subnet is None and conf.gateway is None


def test_runtime_config_and_args() -> None:
    conf = parse(data(runtimeConfig={
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "TCP",
                          "hostIP": ""},
                         {"hostPort": 53, "containerPort": 53, "protocol": "udp",
                          "hostIP": "127.0.0.1"}],
        "ips": ["10.1.0.5/24"], "mac": "C2:11:22:33:44:55",
        "dns": {"servers": ["192.0.2.1"], "searches": ["example"], "options": ["ndots:2"]}},
        dns={"nameservers": ["10.1.0.1"], "domain": "lan"}), "ADD")
    assert conf.port_mappings == [PortMapping(8080, 80, "tcp", ""),
                                  PortMapping(53, 53, "udp", "127.0.0.1")]
    assert conf.ip == IPv4Address("10.1.0.5") and conf.mac == "c2:11:22:33:44:55"
    assert conf.dns == {"nameservers": ["192.0.2.1"], "domain": "lan", "search": ["example"],
                        "options": ["ndots:2"]}
    # args.cni, then CNI_ARGS, when the capability is not given
    assert parse(data(args={"cni": {"ips": ["10.1.0.6"]}}), "ADD", "IP=10.1.0.7").ip == \
        IPv4Address("10.1.0.6")
    assert parse(data(), "ADD", "IgnoreUnknown=1;IP=10.1.0.7;K8S_POD_NAME=x").ip == \
        IPv4Address("10.1.0.7")


def test_shoal_extras() -> None:
    conf = parse(data(shoal={"root": "/var/lib/x", "runDir": "/run/x", "icc": False,
                             "internal": True}), "ADD")
    assert (conf.root, conf.run_dir, conf.icc, conf.internal) == ("/var/lib/x", "/run/x",
                                                                  False, True)
    assert parse(data(portIsolation=True), "ADD").icc is False
    e = error(data(shoal={"colour": "blue"}))
    assert e.code == 2 and e.msg == ('unsupported field shoal.colour="blue": shoal\'s keys are '
                                     "root, runDir, icc, internal")


def test_chained_add_ignores_ipam_and_keeps_prev_result() -> None:
    prev = {"cniVersion": "1.0.0", "interfaces": [], "ips": []}
    conf = parse(data(prevResult=prev, ipam={"type": "dhcp"}), "ADD")
    assert conf.prev_result == prev


def test_gc_valid_attachments() -> None:
    conf = parse(data(cniVersion="1.1.0", **{"cni.dev/valid-attachments": [
        {"containerID": "a", "ifname": "eth0"}]}), "GC")
    assert conf.valid_attachments == [("a", "eth0")]


BAD = [
    (data(cniVersion="2.0.0"), "ADD", 1, "incompatible CNI versions"),
    (data(cniVersion=None), "ADD", 1, "cniVersion is '0.1.0'"),
    (data(cniVersion="1.0.0"), "GC", 1, "config version 1.0.0 does not allow GC"),
    (data(cniVersion="0.3.1"), "CHECK", 1, "does not allow CHECK"),
    (b"[1, 2]", "ADD", 6, "must be a JSON object"),
    (b"{", "ADD", 6, "is not JSON"),
    (data(name=None), "ADD", 7, "has no name"),
    (data(name="bad name"), "ADD", 7, "invalid network name 'bad name'"),
    (data(bridge="a-very-long-bridge-name"), "ADD", 7, "Linux allows at most 15"),
    (data(ipMasq="yes"), "ADD", 7, "ipMasq must be true or false, not 'yes'"),
    (data(mtu=10), "ADD", 7, "mtu must be a number from 68 to 65535"),
    (data(promiscMode=True), "ADD", 2, "unsupported field promiscMode=true"),
    (data(ipam={"type": "static"}), "ADD", 7, "ipam type 'static' is not supported"),
    (data(ipam={"type": "host-local"}), "ADD", 7, "needs \"subnet\" or \"ranges\""),
    (data(ipam={"type": "host-local", "subnet": "nope"}), "ADD", 7, "is not a subnet"),
    (data(ipam={"type": "host-local", "subnet": "fd00::/64"}), "ADD", 7, "IPv6"),
    (data(ipam={"type": "host-local", "subnet": "10.0.0.0/31"}), "ADD", 7, "too small"),
    (data(ipam={"type": "host-local", "subnet": "10.0.0.0/24", "gateway": "x"}), "ADD", 7,
     "ipam gateway 'x' is not an IP address"),
    (data(ipam={"type": "host-local", "ranges": [[{"subnet": "10.0.0.0/24"}],
                                                 [{"subnet": "10.1.0.0/24"}]]}), "ADD", 2,
     "keep one range"),
    (data(ipam={"type": "host-local", "subnet": "10.0.0.0/24",
                "routes": [{"dst": "192.0.2.0/24"}]}), "ADD", 2, "unsupported field ipam.routes"),
    (data(runtimeConfig={"portMappings": [{"hostPort": 0, "containerPort": 80}]}), "ADD", 7,
     "must be numbers from 1 to 65535"),
    (data(runtimeConfig={"portMappings": [{"hostPort": 1, "containerPort": 8,
                                           "protocol": "icmp"}]}), "ADD", 7, "tcp, udp or sctp"),
    (data(runtimeConfig={"portMappings": [{"hostPort": 1, "containerPort": 8,
                                           "hostIP": "::1"}]}), "ADD", 2, "IPv6 host"),
    (data(runtimeConfig={"ips": ["10.0.0.2", "10.0.0.3"]}), "ADD", 2, "one address"),
    (data(runtimeConfig={"ips": ["fd00::2"]}), "ADD", 7, "IPv6"),
    (data(runtimeConfig={"mac": "01:00:5e:00:00:01"}), "ADD", 7, "multicast"),
    (data(runtimeConfig={"mac": "zz"}), "ADD", 7, "is not a MAC address"),
    (data(prevResult=[1]), "DEL", 6, "prevResult must be a JSON object"),
]


@pytest.mark.parametrize(("raw", "command", "code", "part"), BAD,
                         ids=[f"{i}-{b[3][:20]}" for i, b in enumerate(BAD)])
def test_bad_input_is_one_clear_spec_error(raw: bytes, command: str, code: int,
                                           part: str) -> None:
    e = error(raw, command)
    assert e.code == code, e.msg
    assert part in e.msg and "\n" not in e.msg
    assert set(e.result("1.0.0")) == {"cniVersion", "code", "msg", "details"}


def test_cni_args_must_be_pairs() -> None:
    assert parse_cni_args("A=1;;B=") == {"A": "1", "B": ""}
    with pytest.raises(CniError) as info:
        parse_cni_args("A=1;junk")
    assert info.value.code == 4 and "'junk' is not KEY=VALUE" in info.value.msg


def test_results_per_version() -> None:
    itf = [result.interface("br0", "02:42:0a:00:00:01"),
           result.interface("eth0", "02:42:0a:00:00:02", "/run/netns/x", 1400)]
    old = result.add_result("0.4.0", itf, "10.0.0.2/24", "10.0.0.1", 1, True, {})
    assert old["ips"] == [{"version": "4", "address": "10.0.0.2/24", "interface": 1,
                           "gateway": "10.0.0.1"}]
    assert old["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}]
    new = result.add_result("1.1.0", itf, "10.0.0.2/24", "10.0.0.1", 1, False, {})
    assert "version" not in new["ips"][0] and "routes" not in new
    assert new["interfaces"][1] == {"name": "eth0", "mac": "02:42:0a:00:00:02", "mtu": 1400,
                                    "sandbox": "/run/netns/x"}
    assert result.version_result("9.9.9")["cniVersion"] == "1.1.0"


def test_del_is_best_effort_about_what_it_does_not_need() -> None:
    raw = data(vlan=5, ipam={"type": "dhcp"}, runtimeConfig={"portMappings": "x"})
    assert error(raw).code == 2
    conf = parse(raw, "DEL")
    assert conf.name == "net1" and conf.port_mappings == []
    assert error(data(cniVersion="9.0.0"), "DEL").code == 1
    assert error(data(shoal={"root": "relative"}), "DEL").code == 7
