"""Hypothesis drives the engine (through the Python API, inside the sandboxed host) with
generated input: every call either succeeds or raises a ShoalError, and a failed call leaves
the kernel and the store exactly as they were."""

from __future__ import annotations

import json
import textwrap

from .harness import Host

SCRIPT = textwrap.dedent("""
    import json, subprocess, sys, time
    from hypothesis import HealthCheck, given, settings, strategies as st
    import shoal
    from shoal.errors import ShoalError
    from shoal.drivers.bridge import host_veth_name

    client = shoal.Client(root=ROOT, run_dir=RUN)
    engine = client.engine
    client.networks.create("base", ipam={"Config": [{"Subnet": "10.50.0.0/24"}]})

    def snapshot():
        # the kernel destroys a removed container's veth asynchronously: wait for it first
        live = {host_veth_name(ep.id) for ep in engine.store.endpoints() if ep.ip}
        for _ in range(200):
            links = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True).stdout
            if {l["ifname"] for l in json.loads(links) if l["ifname"].startswith("vsh")} == live:
                break
            time.sleep(0.025)
        rules = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
        nets = sorted(json.dumps(n.attrs, sort_keys=True) for n in client.networks.list())
        ctrs = sorted(json.dumps(c.attrs, sort_keys=True, default=str)
                      for c in client.containers.list(all=True))
        names = sorted(l["ifname"] for l in json.loads(links))
        return names, rules, nets, ctrs

    text = st.one_of(st.sampled_from(["", "x", "10.60.0.0/24", "10.60.0.1", "10.60.0.0/33",
                                      "fd00::/64", "172.17.0.0/16", "10.60.0.0/31",
                                      "base", "bridge", "none", "host", "a" * 200, "-x",
                                      "../y", "0.0.0.0", "300.1.1.1"]),
                     st.text(max_size=20))
    maybe = st.one_of(st.none(), text)
    outcomes = {"ok": 0, "error": 0}

    def attempt(call):
        before = snapshot()
        try:
            result = call()
        except ShoalError as e:
            assert "\\n" not in str(e), repr(str(e))
            after = snapshot()
            assert after == before, ("state changed by a failed call", str(e))
            outcomes["error"] += 1
            return None
        outcomes["ok"] += 1
        return result

    @settings(max_examples=MAX, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(name=text, subnet=maybe, gateway=maybe, ip_range=maybe,
           opt=st.one_of(st.none(), st.tuples(text, text)))
    def networks(name, subnet, gateway, ip_range, opt):
        net = attempt(lambda: engine.create_network(
            name, subnet=subnet, gateway=gateway, ip_range=ip_range,
            options=dict([opt]) if opt else None))
        if net is not None:
            engine.remove_network(net.id)

    @settings(max_examples=MAX, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(name=maybe, network=text, ip=maybe, publish=st.lists(text, max_size=2),
           env=st.lists(text, max_size=2))
    def containers(name, network, ip, publish, env):
        spec = shoal.controller.RunSpec(cmd=["true"], name=name, network=network or "bridge",
                                        ip=ip, publish=publish, env=env)
        ctr = attempt(lambda: engine.create_container(spec))
        if ctr is not None:
            engine.remove_container(ctr.id, force=True)

    client.containers.run(["sleep", "600"], name="c1", network="base", detach=True)
    client.networks.create("other")

    @settings(max_examples=MAX, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(op=st.sampled_from(["connect", "disconnect", "rm-network", "stop", "rm",
                               "exec", "inspect"]),
           net=st.one_of(st.sampled_from(["base", "other", "bridge", "none", "host"]), text),
           ctr=st.one_of(st.sampled_from(["c1"]), text), ip=maybe,
           aliases=st.lists(text, max_size=2), timeout=st.floats(-1, 0.5))
    def operations(op, net, ctr, ip, aliases, timeout):
        call = {
            "connect": lambda: engine.connect(net, ctr, ip=ip, aliases=aliases),
            "disconnect": lambda: engine.disconnect(net, ctr),
            "rm-network": lambda: engine.remove_network(net),
            "stop": lambda: engine.stop(ctr, max(timeout, 0)),
            "rm": lambda: engine.remove_container(ctr),
            "exec": lambda: engine.exec(ctr, []),  # generated text is never run as a command
            "inspect": lambda: engine.queries.container(ctr),
        }[op]
        attempt(call)

    networks()
    containers()
    operations()
    print(json.dumps(outcomes))
""")


def test_generated_input_either_works_or_changes_nothing(host: Host) -> None:
    script = (SCRIPT.replace("ROOT", repr(host.root)).replace("RUN", repr(host.run_dir))
              .replace("MAX", "60"))
    res = host.python("import shoal.controller\n" + script)
    outcomes = json.loads(res.stdout.strip().splitlines()[-1])
    assert outcomes["error"] > 0 and outcomes["ok"] > 0, outcomes
