"""Overlay benchmark for shoal (issue 12's "Performance"), run on demand:
`python3 bench/overlay.py [--quick] [--runs N]` (as root, with the venv's Python: the cluster
store's client, etcd3gw, is a dependency of the venv).

Everything happens in bench/overlay_lab.py's Lab: three host namespaces on an underlay bridge
in a lab namespace, an etcd member in each, each host with its own shoal root and run
directory, all removed when the script ends (also when it fails). The machine's own network
namespace is never touched: the script itself only runs commands under `nsenter` into the
lab's namespaces and opens sockets while its thread is in one (LabHost.entered).

It prints its figures beside the issue's targets and never fails on timing:

1. attach: `Engine.create_container(RunSpec(cmd=["true"], network=...))` in-process, as
   bench/attach.py times it, alternately on host 1's default bridge and on an overlay, in one
   process inside host 1 (this script again, `--attach-inner`), after as many on the bridge
   alone; and the etcd requests that process made meanwhile (EtcdStore's requests, counted),
   the block claims among them;
2. TCP throughput: iperf3 for `--seconds` between a container on host 1 (server) and one on
   host 2 (client) on the overlay, and between two containers on host 1's bridge;
3. propagation: `--runs` times `shoal run -d --network ov` on host 2, then, from the moment
   it returns, until host 1's VXLAN device has the new endpoint's neighbour entry and until
   a container on host 1 gets its first echo reply from it (one pinger process in that
   container's namespace, an echo request every PING_INTERVAL); with the moment host 2's
   watcher put the endpoint into etcd (a watch from the lab namespace) to tell the two
   hosts' shares apart;
4. removal: `--removals` times `shoal rm -f` on host 2, then until host 1's forwarding and
   neighbour entries for it are gone;
5. a dead host: host 3 with containers is killed (LabHost.kill), then until its address
   blocks, its host record and its endpoints are gone from etcd (its lease expired) and until
   hosts 1 and 2 dropped its entries.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from common import SRC, Figure, figure_table, ms, p90, progress

HERE = os.path.dirname(os.path.abspath(__file__))

SUBNET = "10.50.0.0/16"
OVERLAY = "ov"
TARGET_ATTACH_RATIO = 2.0  # overlay attach <= 2x a bridge attach (median)
TARGET_PROPAGATION = 1.0  # reachable from another host within 1 s of run -d returning
TARGET_REMOVAL = 1.0  # a removed container's entries gone within 1 s on every host
TARGET_DEAD_HOST = 30.0  # the bound on a dead host's release (HOST_TTL is 15 s)
PING_INTERVAL = 0.005
WAIT = 10.0  # how long one propagation or removal is waited for before it counts as missed
DEAD_WAIT = 60.0
POLL = 0.001


# -- small helpers -----------------------------------------------------------------------------




def secs(seconds: float) -> str:
    return f"{seconds:.2f} s"


def mac_of(ip: IPv4Address) -> str:
    """The MAC shoal gives an endpoint: 02:42 and its IPv4 address (as Docker does)."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


# -- 1, inside host 1: attaches through the engine, in-process ----------------------------------


def attach_inner(args: argparse.Namespace) -> int:
    """Run inside host 1's namespace (nsenter), with its SHOAL_STORE: `count` attaches on each
    of the two networks, alternately; prints one JSON object."""
    sys.path.insert(0, SRC)
    root, run_dir, network = args.attach_inner
    from shoal.controller import Engine, RunSpec
    from shoal.controller.cluster import ClusterLink

    engine = Engine.open(root, run_dir)
    # whether opening the engine of a host in a cluster loaded the store's client at all
    loaded_at_open = "shoal.store.etcd" in sys.modules
    from shoal.store.etcd import EtcdStore

    requests: list[str] = []
    claims: list[str] = []
    undo: list[tuple[type, str, Any]] = []

    def counted(cls: type, attr: str, log: list[str]) -> None:
        original = cls.__dict__[attr]

        def wrapper(self: Any, *a: Any, **kw: Any) -> Any:
            log.append(attr)
            return original(self, *a, **kw)

        setattr(cls, attr, wrapper)
        undo.append((cls, attr, original))

    for name in ("get", "get_prefix", "put", "delete", "grant", "keep_alive", "revoke",
                 "watch", "revision", "compact"):
        counted(EtcdStore, name, requests)
    counted(ClusterLink, "_claim", claims)
    calls = 0
    original_call = EtcdStore._call

    def count_call(self: Any, *a: Any, **kw: Any) -> Any:
        nonlocal calls
        calls += 1
        return original_call(self, *a, **kw)

    EtcdStore._call = count_call  # type: ignore[method-assign]
    times: dict[str, list[float]] = {"bridge": [], network: []}
    # per attach: (etcd requests it made, whether it claimed a block)
    made: dict[str, list[tuple[int, bool]]] = {"bridge": [], network: []}
    ids: list[str] = []
    alone: list[float] = []
    try:
        # the bridge alone first: no overlay endpoint changes meanwhile, so no etcd writes
        # and no other host's watcher at work (they share this machine's cpus)
        for i in range(args.count):
            start = time.perf_counter()
            ctr = engine.create_container(RunSpec(cmd=["true"], network="bridge",
                                                  name=f"att-alone-{i}"))
            alone.append(time.perf_counter() - start)
            ids.append(ctr.id)
        for cid in ids:
            engine.remove_container(cid)
        ids.clear()
        for i in range(args.count):
            for net in ("bridge", network):
                spec = RunSpec(cmd=["true"], network=net, name=f"att-{net}-{i}")
                before, claimed = calls, len(claims)
                start = time.perf_counter()
                ctr = engine.create_container(spec)
                times[net].append(time.perf_counter() - start)
                made[net].append((calls - before, len(claims) > claimed))
                ids.append(ctr.id)
        for cid in ids:
            engine.remove_container(cid)
    finally:
        EtcdStore._call = original_call  # type: ignore[method-assign]
        for cls, attr, original in reversed(undo):
            setattr(cls, attr, original)
        engine.close()
    print(json.dumps({"bridge": times["bridge"], "overlay": times[network], "alone": alone,
                      "loaded_at_open": loaded_at_open, "requests": calls,
                      "methods": requests, "claims": len(claims),
                      "bridge_requests": made["bridge"], "overlay_requests": made[network]}))
    return 0


