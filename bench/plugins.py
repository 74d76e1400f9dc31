"""shoal under the real engines, side by side with their own networking, run on demand:
`python3 bench/plugins.py [--runs N] [--ports N] [--engines podman,docker]`.

Everything happens in throwaway network namespaces this script makes (a "host" and an
"outside" joined by a veth on 198.51.100.0/24) and removes; Podman and dockerd run in the
host namespace and private mount namespaces, with every path they write under one temporary
directory (bench/podman.py, bench/dockerd.py). Figures, printed, never asserted:

Podman (4.3, CNI backend): the reference `bridge` + `portmap` plugins against shoal-cni:
1. `podman run --rm NET true`, median of N, with only NET configured (Podman asks every
   configured network's plugins for their VERSION at each ADD and DEL);
2. one container with P scattered published ports: `run -d` and `rm -f`;
3. the first packet's cost at the last of those ports against the first (TCP connect from
   the outside namespace, median): a chain of DNAT rules grows with the ports, a map doesn't.
Docker (20.10): dockerd's bridge driver against the shoal driver (`shoal plugin serve`):
4. `docker run --rm NET true`, median of N;
5. a P-port range published by one container: `run -d`, `rm -f`, and the processes it adds
   besides the container's own shim and process (docker-proxy, one per port and family)."""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from common import SRC, Figure, cli_python, figure_table, ms

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import dockerd as dockerd_mod  # noqa: E402  (bench/ is not a package)
import podman as podman_mod  # noqa: E402

HOST_ADDR, OUTSIDE_ADDR = "198.51.100.2", "198.51.100.1"
ENGINES = ("podman", "docker")
SERVE = ("nc", "-ll", "-p", "80", "-e", "echo", "hello")


def secs(seconds: float) -> str:
    return f"{seconds:.2f} s"


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class Lab:
    """The host and outside namespaces, as tests/integration/harness.py makes them."""

    def __init__(self, tmp: str) -> None:
        self.tmp = tmp
        self.ns = os.path.join(tmp, "host.ns")
        self.outside = os.path.join(tmp, "outside.ns")
        self.root = os.path.join(tmp, "shoal-root")
        self.run_dir = os.path.join(tmp, "shoal-run")
        self.resolv = os.path.join(tmp, "resolv.conf")

    def ip(self, ns: str, *args: str) -> None:
        subprocess.run(["nsenter", f"--net={ns}", "ip", *args], check=True)

    def setup(self) -> None:
        with open(self.resolv, "w") as f:
            f.write(f"nameserver {OUTSIDE_ADDR}\n")
        for path in (self.ns, self.outside):
            open(path, "w").close()
            subprocess.run(["unshare", f"--net={path}", "true"], check=True)
            self.ip(path, "link", "set", "lo", "up")
        self.ip(self.ns, "link", "add", "eth0", "type", "veth", "peer", "name", "uplink")
        self.ip(self.ns, "link", "set", "uplink", "netns", self.outside)
        self.ip(self.ns, "addr", "add", f"{HOST_ADDR}/24", "dev", "eth0")
        self.ip(self.ns, "link", "set", "eth0", "up")
        self.ip(self.ns, "route", "add", "default", "via", OUTSIDE_ADDR)
        self.ip(self.outside, "addr", "add", f"{OUTSIDE_ADDR}/24", "dev", "uplink")
        self.ip(self.outside, "link", "set", "uplink", "up")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(PYTHONPATH=SRC, SHOAL_ROOT=self.root, SHOAL_RUN_DIR=self.run_dir,
                   SHOAL_RESOLV_CONF=self.resolv)
        return env

    def shoal(self, *args: str) -> str:
        return subprocess.run(["nsenter", f"--net={self.ns}", cli_python(), "-m", "shoal",
                               *args], env=self.env(), check=True, capture_output=True,
                              text=True).stdout

    def connect_times(self, port: int, count: int) -> list[float]:
        """Seconds per TCP connect from the outside namespace to the host's PORT."""
        code = ("import socket, sys, time\n"
                "out = []\n"
                f"for _ in range({count}):\n"
                "    t = time.perf_counter()\n"
                f"    s = socket.create_connection(('{HOST_ADDR}', {port}), timeout=5)\n"
                "    out.append(time.perf_counter() - t)\n"
                "    s.close()\n"
                "print(' '.join(map(str, out)))\n")
        res = subprocess.run(["nsenter", f"--net={self.outside}", sys.executable, "-c", code],
                             capture_output=True, text=True, timeout=300, check=True)
        return [float(x) for x in res.stdout.split()]

    def cleanup(self) -> None:
        """Kill, by PID, every process left in the two namespaces (shoal's resolver, say),
        then let the namespaces go."""
        inodes = set()
        for path in (self.ns, self.outside):
            with suppress(OSError):
                inodes.add(f"net:[{os.stat(path).st_ino}]")
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                with suppress(OSError):
                    if os.readlink(f"/proc/{entry}/ns/net") in inodes:
                        os.kill(int(entry), signal.SIGKILL)
        for path in (self.ns, self.outside):
            subprocess.run(["umount", path], capture_output=True)


