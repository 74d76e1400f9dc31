"""Crash safety: a shoal command killed with SIGKILL at any step leaves a state the next
command repairs by itself, so that the kernel, the store and the allocations agree and
traffic works for what remains."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time

import pytest

from shoal.faults import POINTS

from .harness import HOST_ADDR, OUTSIDE_ADDR, Host
from .servers import TCP

PY = sys.executable


def _shoal_crashing(host: Host, point: str, *args: str) -> tuple[int, str]:
    """Run shoal with a crash point; (exit status, stderr). Output goes to a file: a command
    started in a container keeps a pipe open after shoal itself was killed."""
    cmd = ["nsenter", f"--net={host.ns}", PY, "-m", "shoal", "--root", host.root,
           "--run-dir", host.run_dir, *args]
    err = host.base / "stderr"
    with open(err, "w") as f:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=f, timeout=60, cwd=str(host.base),
                              env={**host.env(), "SHOAL_CRASH_AT": point})
    return proc.returncode, err.read_text()


DUMP = """
import json, shoal
c = shoal.Client(root=ROOT, run_dir=RUN)
print(json.dumps({"containers": [x.attrs for x in c.containers.list(all=True)],
                  "networks": [n.attrs for n in c.networks.list()]}))
"""


def assert_consistent(host: Host) -> None:
    """The kernel matches the store: every shoal veth, bridge, namespace and port rule belongs
    to a running container or a network, and every running container has all of its own."""
    state = json.loads(host.python(DUMP.replace("ROOT", repr(host.root))
                                   .replace("RUN", repr(host.run_dir))).stdout)
    containers = state["containers"]
    assert all(c["State"]["Status"] in ("running", "exited") for c in containers), containers
    running = [c for c in containers if c["State"]["Running"]]
    veths = {"vsh" + n["EndpointID"][:12]: n for c in running
             for n in c["NetworkSettings"]["Networks"].values() if n["EndpointID"]}
    networks = state["networks"]
    bridges = {n["Options"].get("shoal.bridge.name") or "sh-" + n["Id"][:12]
               for n in networks if n["Driver"] == "bridge"}

    def kernel_matches() -> bool:
        links = host.links()
        have_veths = {name for name in links if name.startswith("vsh")}
        have_bridges = {name for name in links if name.startswith("sh-") or name == "shoal0"}
        return have_veths == set(veths) and have_bridges == bridges
    try:
        host.wait_for(kernel_matches, what="kernel links to match the store")
    except AssertionError:
        links = host.links()
        raise AssertionError(
            f"links {sorted(n for n in links if n.startswith(('vsh', 'sh-', 'shoal')))} "
            f"!= veths {sorted(veths)} + bridges {sorted(bridges)}; containers "
            f"{[(c['Name'], c['State']['Status']) for c in containers]}") from None
    links = host.links()
    for veth in veths:
        assert links[veth].get("master") in bridges and "UP" in links[veth]["flags"]
    sandboxes = {c["NetworkSettings"]["SandboxKey"] for c in running
                 if c["NetworkSettings"]["SandboxKey"]}
    netns_dir = os.path.join(host.run_dir, "netns")
    files = ({os.path.join(netns_dir, f) for f in os.listdir(netns_dir)}
             if os.path.isdir(netns_dir) else set())
    assert files == sandboxes
    assert {p for p in host.mounts() if p.startswith(netns_dir + "/")} == sandboxes
    ports = sum(len(v or []) for c in running for v in c["NetworkSettings"]["Ports"].values())
    if host.backend == "iptables":
        saved = host.in_ns(host.ns, "iptables-save", check=True).stdout
        assert saved.count("-j DNAT") == ports, saved
    else:
        ruleset = host.in_ns(host.ns, "nft", "list", "ruleset", check=True).stdout
        assert ruleset.count(" : 172.") == ports, ruleset


def _works(host: Host, port: int) -> None:
    host.shoal("run", "-d", "--name", f"probe{port}", "-p", f"{port}:8000", "--",
               PY, "-c", TCP, "8000")
    host.wait_for(lambda: host.fetch(host.outside, HOST_ADDR, port) == OUTSIDE_ADDR,
                  what="a new container's published port")


# (crash point, command, who crashes: the command itself, or the supervisor of `web`,
# which records a detached container's exit)
SCENARIOS = [
    ("network-create:row", ["network", "create", "n2"]),
    ("network-create:bridge", ["network", "create", "n2"]),
    ("network-rm:row", ["network", "rm", "spare"]),
    ("run:rows", ["run", "-d", "--name", "x", "-p", "9100:80", "--", "sleep", "60"]),
    ("run:sandbox", ["run", "-d", "--name", "x", "-p", "9100:80", "--", "sleep", "60"]),
    ("run:firewall", ["run", "-d", "--name", "x", "-p", "9100:80", "--", "sleep", "60"]),
    ("run:spawned", ["run", "--name", "x", "-p", "9100:80", "--", "sleep", "60"]),
    ("stop:released", ["stop", "-t", "1", "web"]),  # crashes web's supervisor
    ("stop:released", ["rm", "-f", "web"]),
    ("connect:row", ["network", "connect", "spare", "web"]),
    ("connect:attached", ["network", "connect", "spare", "web"]),
    ("disconnect:row", ["network", "disconnect", "app", "web"]),
]


@pytest.mark.parametrize(("point", "command"), SCENARIOS,
                         ids=[f"{p}-{c[0]}" for p, c in SCENARIOS])
def test_killed_command_is_repaired_by_the_next_one(fw_host: Host, point: str,
                                                    command: list[str]) -> None:
    host = fw_host
    host.shoal("network", "create", "app")
    host.shoal("network", "create", "spare")
    web = ["run", "-d", "--name", "web", "--network", "app", "-p", "8080:8000", "--",
           PY, "-c", TCP, "8000"]
    if point.startswith("stop:"):
        # the exit of a detached container is recorded by its supervisor: crash that one
        code, err = _shoal_crashing(host, point, *web)
        assert code == 0, err
        host.shoal(*command)
        if command[0] == "stop":  # the crashed supervisor left the sandbox mounted
            assert os.listdir(os.path.join(host.run_dir, "netns"))
    else:
        host.shoal(*web)
        if command[:2] == ["network", "disconnect"]:
            host.shoal("network", "connect", "spare", "web")
        code, err = _shoal_crashing(host, point, *command)
        assert code == -9, (code, err)
    host.shoal("ps", "-a")  # any command repairs first
    assert_consistent(host)
    _works(host, 9200)
    assert_consistent(host)


def test_soak_random_operations_with_random_kills(fw_host: Host) -> None:
    """A bounded soak: random operations, a third of them killed (at a fault point or after
    a random delay), the invariants checked after each. SHOAL_SOAK_OPS sets the count."""
    host = fw_host
    seed = int(os.environ.get("SHOAL_SOAK_SEED", time.time()))
    rng = random.Random(seed)
    ops = int(os.environ.get("SHOAL_SOAK_OPS", "40"))
    deadline = time.monotonic() + 240
    host.shoal("network", "create", "n0")
    base = ["nsenter", f"--net={host.ns}", PY, "-m", "shoal", "--root", host.root,
            "--run-dir", host.run_dir]
    names = [f"c{i}" for i in range(6)]
    for step in range(ops):
        if time.monotonic() > deadline:
            break
        nets = ["bridge", "n0"] + [f"n{i}" for i in range(1, 3)]
        kind = rng.choice(["net", "run", "run", "connect", "disconnect", "stop", "rm",
                           "netrm"])
        name = rng.choice(names)
        args = {
            "net": ["network", "create", rng.choice(nets[2:])],
            "run": ["run", "-d", "--name", name, "--network", rng.choice(nets),
                    "-p", f"{rng.randint(9000, 9005)}:80", "--", "sleep", "300"],
            "connect": ["network", "connect", rng.choice(nets), name],
            "disconnect": ["network", "disconnect", rng.choice(nets), name],
            "stop": ["stop", "-t", "1", name],
            "rm": ["rm", "-f", name],
            "netrm": ["network", "rm", rng.choice(nets[1:])],
        }[kind]
        env = host.env()
        how = rng.choice(["none", "none", "point", "delay"])
        if how == "point":
            env["SHOAL_CRASH_AT"] = rng.choice(POINTS)
        proc = subprocess.Popen(base + args, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                cwd=str(host.base))
        if how == "delay":
            time.sleep(rng.uniform(0, 0.4))
            proc.kill()
        proc.wait(timeout=60)
        host.shoal("ps", "-a")  # repairs whatever the last command left
        try:
            _started_by_its_supervisor(host)
            assert_consistent(host)
        except AssertionError as e:
            raise AssertionError(f"step {step} ({args}, {how}), seed {seed}: {e}") from None
    _works(host, 9300)


def test_supervisor_killed_right_after_starting_the_command(host: Host) -> None:
    """The command runs, but its pid was never recorded: the rollback must stop it, or it
    would keep the sandbox's namespace and veth alive (found by the soak test)."""
    code, err = _shoal_crashing(host, "run:spawned", "run", "-d", "--name", "x", "-p",
                                "9100:80", "--", "sleep", "300")
    assert code != 0 and "supervisor" in err, (code, err)
    assert_consistent(host)
    assert "x" not in host.shoal("ps", "-a").stdout.split()
    _works(host, 9200)


