"""shoal-cni driven directly, as the CNI spec's examples drive a plugin: CNI_COMMAND,
CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME in the environment, the config on stdin, the result
or the spec's error object on stdout. Everything runs inside the harness's host namespace;
the container namespaces are files the test made, as a runtime makes them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .cni import check_result_shape, concurrent_adds, namespace, remove_namespace, shoal_cni
from .harness import HOST_ADDR, OUTSIDE_ADDR, SRC, Host
from .servers import TCP


def conf(name: str = "cninet", subnet: str = "10.90.0.0/24", version: str = "1.0.0",
         **extra: Any) -> dict[str, Any]:
    """A config as the reference bridge plugin takes it, with shoal-cni's type."""
    return {"cniVersion": version, "name": name, "type": "shoal-cni", "bridge": f"br-{name}",
            "isGateway": True, "ipMasq": True, "hairpinMode": True,
            "ipam": {"type": "host-local", "subnet": subnet,
                     "routes": [{"dst": "0.0.0.0/0"}]}, **extra}


def add(host: Host, tmp_path: Path, cid: str, config: dict[str, Any] | None = None,
        ifname: str = "eth0", netns: str | None = None) -> tuple[str, dict[str, Any]]:
    ns = netns or namespace(tmp_path, f"{cid}.ns")
    out = shoal_cni(host, "ADD", config or conf(), cid, ns, ifname)
    assert out.rc == 0, out
    return ns, out.json


def address(result: dict[str, Any]) -> str:
    return str(result["ips"][0]["address"]).split("/")[0]


def ping(host: Host, ns: str, addr: str) -> bool:
    return host.in_ns(ns, "ping", "-c1", "-W1", addr).returncode == 0


def state(host: Host) -> dict[str, Any]:
    """What a DEL must leave as it was: the host's links and addresses, shoal's records
    (networks and their members), and the firewall's ruleset."""
    links = sorted(host.links())
    addrs = host.ip("-4", "addr", "show")
    inspect = host.shoal_json("network", "inspect", "cninet")[0]["Containers"]
    rules = host.in_ns(host.ns, "nft", "list", "ruleset", check=True).stdout
    return {"links": links, "addrs": addrs, "members": inspect, "rules": rules}


