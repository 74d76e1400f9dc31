"""Attach/detach benchmark for shoal, run on demand: `python3 bench/attach.py [--count N]`.

Everything happens inside a throwaway network namespace that this script creates and removes
itself, with its own shoal root and run directory in a temporary directory; the machine's own
network namespace is never touched. The script re-executes itself under
`nsenter --net=<throwaway namespace>` (the "inner" run), so the engine's host namespace, the
bridges and every veth's host end live there.

It prints its figures beside the targets of the issue and never fails on timing:

1. attach: `Engine.create_container(RunSpec(cmd=["true"], network="bridge"))` in-process
   (sandbox + veth + address + route + bridge port), N times on one bridge;
2. detach: `Engine.remove_container(id)` for each of them, then how long the kernel takes
   until no vsh* veth is left in the host namespace;
3. baseline: the same attach done with one `ip` command per step, on a separate bridge;
4. `shoal network ls` and 5. `shoal run --rm --network bridge -- true` as whole processes,
   less the cost of `nsenter --net=FILE true` alone.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from common import (
    Breakdown,
    Figure,
    check_in,
    cli_env,
    figure_table,
    make_host_ns,
    ms,
    p90,
    profile_text,
    progress,
    remove_cgroups,
    remove_tmp,
    run,
)

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")

BASE_BRIDGE = "bbench0"  # the baseline's bridge; not a shoal name (sh-*, vsh*, shoal0)
BASE_NET = "10.213"  # the baseline's /16, only ever inside the throwaway namespace
CMD_TIMEOUT = 60.0
CLEANUP_POLL = 10.0


# -- small helpers -----------------------------------------------------------------------------




# What --breakdown times, by wrapping these functions (module or class attributes, looked up
# at call time by the engine) for the attach and the detach loops.
BREAKDOWN = (
    "shoal.controller.containers:Containers.create",
    "shoal.controller.containers:Containers._resolve_mode",
    "shoal.store:Store.name_taken",
    "shoal.store:Store.add_container",
    "shoal.controller.sandboxes:Sandboxes.allocate",
    "shoal.store:Store.ip_in_use",
    "shoal.ipam.addresses:allocate",
    "shoal.store:Store.add_endpoint",
    "shoal.controller.sandboxes:Sandboxes.make",
    "shoal.controller.files:write_container_files",
    "shoal.kernel.ns:create_netns",
    "shoal.kernel.links:ensure_bridge_up",
    "shoal.kernel.links:add_veth_endpoint",
    "shoal.controller.containers:Containers.remove",
    "shoal.store:Store.container",
    "shoal.store:Store.sharing_sandbox",
    "shoal.kernel.ns:remove_netns",
    "shoal.controller.containers:Containers._delete",
)


# -- outer run: make the throwaway namespace, run the inner part in it, clean up ---------------


def outer(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("bench/attach.py needs root (network namespaces, mounts)", file=sys.stderr)
        return 1
    tmp = os.path.realpath(tempfile.mkdtemp(prefix="shoal-bench-"))
    child: subprocess.Popen[bytes] | None = None
    try:
        nsfile = make_host_ns(tmp)
        inner_cmd = [
            "nsenter", f"--net={nsfile}", "--", sys.executable, os.path.abspath(__file__),
            "--inner", tmp, "--count", str(args.count), "--baseline-count",
            str(args.baseline_count), "--runs", str(args.runs), "--window", str(args.window),
        ]
        inner_cmd += [flag for flag in ("--profile", "--breakdown")
                      if getattr(args, flag[2:])]
        child = subprocess.Popen(inner_cmd)
        return child.wait()
    finally:
        if child is not None and child.poll() is None:
            child.kill()  # only the process this script started, by its pid
            child.wait()
        for path in remove_cgroups(SRC, os.path.join(tmp, "run")):
            print(f"WARNING: cgroup left: {path}", file=sys.stderr)
        left = remove_tmp(tmp)
        if left:
            print(f"WARNING: still mounted: {' '.join(left)}", file=sys.stderr)


# -- inner run: inside the throwaway host namespace ---------------------------------------------


class Inner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp: str = args.inner
        self.nsfile = os.path.join(self.tmp, "hostns")
        self.root = os.path.join(self.tmp, "root")
        self.run_dir = os.path.join(self.tmp, "run")
        self.figures: list[Figure] = []
        self.notes: list[str] = []
        self.profiles: list[tuple[str, cProfile.Profile]] = []
        self.breakdown = Breakdown(BREAKDOWN) if args.breakdown else None
        self.breakdowns: list[tuple[str, dict[str, list[float]]]] = []
        self.attach_median: float | None = None
        self.load_at_start = os.getloadavg()
        self.check_ns()
        sys.path.insert(0, SRC)

    def check_ns(self) -> None:
        check_in(self.nsfile)

    @contextmanager
    def maybe_profiled(self, label: str) -> Iterator[None]:
        if not self.args.profile:
            yield
            return
        prof = cProfile.Profile()
        prof.enable()
        try:
            yield
        finally:
            prof.disable()
            self.profiles.append((label, prof))

    # 1 + 2: attach and detach through the engine, in-process

    def engine_phase(self) -> None:
        from shoal.controller import Engine, RunSpec
        from shoal.kernel import links

        n, w = self.args.count, min(self.args.window, self.args.count)
        engine = Engine.open(self.root, self.run_dir)
        try:
            self.check_ns()
            if self.breakdown:
                self.breakdown.install()
            ids: list[str] = []
            attach: list[float] = []
            with self.maybe_profiled("attach"):
                t0 = time.perf_counter()
                for i in range(n):
                    spec = RunSpec(cmd=["true"], network="bridge", name=f"bench-{i}")
                    start = time.perf_counter()
                    ctr = engine.create_container(spec)
                    attach.append(time.perf_counter() - start)
                    ids.append(ctr.id)
                    progress("attach", i + 1, n)
                total = time.perf_counter() - t0
            if self.breakdown:
                self.breakdowns.append(("attach", self.breakdown.take()))

            net = engine.network("bridge")
            host_links = links.list_links(engine.host)
            bridge = next(lk for lk in host_links if lk.name == net.bridge)
            ports = sum(1 for lk in host_links if lk.master == bridge.index)
            self.notes.append(f"bridge {net.bridge} ({net.subnet}) had {ports} ports after "
                              f"{n} attaches")

            first, last = statistics.median(attach[:w]), statistics.median(attach[-w:])
            med = self.attach_median = statistics.median(attach)
            self.figures += [
                Figure("attach, median", ms(med), "<= 5 ms", med <= 5e-3),
                Figure("attach, p90", ms(p90(attach))),
                Figure("attach, very first call", ms(attach[0])),
                Figure(f"attach #1 (median of first {w})", ms(first)),
                Figure(f"attach #{n} (median of last {w})", ms(last)),
                Figure(f"attach #{n} / #1", f"{last / first:.2f}x", "<= 2x", last <= 2 * first),
                Figure(f"{n} containers on one bridge", f"{total:.2f} s",
                       f"<= {10 * n / 1000:g} s", total <= 10 * n / 1000),
            ]

            detach: list[float] = []
            with self.maybe_profiled("detach"):
                for i, cid in enumerate(ids):
                    start = time.perf_counter()
                    engine.remove_container(cid)
                    detach.append(time.perf_counter() - start)
                    progress("detach", i + 1, n)
            done = time.perf_counter()
            if self.breakdown:
                self.breakdowns.append(("detach", self.breakdown.take()))
                self.breakdown.uninstall()
            self.check_ns()

            def vsh_left() -> int:
                return sum(1 for lk in links.list_links(engine.host) if lk.name.startswith("vsh"))

            left_at_end = vsh_left()
            left = left_at_end
            while left and time.perf_counter() - done < CLEANUP_POLL:
                time.sleep(0.01)
                left = vsh_left()
            gone_after = time.perf_counter() - done
            med = statistics.median(detach)
            self.figures += [
                Figure("detach, median", ms(med), "<= 2 ms", med <= 2e-3),
                Figure("detach, p90", ms(p90(detach))),
            ]
            if left:
                cleanup = f"{left} of {n} left"
            else:
                cleanup = f"{gone_after * 1e3:.0f} ms"
            self.figures.append(Figure("kernel cleanup: last vsh* veth gone after", cleanup,
                                       f"<= {CLEANUP_POLL:g} s", left == 0))
            self.notes.append(f"{left_at_end} of {n} vsh* veths were still in the host "
                              "namespace when the last detach returned")
            remaining = engine.store.containers()
            if remaining:
                self.notes.append(f"{len(remaining)} containers still in the store after detach")
        finally:
            if self.breakdown:
                self.breakdown.uninstall()
            engine.close()

    # 2b: the kernel's own part, through shoal's netlink client, without the engine

    def kernel_phase(self) -> None:
        """The same attaches made with nothing but the kernel calls (namespace, veth pair,
        address, route, bridge port) on a bridge of their own: what no userspace can go
        below, and how much of the growth from the 1st to the Nth attach is the kernel's."""
        from ipaddress import IPv4Interface

        from shoal.kernel import links, ns
        from shoal.kernel.netlink import Netlink

        self.check_ns()
        n, w = self.args.count, min(self.args.window, self.args.count)
        kdir = os.path.join(self.run_dir, "kernel-only")
        os.makedirs(kdir)
        host = Netlink()
        host_fd = ns.current_netns_fd()
        bridge = "shk0"
        made: list[str] = []
        times: list[float] = []
        try:
            index = links.create_bridge(host, bridge, IPv4Interface("10.99.0.1/16"))
            for i in range(n):
                path = os.path.join(kdir, f"k{i}")
                iface = IPv4Interface(f"10.99.{(i + 2) // 256}.{(i + 2) % 256}/16")
                start = time.perf_counter()
                sandbox = ns.create_netns(path, Netlink)
                made.append(path)
                try:
                    mac = "02:42:" + ":".join(f"{b:02x}" for b in iface.ip.packed)
                    links.add_veth_endpoint(sandbox, host, host_fd, "eth0", f"vshk{i}", mac,
                                            iface, iface.network[1], index, first=True,
                                            fresh=True)
                finally:
                    sandbox.close()
                times.append(time.perf_counter() - start)
                progress("kernel only", i + 1, n)
        finally:
            for path in made:
                ns.remove_netns(path)
            links.delete_link(host, bridge)
            host.close()
            os.close(host_fd)
        first, last = statistics.median(times[:w]), statistics.median(times[-w:])
        self.figures += [
            Figure("kernel only (netns, veth, address, route, port), median", ms(
                statistics.median(times))),
            Figure(f"kernel only #1 / #{n} (medians of {w})", f"{ms(first)} / {ms(last)}"),
            Figure(f"kernel only #{n} / #1", f"{last / first:.2f}x"),
        ]

    # 3: baseline, one `ip` command per step

    def baseline_phase(self, shoal_median: float | None) -> None:
        self.check_ns()
        n = self.args.baseline_count
        bdir = os.path.join(self.tmp, "baseline")
        os.makedirs(bdir)
        files: list[str] = []
        times: list[float] = []
        run(["ip", "link", "add", BASE_BRIDGE, "type", "bridge"])
        try:
            run(["ip", "addr", "add", f"{BASE_NET}.0.1/16", "dev", BASE_BRIDGE])
            run(["ip", "link", "set", BASE_BRIDGE, "up"])
            for i in range(n):
                cfile = os.path.join(bdir, f"c{i}")
                host_if, peer_if = f"bvh{i}", f"bvc{i}"
                addr = f"{BASE_NET}.{(i + 2) // 256}.{(i + 2) % 256}/16"
                inside = ["nsenter", f"--net={cfile}", "ip"]
                start = time.perf_counter()
                open(cfile, "x").close()
                files.append(cfile)
                run(["unshare", f"--net={cfile}", "true"])
                run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", peer_if])
                run(["ip", "link", "set", peer_if, "netns", cfile])
                run([*inside, "addr", "add", addr, "dev", peer_if])
                run([*inside, "link", "set", "lo", "up"])
                run([*inside, "link", "set", peer_if, "up"])
                run([*inside, "route", "add", "default", "via", f"{BASE_NET}.0.1"])
                run(["ip", "link", "set", host_if, "master", BASE_BRIDGE, "up"])
                times.append(time.perf_counter() - start)
                progress("baseline", i + 1, n)
        finally:
            for cfile in files:
                subprocess.run(["umount", "-l", cfile], capture_output=True, timeout=CMD_TIMEOUT)
                os.unlink(cfile)
            self.check_ns()
            subprocess.run(["ip", "link", "del", BASE_BRIDGE], capture_output=True,
                           timeout=CMD_TIMEOUT)
        med = statistics.median(times)
        self.figures.append(Figure(f"baseline ip-per-step attach, median of {n}", ms(med)))
        if shoal_median:
            self.figures.append(Figure("baseline / shoal attach", f"{med / shoal_median:.1f}x"))

    # 4 + 5: whole `shoal` processes

    def timed(self, cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
        """Median wall time of `runs` runs after one warm-up; and the first failure, if any."""
        runs = []
        error = ""
        for i in range(self.args.runs + 1):
            start = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, timeout=CMD_TIMEOUT)
            took = time.perf_counter() - start
            if proc.returncode != 0 and not error:
                error = f"exit {proc.returncode}: {proc.stderr.decode(errors='replace').strip()}"
            if i:
                runs.append(took)
        return statistics.median(runs), error

    def cli_phase(self) -> None:
        """Whole shoal processes, twice: as an installed `shoal` runs (a clean venv in the temp
        dir, so none of this machine's site-packages .pth files run; bytecode cached under the
        temp dir; the `shoal` console script exactly as pip writes it), which is the figure
        held against the target, with `python -m shoal` beside it; and with this session's own
        interpreter and environment, for information."""
        self.check_ns()
        venv = os.path.join(self.tmp, "venv")
        run([sys.executable, "-m", "venv", "--without-pip", venv])
        clean_py = os.path.join(venv, "bin", "python3")
        script = os.path.join(venv, "bin", "shoal")
        with open(script, "w") as f:  # pip's console-script template (pip 23.3 and later)
            f.write(f"#!{clean_py}\nimport sys\nfrom shoal.cli.main import main\n"
                    "if __name__ == '__main__':\n"
                    "    sys.argv[0] = sys.argv[0].removesuffix('.exe')\n"
                    "    sys.exit(main())\n")
        os.chmod(script, 0o755)
        clean_env = cli_env(SRC, self.tmp)
        session_env = {**os.environ, "PYTHONPATH": SRC}
        enter = ["nsenter", f"--net={self.nsfile}", "--"]
        state = ["--root", self.root, "--run-dir", self.run_dir]
        n = self.args.runs

        bare, _ = self.timed([*enter, "true"], clean_env)
        self.figures.append(Figure("nsenter --net=FILE true (subtracted below)", ms(bare)))
        floor, _ = self.timed([*enter, clean_py, "-c", "pass"], clean_env)
        self.figures.append(Figure("python3 -c pass (clean venv)", ms(floor - bare)))
        cases: list[tuple[str, list[str], float]] = [
            ("shoal network ls", ["network", "ls"], 60e-3),
            ("shoal run --rm --network bridge -- true",
             ["run", "--rm", "--network", "bridge", "--", "true"], 150e-3),
        ]
        for label, argv, target in cases:
            took, error = self.timed([*enter, script, *state, *argv], clean_env)
            own = took - bare
            self.figures.append(Figure(f"{label}, median of {n}", ms(own),
                                       f"<= {target * 1e3:.0f} ms", own <= target and not error))
            if error:
                self.notes.append(f"{label} failed: {error}")
        for label, argv, _target in cases:
            took, error = self.timed([*enter, clean_py, "-m", "shoal", *state, *argv], clean_env)
            self.figures.append(Figure(f"{label}, as python -m shoal", ms(took - bare)))
            if error:
                self.notes.append(f"{label} (python -m shoal) failed: {error}")
        for label, argv, _target in cases:
            took, error = self.timed([*enter, sys.executable, "-m", "shoal", *state, *argv],
                                     session_env)
            self.figures.append(Figure(f"{label}, session python as is", ms(took - bare)))
            if error:
                self.notes.append(f"{label} (session python) failed: {error}")
        why = []
        if os.environ.get("PYTHONDONTWRITEBYTECODE"):
            why.append("PYTHONDONTWRITEBYTECODE is set, so every run recompiles shoal")
        pth = [f for f in os.listdir(sysconfig.get_paths()["purelib"]) if f.endswith(".pth")]
        if pth:
            why.append(f"site-packages runs {', '.join(sorted(pth))} at every start")
        if why:
            self.notes.append("'session python as is' differs from the clean venv because "
                              + "; ".join(why))
        containers = self._store_containers()
        if containers:
            self.notes.append(f"containers left after the CLI runs: {', '.join(containers)}")

    def _store_containers(self) -> list[str]:
        from shoal.store import Store

        store = Store(self.root)
        try:
            return [c.name for c in store.containers()]
        finally:
            store.close()

    # report

    def report(self) -> None:
        print(f"python {platform.python_version()} ({sys.executable})")
        load = ", ".join(f"{x:.2f}" for x in self.load_at_start)
        print(f"kernel {platform.release()} ({platform.machine()}), {os.cpu_count()} cpus, "
              f"load average at start {load}")
        print(f"count {self.args.count}, baseline {self.args.baseline_count}, "
              f"cli runs {self.args.runs}" + (", UNDER cProfile" if self.args.profile else ""))
        print()
        for line in figure_table(self.figures):
            print(line)
        for note in self.notes:
            print(f"note: {note}")
        w = min(self.args.window, self.args.count)
        for label, calls in self.breakdowns:
            print(f"\n--- where {label} time goes: median per call, first {w} / last {w} calls "
                  "(rows nest) ---")
            width = max(len(k) for k in calls)
            print(f"{'function':<{width}}  {'calls':>6}  {'first':>9}  {'last':>9}  {'total':>8}")
            for name, times in calls.items():
                first = statistics.median(times[:w])
                last = statistics.median(times[-w:])
                print(f"{name:<{width}}  {len(times):>6}  {first * 1e3:>6.3f} ms  "
                      f"{last * 1e3:>6.3f} ms  {sum(times):>6.2f} s")
        for label, prof in self.profiles:
            print(f"\n--- cProfile of {label}, by own time ---")
            print(profile_text(prof, "tottime", 25))

    def main(self) -> int:
        steps: list[tuple[str, Callable[[], None]]] = [
            ("engine", self.engine_phase),
            ("kernel", self.kernel_phase),
            ("baseline", lambda: self.baseline_phase(self.attach_median)),
            ("cli", self.cli_phase),
        ]
        status = 0
        for name, step in steps:
            try:
                step()
            except Exception as e:  # report and go on: a figure missing is not a crash
                self.notes.append(f"{name} phase failed: {type(e).__name__}: {e}")
                status = 1
        self.report()
        return status


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=1000,
                   help="containers attached to one bridge (default 1000; the /16 fits ~65000)")
    p.add_argument("--baseline-count", type=int, default=50,
                   help="containers attached with one ip command per step (default 50)")
    p.add_argument("--runs", type=int, default=20,
                   help="runs of each whole shoal command (default 20)")
    p.add_argument("--window", type=int, default=20,
                   help="attaches whose median is the first / the last attach (default 20)")
    p.add_argument("--profile", action="store_true",
                   help="run attach and detach under cProfile and print the top functions")
    p.add_argument("--breakdown", action="store_true",
                   help="time the engine's main steps (wrapped in-process) and print where "
                   "attach and detach time goes")
    p.add_argument("--inner", metavar="TMP", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.count < 1 or args.baseline_count < 1 or args.runs < 1 or args.window < 1:
        p.error("counts must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.inner:
        return Inner(args).main()
    return outer(args)


if __name__ == "__main__":
    raise SystemExit(main())