# -- the pinger, in a container's namespace on host 1 --------------------------------------------

# Reads lines "IP TIMEOUT" and answers "ok IP T TRIES" (T: time.monotonic() of the first echo
# reply, the clock every process shares) or "timeout IP 0 TRIES". An echo request every
# INTERVAL; after each one unanswered, the container's neighbour entry for IP is deleted, so
# that the next request asks ARP again at once instead of waiting for the kernel's next
# retransmission (1 s): what is timed is when the overlay can carry the packets, not the
# pinger's own ARP backoff.
PINGER = r"""
import os, select, socket, struct, sys, time
from ipaddress import IPv4Address
from shoal.kernel import links, vxlan
from shoal.kernel.netlink import Netlink
INTERVAL = float(sys.argv[1])
nl = Netlink()
eth0 = links.get_link(nl, "eth0").index
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
ident = os.getpid() & 0xFFFF
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF); s += s >> 16
    return ~s & 0xFFFF
def echo(seq):
    head = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"shoal-bench-ping"
    return head[:2] + struct.pack("!H", csum(head)) + head[4:]
seq = 0
for line in sys.stdin:
    ip, limit = line.split()
    start = time.monotonic(); got = 0.0; tries = 0
    while not got and time.monotonic() - start < float(limit):
        seq = (seq + 1) & 0xFFFF; tries += 1
        sock.sendto(echo(seq), (ip, 0))
        end = time.monotonic() + INTERVAL
        while not got and (left := end - time.monotonic()) > 0:
            if not select.select([sock], [], [], left)[0]:
                break
            data, addr = sock.recvfrom(2048)
            ihl = (data[0] & 15) * 4
            kind, _, _, rid, _ = struct.unpack("!BBHHH", data[ihl:ihl + 8])
            if kind == 0 and rid == ident and addr[0] == ip:
                got = time.monotonic()
        if not got:
            try:
                vxlan.delete_neighbour(nl, eth0, IPv4Address(ip))
            except Exception:
                pass
    print(("ok" if got else "timeout"), ip, got, tries, flush=True)
"""