def test_add_gives_an_address_and_a_spec_shaped_result(host: Host, tmp_path: Path) -> None:
    ns, res = add(host, tmp_path, "c1")
    check_result_shape(res, "1.0.0", ns, "eth0")
    ip = address(res)
    assert res["ips"][0]["address"] == f"{ip}/24" and ip.startswith("10.90.0.")
    assert res["ips"][0]["gateway"] == "10.90.0.1"
    assert res["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.90.0.1"}]
    names = [i["name"] for i in res["interfaces"]]
    assert names[0] == "br-cninet" and names[2] == "eth0"
    # the kernel has what the result says
    inside = host.ip_json("addr", "show", "eth0", ns=ns)[0]
    assert f"{ip}" in [a["local"] for a in inside["addr_info"]]
    assert inside["address"] == res["interfaces"][2]["mac"]
    assert "default via 10.90.0.1 dev eth0" in host.ip("route", ns=ns)
    host_links = host.links()
    assert host_links[names[1]]["address"] == res["interfaces"][1]["mac"]
    assert host_links["br-cninet"]["address"] == res["interfaces"][0]["mac"]
    # the gateway answers, and shoal shows the attachment as it shows a container
    assert ping(host, ns, "10.90.0.1")
    net = host.shoal_json("network", "inspect", "cninet")[0]
    assert net["Labels"] == {"shoal.cni.network": "cninet"}
    assert net["IPAM"]["Config"] == [{"Subnet": "10.90.0.0/24", "Gateway": "10.90.0.1"}]
    [member] = net["Containers"].values()
    assert member["Name"] == "cni:c1" and member["IPv4Address"] == f"{ip}/24"
    assert "cninet" in host.shoal("network", "ls").stdout
    doctor = host.shoal("doctor", check=False)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "network cninet: bridge br-cninet is up with 10.90.0.1/24" in doctor.stdout
    # the runtime writes the container's resolv.conf: no embedded resolver runs for it
    assert "the embedded resolver" not in doctor.stdout
    assert not [p for p in host._our_processes({os.stat(host.ns).st_ino})
                if b"resolver" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert f"cni:c1 (eth0, {ip}): {names[1]} is up on bridge br-cninet" in doctor.stdout
    # a namespace the runtime removed without a DEL: doctor names it, reconcile repairs
    remove_namespace(ns)
    doctor = host.shoal("doctor", check=False)
    assert doctor.returncode != 0
    assert f"sandbox cni:c1: its namespace {ns} is gone" in doctor.stdout
    assert f"sandbox cni:c1: its namespace {ns} is gone; its 1 endpoint(s) were released" \
        in host.shoal("system", "reconcile").stdout
    assert host.shoal_json("network", "inspect", "cninet")[0]["Containers"] == {}


def test_results_of_older_versions_carry_the_address_family(host: Host, tmp_path: Path
                                                            ) -> None:
    for version, cid in (("0.4.0", "old4"), ("0.3.1", "old31"), ("1.1.0", "new11")):
        ns, res = add(host, tmp_path, cid, conf(version=version))
        check_result_shape(res, version, ns, "eth0")
    # 0.3.x has no CHECK, as libcni and the reference plugins say
    out = shoal_cni(host, "CHECK", conf(version="0.3.1"), "old31", str(tmp_path / "old31.ns"))
    assert out.rc == 1 and out.json["code"] == 1
    assert out.json["msg"] == "config version 0.3.1 does not allow CHECK: it needs cniVersion " \
                              "0.4.0 or later"


def test_attachments_reach_each_other_and_not_another_network(host: Host, tmp_path: Path
                                                              ) -> None:
    ns1, r1 = add(host, tmp_path, "c1")
    ns2, r2 = add(host, tmp_path, "c2")
    assert address(r1) != address(r2)
    assert ping(host, ns1, address(r2)) and ping(host, ns2, address(r1))
    other = conf(name="othernet", subnet="10.91.0.0/24")
    ns3, r3 = add(host, tmp_path, "c3", other)
    assert ping(host, ns3, "10.91.0.1")
    assert not ping(host, ns3, address(r1))
    assert not ping(host, ns1, address(r3))
    # one container on two networks: a second attachment with its own interface name
    _, r4 = add(host, tmp_path, "c1", other, ifname="eth1", netns=ns1)
    assert r4["interfaces"][2]["name"] == "eth1"
    assert ping(host, ns1, address(r3))
    inspect = host.shoal_json("network", "inspect", "othernet")[0]["Containers"]
    assert sorted(m["Name"] for m in inspect.values()) == ["cni:c1", "cni:c3"]


def test_ip_masq_and_internal_decide_the_way_out(host: Host, tmp_path: Path) -> None:
    """ipMasq as the reference plugin means it: masqueraded to the host's address beyond
    the host, or not at all (the outside has no route back to the container); shoal's
    `internal` extra gives no way out."""
    server = host.background(host.outside, sys.executable, "-c", TCP, "8000")
    try:
        host.wait_for(lambda: host.listening(host.outside, 8000), what="the outside server")
        masq, _ = add(host, tmp_path, "m", conf())
        assert host.fetch(masq, OUTSIDE_ADDR, 8000) == HOST_ADDR
        plain, _ = add(host, tmp_path, "p", conf(name="plainnet", subnet="10.94.0.0/24",
                                                 ipMasq=False))
        assert host.fetch(plain, OUTSIDE_ADDR, 8000, timeout=1) is None
        closed, res = add(host, tmp_path, "i", conf(name="closednet", subnet="10.95.0.0/24",
                                                    shoal={"internal": True}))
        assert "routes" not in res and "default" not in host.ip("route", ns=closed)
        assert host.fetch(closed, OUTSIDE_ADDR, 8000, timeout=1) is None
        assert host.shoal_json("network", "inspect", "closednet")[0]["Internal"] is True
    finally:
        server.kill()
        server.wait()


def test_isolated_from_a_container_on_another_shoal_network(host: Host, tmp_path: Path
                                                            ) -> None:
    host.shoal("network", "create", "--subnet", "10.97.0.0/24", "plain")
    host.shoal("run", "-d", "--name", "web", "--network", "plain", "--", sys.executable,
               "-c", TCP, "80")
    web_ip = host.ip_of("web", "plain")
    ns, res = add(host, tmp_path, "c1")
    sandbox = host.sandbox("web")
    host.wait_for(lambda: host.listening(sandbox, 80), what="the server in web")
    assert host.fetch(ns, web_ip, 80, timeout=1) is None
    assert not host.tcp_ok("web", address(res), 80)
    # the same container put on the CNI network reaches it: the network is the boundary
    host.shoal("network", "connect", "cninet", "web")
    assert host.fetch(ns, host.ip_of("web", "cninet"), 80) == address(res)
    host.shoal("rm", "-f", "web")


def test_mtu_and_port_isolation_as_the_reference_plugin_means_them(host: Host,
                                                                    tmp_path: Path) -> None:
    config = conf(name="isonet", subnet="10.98.0.0/24", mtu=1400, portIsolation=True)
    ns1, r1 = add(host, tmp_path, "i1", config)
    ns2, r2 = add(host, tmp_path, "i2", config)
    assert host.ip_json("link", "show", "eth0", ns=ns1)[0]["mtu"] == 1400
    assert host.links()["br-isonet"]["mtu"] == 1400
    assert all(i["mtu"] == 1400 for i in r1["interfaces"])
    # the bridge's ports cannot reach each other; the gateway they can
    assert ping(host, ns1, "10.98.0.1")
    assert not ping(host, ns1, address(r2)) and not ping(host, ns2, address(r1))


def test_port_mappings_are_reachable_from_outside(host: Host, tmp_path: Path) -> None:
    config = conf(runtimeConfig={"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""}]})
    ns, res = add(host, tmp_path, "web", config)
    server = host.background(ns, sys.executable, "-c", TCP, "80")
    try:
        host.wait_for(lambda: host.listening(ns, 80), what="the server in the namespace")
        assert host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR
        # a second container cannot take the same host port: refused, nothing of it left
        before = sorted(host.links())
        ns2 = namespace(tmp_path, "web2.ns")
        out = shoal_cni(host, "ADD", config, "web2", ns2)
        assert out.rc == 1 and out.json["code"] == 100
        assert out.json["msg"] == ("host port 0.0.0.0:8080/tcp is already published by "
                                   "sandbox cni:web")
        assert sorted(host.links()) == before and "eth0" not in host.links(ns=ns2)
        members = host.shoal_json("network", "inspect", "cninet")[0]["Containers"]
        assert [m["Name"] for m in members.values()] == ["cni:web"]
        # CHECK sees the port; DEL takes it away
        assert shoal_cni(host, "CHECK", {**config, "prevResult": res}, "web", ns).rc == 0
        assert shoal_cni(host, "DEL", {**config, "prevResult": res}, "web", ns).rc == 0
        assert host.fetch(host.outside, HOST_ADDR, 8080, timeout=1) is None
        assert ":8080" not in host.shoal("system", "firewall").stdout
    finally:
        server.kill()
        server.wait()


def test_port_mappings_on_the_iptables_backend(iptables_host: Host, tmp_path: Path) -> None:
    """The firewall backend comes from the runtime's environment (SHOAL_FIREWALL_BACKEND),
    and nothing it runs writes to the result on stdout."""
    host = iptables_host
    config = conf(runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80}]})
    ns, res = add(host, tmp_path, "web", config)
    server = host.background(ns, sys.executable, "-c", TCP, "80")
    try:
        host.wait_for(lambda: host.listening(ns, 80), what="the server in the namespace")
        assert host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR
        assert "SHOAL" in host.in_ns(host.ns, "iptables-save", check=True).stdout
        assert shoal_cni(host, "DEL", {**config, "prevResult": res}, "web", ns).rc == 0
        assert host.fetch(host.outside, HOST_ADDR, 8080, timeout=1) is None
    finally:
        server.kill()
        server.wait()