def _started_by_its_supervisor(host: Host) -> None:
    """Killed after it launched the supervisor, `run -d` leaves the start to it: the
    container is "created" until the supervisor, a process of its own, has started the
    command (one whose supervisor is gone is rolled back by the next command)."""
    try:
        host.wait_for(lambda: "Created" not in host.shoal("ps", "-a").stdout,
                      what="the supervisor to finish the start")
    except AssertionError as e:
        raise AssertionError(f"{e}: {_supervisors(host)}") from None


def _supervisors(host: Host) -> str:
    """What the store records of each container's supervisor, and where in the kernel that
    process is (to learn why a start did not finish)."""
    import sqlite3

    db = sqlite3.connect(f"file:{os.path.join(host.root, 'shoal.db')}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT name, status, supervisor_pid, pid FROM containers").fetchall()
    finally:
        db.close()
    out = []
    for name, status, sup, pid in rows:
        where = "gone"
        try:
            with open(f"/proc/{sup}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open(f"/proc/{sup}/wchan") as f:
                where = f"state {state}, in {f.read()}"
            with open(f"/proc/{sup}/cmdline", "rb") as f:
                where += f", {f.read().replace(bytes(1), b' ')[:200]!r}"
        except OSError:
            pass
        out.append(f"{name} {status} pid {pid}, supervisor {sup} ({where})")
    return "; ".join(out)


@pytest.mark.parametrize("delay_ms", [0, 30, 60, 90, 120, 160, 200, 260, 330, 400])
def test_sigkill_swept_across_a_run(fw_host: Host, delay_ms: int) -> None:
    host = fw_host
    host.shoal("network", "create", "app")
    cmd = ["nsenter", f"--net={host.ns}", PY, "-m", "shoal", "--root", host.root,
           "--run-dir", host.run_dir, "run", "-d", "--name", "x", "--network", "app",
           "-p", "9100:80", "--", "sleep", "300"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=host.env(), cwd=str(host.base))
    time.sleep(delay_ms / 1000)
    proc.kill()
    proc.wait(timeout=60)
    host.shoal("ps", "-a")
    _started_by_its_supervisor(host)
    assert_consistent(host)
    _works(host, 9200)