class Pinger:
    def __init__(self, host: Any, sandbox: str) -> None:
        self.proc = subprocess.Popen(
            ["nsenter", f"--net={sandbox}", sys.executable, "-c", PINGER, str(PING_INTERVAL)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=host.env())

    def start(self, ip: IPv4Address, timeout: float = WAIT) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{ip} {timeout}\n")
        self.proc.stdin.flush()

    def result(self) -> tuple[float | None, int]:
        """The monotonic time of the first reply (None: none within the timeout), tries."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if not line:
            raise RuntimeError(f"the pinger exited ({self.proc.poll()})")
        return (float(line[2]) if line[0] == "ok" else None), int(line[3])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # only the process this script started, by its pid
        self.proc.wait()


# -- watching etcd from the lab namespace --------------------------------------------------------


class StoreWatch:
    """A thread in the lab namespace (a machine that is no host) watching the cluster's
    endpoint keys: when each was put and deleted (time.monotonic())."""

    def __init__(self, lab: Any) -> None:
        self.lab = lab
        self.puts: dict[str, float] = {}
        self.deletes: dict[str, float] = {}
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="store-watch")
        self.thread.start()
        self.ready.wait(30)

    def _run(self) -> None:
        sys.path.insert(0, SRC)
        from shoal.cluster.endpoints import ENDPOINTS_PREFIX
        from shoal.store.etcd import EtcdStore
        from shoal.store.protocol import PUT

        try:
            with self.lab.entered():
                store = EtcdStore(self.lab.store_url)
                try:
                    watch = store.watch(ENDPOINTS_PREFIX, store.revision() + 1)
                    self.ready.set()
                    while not self.stop.is_set():
                        ev = watch.get(timeout=0.5)
                        if ev is None:
                            continue
                        ep_id = ev.key.rsplit("/", 1)[-1]
                        (self.puts if ev.kind == PUT else self.deletes).setdefault(
                            ep_id, time.monotonic())
                    watch.close()
                finally:
                    store.close()
        except Exception as e:  # reported: the split of the delays is then missing
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self.ready.set()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


# -- a host's kernel, as it changes ----------------------------------------------------------------


class KernelEvents:
    """A host's neighbour and forwarding entries on a VXLAN device as the kernel announces
    them (rtnetlink's neighbour group, a socket opened in the host's namespace): when each
    address's neighbour entry and each MAC's forwarding entry came and went
    (time.monotonic() of reading the announcement), so that an entry made before the command
    that caused it returned is timed too."""

    RTMGRP_NEIGH = 0x4

    def __init__(self, host: Any, index: int) -> None:
        import socket

        self.index = index
        self.seen: dict[tuple[str, str], list[float]] = {}  # (kind, key) -> times
        self.cond = threading.Condition()
        self.error: str | None = None
        with host.entered():
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                      0)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((0, self.RTMGRP_NEIGH))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="kernel-events")
        self.thread.start()

    def _run(self) -> None:
        import select
        import socket

        from shoal.kernel import netlink as nl

        while not self.stop.is_set():
            try:
                if not select.select([self.sock], [], [], 0.2)[0]:
                    continue
                data = self.sock.recv(1 << 16)
            except OSError as e:  # (ENOBUFS: announcements were lost)
                self.error = f"{e.strerror or e}"
                continue
            now = time.monotonic()
            for kind, _, _, body in nl.parse_messages(data):
                if kind not in (nl.RTM_NEWNEIGH, nl.RTM_DELNEIGH):
                    continue
                msg = nl.NdMsg(body)
                if msg.index != self.index:
                    continue
                new = "new" if kind == nl.RTM_NEWNEIGH else "del"
                if msg.family == socket.AF_INET and msg.attrs.get(nl.NDA_DST):
                    key = ("neigh-" + new, str(IPv4Address(msg.attrs[nl.NDA_DST])))
                elif msg.family == socket.AF_BRIDGE and msg.attrs.get(nl.NDA_LLADDR):
                    mac = ":".join(f"{b:02x}" for b in msg.attrs[nl.NDA_LLADDR])
                    key = ("fdb-" + new, mac)
                else:
                    continue
                with self.cond:
                    self.seen.setdefault(key, []).append(now)
                    self.cond.notify_all()

    def first(self, kind: str, key: str, after: float, timeout: float = WAIT) -> float | None:
        """The first time `kind` (neigh-new, neigh-del, fdb-new, fdb-del) happened to `key`
        (an address, a MAC) after `after`, waiting up to `timeout` for it."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                times = [t for t in self.seen.get((kind, key), []) if t >= after]
                if times:
                    return times[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


# -- the outer run -------------------------------------------------------------------------------


class Bench:
    def __init__(self, lab: Any, args: argparse.Namespace) -> None:
        self.lab, self.args = lab, args
        self.a, self.b, self.c = lab.hosts[:3]
        self.figures: list[Figure] = []
        self.notes: list[str] = []
        self.net_id = ""
        self.vx_index: dict[str, int] = {}
        self.netlink: dict[str, Any] = {}
        self.load_at_start = os.getloadavg()

    # helpers

    def kernel(self, host: Any) -> Any:
        """A netlink socket in the host's namespace (opened there, it stays there)."""
        if host.name not in self.netlink:
            from shoal.kernel.netlink import Netlink

            with host.entered():
                self.netlink[host.name] = Netlink()
        return self.netlink[host.name]

    def vx(self, host: Any) -> int:
        from shoal.drivers.overlay import vxlan_name
        from shoal.kernel import links

        if host.name not in self.vx_index:
            link = links.get_link(self.kernel(host), vxlan_name(self.net_id))
            if link is None:
                raise RuntimeError(f"{host.name} has no VXLAN device for {OVERLAY}")
            self.vx_index[host.name] = link.index
        return self.vx_index[host.name]

    def has_neighbour(self, host: Any, ip: IPv4Address) -> bool:
        from shoal.kernel import vxlan

        return any(n.ip == ip and n.mac for n in
                   vxlan.list_neighbours(self.kernel(host), self.vx(host)))

    def has_fdb(self, host: Any, mac: str) -> bool:
        from shoal.kernel import vxlan

        return any(e.mac == mac for e in vxlan.list_fdb(self.kernel(host), self.vx(host)))

    def fdb_toward(self, host: Any, address: str) -> int:
        from shoal.kernel import vxlan

        return sum(1 for e in vxlan.list_fdb(self.kernel(host), self.vx(host))
                   if str(e.dst) == address)

    def endpoint(self, host: Any, container: str) -> tuple[str, IPv4Address]:
        """(endpoint id, address) of a container's overlay endpoint, read from the host's
        local store at once (an `inspect` would cost a whole CLI process)."""
        db = sqlite3.connect(f"file:{host.root}/shoal.db?mode=ro", uri=True, timeout=30)
        try:
            row = db.execute(
                "SELECT e.id, e.ip FROM endpoints e JOIN sandboxes s ON s.id = e.sandbox_id "
                "WHERE (s.id = ? OR s.owner = ?) AND e.network_id = ?",
                (container, container, self.net_id)).fetchone()
        finally:
            db.close()
        if row is None or row[1] is None:
            raise RuntimeError(f"{host.name}: container {container[:12]} has no address on "
                               f"{OVERLAY}")
        return row[0], IPv4Address(row[1])

    def run_d(self, host: Any, network: str, *cmd: str, name: str | None = None) -> str:
        extra = ["--name", name] if name else []
        return host.shoal("run", "-d", *extra, "--network", network, "--", *cmd
                          ).stdout.strip()

    # setup

    def setup(self) -> None:
        a = self.a
        out = a.shoal("network", "create", "-d", "overlay", "--subnet", SUBNET, OVERLAY)
        self.net_id = out.stdout.strip()
        for host in self.lab.hosts:  # every host's watcher runs and has the overlay
            host.shoal("network", "inspect", OVERLAY)

    # 1

    def attach_phase(self) -> None:
        a, n = self.a, self.args.count
        cmd = ["nsenter", f"--net={a.ns}", sys.executable, os.path.abspath(__file__),
               "--attach-inner", a.root, a.run_dir, OVERLAY, "--count", str(n)]
        res = subprocess.run(cmd, capture_output=True, text=True, env=a.env(), timeout=600)
        if res.returncode != 0:
            raise RuntimeError(f"the attach process failed: {res.stderr.strip()[-800:]}")
        data = json.loads(res.stdout.strip().splitlines()[-1])
        br, ov = data["bridge"], data["overlay"]
        bmed, omed = statistics.median(br), statistics.median(ov)
        ratio = omed / bmed
        self.figures += [
            Figure("bridge attach, median", ms(bmed), phase="attach"),
            Figure("bridge attach, p90", ms(p90(br)), phase="attach"),
            Figure("overlay attach, median", ms(omed), phase="attach"),
            Figure("overlay attach, p90", ms(p90(ov)), phase="attach"),
            Figure("overlay / bridge attach (medians)", f"{ratio:.2f}x",
                   f"<= {TARGET_ATTACH_RATIO:g}x", ratio <= TARGET_ATTACH_RATIO,
                   phase="attach"),
            Figure("overlay / bridge attach (p90s)", f"{p90(ov) / p90(br):.2f}x",
                   phase="attach"),
            Figure("bridge attach alone (no overlay attaches between), median",
                   ms(statistics.median(data["alone"])), phase="attach"),
        ]
        # a block of the /16 is a /26 (ipam/blocks.py): 64 addresses, the first block less
        # the subnet's network address and the gateway
        claims, requests = data["claims"], data["requests"]
        expected = -(-(n + 2) // 64)
        methods: dict[str, int] = {}
        for m in data["methods"]:
            methods[m] = methods.get(m, 0) + 1
        plain = [r for r, claimed in data["overlay_requests"] if not claimed]
        claiming = [r for r, claimed in data["overlay_requests"] if claimed]
        bridge_requests = sum(r for r, _ in data["bridge_requests"])
        self.figures += [
            Figure(f"etcd requests during {n} overlay attaches", str(requests),
                   phase="attach"),
            Figure("  block claims (a new /26 leased)", str(claims),
                   f"{expected} (1 per 64 addresses)", claims <= expected, phase="attach"),
            Figure("  requests of an attach that claimed a block",
                   f"{statistics.median(claiming):g} (median)" if claiming else "-",
                   phase="attach"),
            Figure(f"  requests of the {len(plain)} attaches that claimed none",
                   str(sum(plain)), "0", sum(plain) == 0, phase="attach"),
            Figure(f"etcd requests during {n} bridge attaches", str(bridge_requests), "0",
                   bridge_requests == 0, phase="attach"),
        ]
        self.notes.append(
            "attach: opening the engine loaded the etcd client: "
            f"{'yes' if data['loaded_at_open'] else 'no'}; store calls made: "
            + (", ".join(f"{k} x{v}" for k, v in sorted(methods.items())) or "none"))
        self.attach_data = data

    # 2

    def iperf(self, server_host: Any, client_host: Any, network: str, tag: str) -> float:
        srv = self.run_d(server_host, network, "iperf3", "-s", name=f"ip-s-{tag}")
        cli = self.run_d(client_host, network, "sleep", "3600", name=f"ip-c-{tag}")
        try:
            info = server_host.shoal_json("inspect", srv)[0]
            addr = info["NetworkSettings"]["Networks"][network]["IPAddress"]
            sandbox = info["NetworkSettings"]["SandboxKey"]
            server_host.wait_for(lambda: server_host.listening(sandbox, 5201), 10,
                                 "iperf3 -s to listen")
            res = client_host.shoal("exec", cli, "--", "iperf3", "-c", addr, "-t",
                                    str(self.args.seconds), "-J",
                                    timeout=self.args.seconds + 60)
            report = json.loads(res.stdout)
            return float(report["end"]["sum_received"]["bits_per_second"])
        finally:
            server_host.shoal("rm", "-f", srv, check=False)
            client_host.shoal("rm", "-f", cli, check=False)

    def throughput_phase(self) -> None:
        if not shutil.which("iperf3"):
            self.notes.append("throughput: iperf3 is missing (scripts/install-deps.sh)")
            return
        ov = self.iperf(self.a, self.b, OVERLAY, "ov")
        br = self.iperf(self.a, self.a, "bridge", "br")
        self.figures += [
            Figure("one host's bridge, 2 containers", f"{br / 1e9:.2f} Gbit/s",
                   phase="iperf3"),
            Figure("overlay, host 2 -> host 1", f"{ov / 1e9:.2f} Gbit/s", phase="iperf3"),
            Figure("overlay / bridge", f"{ov / br:.2f}x", phase="iperf3"),
            Figure("VXLAN's cost", f"{(1 - ov / br) * 100:.0f}% of the bridge's throughput",
                   phase="iperf3"),
        ]
        self.notes.append(f"iperf3: {self.args.seconds} s each, TCP, one stream; the overlay's "
                          "MTU is 1450 (VXLAN's 50 bytes), the bridge's 1500; all hosts share "
                          f"this machine's {os.cpu_count()} cpus")

    # 3 + 4

    def propagation_phase(self) -> None:
        a = self.a
        watch = StoreWatch(self.lab)
        if watch.error:
            self.notes.append(f"propagation: no store watch ({watch.error})")
        self.run_d(a, OVERLAY, "sleep", "3600", name="pa")
        pinger = Pinger(a, a.sandbox("pa"))
        events = KernelEvents(a, self.vx(a))
        try:
            self._propagation(pinger, watch, events)
        finally:
            events.close()
            pinger.close()
            watch.close()
        if events.error:
            self.notes.append(f"{a.name}'s kernel announcements: {events.error} (some lost)")

    def _propagation(self, pinger: Pinger, watch: StoreWatch, events: KernelEvents) -> None:
        a, b, n = self.a, self.b, self.args.runs
        run_cli, entry, entry_start, ping, lookup = [], [], [], [], []
        etcd_in, etcd_out, tries = [], [], []
        made: list[tuple[str, str, IPv4Address]] = []
        missed = 0
        for i in range(n):
            start = time.monotonic()
            cid = self.run_d(b, OVERLAY, "sleep", "3600")
            t0 = time.monotonic()
            run_cli.append(t0 - start)
            ep_id, ip = self.endpoint(b, cid)
            made.append((cid, ep_id, ip))
            pinger.start(ip)
            lookup.append(time.monotonic() - t0)
            seen = events.first("neigh-new", str(ip), start)
            if seen is None:
                self.notes.append(f"no neighbour entry for {ip} on {a.name} within {WAIT:g} s")
            replied, n_tries = pinger.result()
            if seen is None or replied is None:
                missed += 1
                progress("propagation", i + 1, n)
                continue
            entry.append(seen - t0)
            entry_start.append(seen - start)
            ping.append(replied - t0)
            tries.append(n_tries)
            put = watch.puts.get(ep_id)
            if put is not None:
                etcd_in.append(put - start)
                etcd_out.append(seen - put)
            progress("propagation", i + 1, n)
        if not ping:
            raise RuntimeError(f"none of {n} containers became reachable")
        med, worst = statistics.median(ping), max(ping)
        ph = "propagation"
        self.figures += [
            Figure(f"run -d on {b.name} (whole CLI), median", secs(statistics.median(run_cli)),
                   phase=ph),
            Figure(f"first ping reply from {a.name}, median of {len(ping)}", ms(med),
                   f"<= {TARGET_PROPAGATION:g} s", med <= TARGET_PROPAGATION, phase=ph),
            Figure("first ping reply, p90", ms(p90(ping)), phase=ph),
            Figure("first ping reply, worst", ms(worst), f"<= {TARGET_PROPAGATION:g} s",
                   worst <= TARGET_PROPAGATION and not missed, phase=ph),
            Figure(f"{a.name}'s VXLAN neighbour entry, median (< 0: before run -d returned)",
                   ms(statistics.median(entry)), phase=ph),
            Figure(f"{a.name}'s VXLAN neighbour entry, worst", ms(max(entry)), phase=ph),
            Figure(f"  run -d's start -> {a.name}'s entry, median",
                   ms(statistics.median(entry_start)), phase=ph),
        ]
        if etcd_in:
            self.figures += [
                Figure(f"  run -d's start -> {b.name}'s watcher put it in etcd, median",
                       ms(statistics.median(etcd_in)), phase=ph),
                Figure(f"  etcd put -> {a.name}'s entry, median",
                       ms(statistics.median(etcd_out)), phase=ph),
                Figure(f"  etcd put -> {a.name}'s entry, worst", ms(max(etcd_out)), phase=ph),
            ]
        if missed:
            self.figures.append(Figure("containers never reached", f"{missed} of {n}", "0",
                                       False, phase=ph))
        self.notes.append(
            f"propagation: timed from run -d's return; the new endpoint's address is read "
            f"from {b.name}'s store after it (median {ms(statistics.median(lookup))}, "
            f"included); the pinger sends an echo request every {ms(PING_INTERVAL)} "
            f"(median {statistics.median(tries):.0f} sent until a reply)")
        self._removal(made, watch, events)

    def _removal(self, made: list[tuple[str, str, IPv4Address]], watch: StoreWatch,
                 events: KernelEvents) -> None:
        a, b = self.a, self.b
        count = min(self.args.removals, len(made))
        gone, rm_cli, etcd_del = [], [], []
        missed = 0
        for i, (cid, ep_id, ip) in enumerate(made[:count]):
            mac = mac_of(ip)
            start = time.monotonic()
            b.shoal("rm", "-f", cid)
            t0 = time.monotonic()
            rm_cli.append(t0 - start)
            neigh = events.first("neigh-del", str(ip), start)
            fdb = events.first("fdb-del", mac, start)
            if neigh is None or fdb is None or self.has_neighbour(a, ip) \
                    or self.has_fdb(a, mac):
                missed += 1
            else:
                gone.append(max(neigh, fdb) - t0)
                deleted = watch.deletes.get(ep_id)
                if deleted is not None:
                    etcd_del.append(deleted - t0)
            progress("removal", i + 1, count)
        rest = [cid for cid, _, _ in made[count:]]
        if rest:
            b.shoal("rm", "-f", *rest, timeout=600)  # (not timed)
        if not gone:
            raise RuntimeError("no removal was seen on host 1")
        med, worst = statistics.median(gone), max(gone)
        ph = "removal"
        self.figures += [
            Figure(f"rm -f on {b.name} (whole CLI), median", secs(statistics.median(rm_cli)),
                   phase=ph),
            Figure(f"{a.name}'s FDB + neighbour entries gone, median of {len(gone)} "
                   "(< 0: before rm returned)", ms(med),
                   f"<= {TARGET_REMOVAL:g} s", med <= TARGET_REMOVAL, phase=ph),
            Figure(f"{a.name}'s entries gone, worst", ms(worst), f"<= {TARGET_REMOVAL:g} s",
                   worst <= TARGET_REMOVAL and not missed, phase=ph),
        ]
        if etcd_del:
            self.figures.append(Figure("  key gone from etcd, median (< 0: before rm returned)",
                                       ms(statistics.median(etcd_del)), phase=ph))
        if missed:
            self.figures.append(Figure("removals never seen", f"{missed} of {count}", "0",
                                       False, phase=ph))

    # 5

    def dead_host_phase(self) -> None:
        from shoal.cluster.hosts import HOST_TTL, HOSTS_PREFIX, KEEPALIVE
        from shoal.ipam.blocks import BLOCKS_PREFIX

        a, b, c = self.a, self.b, self.c
        # who leads the store when c dies: a new leader gives every lease its whole TTL again
        # (etcd's lessor, on promotion), so a move made here is let settle for a keep-alive
        # period: the watchers' keep-alives bring the leases back to what they would be
        with self.lab.entered():
            moved_at = time.monotonic()
            led, moved = self._leader(), False
            if self.args.kill_leader and led != c.name:
                led, moved = self._lead(c)
            elif not self.args.kill_leader and led == c.name:
                led, moved = self._lead(a)
        for i in range(self.args.dead_containers):
            self.run_d(c, OVERLAY, "sleep", "3600", name=f"dead-{i}")
        host_id = self._host_id(c)
        survivors = [a, b]
        for h in survivors:
            h.wait_for(lambda h=h: self.fdb_toward(h, c.address)
                       >= self.args.dead_containers, WAIT, f"{h.name}'s entries for {c.name}")
        # a container on b that a must still reach after c is gone
        keep = self.run_d(b, OVERLAY, "sleep", "3600", name="keep")
        _, keep_ip = self.endpoint(b, keep)
        from shoal.store.etcd import EtcdStore

        with self.lab.entered():
            store = EtcdStore(self.lab.store_url)
            try:
                def mine(prefix: str) -> int:
                    kvs, _ = store.get_prefix(prefix)
                    return sum(1 for kv in kvs if json.loads(kv.value).get("host") == host_id)

                if moved:
                    time.sleep(max(0.0, moved_at + KEEPALIVE + 1 - time.monotonic()))
                blocks_before = mine(BLOCKS_PREFIX + self.net_id + "/")
                endpoints_before = mine("/shoal/v1/endpoints/" + self.net_id + "/")
                if not blocks_before:
                    raise RuntimeError(f"{c.name} holds no block in etcd")
                lease = int(self._meta(c, "cluster.lease"))
                left = self._etcd_post(a.member, "/v3/lease/timetolive",
                                       {"ID": lease})
                ttl_left = float(left.get("TTL", -1))
                started = time.monotonic()
                c.kill()
                t0 = time.monotonic()
                done: dict[str, float] = {}
                checks = {
                    "its blocks' keys gone from etcd":
                        lambda: mine(BLOCKS_PREFIX + self.net_id + "/") == 0,
                    "its host record gone from etcd":
                        lambda: store.get(HOSTS_PREFIX + host_id) is None,
                    "its endpoints' keys gone from etcd":
                        lambda: mine("/shoal/v1/endpoints/" + self.net_id + "/") == 0,
                    f"{a.name} dropped its entries": lambda: self.fdb_toward(a, c.address) == 0,
                    f"{b.name} dropped its entries": lambda: self.fdb_toward(b, c.address) == 0,
                }
                while len(done) < len(checks) and time.monotonic() - t0 < DEAD_WAIT:
                    for what, check in checks.items():
                        if what not in done and check():
                            done[what] = time.monotonic()
                    time.sleep(0.02)
            finally:
                store.close()
        ph = "dead host"
        self.figures.append(Figure(f"{c.name}'s lease: TTL left when it was killed",
                                   f"{ttl_left:g} s of {HOST_TTL:g}", phase="dead host"))
        self.figures.append(Figure("  so its keys were due after kill returned",
                                   secs(ttl_left - (t0 - started)), phase="dead host"))
        was = "was" if led == c.name else "was not"
        self.notes.append(f"dead host: {c.name}'s etcd member {was} the store's leader when it "
                          f"died (leader: {led}; --kill-leader chooses)")
        self.notes.append(f"dead host: {c.name} had {self.args.dead_containers} containers, "
                          f"{blocks_before} block(s) and {endpoints_before} endpoint key(s); "
                          f"killing it took {secs(t0 - started)} (not counted); HOST_TTL is "
                          f"{HOST_TTL:g} s, kept alive every {KEEPALIVE:g} s, so a lease "
                          f"expires {HOST_TTL - KEEPALIVE:g} to {HOST_TTL:g} s after a death "
                          "(etcd's TTLs are whole seconds, checked every 0.5 s); when the dead "
                          "host's member led the store, the new leader gives every lease its "
                          "whole TTL again once elected")
        for what in checks:
            at = done.get(what)
            value = f"not within {DEAD_WAIT:g} s" if at is None else secs(at - t0)
            self.figures.append(Figure(what, value, f"<= {TARGET_DEAD_HOST:g} s",
                                       at is not None and at - t0 <= TARGET_DEAD_HOST,
                                       phase=ph))
        reached = a.ping_ok("pa", str(keep_ip))
        self.figures.append(Figure(f"{a.name} still reaches {b.name} afterwards",
                                   "yes" if reached else "no", "yes", reached, phase=ph))

    def _lead(self, host: Any) -> tuple[str, bool]:
        """Make `host`'s etcd member the leader (etcd's MoveLeader, asked of the leader): the
        name of the host that leads then, and whether it moved. Call in the lab namespace."""
        post = self._etcd_post
        cluster = self.lab.etcd
        target = post(host.member, "/v3/maintenance/status", {})["header"]["member_id"]
        leader = cluster.leader()
        moved = leader is not host.member
        if moved:
            post(leader, "/v3/maintenance/transfer-leadership", {"targetID": target})
            deadline = time.monotonic() + 10
            while cluster.leader() is not host.member and time.monotonic() < deadline:
                time.sleep(0.05)
        return self._leader(), moved

    def _leader(self) -> str:
        """The host whose etcd member leads the store (call in the lab namespace)."""
        now = self.lab.etcd.leader()
        return next(h.name for h in self.lab.hosts if h.member is now)

    @staticmethod
    def _etcd_post(member: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One request to a member's JSON gateway (call in the lab namespace)."""
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(member.client_url + path,
                                         data=json.dumps(body).encode(), method="POST")
        with opener.open(request, timeout=5) as resp:
            return dict(json.loads(resp.read()))

    @staticmethod
    def _meta(host: Any, key: str) -> str:
        """A meta row of the host's local store (read-only)."""
        db = sqlite3.connect(f"file:{host.root}/shoal.db?mode=ro", uri=True, timeout=30)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        finally:
            db.close()
        if row is None:
            raise RuntimeError(f"{host.name}'s store has no meta row {key}")
        return str(row[0])

    def _host_id(self, host: Any) -> str:
        return str(json.loads(self._meta(host, "cluster"))["host"])

    # report

    def report(self) -> None:
        print(f"python {platform.python_version()} ({sys.executable})")
        load = ", ".join(f"{x:.2f}" for x in self.load_at_start)
        print(f"kernel {platform.release()} ({platform.machine()}), {os.cpu_count()} cpus, "
              f"load average at start {load}")
        print(f"lab: {len(self.lab.hosts)} hosts, etcd {self.lab.store_url}; attaches "
              f"{self.args.count} per network, runs {self.args.runs}, removals "
              f"{self.args.removals}, iperf3 {self.args.seconds} s"
              + (" (--quick)" if self.args.quick else ""))
        print()
        for line in figure_table(self.figures):
            print(line)
        for note in self.notes:
            print(f"note: {note}")

    def close(self) -> None:
        for sock in self.netlink.values():
            sock.close()

    def main(self) -> int:
        status = 0
        steps = [("setup", self.setup), ("attach", self.attach_phase),
                 ("throughput", self.throughput_phase),
                 ("propagation", self.propagation_phase),
                 ("dead host", self.dead_host_phase)]
        for name, step in steps:
            try:
                step()
            except Exception as e:  # report and go on: a figure missing is not a crash
                self.notes.append(f"{name} phase failed: {type(e).__name__}: {e}")
                status = 1
                if name == "setup":
                    break
        self.report()
        return status


def outer(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("bench/overlay.py needs root (network namespaces, mounts)", file=sys.stderr)
        return 1
    sys.path.insert(0, HERE)
    sys.path.insert(0, SRC)
    import overlay_lab

    why = overlay_lab.available()
    if why is not None:
        print(f"bench/overlay.py: {why}", file=sys.stderr)
        return 1
    try:
        import etcd3gw  # noqa: F401
    except ImportError:
        print("bench/overlay.py: run it with the venv's Python (etcd3gw is missing)",
              file=sys.stderr)
        return 1
    tmp = os.path.realpath(tempfile.mkdtemp(prefix="shoal-bench-overlay-"))
    bench: Bench | None = None
    try:
        with overlay_lab.Lab(Path(tmp)) as lab:
            bench = Bench(lab, args)
            try:
                status = bench.main()
            finally:
                bench.close()
        for note in lab.notes:
            print(f"WARNING: lab cleanup: {note}", file=sys.stderr)
        return status
    finally:
        left = overlay_lab.harness.Host(Path(tmp)).mounts()
        if left:
            print(f"WARNING: still mounted: {' '.join(left)}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="a fast run: fewer attaches, runs and removals, iperf3 for 2 s")
    p.add_argument("--count", type=int, default=None,
                   help="attaches on each network (default 300; --quick 60)")
    p.add_argument("--runs", type=int, default=None,
                   help="run -d on host 2 timed until host 1 reaches it (default 100; "
                   "--quick 10)")
    p.add_argument("--removals", type=int, default=None,
                   help="of those, rm -f timed until host 1 drops them (default 30; --quick 5)")
    p.add_argument("--seconds", type=int, default=None,
                   help="iperf3's duration (default 5; --quick 2)")
    p.add_argument("--dead-containers", type=int, default=3,
                   help="containers on the host that is killed (default 3)")
    p.add_argument("--kill-leader", action="store_true",
                   help="make the killed host's etcd member the store's leader first (by "
                   "default another member leads when it dies)")
    p.add_argument("--attach-inner", nargs=3, metavar=("ROOT", "RUN_DIR", "NETWORK"),
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name, full, quick in (("count", 300, 60), ("runs", 100, 10), ("removals", 30, 5),
                              ("seconds", 5, 2)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
        if getattr(args, name) < 1:
            p.error(f"--{name} must be positive")
    if args.dead_containers < 1:
        p.error("--dead-containers must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.attach_inner:
        return attach_inner(args)
    return outer(args)


if __name__ == "__main__":
    raise SystemExit(main())
