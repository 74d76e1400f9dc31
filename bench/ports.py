"""Published-ports benchmark for shoal, run on demand:
`python3 bench/ports.py [--backend nftables|iptables|both]` (default both).

Everything happens inside throwaway network namespaces that this script creates and removes
itself (`unshare --net=FILE true`, never `ip netns add`), with shoal's root and run directory
in a temporary directory (the run directory on a tmpfs, as /run is); the machine's own network
namespace is never touched. For each phase the script re-executes itself under
`nsenter --net=<throwaway namespace>` (the "inner" run): one phase for the baselines, then one
per firewall backend, each in a fresh namespace.

It prints its figures beside the targets of the issue and never fails on timing:

1. `shoal run -d -p 20000-20999:20000-20999 -- sleep 600` as a whole CLI process (command in,
   rules live), and the same with 10,000 ports; the rules are then counted (nft map
   `ip shoal ports_any` elements, or DNAT lines in iptables-save) and so are the processes in
   the namespaces (no process per port);
2. with 10,000 ports held by one container: `Engine.create_container` of a container
   publishing one port and `Engine.remove_container` of it, in-process, and the firewall part
   alone (`engine.netfilter.apply` adding / removing one element);
3. TCP connect time from an "outside" namespace (joined by a veth on 198.51.100.0/24) to the
   first and to the last of the 10,000 published ports, interleaved;
4. baselines: 1,000 DNAT rules with one `iptables -t nat -A` per rule, with one
   `iptables-restore --noflush`, and a 1,000-element map with `nft -f` (the last two with
   10,000 as well);
5. `shoal rm -f` of the 10,000-port container, and a check that no rule or element is left.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict
from typing import Any

from common import (
    CMD_TIMEOUT,
    SRC,
    TOP,
    Breakdown,
    Figure,
    check_in,
    cli_env,
    cli_python,
    figure_table,
    kill_leftovers,
    make_host_ns,
    ms,
    netns_id,
    ns_key,
    processes_in,
    profile_text,
    remove_cgroups,
    remove_tmp,
    run,
    unescape,
)

SMALL, BIG = 1000, 10000
SMALL_RANGE = f"{20000}-{20000 + SMALL - 1}"
BIG_RANGE = f"{20000}-{20000 + BIG - 1}"
FIRST_PORT, LAST_PORT = 20000, 20000 + BIG - 1
ONE_PORT = "30000:80"

# the "outside" namespace: a veth between it and the throwaway host namespace
OUT_HOST_IF, OUT_PEER_IF = "pbo0", "pbo1"  # not shoal names (sh-*, vsh*, shoal0)
OUT_HOST_IP, OUT_PEER_IP = "198.51.100.2", "198.51.100.1"

BASE_CHAIN = "BENCH-DNAT"  # the baselines' iptables chain, never hooked anywhere
BASE_TABLE = "bench"  # the baselines' nft table
BASE_DEST = "10.213.0.2"

SERVER = r"""
import socket, sys, threading
def serve(s):
    while True:
        try:
            c, _ = s.accept()
            c.close()
        except OSError:
            pass
socks = []
for port in sys.argv[1:]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(port)))
    s.listen(4096)
    socks.append(s)
for s in socks:
    threading.Thread(target=serve, args=(s,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""

CLIENT = r"""
import json, socket, sys, time
host, n, warm = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ports = [int(p) for p in sys.argv[4:]]
def once(port):
    s = socket.socket()
    s.settimeout(5)
    start = time.perf_counter()
    s.connect((host, port))
    took = time.perf_counter() - start
    s.close()
    return took
for port in ports:
    for _ in range(warm):
        once(port)
out = {str(p): [] for p in ports}
for i in range(n):
    for port in (ports if i % 2 == 0 else ports[::-1]):
        out[str(port)].append(once(port))
print(json.dumps(out))
"""


# -- small helpers -----------------------------------------------------------------------------


def secs(seconds: float) -> str:
    return f"{seconds:.3f} s"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} us"


def timed_run(cmd: list[str], env: dict[str, str] | None = None, stdin: str | None = None
              ) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = run(cmd, env, stdin)
    return time.perf_counter() - start, proc


def version_of(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True,
                              timeout=10).stdout.splitlines()[0].strip()
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


# -- outer run: the throwaway namespaces, one inner run per phase, cleanup -----------------------


def root_snapshot() -> dict[str, list[str]]:
    """What this script could conceivably leave in the machine's own namespaces (read only)."""
    def lines(cmd: list[str]) -> list[str]:
        try:
            return subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=60).stdout.splitlines()
        except (OSError, subprocess.SubprocessError):
            return ["<could not run " + cmd[0] + ">"]

    links = [line.split(":")[1].strip().split("@")[0]
             for line in lines(["ip", "-o", "link", "show"]) if ":" in line]
    chains = [line.split()[0] for line in lines(["iptables-save"]) if line.startswith(":")]
    with open("/proc/self/mountinfo") as f:
        mounts = [unescape(line.split()[4]) for line in f]
    return {
        "links": sorted(links),
        "nft tables": sorted(lines(["nft", "list", "tables"])),
        "iptables chains": sorted(chains),
        "mounts": sorted(m for m in mounts if "shoal" in m or m.startswith("/run/")),
        "/run": sorted(os.listdir("/run")),
        "temp dirs": sorted(d for d in os.listdir(tempfile.gettempdir())
                            if d.startswith("shoal-ports-")),
    }