def test_del_twice_leaves_nothing_behind(host: Host, tmp_path: Path) -> None:
    config = conf(runtimeConfig={"portMappings": [
        {"hostPort": 9090, "containerPort": 90, "protocol": "udp"}]})
    ns0, r0 = add(host, tmp_path, "first")  # the network exists from now on
    before = state(host)
    ns, res = add(host, tmp_path, "c1", config)
    assert state(host) != before
    for _ in range(2):
        out = shoal_cni(host, "DEL", {**config, "prevResult": res}, "c1", ns)
        assert out.rc == 0 and out.stdout == "", out
    assert state(host) == before
    assert "eth0" not in host.links(ns=ns)
    # its address is free again: another container may ask for it
    _, again = add(host, tmp_path, "c2", conf(runtimeConfig={"ips": [address(res)]}))
    assert address(again) == address(res)


def test_del_of_an_unknown_container_or_a_gone_namespace_succeeds(host: Host, tmp_path: Path
                                                                   ) -> None:
    out = shoal_cni(host, "DEL", conf(), "never-added", str(tmp_path / "nosuch.ns"))
    assert out.rc == 0 and out.stdout == "", out
    out = shoal_cni(host, "DEL", conf(), "never-added")  # without CNI_NETNS, as the spec allows
    assert out.rc == 0, out
    ns, res = add(host, tmp_path, "c1")
    remove_namespace(ns)  # the runtime removed the namespace before DEL
    out = shoal_cni(host, "DEL", {**conf(), "prevResult": res}, "c1", ns)
    assert out.rc == 0, out
    assert host.shoal_json("network", "inspect", "cninet")[0]["Containers"] == {}
    # the address was released: another container may ask for it
    _, again = add(host, tmp_path, "c2", conf(runtimeConfig={"ips": [address(res)]}))
    assert address(again) == address(res)


