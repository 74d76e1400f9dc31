"""Embedded DNS benchmark for shoal, run on demand: `python3 bench/dns.py [--seconds S]`.

Everything happens inside a throwaway network namespace that this script creates and removes
itself (re-executed under `nsenter --net=...`, as bench/attach.py does), with its own shoal
root and run directory. The "host's" upstream resolver is a dnsmasq on 127.0.0.53 of that
namespace (answering example.test), named by the resolv.conf shoal is given
(SHOAL_RESOLV_CONF); no packet leaves the throwaway namespaces.

Figures, beside the targets of the issue (printed, never asserted):
1. dnsperf from inside a container, querying a sibling's A record, S seconds, 100 outstanding:
   queries/s, lost, average latency;
2. the same with one outstanding query: the latency of one own-name answer, and of a
   forwarded name answered from the cache;
3. a fresh container's name: the time from `run -d` returning to its first answer, worst of N;
4. `run -d` on a user-defined network (the resolver is told) against the default bridge
   (no resolver), medians;
5. soak: dnsperf at a steady 10,000 queries/s while containers start and stop on the same
   network; lost queries, and stale answers (a name answered after `rm` returned, or not
   answered after `run -d` returned);
6. the resolver's RSS with C containers (created in-process, not started);
7. Docker's embedded DNS with the same dnsperf (a user-defined network, a target and a client
   container, dnsperf in the client's namespace), and shoal's figure 1 over it when the load
   phase ran too; where dockerd (Debian docker.io) and busybox (busybox-static, for the image)
   are installed. dockerd runs in the throwaway namespace and a private mount namespace, with
   its data, exec root, socket and containerd under the temporary directory (bench/dockerd.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from typing import Any

from common import (
    SRC,
    Figure,
    check_in,
    cli_env,
    cli_python,
    figure_table,
    kill_leftovers,
    make_host_ns,
    ms,
    ns_key,
    remove_cgroups,
    remove_tmp,
    run,
)
from dockerd import Dockerd, group_of, kill_group

UPSTREAM = "127.0.0.53"
UPSTREAM_ANSWER = "192.0.2.7"

# A querier in a container's namespace: reads "NAME EXPECT" lines (EXPECT an address, or "-"
# for NXDOMAIN), asks 127.0.0.11 until the answer is what is expected (at most 2 s), prints the
# microseconds to the first answer and whether the first answer already was the expected one.
QUERIER = r"""
import socket, sys, time
import dns.message, dns.rcode
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
for line in sys.stdin:
    name, expect = line.split()
    q = dns.message.make_query(name + ".", "A"); wire = q.to_wire()
    start = time.perf_counter(); first = None; took = None
    while time.perf_counter() - start < 2:
        s.sendto(wire, ("127.0.0.11", 53))
        try:
            data = s.recv(4096)
        except OSError:
            continue
        # the answer is in: reading it is the client's time (dnspython imports a record
        # type's module the first time it parses one, a few ms)
        at = time.perf_counter()
        r = dns.message.from_wire(data)
        got = [a.address for x in r.answer for a in x]
        ok = got == [expect] if expect != "-" else (r.rcode() == dns.rcode.NXDOMAIN)
        if first is None:
            first = ok
        if ok:
            took = at - start
            break
    print(f"{(took or 9) * 1e6:.0f} {int(bool(first))}", flush=True)