def run_phase(phase: str, args: argparse.Namespace) -> dict[str, Any]:
    """One fresh throwaway namespace, the inner run in it, then cleanup."""
    tmp = os.path.realpath(tempfile.mkdtemp(prefix="shoal-ports-"))
    child: subprocess.Popen[bytes] | None = None
    result: dict[str, Any] = {"figures": [], "notes": [], "profiles": []}
    try:
        nsfile = make_host_ns(tmp)
        inner_cmd = ["nsenter", f"--net={nsfile}", "--", sys.executable,
                     os.path.abspath(__file__), "--inner", tmp, "--phase", phase,
                     "--runs", str(args.runs), "--big-runs", str(args.big_runs),
                     "--cycles", str(args.cycles), "--connects", str(args.connects),
                     "--outer-ns", ns_key("/proc/self/ns/net")]
        if args.profile:
            inner_cmd.append("--profile")
        sys.stderr.write(f"[{phase}] running in a throwaway namespace under {tmp}\n")
        child = subprocess.Popen(inner_cmd)
        rc = child.wait()
        path = os.path.join(tmp, "results.json")
        if os.path.exists(path):
            with open(path) as f:
                result = json.load(f)
        if rc != 0:
            result["notes"].append(f"{phase}: the inner run exited {rc}")
            result["failed"] = True
    except Exception as e:  # report and go on with the next phase
        result["notes"].append(f"{phase}: {type(e).__name__}: {e}")
        result["failed"] = True
    finally:
        if child is not None and child.poll() is None:
            try:  # interrupted: give the inner run a moment to clean up after itself
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()  # only the process this script started, by its pid
                child.wait()
        killed = kill_leftovers(tmp)
        if killed:
            result["notes"].append(f"{phase}: killed leftover processes {' '.join(killed)}")
        for path in remove_cgroups(SRC, os.path.join(tmp, "run")):
            result["notes"].append(f"{phase}: WARNING cgroup left: {path}")
        left = remove_tmp(tmp)
        if left:
            result["notes"].append(f"{phase}: WARNING still mounted: {' '.join(left)}")
    return result