def scattered(count: int, seed: int = 11) -> list[int]:
    """COUNT host ports spread over 20000-59999, none next to another."""
    rng = random.Random(seed)
    return sorted(rng.sample(range(20000, 60000, 2), count))


class PodmanBench:
    NETS = {
        "reference": [
            {"type": "bridge", "bridge": "cni-ref0", "isGateway": True, "ipMasq": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.89.0.0/24"}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}}],
        "shoal-cni": [
            {"type": "shoal-cni", "bridge": "cni-shoal0", "isGateway": True, "ipMasq": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.90.0.0/24"}]],
                      "routes": [{"dst": "0.0.0.0/0"}]},
             "capabilities": {"portMappings": True}}],
    }

    def __init__(self, lab: Lab, args: argparse.Namespace) -> None:
        self.lab = lab
        self.args = args
        self.figures: list[Figure] = []
        # shoal's directories in the config: Podman runs the DEL of its cleanup without the
        # environment it gave the ADD (SHOAL_ROOT would not reach it)
        self.NETS = {**self.NETS, "shoal-cni": [
            {**self.NETS["shoal-cni"][0], "shoal": {"root": lab.root, "runDir": lab.run_dir}}]}
        self.podman = podman_mod.Podman(
            Path(lab.tmp), lab.ns, lab.env(),
            [podman_mod.shoal_cni_dir(cli_python()), podman_mod.REFERENCE_PLUGINS])

    def fig(self, name: str, value: str, target: str = "", ok: bool | None = None) -> None:
        self.figures.append(Figure(name, value, target, ok, phase="podman"))

    def main(self) -> None:
        p = self.podman
        p.start()
        try:
            # each side is measured with only its own network configured, as on a machine
            # that switched: Podman asks every plugin of every configured network for its
            # VERSION before each ADD and each DEL
            runs = {}
            for name in self.NETS:
                self.configure_only(name)
                runs[name] = self.run_rm(name)
            ref, ours = runs["reference"], runs["shoal-cni"]
            for name, value in runs.items():
                self.fig(f"podman run --rm true, {name} (median of {self.args.runs})",
                         ms(value))
            self.fig("shoal-cni's run against the reference's", f"{ours / ref:.2f}x",
                     "<= 1.00x", ours <= ref * 1.0)
            for name in ("shoal-cni", "reference"):
                if name == "reference" and self.args.skip_reference_ports:
                    continue
                self.configure_only(name)
                self.many_ports(name)
        finally:
            notes = p.stop()
            for note in notes:
                print(f"podman teardown: {note}")

    def configure_only(self, net: str) -> None:
        for conf in self.podman.conf_dir.glob("*.conflist"):
            conf.unlink()
        self.podman.add_network(net, self.NETS[net])

    def run_rm(self, net: str) -> float:
        argv = ["--rm", "--network", net, podman_mod.IMAGE, "true"]
        self.podman.run(*argv)  # warm
        times = [timed(lambda: self.podman.run(*argv)) for _ in range(self.args.runs)]
        return statistics.median(times)

    def many_ports(self, net: str) -> None:
        ports = scattered(self.args.ports)
        flags = [arg for port in ports for arg in ("-p", f"{port}:80")]
        name = f"ports-{net}"
        start = timed(lambda: self.podman.run("-d", "--name", name, "--network", net, *flags,
                                              podman_mod.IMAGE, *SERVE))
        # interleaved, so that whatever drifts during the run weighs on both alike
        firsts: list[float] = []
        lasts: list[float] = []
        for _ in range(5):
            firsts += self.lab.connect_times(ports[0], 20)
            lasts += self.lab.connect_times(ports[-1], 20)
        first, last = statistics.median(firsts), statistics.median(lasts)
        remove = timed(lambda: self.podman.podman("rm", "-f", "-t", "0", name, timeout=900))
        n = len(ports)
        fast = net == "shoal-cni"
        self.fig(f"{n} scattered ports, {net}: run -d", secs(start),
                 "<= 1 s" if fast else "", start <= 1.0 if fast else None)
        self.fig(f"{n} scattered ports, {net}: rm -f", secs(remove),
                 "<= 1 s" if fast else "", remove <= 1.0 if fast else None)
        self.fig(f"{n} scattered ports, {net}: connect to port 1 / port {n}",
                 f"{first * 1e6:.0f} us / {last * 1e6:.0f} us ({last / first:.2f}x)")


class DockerBench:
    """dockerd's own bridge driver against the shoal driver (`shoal plugin serve`)."""

    def __init__(self, lab: Lab, args: argparse.Namespace) -> None:
        self.lab = lab
        self.args = args
        self.figures: list[Figure] = []
        self.plugins = os.path.join(lab.tmp, "plugins")
        # short: containerd's socket under it must fit a unix socket's 108 bytes
        self.short = tempfile.mkdtemp(prefix="shoal-pbd-")
        self.dockerd = dockerd_mod.Dockerd(self.short, netns=lab.ns, plugins=self.plugins)
        self.plugin: subprocess.Popen[str] | None = None

    def fig(self, name: str, value: str, target: str = "", ok: bool | None = None) -> None:
        self.figures.append(Figure(name, value, target, ok, phase="docker"))

    def start_plugin(self) -> None:
        os.makedirs(self.plugins, exist_ok=True)
        self.plugin = subprocess.Popen(
            ["nsenter", f"--net={self.lab.ns}", cli_python(), "-m", "shoal", "plugin",
             "serve", "--socket", os.path.join(self.plugins, "shoal.sock")],
            env=self.lab.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert self.plugin.stderr is not None
        line = self.plugin.stderr.readline()
        if "serving" not in line:
            raise RuntimeError(f"shoal plugin serve did not start: {line.strip()}")

    def main(self) -> None:
        missing = [t for t in ("dockerd", "docker", "busybox") if shutil.which(t) is None]
        if missing:
            print(f"docker half skipped: {missing[0]} is not installed")
            return
        d = self.dockerd
        try:
            self.start_plugin()
            d.start()
            d.import_busybox()
            d.docker("network", "create", "-d", "bridge", "--subnet", "10.96.0.0/24", "dbr")
            d.docker("network", "create", "-d", "shoal", "--subnet", "10.97.0.0/24", "dsh")
            runs = {}
            for label, net in (("bridge driver", "dbr"), ("shoal driver", "dsh")):
                argv = ["run", "--rm", "--network", net, "bb:latest", "true"]
                d.docker(*argv)
                runs[label] = statistics.median(
                    self.timed(*argv) for _ in range(self.args.runs))
                self.fig(f"docker run --rm true, {label} (median of {self.args.runs})",
                         ms(runs[label]))
            ratio = runs["shoal driver"] / runs["bridge driver"]
            self.fig("the shoal driver's run against the bridge driver's", f"{ratio:.2f}x",
                     "<= 1.00x", ratio <= 1.0)
            n = self.args.ports
            before = len(self.processes())
            d.docker("run", "-d", "--name", "noports", "--network", "dsh", "bb:latest",
                     "sleep", "600")
            own = len(self.processes()) - before  # the container's own: its shim and itself
            d.docker("rm", "-f", "noports")
            spans = {}
            for label, net in (("shoal driver", "dsh"), ("bridge driver", "dbr")):
                before = len(self.processes())
                rng = f"20000-{20000 + n - 1}"
                name = f"range-{net}"
                start = self.timed("run", "-d", "--name", name, "--network", net, "-p",
                                   f"{rng}:{rng}", "bb:latest", "sleep", "600")
                added = len(self.processes()) - before
                remove = self.timed("rm", "-f", name)
                spans[label] = start + remove
                self.fig(f"{n}-port range, {label}: run -d / rm -f",
                         f"{secs(start)} / {secs(remove)}")
                self.fig(f"{n}-port range, {label}: processes besides the container's own",
                         str(added - own), "0" if label == "shoal driver" else "",
                         added <= own if label == "shoal driver" else None)
            speedup = spans["bridge driver"] / spans["shoal driver"]
            self.fig(f"{n}-port range: bridge driver / shoal driver", f"{speedup:.1f}x",
                     ">= 50x", speedup >= 50)
        finally:
            for note in d.stop():
                print(f"dockerd teardown: {note}")
            if self.plugin is not None and self.plugin.poll() is None:
                self.plugin.send_signal(signal.SIGTERM)
                self.plugin.wait(timeout=30)
            shutil.rmtree(self.short, ignore_errors=True)

    def processes(self) -> set[int]:
        return dockerd_mod.pids_in(self.dockerd.group)

    def timed(self, *args: str) -> float:
        t0 = time.perf_counter()
        self.dockerd.docker(*args)
        return time.perf_counter() - t0


def _engines(text: str) -> list[str]:
    names = [e for e in text.split(",") if e]
    unknown = [e for e in names if e not in ENGINES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown engine {unknown[0]!r}: use "
                                         + ", ".join(ENGINES))
    return names


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10, help="runs per median (default 10)")
    p.add_argument("--ports", type=int, default=1000, help="published ports (default 1000)")
    p.add_argument("--engines", type=_engines, default=list(ENGINES),
                   help="which halves to run (default " + ",".join(ENGINES) + ")")
    p.add_argument("--skip-reference-ports", action="store_true",
                   help="skip the reference portmap's many-ports figure (over 100 s here)")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench/plugins.py: run as root (it makes network namespaces)", file=sys.stderr)
        return 1
    tmp = tempfile.mkdtemp(prefix="shoal-plugbench-")
    lab = Lab(tmp)
    figures: list[Figure] = []
    try:
        lab.setup()
        if "podman" in args.engines:
            why = podman_mod.available()
            if why:
                print(f"podman half skipped: {why}")
            else:
                bench = PodmanBench(lab, args)
                try:
                    bench.main()
                finally:
                    figures += bench.figures
        if "docker" in args.engines:
            dbench = DockerBench(lab, args)
            try:
                dbench.main()
            finally:
                figures += dbench.figures
    finally:
        lab.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n".join(figure_table(figures)))
    print(json.dumps({"figures": [f.__dict__ for f in figures]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