"""


# One A query to 127.0.0.11 with the standard library (no dnspython in every interpreter):
# prints the addresses of the answer's A records, or the error.
PROBE = r"""
import socket, struct, sys
name = sys.argv[1]
q = struct.pack(">HHHHHH", 0x5348, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
q += struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
s.sendto(q, ("127.0.0.11", 53))
r = s.recv(4096)
ident, flags, qd, an, _, _ = struct.unpack(">HHHHHH", r[:12])
i = len(q)  # the question, echoed
out = []
for _ in range(an):
    if r[i] & 0xC0 == 0xC0:
        i += 2
    else:
        while r[i]:
            i += r[i] + 1
        i += 1
    rtype, _, _, rdlen = struct.unpack(">HHIH", r[i:i + 10])
    i += 10
    if rtype == 1:
        out.append(socket.inet_ntoa(r[i:i + 4]))
    i += rdlen
print(" ".join(out) if out else f"no A record (rcode {flags & 15})")
"""


# -- outer run -------------------------------------------------------------------------------


def outer(args: argparse.Namespace) -> int:
    # a TERM (timeout, Ctrl-C's cousin) still cleans up: the finally blocks run
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if os.geteuid() != 0:
        print("bench/dns.py needs root (network namespaces, mounts)", file=sys.stderr)
        return 1
    missing = [t for t in ("dnsperf", "dnsmasq") if not shutil.which(t)]
    if missing:
        print(f"bench/dns.py needs {' and '.join(missing)} (Debian packages dnsperf, "
              "dnsmasq-base; make deps installs them)", file=sys.stderr)
        return 1
    tmp = os.path.realpath(tempfile.mkdtemp(prefix="shoal-dns-"))
    result: dict[str, Any] = {"figures": [], "notes": []}
    child = None
    before = _root_state()
    try:
        nsfile = make_host_ns(tmp)
        cmd = ["nsenter", f"--net={nsfile}", "--", sys.executable, os.path.abspath(__file__),
               "--inner", tmp, "--outer-ns", ns_key("/proc/self/ns/net"),
               "--seconds", str(args.seconds), "--fresh", str(args.fresh),
               "--churn", str(args.churn), "--containers", str(args.containers),
               "--phases", args.phases]
        sys.stderr.write(f"running in a throwaway namespace under {tmp}\n")
        child = subprocess.Popen(cmd)
        rc = child.wait()
        path = os.path.join(tmp, "results.json")
        if os.path.exists(path):
            with open(path) as f:
                result = json.load(f)
        if rc != 0:
            result["notes"].append(f"the inner run exited {rc}")
    finally:
        if child is not None and child.poll() is None:
            child.kill()  # only the process this script started
            child.wait()
        for line in kill_leftovers(tmp):
            result["notes"].append(f"killed leftover process {line}")
        result["notes"] += kill_group(group_of(tmp))  # the docker phase's, if it was cut short
        for path in remove_cgroups(SRC, os.path.join(tmp, "run")):
            result["notes"].append(f"WARNING cgroup left: {path}")
        left = remove_tmp(tmp)
        if left:
            result["notes"].append(f"WARNING still mounted: {' '.join(left)}")
        after = _root_state()
        for what in before:
            if before[what] != after[what]:
                result["notes"].append(f"WARNING the machine's {what} changed during the run")
    print()
    print(f"python {platform.python_version()}; kernel {platform.release()}, "
          f"{os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f}")
    print(_version(["dnsperf", "-h"]))
    print()
    for line in figure_table([Figure(**f) for f in result["figures"]]):
        print(line)
    for note in result["notes"]:
        print(f"note: {note}")
    return 0 if not any("failed" in n for n in result["notes"]) else 1


def _root_state() -> dict[str, str]:
    """What the bench must leave as it found it in the namespaces it started in: links,
    routes, iptables rules, and mounts of docker's (dockerd runs only in namespaces of its
    own)."""
    state = {}
    for what, cmd in (("links", ["ip", "-o", "link"]), ("routes", ["ip", "route"]),
                      ("IPv6 routes", ["ip", "-6", "route"]), ("iptables", ["iptables", "-S"]),
                      ("nat iptables", ["iptables", "-t", "nat", "-S"])):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            state[what] = out.stdout + out.stderr
        except OSError as e:
            state[what] = str(e)
    with open("/proc/self/mountinfo") as f:
        state["docker mounts"] = "".join(x for x in f if "docker" in x)
    state["docker paths"] = " ".join(p for p in ("/var/lib/docker", "/run/docker",
                                                 "/run/docker.pid", "/run/containerd")
                                     if os.path.exists(p))
    return state


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except OSError:
        return f"{cmd[0]}: not found"
    m = re.search(r"Version\s+(\S+)", out.stdout + out.stderr)
    return f"dnsperf {m.group(1)}" if m else "dnsperf (version not printed)"


# -- inner run -------------------------------------------------------------------------------


class Inner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = args.inner
        self.nsfile = os.path.join(self.tmp, "hostns")
        self.root = os.path.join(self.tmp, "root")
        self.run_dir = os.path.join(self.tmp, "run")
        self.resolv_conf = os.path.join(self.tmp, "resolv.conf")
        self.figures: list[Figure] = []
        self.notes: list[str] = []
        check_in(self.nsfile, args.outer_ns)
        self.env = {**cli_env(SRC, self.tmp), "SHOAL_RESOLV_CONF": self.resolv_conf}
        self.procs: list[subprocess.Popen[str]] = []
        self.measured: dict[str, dict[str, float]] = {}  # a phase's figures, for later phases

    def fig(self, name: str, value: str, target: str = "", ok: bool | None = None) -> None:
        self.figures.append(Figure(name, value, target, ok))

    def shoal(self, *args: str) -> str:
        return run([cli_python(), "-m", "shoal", "--root", self.root, "--run-dir",
                    self.run_dir, *args], env=self.env).stdout

    def sandbox(self, name: str) -> str:
        return json.loads(self.shoal("inspect", name))[0]["NetworkSettings"]["SandboxKey"]

    def ip_of(self, name: str, net: str = "bench") -> str:
        data = json.loads(self.shoal("inspect", name))[0]
        return str(data["NetworkSettings"]["Networks"][net]["IPAddress"])

    def main(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        try:
            self.setup()
            for phase in self.args.phases.split(","):
                getattr(self, PHASES[phase])()
            self.teardown()
        except Exception as e:  # a figure missing is not a crash: report it
            self.notes.append(f"failed: {type(e).__name__}: {e}")
        finally:
            for proc in self.procs:
                proc.kill()
                proc.wait()
            with open(os.path.join(self.tmp, "results.json"), "w") as f:
                json.dump({"figures": [asdict(x) for x in self.figures],
                           "notes": self.notes}, f)
        return 0

    def setup(self) -> None:
        check_in(self.nsfile, self.args.outer_ns)
        run(["ip", "link", "set", "lo", "up"])
        with open(self.resolv_conf, "w") as f:
            f.write(f"nameserver {UPSTREAM}\n")
        self.procs.append(subprocess.Popen(
            ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces",
             f"--listen-address={UPSTREAM}", f"--address=/example.test/{UPSTREAM_ANSWER}",
             "--local-ttl=600",
             "--local=/#/", "--user=root", f"--pid-file={self.tmp}/dnsmasq.pid"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True))
        self.shoal("network", "create", "bench")
        for name in ("target", "client"):
            self.shoal("run", "-d", "--name", name, "--network", "bench", "--", "sleep", "1d")
        self.client_ns = self.sandbox("client")
        self.target_ip = self.ip_of("target")

    def dnsperf(self, queries: str, *opts: str, timeout: float = 120.0,
                ns: str = "") -> dict[str, float]:
        path = os.path.join(self.tmp, "queries.txt")
        with open(path, "w") as f:
            f.write(queries)
        out = run(["nsenter", f"--net={ns or self.client_ns}", "dnsperf", "-s", "127.0.0.11",
                   "-d", path, *opts], timeout=timeout).stdout
        return parse_dnsperf(out)

    def dnsperf_load(self) -> None:
        s = self.args.seconds
        r = self.dnsperf("target A\n", "-l", str(s))
        self.measured["load"] = r
        self.fig(f"dnsperf, sibling's A record, {s} s, 100 outstanding", f"{r['qps']:,.0f} q/s",
                 ">= 100,000 q/s (Docker 84,900; aardvark 89,600)", r["qps"] >= 100_000)
        self.fig("    lost", f"{r['lost']:.0f} of {r['sent']:.0f}", "0", r["lost"] == 0)
        self.fig("    average latency", ms(r["latency"]), "<= 1 ms", r["latency"] <= 1e-3)
        # the baseline, same run: the same dnsperf against dnsmasq (C) answering a name of its
        # own configuration on 127.0.0.53, no namespace boundary and no redirect
        path = os.path.join(self.tmp, "baseline.txt")
        with open(path, "w") as f:
            f.write("example.test A\n")
        out = run(["dnsperf", "-s", UPSTREAM, "-d", path, "-l", str(s)], timeout=120).stdout
        b = parse_dnsperf(out)
        self.fig(f"    baseline: dnsperf against dnsmasq, {s} s", f"{b['qps']:,.0f} q/s",
                 f"(shoal: {r['qps'] / b['qps']:.2f}x of it, {b['lost']:.0f} lost)")

    def single_latency(self) -> None:
        own = self.dnsperf("target A\n", "-l", "3", "-q", "1")
        self.fig("one own-name query at a time: average latency", ms(own["latency"]))
        self.dnsperf("example.test A\n", "-n", "1", "-q", "1")  # into the cache
        hit = self.dnsperf("example.test A\n", "-l", "3", "-q", "1")
        self.fig("forwarded name from the cache: average latency", ms(hit["latency"]),
                 "<= 0.2 ms", hit["latency"] <= 0.2e-3)

    def querier(self) -> subprocess.Popen[str]:
        proc = subprocess.Popen(["nsenter", f"--net={self.client_ns}", cli_python(), "-c",
                                 QUERIER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True, env=self.env)
        self.procs.append(proc)
        return proc

    @staticmethod
    def ask(proc: subprocess.Popen[str], name: str, expect: str) -> tuple[float, bool]:
        assert proc.stdin and proc.stdout
        proc.stdin.write(f"{name} {expect}\n")
        proc.stdin.flush()
        took, first = proc.stdout.readline().split()
        return int(took) / 1e6, first == "1"

    def fresh_names(self) -> None:
        q = self.querier()
        took, misses = [], 0
        for i in range(self.args.fresh):
            ip = f"172.18.{100 + i // 200}.{1 + i % 200}"
            self.shoal("run", "-d", "--name", f"fresh{i}", "--network", "bench", "--ip", ip,
                       "--", "sleep", "1d")
            seconds, first = self.ask(q, f"fresh{i}", ip)
            took.append(seconds)
            misses += not first
        # removed after, not in between: a namespace's teardown is the kernel's work on
        # one of the cores (cleanup_net), which would be measured with the next name
        self.shoal("rm", "-f", *(f"fresh{i}" for i in range(self.args.fresh)))
        worst = max(took)
        self.fig(f"fresh name: run -d returned -> first answer, worst of {self.args.fresh}",
                 ms(worst), "<= 1 ms", worst <= 1e-3)
        self.fig("    median", ms(statistics.median(took)))
        self.fig("    first answers that were not yet right", str(misses), "0", misses == 0)

    def run_cost(self) -> None:
        times: dict[str, list[float]] = {"bench": [], "bridge": []}
        for i in range(20):
            for net in ("bench", "bridge"):
                start = time.perf_counter()
                self.shoal("run", "-d", "--name", f"cost-{net}-{i}", "--network", net, "--",
                           "sleep", "1d")
                times[net].append(time.perf_counter() - start)
                self.shoal("rm", "-f", f"cost-{net}-{i}")
        user, plain = (statistics.median(times[n]) for n in ("bench", "bridge"))
        self.fig("run -d on a user-defined network, median of 20", ms(user),
                 f"<= default bridge + 10 ms ({ms(plain)})", user <= plain + 0.010)

    def soak(self) -> None:
        n = self.args.churn
        path = os.path.join(self.tmp, "soak.txt")
        with open(path, "w") as f:
            f.write("target A\n")
        perf = subprocess.Popen(["nsenter", f"--net={self.client_ns}", "dnsperf", "-s",
                                 "127.0.0.11", "-d", path, "-Q", "10000", "-l", "3600"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(perf)
        q = self.querier()
        stale = 0
        start = time.perf_counter()
        time.sleep(1)
        for i in range(n):
            ip = f"172.18.{120 + i // 200}.{1 + i % 200}"
            self.shoal("run", "-d", "--name", f"churn{i}", "--network", "bench", "--ip", ip,
                       "--", "sleep", "1d")
            stale += not self.ask(q, f"churn{i}", ip)[1]
            self.shoal("rm", "-f", f"churn{i}")
            stale += not self.ask(q, f"churn{i}", "-")[1]
        time.sleep(1)
        took = time.perf_counter() - start
        perf.send_signal(signal.SIGINT)
        out, _ = perf.communicate(timeout=30)
        r = parse_dnsperf(out)
        self.fig(f"soak: {n} containers started and removed in {took:.0f} s under "
                 "10,000 q/s: lost", f"{r['lost']:.0f} of {r['sent']:.0f}", "0",
                 r["lost"] == 0 and r["sent"] > 0)
        self.fig("    answers older than the state", str(stale), "0", stale == 0)

    def rss(self) -> None:
        n = self.args.containers
        # created in one process, which answers for them while it runs (not started: no
        # supervisor or command each); it removes them when its stdin closes
        code = (
            "import sys; sys.path.insert(0, sys.argv[1])\n"
            "from shoal.controller import Engine, RunSpec\n"
            "e = Engine.open(sys.argv[2], sys.argv[3])\n"
            "ids = [e.create_container(RunSpec(cmd=['true'], network='bench')).id\n"
            "       for _ in range(int(sys.argv[4]))]\n"
            "pid = int(e.store.get_meta('resolver').split()[0])\n"
            "status = open(f'/proc/{pid}/status').read()\n"
            "rss = next(int(x.split()[1]) for x in status.splitlines() if x.startswith('VmRSS'))\n"
            "print(rss, flush=True)\n"
            "sys.stdin.read()\n"
            "for cid in ids:\n"
            "    e.remove_container(cid, force=True)\n")
        proc = subprocess.Popen([cli_python(), "-c", code, SRC, self.root, self.run_dir, str(n)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                env=self.env)
        self.procs.append(proc)
        assert proc.stdin and proc.stdout
        start = time.perf_counter()
        line = proc.stdout.readline()
        took = time.perf_counter() - start
        if not line.strip():
            raise RuntimeError(f"creating {n} containers failed (exit {proc.wait()})")
        rss = int(line)
        self.fig(f"resolver RSS with {n + 2} containers", f"{rss / 1024:.1f} MiB",
                 f"(created in {took:.1f} s)")
        r = self.dnsperf("target A\n", "-l", "3")
        self.fig(f"    dnsperf with {n + 2} containers, 3 s", f"{r['qps']:,.0f} q/s, "
                 f"{r['lost']:.0f} lost, {ms(r['latency'])}")
        proc.stdin.close()
        proc.wait(timeout=1800)

    def teardown(self) -> None:
        """Remove every container: the resolver ends with the last one."""
        ids = self.shoal("ps", "-aq").split()
        start = time.perf_counter()
        if ids:
            self.shoal("rm", "-f", *ids)
        took = time.perf_counter() - start
        left = self.shoal("ps", "-aq").split()
        meta = run([cli_python(), "-c", (
            "import sqlite3, sys; db = sqlite3.connect(sys.argv[1])\n"
            "row = db.execute(\"SELECT value FROM meta WHERE key='resolver'\").fetchone()\n"
            "print(row[0] if row else '')"), os.path.join(self.root, "shoal.db")]).stdout
        self.fig(f"rm -f of the {len(ids)} containers left", f"{took:.1f} s",
                 "none left, the resolver ended", not left and not meta.strip())

    def docker(self) -> None:
        missing = [t for t in ("dockerd", "docker", "busybox") if not shutil.which(t)]
        if missing:
            self.notes.append(f"Docker's embedded DNS not measured: {' and '.join(missing)} "
                              "not installed here (apt-get install docker.io busybox-static; "
                              "the issue's figure, 84,900 q/s, is the comparison)")
            return
        check_in(self.nsfile, self.args.outer_ns)
        d = Dockerd(self.tmp)
        try:
            d.start()
            self.docker_measure(d)
        finally:
            if d.proc is not None:  # containers first: dockerd's shutdown would wait for them
                subprocess.run(d.cli("rm", "-f", "target", "client"), capture_output=True,
                               timeout=120)
            self.notes.extend(d.stop())

    def docker_measure(self, d: Dockerd) -> None:
        d.import_busybox()
        d.docker("network", "create", "bench")
        for name in ("target", "client"):
            d.docker("run", "-d", "--name", name, "--network", "bench", "bb:latest",
                     "sleep", "1d")
        client_ns = f"/proc/{d.pid_of('client')}/ns/net"
        target_ip = d.ip_of("target", "bench")
        # one query first: does Docker's resolver answer the name at all?
        probe = subprocess.run(["nsenter", f"--net={client_ns}", sys.executable, "-c", PROBE,
                                "target"], capture_output=True, text=True, timeout=30)
        if probe.stdout.split() != [target_ip]:
            self.notes.append(f"Docker's embedded DNS did not answer target with {target_ip}: "
                              f"{(probe.stdout + probe.stderr).strip()[-300:]}")
            return
        s = self.args.seconds
        r = self.dnsperf("target A\n", "-l", str(s), ns=client_ns)
        self.fig(f"Docker {_dockerd_version()}: dnsperf, sibling's A record, {s} s, "
                 "100 outstanding", f"{r['qps']:,.0f} q/s", "(the issue's: 84,900 q/s)")
        self.fig("    lost", f"{r['lost']:.0f} of {r['sent']:.0f}")
        self.fig("    average latency", ms(r["latency"]))
        load = self.measured.get("load")
        if load:
            self.fig("    shoal / Docker, queries per second", f"{load['qps'] / r['qps']:.2f}x",
                     "(the load phase, same run)")

def _dockerd_version() -> str:
    out = subprocess.run(["dockerd", "--version"], capture_output=True, text=True).stdout
    m = re.search(r"version (\S+?),", out)
    return m.group(1) if m else "(version?)"


def parse_dnsperf(out: str) -> dict[str, float]:
    def num(pattern: str) -> float:
        m = re.search(pattern, out)
        if not m:
            raise RuntimeError(f"dnsperf printed no {pattern!r}: {out[-500:]}")
        return float(m.group(1).replace(",", ""))

    return {"sent": num(r"Queries sent:\s+([\d,]+)"),
            "lost": num(r"Queries lost:\s+([\d,]+)"),
            "qps": num(r"Queries per second:\s+([\d.]+)"),
            "latency": num(r"Average Latency \(s\):\s+([\d.]+)")}


PHASES = {"load": "dnsperf_load", "latency": "single_latency", "fresh": "fresh_names",
          "run": "run_cost", "soak": "soak", "rss": "rss", "docker": "docker"}


def _phases(text: str) -> str:
    unknown = [p for p in text.split(",") if p not in PHASES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown phase {unknown[0]!r}: use "
                                         f"{', '.join(PHASES)}")
    return text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=10, help="dnsperf's run (default 10)")
    p.add_argument("--fresh", type=int, default=100, help="fresh-name runs (default 100)")
    p.add_argument("--churn", type=int, default=200, help="soak's containers (default 200)")
    p.add_argument("--containers", type=int, default=1000,
                   help="containers for the RSS figure (default 1000)")
    p.add_argument("--phases", default=",".join(PHASES), type=_phases,
                   help=f"which figures, in order (default all: {','.join(PHASES)})")
    p.add_argument("--inner", help=argparse.SUPPRESS)
    p.add_argument("--outer-ns", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.inner:
        return Inner(args).main()
    return outer(args)


if __name__ == "__main__":
    sys.exit(main())