def outer(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("bench/ports.py needs root (network namespaces, mounts)", file=sys.stderr)
        return 1
    before = root_snapshot()
    load = os.getloadavg()
    backends = ["nftables", "iptables"] if args.backend == "both" else [args.backend]
    phases = ([] if args.no_baseline else ["baseline"]) + backends
    results = [run_phase(phase, args) for phase in phases]
    after = root_snapshot()

    figures = [Figure(**f) for r in results for f in r["figures"]]
    notes = [n for r in results for n in r["notes"]]
    print()
    print(f"python {platform.python_version()} (bench {sys.executable}; CLI "
          f"{cli_python()} -m shoal)")
    print(f"kernel {platform.release()} ({platform.machine()}), {os.cpu_count()} cpus, "
          f"load average at start {', '.join(f'{x:.2f}' for x in load)}")
    print(f"{version_of(['iptables', '-V'])}; {version_of(['nft', '-V'])}")
    print(f"shoal src: {src_state()}")
    print(f"backends: {', '.join(backends)}; runs {args.runs} (1,000 ports), "
          f"{args.big_runs} (10,000 ports), {args.cycles} create/remove cycles, "
          f"{args.connects} connects per port" + (", UNDER cProfile" if args.profile else ""))
    print()
    for line in figure_table(figures):
        print(line)
    for note in notes:
        print(f"note: {note}")
    for r in results:
        for label, text in r["profiles"]:
            print(f"\n--- {label} ---")
            print(text)
    changed = [f"{k}: +{sorted(set(after[k]) - set(before[k]))} "
               f"-{sorted(set(before[k]) - set(after[k]))}"
               for k in before if before[k] != after[k]]
    print()
    if changed:
        print("WARNING: the machine's own namespaces changed during the run: "
              + "; ".join(changed))
    else:
        print("root namespace unchanged (links, nft tables, iptables chains, mounts, /run, "
              "temp dirs compared before and after)")
    return 1 if changed or any(r.get("failed") for r in results) else 0


def src_state() -> str:
    """The revision measured: HEAD, and which files under src/ differ from it."""
    try:
        head = run(["git", "-C", TOP, "rev-parse", "--short", "HEAD"]).stdout.strip()
        changed = run(["git", "-C", TOP, "status", "--porcelain", "--", "src"]).stdout
    except (OSError, RuntimeError, subprocess.SubprocessError):
        return "not a git checkout"
    files = [line[3:] for line in changed.splitlines()]
    if not files:
        return f"HEAD {head}, clean"
    names = ", ".join(os.path.relpath(f, "src/shoal") for f in files)
    return f"HEAD {head} + uncommitted changes in {names}"


# -- inner runs: inside the throwaway host namespace ---------------------------------------------


class Inner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.phase: str = args.phase
        self.tmp: str = args.inner
        self.nsfile = os.path.join(self.tmp, "hostns")
        self.outside = os.path.join(self.tmp, "outside")
        self.root = os.path.join(self.tmp, "root")
        self.run_dir = os.path.join(self.tmp, "run")
        self.figures: list[Figure] = []
        self.notes: list[str] = []
        self.profiles: list[tuple[str, str]] = []
        self.check_ns()
        sys.path.insert(0, SRC)
        self.env = cli_env(SRC, self.tmp)  # the CLI as an installed shoal runs
        self.session_env = {**os.environ, "PYTHONPATH": SRC}

    def check_ns(self) -> None:
        check_in(self.nsfile, self.args.outer_ns)

    def fig(self, name: str, value: str, target: str = "", ok: bool | None = None) -> None:
        self.figures.append(Figure(name, value, target, ok, self.phase))

    def save(self) -> None:
        with open(os.path.join(self.tmp, "results.json"), "w") as f:
            json.dump({"figures": [asdict(x) for x in self.figures], "notes": self.notes,
                       "profiles": self.profiles}, f)

    def main(self) -> int:
        status = 0
        try:
            if self.phase == "baseline":
                Baseline(self).main()
            else:
                status = BackendBench(self).main()
        except Exception as e:  # a figure missing is not a crash: report it
            self.notes.append(f"{self.phase} failed: {type(e).__name__}: {e}")
            status = 1
        self.save()
        return status


# 4: baselines ----------------------------------------------------------------------------------


class Baseline:
    def __init__(self, inner: Inner) -> None:
        self.inner = inner

    def main(self) -> None:
        inner = self.inner
        inner.check_ns()
        took = statistics.median(timed_run([cli_python(), "-c", "pass"], inner.env)[0]
                                 for _ in range(5))
        inner.fig("python -c pass (the CLI's interpreter), median of 5", ms(took))
        took = statistics.median(timed_run(["nft", "list", "tables"])[0] for _ in range(5))
        inner.fig("nft list tables (one nft process), median of 5", ms(took))
        self.iptables_per_rule(SMALL)
        for n in (SMALL, BIG):
            self.iptables_restore(n)
        for n in (SMALL, BIG):
            self.nft_map(n)

    @staticmethod
    def dnat(port: int) -> str:
        return (f"-A {BASE_CHAIN} -p tcp -m tcp --dport {port} "
                f"-j DNAT --to-destination {BASE_DEST}:{port}")

    def iptables_per_rule(self, n: int) -> None:
        self.inner.check_ns()
        run(["iptables", "-t", "nat", "-N", BASE_CHAIN])
        calls = []
        start = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            run(["iptables", "-t", "nat", *self.dnat(20000 + i).split()])
            calls.append(time.perf_counter() - t)
        total = time.perf_counter() - start
        count = self.count_dnat()
        w = min(50, n)
        self.inner.fig(f"(a) {n:,} x iptables -t nat -A (one process per rule)", secs(total))
        self.inner.fig(f"    per call: first {w} / last {w}, median",
                       f"{ms(statistics.median(calls[:w]))} / "
                       f"{ms(statistics.median(calls[-w:]))}")
        if count != n:
            self.inner.notes.append(f"baseline (a): {count} DNAT rules found, not {n}")
        run(["iptables", "-t", "nat", "-F", BASE_CHAIN])
        run(["iptables", "-t", "nat", "-X", BASE_CHAIN])

    def iptables_restore(self, n: int) -> None:
        self.inner.check_ns()
        script = "\n".join(["*nat", f":{BASE_CHAIN} - [0:0]",
                            *(self.dnat(20000 + i) for i in range(n)), "COMMIT"]) + "\n"
        took, _ = timed_run(["iptables-restore", "--noflush"], stdin=script)
        count = self.count_dnat()
        self.inner.fig(f"(b) iptables-restore --noflush of {n:,} DNAT rules", secs(took))
        if count != n:
            self.inner.notes.append(f"baseline (b): {count} DNAT rules found, not {n}")
        run(["iptables", "-t", "nat", "-F", BASE_CHAIN])
        run(["iptables", "-t", "nat", "-X", BASE_CHAIN])

    def nft_map(self, n: int) -> None:
        self.inner.check_ns()
        elements = ", ".join(f"tcp . {20000 + i} : {BASE_DEST} . {20000 + i}" for i in range(n))
        text = (f"table ip {BASE_TABLE} {{\n  map ports {{\n"
                "    type inet_proto . inet_service : ipv4_addr . inet_service;\n"
                f"    elements = {{ {elements} }}\n  }}\n}}\n")
        path = os.path.join(self.inner.tmp, "map.nft")
        with open(path, "w") as f:
            f.write(text)
        took, _ = timed_run(["nft", "-f", path])
        listed = json.loads(run(["nft", "-j", "list", "map", "ip", BASE_TABLE,
                                 "ports"]).stdout)
        count = sum(len(x["map"].get("elem", [])) for x in listed["nftables"] if "map" in x)
        self.inner.fig(f"(c) nft -f of a {n:,}-element map", secs(took))
        if count != n:
            self.inner.notes.append(f"baseline (c): {count} map elements found, not {n}")
        run(["nft", "delete", "table", "ip", BASE_TABLE])

    @staticmethod
    def count_dnat() -> int:
        out = run(["iptables-save", "-t", "nat"]).stdout
        return sum(1 for line in out.splitlines() if "-j DNAT" in line)


# 1, 2, 3, 5: one backend -----------------------------------------------------------------------


# What the one-port create/remove cycles are split into (module or class attributes, looked up
# at call time by the engine); names missing from this version of shoal are skipped.
BREAKDOWN = (
    "shoal.controller.containers:Containers.create",
    "shoal.ipam.hostports:HostPorts.allocate",
    "shoal.controller.sandboxes:Sandboxes.make",
    "shoal.netfilter:Netfilter.ensure_forwarding",
    "shoal.controller.containers:Containers.remove",
    "shoal.controller.containers:Containers._finish",
    "shoal.netfilter:Netfilter.container_elements",
    "shoal.netfilter:Netfilter.apply",
    "shoal.controller.sandboxes:Sandboxes.unmake",
    "shoal.controller.containers:Containers._delete",
)


class BackendBench:
    def __init__(self, inner: Inner) -> None:
        self.inner = inner
        self.backend = inner.phase
        self.nft = self.backend == "nftables"
        self.args = inner.args
        self.big_id: str | None = None
        self.server: subprocess.Popen[bytes] | None = None
        self.outside_made = False

    # -- helpers

    def shoal(self, *argv: str, env: dict[str, str] | None = None
              ) -> tuple[float, subprocess.CompletedProcess[str]]:
        self.inner.check_ns()
        cmd = [cli_python(), "-m", "shoal", "--root", self.inner.root, "--run-dir",
               self.inner.run_dir, "--firewall-backend", self.backend, *argv]
        return timed_run(cmd, env or self.inner.env)

    def engine(self) -> Any:
        from shoal.controller import Engine

        self.inner.check_ns()
        return Engine.open(self.inner.root, self.inner.run_dir, firewall_backend=self.backend)

    def rules(self) -> int:
        """Published ports live in the kernel: map elements (nftables) or DNAT rules
        (iptables)."""
        if self.nft:
            total = 0
            for name in ("ports_any", "ports_ip"):
                proc = subprocess.run(["nft", "-j", "list", "map", "ip", "shoal", name],
                                      capture_output=True, text=True, timeout=CMD_TIMEOUT)
                if proc.returncode != 0:
                    return -1
                data = json.loads(proc.stdout)["nftables"]
                total += sum(len(x["map"].get("elem", [])) for x in data if "map" in x)
            return total
        out = run(["iptables-save", "-t", "nat"]).stdout
        return sum(1 for line in out.splitlines() if "-j DNAT" in line)

    @property
    def rules_name(self) -> str:
        return "nft map elements (ports_any + ports_ip)" if self.nft else "iptables DNAT rules"

    def namespaces(self) -> set[tuple[int, int]]:
        out = {netns_id(self.inner.nsfile)}
        sandboxes = os.path.join(self.inner.run_dir, "netns")
        if os.path.isdir(sandboxes):
            for name in os.listdir(sandboxes):
                with suppress(OSError):
                    out.add(netns_id(os.path.join(sandboxes, name)))
        return out

    def procs(self) -> list[tuple[int, str]]:
        return processes_in(self.namespaces())

    # -- 1 (and 5): whole CLI processes

    def publish_cli(self, count: int, port_range: str, runs: int, target: float,
                    keep_last: bool) -> None:
        inner = self.inner
        times, rms, left_after_rm = [], [], []
        rules_seen: list[int] = []
        added: list[str] = []
        spec = f"{port_range}:{port_range}"
        for i in range(runs):
            base = {pid for pid, _ in self.procs()}
            took, proc = self.shoal("run", "-d", "-p", spec, "--", "sleep", "600")
            cid = proc.stdout.strip()
            times.append(took)
            rules_seen.append(self.rules())
            new = [f"{comm}" for pid, comm in self.procs() if pid not in base]
            added.append(f"{len(new)} ({', '.join(sorted(new))})")
            if keep_last and i == runs - 1:
                self.big_id = cid
                break
            took, _ = self.shoal("rm", "-f", cid)
            rms.append(took)
            left_after_rm.append(self.rules())
        med = statistics.median(times)
        what = f"run -d -p {port_range} ({count:,} ports), CLI"
        inner.fig(f"{what}, median of {runs}", secs(med), f"<= {target:g} s", med <= target)
        if runs > 1:
            inner.fig("    each run", ", ".join(f"{t:.3f}" for t in times) + " s")
        inner.fig(f"    {self.rules_name} after each run", ", ".join(map(str, set(rules_seen))),
                  f"{count}", all(r == count for r in rules_seen))
        inner.fig("    processes added by one run -d", added[-1], "no process per port",
                  all(int(a.split()[0]) <= 2 for a in added))
        if rms:
            inner.fig(f"rm -f of the {count:,}-port container, CLI, median of {len(rms)}",
                      secs(statistics.median(rms)))
            inner.fig("    rules left after rm -f", ", ".join(map(str, set(left_after_rm))), "0",
                      all(r == 0 for r in left_after_rm))

    def session_env_run(self) -> None:
        """The 1,000-port run once more with this session's environment as is, for
        information (PYTHONDONTWRITEBYTECODE makes every run recompile shoal)."""
        if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
            return
        took, proc = self.shoal("run", "-d", "-p", f"{SMALL_RANGE}:{SMALL_RANGE}", "--",
                                "sleep", "600", env=self.inner.session_env)
        self.shoal("rm", "-f", proc.stdout.strip())
        self.inner.fig(f"run -d ({SMALL:,} ports), session env as is (no bytecode cache)",
                       secs(took))

    # -- 2: one more port with 10,000 held

    def one_port(self) -> None:
        from ipaddress import IPv4Address

        from shoal.controller import RunSpec

        inner = self.inner
        engine = self.engine()
        try:
            held = len(engine.store.ports())
            # an iptables change rewrites every rule (about a second with 10,000): fewer cycles
            n = self.args.cycles if self.nft else min(self.args.cycles, 5)
            creates, removes, failures = [], [], []
            plain_creates: list[float] = []
            plain_removes: list[float] = []
            rules_mid = -1
            prof = cProfile.Profile() if self.args.profile else None
            split = None if prof else Breakdown(BREAKDOWN)
            steps: dict[str, dict[str, list[float]]] = {"create": {}, "remove": {}}
            if split:
                split.install()

            @contextmanager
            def measured(phase: str, out: list[float], keep: bool) -> Iterator[None]:
                if prof and keep:
                    prof.enable()
                start = time.perf_counter()
                try:
                    yield
                finally:
                    took = time.perf_counter() - start
                    if prof:
                        prof.disable()
                    calls = split.take() if split else {}
                    if keep:
                        out.append(took)
                        for name, times in calls.items():
                            steps[phase].setdefault(name, []).extend(times)

            try:
                for i in range(n + 1):  # the first cycle warms up
                    spec = RunSpec(cmd=["true"], publish=[ONE_PORT])
                    try:
                        with measured("create", creates, i > 0):
                            ctr = engine.create_container(spec)
                        if i == 1:
                            rules_mid = self.rules()
                        with measured("remove", removes, i > 0):
                            engine.remove_container(ctr.id)
                        # the same without -p: the sandbox alone, for reference
                        start = time.perf_counter()
                        ctr = engine.create_container(RunSpec(cmd=["true"]))
                        plain_creates.append(time.perf_counter() - start)
                        start = time.perf_counter()
                        engine.remove_container(ctr.id)
                        plain_removes.append(time.perf_counter() - start)
                        if split:
                            split.take()
                    except Exception as e:
                        failures.append(f"{type(e).__name__}: {e}")
            finally:
                if split:
                    split.uninstall()
            rules_after = self.rules()
            target = "<= 5 ms" if self.nft else ""
            for phase, label, times, plain in (
                    ("create", f"create_container -p {ONE_PORT} ({held:,} held)", creates,
                     plain_creates[1:]),
                    ("remove", f"remove_container of it ({held:,} held)", removes,
                     plain_removes[1:])):
                if not times:
                    continue
                med = statistics.median(times)
                inner.fig(f"{label}, median of {len(times)}", ms(med), target,
                          med <= 5e-3 if self.nft else None)
                if plain:
                    inner.fig(f"    same without -p (reference), median of {len(plain)}",
                              ms(statistics.median(plain)))
                order = [spec.split(":")[1] for spec in BREAKDOWN]
                for name, calls in sorted(steps[phase].items(),
                                          key=lambda kv: order.index(kv[0])):
                    if name.endswith(("create_container", "remove_container")):
                        continue
                    per = len(calls) / len(times)
                    inner.fig(f"    in it: {name}" + (f" (x{per:g})" if per != 1 else ""),
                              ms(statistics.median(calls)))
            inner.fig(f"    {self.rules_name} with it / after its removal",
                      f"{rules_mid} / {rules_after}", f"{held + 1} / {held}",
                      rules_mid == held + 1 and rules_after == held)
            if failures:
                inner.notes.append(f"{self.backend}: {len(failures)} of {n + 1} create/remove "
                                   f"cycles failed, first: {failures[0]}")
            if prof:
                self.profiles_add(f"{self.backend}: cProfile of {n} create_container + "
                                  "remove_container cycles", prof)

            # the firewall part alone: one element added, then removed
            from shoal.rules import Elements, PortMapping

            net = engine.network("bridge")
            adds, dels = [], []
            for i in range(n + 1):
                dest = IPv4Address(int(net.gateway) + 200 + (i % 50))
                one = Elements(ports=[PortMapping(4, "tcp", "0.0.0.0", 30001, str(dest), 80)])
                start = time.perf_counter()
                engine.netfilter.apply(added=one)
                added = time.perf_counter() - start
                start = time.perf_counter()
                engine.netfilter.apply(removed=one)
                removed = time.perf_counter() - start
                if i:
                    adds.append(added)
                    dels.append(removed)
            inner.fig(f"    firewall part: netfilter.apply +1 element, median of {n}",
                      ms(statistics.median(adds)), target,
                      statistics.median(adds) <= 5e-3 if self.nft else None)
            inner.fig(f"    firewall part: netfilter.apply -1 element, median of {n}",
                      ms(statistics.median(dels)), target,
                      statistics.median(dels) <= 5e-3 if self.nft else None)
            if self.nft:
                path = os.path.join(inner.tmp, "one.nft")
                with open(path, "w") as f:
                    f.write(f"add element ip shoal ports_any {{ tcp . 30001 : {dest} . 80 }}\n")
                runs = []
                for _ in range(5):
                    runs.append(timed_run(["nft", "-f", path])[0])
                    run(["nft", "delete", "element", "ip", "shoal", "ports_any",
                         "{ tcp . 30001 }"])
                inner.fig("    for comparison: nft -f adding 1 element (one process)",
                          ms(statistics.median(runs)))
        finally:
            engine.close()

    def profiles_add(self, label: str, prof: cProfile.Profile) -> None:
        self.inner.profiles.append((label + ", by own time", profile_text(prof, "tottime", 20)))
        self.inner.profiles.append((label + ", cumulative",
                                    profile_text(prof, "cumulative", 25)))

    # -- 3: connect time to the first and the last published port

    def make_outside(self) -> None:
        inner = self.inner
        inner.check_ns()
        open(inner.outside, "x").close()
        run(["unshare", f"--net={inner.outside}", "true"])
        self.outside_made = True
        if (netns_id(inner.outside) == netns_id(inner.nsfile)
                or ns_key(inner.outside) == self.args.outer_ns):
            raise RuntimeError("the outside namespace is not a new one; refusing to go on")
        run(["ip", "link", "add", OUT_HOST_IF, "type", "veth", "peer", "name", OUT_PEER_IF,
             "netns", inner.outside])
        run(["ip", "addr", "add", f"{OUT_HOST_IP}/24", "dev", OUT_HOST_IF])
        run(["ip", "link", "set", OUT_HOST_IF, "up"])
        there = ["nsenter", f"--net={inner.outside}", "--", "ip"]
        run([*there, "addr", "add", f"{OUT_PEER_IP}/24", "dev", OUT_PEER_IF])
        run([*there, "link", "set", OUT_PEER_IF, "up"])
        run([*there, "link", "set", "lo", "up"])

    def start_server(self) -> None:
        assert self.big_id is not None
        engine = self.engine()
        try:
            self.server = engine.exec(
                self.big_id, [sys.executable, "-c", SERVER, str(FIRST_PORT), str(LAST_PORT)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        finally:
            engine.close()
        assert self.server.stdout is not None
        ready, _, _ = select.select([self.server.stdout], [], [], 20)
        line = self.server.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            err = b""
            if self.server.poll() is not None and self.server.stderr is not None:
                err = self.server.stderr.read()
            raise RuntimeError(f"the server in the container did not start: {err[-300:]!r}")

    def stop_server(self) -> None:
        if self.server is None:
            return
        with suppress(OSError):
            if self.server.stdin is not None:
                self.server.stdin.close()
        try:
            self.server.wait(5)
        except subprocess.TimeoutExpired:
            self.server.kill()  # the process this script started, by its pid
            self.server.wait()
        self.server = None

    def connect_times(self) -> None:
        inner = self.inner
        self.make_outside()
        self.start_server()
        n = self.args.connects
        proc = run(["nsenter", f"--net={inner.outside}", "--", sys.executable, "-c", CLIENT,
                    OUT_HOST_IP, str(n), "50", str(FIRST_PORT), str(LAST_PORT)])
        data = json.loads(proc.stdout)
        first = statistics.median(data[str(FIRST_PORT)])
        last = statistics.median(data[str(LAST_PORT)])
        ratio = last / first
        target = "within 10%" if self.nft else "(grows with rules)"
        inner.fig(f"connect from outside to host:{FIRST_PORT} (1st of {BIG:,}), median of {n}",
                  us(first))
        inner.fig(f"connect from outside to host:{LAST_PORT} (last of {BIG:,}), median of {n}",
                  us(last))
        inner.fig("    last / first (medians)", f"{ratio:.2f}x", target,
                  abs(ratio - 1) <= 0.10 if self.nft else None)
        paired = statistics.median(b - a for a, b in zip(data[str(FIRST_PORT)],
                                                         data[str(LAST_PORT)], strict=True))
        inner.fig("    last - first, median of the paired (adjacent) connects", us(paired))
        self.stop_server()

    # -- 5: removing the 10,000-port container

    def remove_big(self) -> None:
        assert self.big_id is not None
        base = len(self.procs())
        took, _ = self.shoal("rm", "-f", self.big_id)
        self.big_id = None
        left = self.rules()
        self.inner.fig(f"rm -f of the {BIG:,}-port container, CLI (held since step 1)",
                       secs(took))
        self.inner.fig(f"    {self.rules_name} left", str(left), "0", left == 0)
        gone = base - len(self.procs())
        self.inner.fig("    processes gone with it", str(gone), "2 (supervisor, command)",
                       gone == 2)

    # -- the profile of the whole engine path of `run -d` / `rm -f`, in-process

    def profile_engine(self) -> None:
        from shoal.controller import RunSpec

        engine = self.engine()
        prof = cProfile.Profile()
        try:
            for label, count, port_range in (("1,000", SMALL, SMALL_RANGE),
                                             ("10,000", BIG, BIG_RANGE)):
                spec = RunSpec(cmd=["sleep", "600"], publish=[f"{port_range}:{port_range}"])
                prof = cProfile.Profile()
                prof.enable()
                start = time.perf_counter()
                ctr = engine.run_detached(spec)
                took = time.perf_counter() - start
                prof.disable()
                self.profiles_add(f"{self.backend}: cProfile of Engine.run_detached with "
                                  f"{label} ports (in-process, {took:.3f} s under the "
                                  "profiler)", prof)
                prof = cProfile.Profile()
                prof.enable()
                start = time.perf_counter()
                engine.remove_container(ctr.id, force=True)
                took = time.perf_counter() - start
                prof.disable()
                self.profiles_add(f"{self.backend}: cProfile of Engine.remove_container "
                                  f"-f with {label} ports ({took:.3f} s under the profiler)",
                                  prof)
                if self.rules() != 0:
                    self.inner.notes.append(f"profile run: rules left after removing the "
                                            f"{count}-port container")
        finally:
            engine.close()

    # -- driving it

    def cleanup(self) -> None:
        """Stop what this phase started: the server, the containers (through shoal, then by
        pid if shoal could not), the outside namespace."""
        self.stop_server()
        from shoal.runtime import pids

        with suppress(Exception):
            engine = self.engine()
            try:
                for ctr in engine.store.containers():
                    try:
                        engine.remove_container(ctr.id, force=True)
                    except Exception as e:
                        self.inner.notes.append(f"cleanup: rm -f {ctr.name}: {e}")
                    for pid, start in ((ctr.pid, ctr.pid_start),
                                       (ctr.supervisor_pid, ctr.supervisor_start)):
                        if pid and pids.alive(pid, start):
                            with suppress(ProcessLookupError):
                                os.kill(pid, signal.SIGKILL)
            finally:
                engine.close()
        if self.outside_made:
            subprocess.run(["umount", self.inner.outside], capture_output=True, timeout=60)

    def main(self) -> int:
        inner = self.inner
        status = 0
        steps: list[tuple[str, Callable[[], None]]] = [
            ("warm-up", self.warm_up),
            ("1,000 ports", lambda: self.publish_cli(SMALL, SMALL_RANGE, self.args.runs, 0.3,
                                                     keep_last=False)),
            ("session env", self.session_env_run),
            ("10,000 ports", lambda: self.publish_cli(BIG, BIG_RANGE, self.args.big_runs, 2.0,
                                                      keep_last=True)),
            ("one more port", self.one_port),
            ("connect", self.connect_times),
            ("remove", self.remove_big),
        ]
        if self.args.profile:
            steps.append(("profile", self.profile_engine))
        try:
            for name, step in steps:
                if name in ("connect", "remove") and self.big_id is None:
                    inner.notes.append(f"{self.backend}: {name} skipped (no 10,000-port "
                                       "container)")
                    continue
                sys.stderr.write(f"[{self.backend}] {name}\n")
                try:
                    step()
                except Exception as e:
                    inner.notes.append(f"{self.backend}: {name} failed: "
                                       f"{type(e).__name__}: {e}")
                    status = 1
        finally:
            self.cleanup()
        return status

    def warm_up(self) -> None:
        """Builtin networks and shoal's tables exist, bytecode is cached."""
        self.shoal("network", "ls")
        took, proc = self.shoal("run", "-d", "-p", "20000:20000", "--", "sleep", "600")
        self.shoal("rm", "-f", proc.stdout.strip())
        took2, _ = self.shoal("network", "ls")
        self.inner.fig("shoal network ls (CLI floor: interpreter + imports + Engine)",
                       ms(took2))


# -- entry ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("nftables", "iptables", "both"), default="both",
                   help="firewall backend(s) to measure (default both)")
    p.add_argument("--runs", type=int, default=5,
                   help="runs of the 1,000-port `run -d` (default 5)")
    p.add_argument("--big-runs", type=int, default=3,
                   help="runs of the 10,000-port `run -d` (default 3)")
    p.add_argument("--cycles", type=int, default=20,
                   help="create/remove cycles of a one-port container (default 20; "
                   "at most 5 with iptables)")
    p.add_argument("--connects", type=int, default=2000,
                   help="TCP connects to each of the first and the last port, interleaved "
                   "(default 2000)")
    p.add_argument("--no-baseline", action="store_true", help="skip the baselines")
    p.add_argument("--profile", action="store_true",
                   help="cProfile the one-port cycles and Engine.run_detached / "
                   "remove_container with 1,000 and 10,000 ports, and print the hot spots")
    p.add_argument("--inner", metavar="TMP", help=argparse.SUPPRESS)
    p.add_argument("--phase", help=argparse.SUPPRESS)
    p.add_argument("--outer-ns", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if min(args.runs, args.big_runs, args.cycles, args.connects) < 1:
        p.error("counts must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.inner:
            if not args.outer_ns:
                raise SystemExit("--inner needs --outer-ns")
            return Inner(args).main()
        return outer(args)
    except KeyboardInterrupt:  # the cleanup has run in the finally blocks
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
