"""The network driver seam (issue 8): a driver that touches no kernel object goes through
create, join, leave, reconcile and delete, called by the controller in the right order, and
the controller itself knows nothing of the bridge. Plus: building an Engine does nothing
until it is bootstrapped."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from .harness import Host

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src" / "shoal"

SCRIPT = """
import json, subprocess, sys
sys.path.insert(0, HERE)
from fake_driver import FakeDriver
from shoal import drivers
from shoal.controller import Engine, RunSpec
from shoal.runtime import process

fake = FakeDriver()
drivers.register("fake", lambda: fake)
engine = Engine.open(ROOT, RUN)
links = lambda: sorted(l["ifname"] for l in json.loads(
    subprocess.run(["ip", "-j", "link"], capture_output=True, text=True).stdout))
before = links()
out = {}
try:
    engine.create_network("f1", driver="fake", options={"fake.fail": "validate"})
except Exception as e:
    out["refused"] = str(e)
net = engine.create_network("f1", driver="fake", subnet="10.77.0.0/24")
out["ls"] = [n.name for n in engine.networks({"driver": ["fake"]})]
out["scope"] = engine.queries.network("f1")["Scope"]
engine.create_network("f2", driver="fake")
ctr = engine.create_container(RunSpec(cmd=["sleep", "30"], name="c", network="f1"))
proc = engine.start_process(ctr, process.DEVNULL, process.DEVNULL, process.DEVNULL, True)
engine.connect("f2", "c")
out["inspect"] = sorted(engine.queries.container("c")["NetworkSettings"]["Networks"])
out["members"] = list(engine.queries.network("f2")["Containers"])
out["doctor_ok"] = [c.what for c in __import__("shoal.doctor", fromlist=["x"]).doctor(
    engine, "c") if "fake" in c.what]
engine.disconnect("f2", "c")
fake.present.clear()  # as if the endpoint's kernel side were lost: reconcile joins it again
out["repairs"] = engine.reconcile()
out["links_unchanged"] = links() == before
engine.remove_container("c", force=True)
engine.remove_network("f2")
engine.remove_network("f1")
out["calls"] = fake.calls
out["id"] = ctr.id
engine.close()
print(json.dumps(out))
"""


def test_a_fake_driver_goes_through_the_whole_lifecycle(host: Host) -> None:
    code = (SCRIPT.replace("HERE", repr(str(HERE))).replace("ROOT", repr(host.root))
            .replace("RUN", repr(host.run_dir)))
    out = json.loads(host.python(code).stdout.strip().splitlines()[-1])
    assert out["refused"] == "the fake driver refuses this network"
    assert out["ls"] == ["f1"]
    assert out["scope"] == "global"
    assert out["inspect"] == ["f1", "f2"]
    assert out["members"] == [out["id"]]
    assert out["links_unchanged"] is True  # the driver made no link in the host namespace
    assert any("fake is fine" in line for line in out["doctor_ok"])
    assert any("endpoint eth0 on network f1 was missing; created again" in line
               for line in out["repairs"]), out["repairs"]
    calls = [tuple(c) for c in out["calls"]]
    assert calls[0] == ("gc", [], 0)  # the root's first command reconciles (no networks yet)
    calls = calls[[c[0] for c in calls].index("validate"):]
    names = [c[0] for c in calls]
    # validate refused the first f1 before anything was made: no create_network for it
    assert calls[0] == ("validate", "f1") and calls[1] == ("validate", "f1")
    assert calls[2] == ("create_network", "f1")
    assert ("join", "f1", "eth0", "10.77.0.2", True) in calls  # the first endpoint: default route
    assert any(c[:3] == ("join", "f2", "eth1") and c[4] is False for c in calls)
    assert ("leave", "f2", "eth1", True) in calls  # disconnect: in the running sandbox
    assert ("gc", ["f1", "f2"], 1) in calls  # reconcile: the driver's networks, its live endpoint
    assert ("repair", "f1") in calls
    assert names.index("delete_network") > names.index("leave")
    assert calls[-2:] == [("delete_network", "f2"), ("delete_network", "f1")]
    assert "f1" not in host.shoal("network", "ls", "--format", "json").stdout.split('"')


def test_building_an_engine_does_nothing(tmp_path: Path) -> None:
    from shoal.controller import Engine

    engine = Engine(str(tmp_path / "root"), str(tmp_path / "run"))
    assert list(tmp_path.iterdir()) == []  # no directory, no database, no kernel handle
    assert not engine.bootstrapped
    with pytest.raises(Exception, match="not bootstrapped"):
        engine.store  # noqa: B018
    engine.close()


def _imports(path: Path) -> set[str]:
    mods = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            mods.add(("." * node.level) + (node.module or ""))
        elif isinstance(node, ast.Import):
            mods.update(a.name for a in node.names)
    return mods


def test_the_layers_do_not_reach_up() -> None:
    """The runtime never imports the controller; nothing outside the bridge driver names the
    bridge's devices or constants; the controller never checks a driver by name."""
    for path in (SRC / "runtime").glob("*.py"):
        assert not any("controller" in m or m.endswith("engine") for m in _imports(path)), path
    for path in (SRC / "controller").glob("*.py"):
        text = path.read_text()
        for word in ("host_veth_name", "DEFAULT_BRIDGE", "MAX_PORTS", "drivers.bridge",
                     'driver == "bridge"', 'driver != "bridge"', "BRIDGE_PREFIX"):
            assert word not in text, (path.name, word)
    assert not (SRC / "engine.py").exists() and not (SRC / "reconcile.py").exists()