def test_check_passes_on_a_good_attachment_and_names_what_is_wrong(host: Host, tmp_path: Path
                                                                    ) -> None:
    ns, res = add(host, tmp_path, "c1")
    good = {**conf(), "prevResult": res}
    out = shoal_cni(host, "CHECK", good, "c1", ns)
    assert out.rc == 0 and out.stdout == "", out
    wrong = json.loads(json.dumps(res))
    wrong["ips"][0]["address"] = "10.90.0.99/24"
    out = shoal_cni(host, "CHECK", {**conf(), "prevResult": wrong}, "c1", ns)
    assert out.rc == 1 and out.json["code"] == 101
    assert out.json["msg"] == (f"container c1's attachment eth0 to network cninet has address "
                               f"{address(res)} in shoal's store, but prevResult says "
                               "10.90.0.99")
    out = shoal_cni(host, "CHECK", good, "other", ns)
    assert out.rc == 1 and out.json["code"] == 3
    assert "is unknown to shoal" in out.json["msg"]
    host.ip("addr", "flush", "dev", "eth0", ns=ns)
    out = shoal_cni(host, "CHECK", good, "c1", ns)
    assert out.rc == 1 and out.json["msg"].endswith(f"eth0 lacks its address {address(res)}")
    host.ip("link", "del", "eth0", ns=ns)
    out = shoal_cni(host, "CHECK", good, "c1", ns)
    assert out.rc == 1 and "interface eth0 is missing" in out.json["msg"]
    # reconcile makes the endpoint again, and CHECK agrees
    host.shoal("system", "reconcile")
    assert shoal_cni(host, "CHECK", good, "c1", ns).rc == 0


def test_status_says_whether_shoal_can_serve_add(host: Host, tmp_path: Path) -> None:
    out = shoal_cni(host, "STATUS", conf(version="1.1.0"))
    assert out.rc == 0 and out.stdout == "", out
    bad = {**conf(version="1.1.0"), "shoal": {"root": "/proc/no-shoal-here"}}
    out = shoal_cni(host, "STATUS", bad, SHOAL_ROOT="/proc/no-shoal-here")
    assert out.rc == 1 and out.json["code"] == 50, out
    assert out.json["msg"].startswith("shoal cannot serve ADD: ")
    # a full network cannot serve ADD either (a /30 holds one container)
    small = conf(name="tiny", subnet="10.92.0.0/30", version="1.1.0")
    add(host, tmp_path, "only", small)
    out = shoal_cni(host, "STATUS", small)
    assert out.rc == 1 and out.json["code"] == 50
    assert out.json["msg"] == "network tiny has no free address left in 10.92.0.0/30"
    out = shoal_cni(host, "STATUS", conf(version="1.0.0"))
    assert out.rc == 1 and out.json["code"] == 1  # STATUS is 1.1.0's


