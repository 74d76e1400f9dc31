"""A container's first veth is created with ifindex 2 in its new namespace, so that the
whole inside of the attach is one netlink batch. Where ipip or sit is loaded, every new
namespace already holds tunl0 or sit0 there: the create then fails (the kernel answers
EEXIST) and shoal falls back to an unnumbered create, leaving the link that held index 2 as
it was.

This machine's kernel has no ipip, sit or dummy links, and loading a module would touch the
machine's own namespace, so the kernel-made link is stood in for: shoal's namespace creation
is wrapped (in a Python process inside the test's host) to add a bridge named tunl0 in each
new namespace before shoal sees it, which takes index 2 as tunl0 would."""

from __future__ import annotations

import json
import textwrap

from .harness import Host

SCRIPT = textwrap.dedent("""
    import json
    import shoal
    from shoal.kernel import netlink as nl, ns

    made = []
    create_netns = ns.create_netns

    def with_index_2_taken(path, inside):
        def opened():
            sock = inside()
            body = (nl.ifinfomsg() + nl.attr_str(nl.IFLA_IFNAME, "tunl0")
                    + nl.nested(nl.IFLA_LINKINFO, nl.attr_str(nl.IFLA_INFO_KIND, "bridge")))
            sock.call((nl.RTM_NEWLINK, nl.NLM_F_CREATE | nl.NLM_F_EXCL, body, "tunl0"))
            made.append(path)
            return sock
        return create_netns(path, opened)

    ns.create_netns = with_index_2_taken
    client = shoal.Client(root=ROOT, run_dir=RUN)
    client.networks.create("fb", ipam={"Config": [{"Subnet": "10.61.0.0/24"}]})
    ctr = client.containers.run("sleep 60", name="c1", network="fb", detach=True)
    print(json.dumps({"made": made}))
""")


def test_a_taken_index_2_falls_back_to_an_unnumbered_veth(host: Host) -> None:
    code = SCRIPT.replace("ROOT", repr(host.root)).replace("RUN", repr(host.run_dir))
    res = host.python(code)
    made = json.loads(res.stdout.strip().splitlines()[-1])["made"]
    sandbox = host.sandbox("c1")
    assert made == [sandbox]  # the stand-in really held index 2 in the container's namespace
    links = {link["ifname"]: link for link in host.ip_json("addr", "show", ns=sandbox)}
    assert links["tunl0"]["ifindex"] == 2
    # the link that held index 2 is left as it was: down, without the container's address
    assert "UP" not in links["tunl0"]["flags"]
    assert [a for a in links["tunl0"].get("addr_info", []) if a["family"] == "inet"] == []
    eth0 = links["eth0"]
    assert eth0["ifindex"] > 2 and "UP" in eth0["flags"]
    assert [a["local"] for a in eth0["addr_info"] if a["family"] == "inet"] == ["10.61.0.2"]
    routes = host.ip_json("route", "show", "default", ns=sandbox)
    assert [(r["gateway"], r["dev"]) for r in routes] == [("10.61.0.1", "eth0")]
    # and the container is on its network: the host reaches it, it reaches its gateway
    assert host.in_ns(host.ns, "ping", "-c1", "-W2", "10.61.0.2").returncode == 0
    assert host.ping_ok("c1", "10.61.0.1")
    # its host end is plugged into the bridge, in hairpin mode, like any other
    ports = [link for link in host.ip_json("-d", "link", "show")
             if link["ifname"].startswith("vsh")]
    assert len(ports) == 1 and "master" in ports[0]
    assert ports[0]["linkinfo"]["info_slave_data"]["hairpin"] is True
    host.shoal("rm", "-f", "c1")


def test_a_fresh_namespace_holding_a_kernel_made_tunnel_is_used_as_it_is(host: Host) -> None:
    """Without the stand-in: whatever this kernel puts in a new namespace (tunl0 and sit0
    where ipip and sit are loaded, nothing else here), a container starts and is reachable."""
    host.shoal("network", "create", "--subnet", "10.62.0.0/24", "plain")
    host.shoal("run", "-d", "--name", "c2", "--network", "plain", "sleep", "60")
    assert host.in_ns(host.ns, "ping", "-c1", "-W2", "10.62.0.2").returncode == 0
    host.shoal("rm", "-f", "c2")