def test_gc_removes_the_attachments_not_listed_as_valid(host: Host, tmp_path: Path) -> None:
    config = conf(version="1.1.0")
    results = {cid: add(host, tmp_path, cid, config) for cid in ("keep", "stale1", "stale2")}
    # shoal's own container on the same network is not a CNI attachment: GC leaves it alone
    host.shoal("run", "-d", "--name", "mine", "--network", "cninet", "--", "sleep", "300")
    gc = {**config, "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}
    out = shoal_cni(host, "GC", gc)
    assert out.rc == 0 and out.stdout == "", out
    members = host.shoal_json("network", "inspect", "cninet")[0]["Containers"]
    assert sorted(m["Name"] for m in members.values()) == ["cni:keep", "mine"]
    for cid in ("stale1", "stale2"):
        assert "eth0" not in host.links(ns=results[cid][0])
    keep_ns, keep = results["keep"]
    assert shoal_cni(host, "CHECK", {**config, "prevResult": keep}, "keep", keep_ns).rc == 0
    host.shoal("rm", "-f", "mine")


def test_version_lists_every_supported_version(host: Host) -> None:
    out = shoal_cni(host, "VERSION", {"cniVersion": "1.0.0"})
    assert out.rc == 0
    assert out.json == {"cniVersion": "1.0.0",
                        "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}
    out = shoal_cni(host, "VERSION", "")
    assert out.rc == 0 and out.json["cniVersion"] == "1.1.0"


BAD = [
    ("unknown ipam type", conf(ipam={"type": "dhcp"}), 7,
     "ipam type 'dhcp' is not supported: shoal-cni allocates the addresses itself; use "
     "\"type\": \"host-local\" with \"subnet\" or \"ranges\", or leave ipam out"),
    ("bad subnet", conf(subnet="10.90.0.300/24"), 7,
     "ipam subnet '10.90.0.300/24' is not a subnet: give one in CIDR notation, e.g. "
     "10.88.0.0/16"),
    ("missing name", {k: v for k, v in conf().items() if k != "name"}, 7,
     "the network config has no name: give \"name\", the network's name (shoal's network "
     "of that name is used, or made)"),
    ("unsupported version", conf(version="0.2.0"), 1,
     "incompatible CNI versions: the config's cniVersion is '0.2.0'; shoal-cni supports "
     "0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"),
    ("bad json", '{"cniVersion": "1.0.0", "name": ', 6, None),
    ("vlan", conf(vlan=5), 2,
     "unsupported field vlan=5: shoal's bridge networks do not have it; remove the key (or "
     "use the reference bridge plugin with shoal-cni chained after it)"),
    ("ipv6 range", conf(ipam={"type": "host-local", "ranges": [[{"subnet": "fd00::/64"}]]}), 7,
     "ipam range fd00::/64: IPv6 is not supported by shoal yet; remove the IPv6 range set"),
    ("ip outside the subnet", conf(runtimeConfig={"ips": ["10.1.2.3/24"]}), 7, None),
]


@pytest.mark.parametrize(("what", "config", "code", "msg"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_config_is_a_spec_error_and_leaves_nothing(host: Host, tmp_path: Path, what: str,
                                                         config: Any, code: int,
                                                         msg: str | None) -> None:
    ns = namespace(tmp_path, "c.ns")
    host.shoal("network", "ls")  # shoal's own first-use objects, made before the count
    links = sorted(host.links())
    out = shoal_cni(host, "ADD", config, "c1", ns)
    assert out.rc == 1, out
    assert set(out.json) == {"cniVersion", "code", "msg", "details"}
    assert out.json["code"] == code, out
    if msg is not None:
        assert out.json["msg"] == msg
    else:
        assert out.json["msg"] and "\n" not in out.json["msg"]
    assert sorted(host.links()) == links
    assert list(host.links(ns=ns)) == ["lo"]
    names = host.shoal("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert sorted(names) == ["bridge", "host", "none"]
    # the runtime DELs after a failed ADD: that succeeds whenever the config names the
    # network in a version shoal-cni speaks
    out = shoal_cni(host, "DEL", config, "c1", ns)
    assert (out.rc == 0) == (what not in ("bad json", "unsupported version",
                                          "missing name")), out


def test_bad_environment_is_error_four(host: Host, tmp_path: Path) -> None:
    out = shoal_cni(host, "ADD", conf(), "c1", "", "")
    assert out.rc == 1 and out.json["code"] == 4
    assert out.json["msg"] == "required env variables [CNI_NETNS,CNI_IFNAME] missing"
    out = shoal_cni(host, "ADD", conf(), "-bad", str(tmp_path / "x"))
    assert out.rc == 1 and out.json["code"] == 4 and "CNI_CONTAINERID" in out.json["msg"]
    plain = tmp_path / "plain"
    plain.write_text("")
    out = shoal_cni(host, "ADD", conf(), "c1", str(plain))
    assert out.rc == 1 and out.json["code"] == 4
    assert out.json["msg"] == (f"CNI_NETNS {plain} is not a network namespace: give the "
                               "path of a namespace file (e.g. /run/netns/NAME), not a symlink")
    assert "cninet" not in host.shoal("network", "ls").stdout
    out = shoal_cni(host, "FROB", conf())
    assert out.rc == 1 and out.json["code"] == 4 and "FROB" in out.json["msg"]
    ns = namespace(tmp_path, "c.ns")
    out = shoal_cni(host, "ADD", conf(), "c1", ns, "this-name-is-too-long")
    assert out.rc == 1 and out.json["code"] == 4 and "Linux allows at most 15" in out.json["msg"]


def test_concurrent_adds_get_distinct_addresses_and_reach_each_other(host: Host,
                                                                      tmp_path: Path) -> None:
    add(host, tmp_path, "warm")  # the network, made once (concurrent first ADDs: see below)
    spaces = [namespace(tmp_path, f"p{i}.ns") for i in range(8)]
    outs = concurrent_adds(host, conf(), [(f"p{i}", ns) for i, ns in enumerate(spaces)])
    assert all(o.rc == 0 for o in outs), outs
    addrs = [address(o.json) for o in outs]
    assert len(set(addrs)) == 8
    for i, ns in enumerate(spaces):
        for j, addr in enumerate(addrs):
            if i != j:
                assert ping(host, ns, addr), (i, j)


def test_concurrent_first_adds_make_the_network_once(host: Host, tmp_path: Path) -> None:
    spaces = [namespace(tmp_path, f"f{i}.ns") for i in range(4)]
    outs = concurrent_adds(host, conf(name="fresh", subnet="10.93.0.0/24"),
                           [(f"f{i}", ns) for i, ns in enumerate(spaces)])
    assert all(o.rc == 0 for o in outs), outs
    names = host.shoal("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert names.count("fresh") == 1
    assert len(host.shoal_json("network", "inspect", "fresh")[0]["Containers"]) == 4


@pytest.mark.parametrize("point", ["cni-add:sandbox", "connect:row", "connect:attached",
                                   "cni-add:published"])
def test_an_add_killed_midway_is_repaired(host: Host, tmp_path: Path, point: str) -> None:
    config = conf(runtimeConfig={"portMappings": [{"hostPort": 8081, "containerPort": 80}]})
    add(host, tmp_path, "warm")
    before = state(host)
    ns = namespace(tmp_path, "killed.ns")
    out = shoal_cni(host, "ADD", config, "killed", ns, SHOAL_CRASH_AT=point)
    assert out.rc == -9, out
    # the runtime saw the ADD fail: it DELs (the spec asks it to), which leaves nothing
    out = shoal_cni(host, "DEL", config, "killed", ns)
    assert out.rc == 0, out
    assert state(host) == before
    assert "eth0" not in host.links(ns=ns)
    # and the next ADD works, with the port
    _, res = add(host, tmp_path, "killed", config, netns=ns)
    assert address(res).startswith("10.90.0.")
    assert "8081" in host.shoal("system", "firewall").stdout


@pytest.mark.parametrize("point", ["disconnect:row", "cni-del:endpoint"])
def test_a_del_killed_midway_is_finished_by_the_next_del(host: Host, tmp_path: Path,
                                                         point: str) -> None:
    config = conf(runtimeConfig={"portMappings": [{"hostPort": 8082, "containerPort": 80}]})
    add(host, tmp_path, "warm")
    before = state(host)
    ns, res = add(host, tmp_path, "c1", config)
    out = shoal_cni(host, "DEL", {**config, "prevResult": res}, "c1", ns, SHOAL_CRASH_AT=point)
    assert out.rc == -9, out
    out = shoal_cni(host, "DEL", {**config, "prevResult": res}, "c1", ns)
    assert out.rc == 0, out
    assert state(host) == before
    assert "eth0" not in host.links(ns=ns)


def test_reconcile_repairs_an_add_killed_midway_without_a_del(host: Host, tmp_path: Path
                                                              ) -> None:
    add(host, tmp_path, "warm")
    before = state(host)
    ns = namespace(tmp_path, "killed.ns")
    out = shoal_cni(host, "ADD", conf(), "killed", ns, SHOAL_CRASH_AT="connect:attached")
    assert out.rc == -9, out
    repairs = host.shoal("system", "reconcile").stdout
    assert "sandbox cni:killed: its connection to network cninet was half-made; rolled back" \
        in repairs
    assert "eth0" not in host.links(ns=ns)
    after = state(host)
    assert after["links"] == before["links"] and after["rules"] == before["rules"]
    # another container's ADD finds nothing half-made, and the killed one can be added again
    _, res = add(host, tmp_path, "next")
    _, again = add(host, tmp_path, "killed", netns=ns)
    assert address(res) != address(again)


def test_a_failed_add_removes_the_network_it_made(host: Host, tmp_path: Path) -> None:
    ns = namespace(tmp_path, "c.ns")
    host.shoal("network", "ls")
    links = sorted(host.links())
    out = shoal_cni(host, "ADD", conf(runtimeConfig={"ips": ["10.90.0.1/24"]}), "c1", ns)
    assert out.rc == 1, out
    assert "10.90.0.1" in out.json["msg"]
    assert sorted(host.links()) == links
    names = host.shoal("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert "cninet" not in names


def test_requested_ip_mac_and_dns_are_honoured(host: Host, tmp_path: Path) -> None:
    config = conf(dns={"nameservers": ["10.90.0.1"]},
                  runtimeConfig={"ips": ["10.90.0.42/24"], "mac": "c2:11:22:33:44:55",
                                 "dns": {"servers": ["192.0.2.53"], "searches": ["example"]}})
    ns, res = add(host, tmp_path, "c1", config)
    assert address(res) == "10.90.0.42"
    assert host.ip_json("link", "show", "eth0", ns=ns)[0]["address"] == "c2:11:22:33:44:55"
    assert res["interfaces"][2]["mac"] == "c2:11:22:33:44:55"
    assert res["dns"] == {"nameservers": ["192.0.2.53"], "search": ["example"]}
    inspect = host.shoal_json("network", "inspect", "cninet")[0]["Containers"]
    assert [m["MacAddress"] for m in inspect.values()] == ["c2:11:22:33:44:55"]
    # the address through CNI_ARGS, as rkt and others pass it
    ns2 = namespace(tmp_path, "c2.ns")
    out = shoal_cni(host, "ADD", conf(), "c2", ns2, args="IgnoreUnknown=1;IP=10.90.0.43")
    assert out.rc == 0 and address(out.json) == "10.90.0.43", out


def test_a_container_in_a_new_namespace_leaves_the_old_one(host: Host, tmp_path: Path
                                                          ) -> None:
    """The runtime restarted a container in a new namespace without a DEL (it crashed):
    the attachments of the old one are stale and go, their addresses with them."""
    old, r1 = add(host, tmp_path, "c1")
    new = namespace(tmp_path, "c1-again.ns")
    out = shoal_cni(host, "ADD", conf(runtimeConfig={"ips": [address(r1)]}), "c1", new)
    assert out.rc == 0, out
    assert address(out.json) == address(r1)
    assert "eth0" not in host.links(ns=old) and "eth0" in host.links(ns=new)
    members = host.shoal_json("network", "inspect", "cninet")[0]["Containers"]
    assert [m["Name"] for m in members.values()] == ["cni:c1"]


def test_an_interface_name_taken_in_the_namespace_is_refused(host: Host, tmp_path: Path
                                                             ) -> None:
    ns = namespace(tmp_path, "c.ns")
    host.ip("link", "add", "eth0", "type", "veth", "peer", "name", "peer0", ns=ns)
    out = shoal_cni(host, "ADD", conf(), "c1", ns)
    assert out.rc == 1 and out.json["code"] == 100
    assert out.json["msg"] == (f"an interface eth0 already exists in {ns}: give another "
                               "CNI_IFNAME, or DEL the attachment that made it")
    # the network this ADD made went with it; the other interface stays
    assert "cninet" not in host.shoal("network", "ls").stdout
    assert "eth0" in host.links(ns=ns)


def test_a_bridge_another_plugin_made_is_not_taken_over(host: Host, tmp_path: Path) -> None:
    host.ip("link", "add", "br-cninet", "type", "bridge")
    ns = namespace(tmp_path, "c.ns")
    out = shoal_cni(host, "ADD", conf(), "c1", ns)
    assert out.rc == 1 and out.json["code"] == 100
    assert out.json["msg"] == ("a link named br-cninet already exists on the host (another "
                               "plugin's bridge?): give shoal-cni another \"bridge\", or "
                               "chain shoal-cni after the plugin that made it")
    assert "cninet" not in host.shoal("network", "ls").stdout
    # the same bridge name on a second CNI network is refused by name
    host.ip("link", "del", "br-cninet")
    add(host, tmp_path, "c1", netns=ns)
    out = shoal_cni(host, "ADD", conf(name="second", subnet="10.99.0.0/24",
                                      bridge="br-cninet"), "c2", namespace(tmp_path, "d.ns"))
    assert out.rc == 1 and out.json["msg"] == ("bridge br-cninet is already used by network "
                                               "cninet"), out


def test_the_package_installs_the_executable() -> None:
    import tomllib

    root = Path(SRC).parent
    scripts = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["shoal-cni"] == "shoal.plugins.cni.main:main"
    env = {"PYTHONPATH": SRC, "CNI_COMMAND": "VERSION", "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-m", "shoal.plugins.cni"], input=b"{}",
                         capture_output=True, env=env, timeout=30)
    assert res.returncode == 0 and b'"supportedVersions"' in res.stdout
    # what the entry point names, run as the installed script runs it
    code = "import sys; from shoal.plugins.cni.main import main; sys.exit(main())"
    res = subprocess.run([sys.executable, "-c", code], input=b"{}", capture_output=True,
                         env=env, timeout=30)
    assert res.returncode == 0 and json.loads(res.stdout)["cniVersion"] == "1.1.0"
    # VERSION imports no engine, kernel or firewall module: a runtime runs it often
    code = ("import sys, io; sys.stdin = io.TextIOWrapper(io.BytesIO(b'{}')); "
            "from shoal.plugins.cni.main import main; main(); "
            "print(sorted(m for m in sys.modules if m.startswith(('shoal.controller', "
            "'shoal.kernel', 'shoal.firewall', 'shoal.drivers'))), file=sys.stderr)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env,
                         timeout=30)
    assert res.stderr.strip().splitlines()[-1] == b"[]", res.stderr
    # and the VERSION libcni sends is answered without json (and the re and enum it brings)
    code = ("import sys, io; sys.stdin = io.TextIOWrapper(io.BytesIO(b'{\"cniVersion\":"
            "\"1.0.0\"}')); from shoal.plugins.cni.main import main; main(); "
            "print(sorted(m for m in ('json', 're', 'enum') if m in sys.modules), "
            "file=sys.stderr)")
    res = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True,
                         env=env, timeout=30, cwd=SRC)
    assert json.loads(res.stdout)["cniVersion"] == "1.0.0", res
    assert res.stderr.strip().splitlines()[-1] == b"[]", res.stderr
