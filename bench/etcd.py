"""A throwaway etcd cluster for the global store's tests and benchmarks (which load this file
by path, as they load bench/podman.py): N members (3 by default) of Debian's etcd 3.4
(/usr/bin/etcd), each in a network namespace of its own, joined by veths to one underlay
bridge in a lab namespace the caller made. Nothing runs, listens or changes in the machine's
own namespace.

    lab namespace:  br0 10.231.0.1/24 (the clients' address)
      ├─ veth ── member namespace 1: eth0 10.231.0.11  etcd :2379 (clients) :2380 (peers)
      ├─ veth ── member namespace 2: eth0 10.231.0.12
      └─ veth ── member namespace 3: eth0 10.231.0.13

How clients reach it: the client's thread enters the lab namespace with setns(2)
(`Cluster.entered()`), as a context around the code that talks to etcd. A network namespace
belongs to a thread, and threads inherit the one of the thread that starts them, so a test can
run in-process (with a client object, its connection pool and the threads it starts) against
the cluster, and the sockets it opens are the lab namespace's, bound there for their whole
life. That is simpler than running the client code in a subprocess under `nsenter` (no code
to ship over, failures are the test's own tracebacks), and it is safe: on leaving, the thread
goes back to the namespace it came from, and the cluster's addresses exist nowhere else.

Members' data live under the given directory; each member is one process (etcd itself:
`nsenter --net=... etcd` execs it, so the PID Popen gives is etcd's). `stop`, `kill` and
`start` act on one member by PID; `close` kills every member by PID and removes the member
namespaces (the lab namespace is the caller's to remove).

A caller that has its own namespaces for the members hands them over with `where` (one
(namespace file, address) pair per member): bench/overlay_lab.py runs one member in each of
its hosts' namespaces, on their underlay. The cluster then makes no network of its own and
removes none; the caller's lab namespace must reach the members' addresses."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path

ETCD = "/usr/bin/etcd"
SUBNET = "10.231.0"
CLIENT_ADDR = f"{SUBNET}.1"
CLIENT_PORT, PEER_PORT = 2379, 2380
CLONE_NEWNET = 0x40000000
# no proxy from the environment: the members are reached directly, in the lab namespace
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def available() -> str | None:
    """Why the cluster cannot run here (None when it can)."""
    if not os.access(ETCD, os.X_OK):
        return "etcd is not installed (run: make deps, which installs etcd-server)"
    if os.geteuid() != 0:
        return "the etcd cluster needs root (network namespaces)"
    return None


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextmanager
def in_netns(path: str) -> Iterator[None]:
    """Run the calling thread (and the threads it starts meanwhile) in the network namespace
    at `path`; back to the thread's own namespace afterwards."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(path, os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


def make_netns(path: str) -> None:
    """A new network namespace kept by a bind mount on the file `path`."""
    Path(path).touch()
    subprocess.run(["unshare", f"--net={path}", "true"], check=True)


def remove_netns(path: str) -> None:
    subprocess.run(["umount", "-l", path], capture_output=True)
    with suppress(OSError):
        os.unlink(path)


class Member:
    """One etcd member: its name, address, namespace file, data directory and log. By default
    in a namespace of the cluster's own (`base`/m<index>.ns, on 10.231.0.<10+index>)."""

    def __init__(self, index: int, base: Path, ns: str | None = None,
                 addr: str | None = None) -> None:
        self.index = index
        self.name = f"m{index}"
        self.addr = addr or f"{SUBNET}.{10 + index}"
        self.ns = ns or str(base / f"{self.name}.ns")
        self.data = base / f"{self.name}.data"
        self.log = base / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"http://{self.addr}:{CLIENT_PORT}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.addr}:{PEER_PORT}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None


class Cluster:
    """N etcd members on an underlay bridge in the lab namespace `lab_ns` (a file a caller
    made with `make_netns`). Use as a context manager, or call `start()` and `close()`.

    With `where` (a list of (namespace file, address), one per member; `size` is then its
    length), the members run in those namespaces, which the caller made and joined to
    `lab_ns`, and the cluster makes and removes no namespace, link or address."""

    def __init__(self, base: Path, lab_ns: str, size: int = 3,
                 where: list[tuple[str, str]] | None = None) -> None:
        self.base = base / "etcd"
        self.lab_ns = lab_ns
        self.token = f"shoal-test-{os.getpid()}-{base.name}"
        self.own_network = where is None
        if where is None:
            self.members = [Member(i, self.base) for i in range(1, size + 1)]
        else:
            self.members = [Member(i, self.base, ns, addr)
                            for i, (ns, addr) in enumerate(where, start=1)]
        self._made: list[str] = []

    @property
    def url(self) -> str:
        """The store URL of the whole cluster (etcd://H1:2379,H2:2379,...)."""
        return "etcd://" + ",".join(f"{m.addr}:{CLIENT_PORT}" for m in self.members)

    def _ip(self, *args: str, ns: str | None = None) -> None:
        res = subprocess.run(["nsenter", f"--net={ns or self.lab_ns}", "ip", *args],
                             capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {res.stderr.strip()}")

    # -- start and stop ---------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Make the underlay (unless the caller gave the namespaces), start every member,
        wait until the cluster is healthy."""
        self.base.mkdir(parents=True, exist_ok=True)
        if self.own_network:
            self._make_network()
        for m in self.members:
            self.start_member(m, wait=False)
        self.wait_healthy(timeout)

    def _make_network(self) -> None:
        self._ip("link", "set", "lo", "up")
        self._ip("link", "add", "br0", "type", "bridge")
        self._ip("addr", "add", f"{CLIENT_ADDR}/24", "dev", "br0")
        self._ip("link", "set", "br0", "up")
        for m in self.members:
            make_netns(m.ns)
            self._made.append(m.ns)
            self._ip("link", "add", f"veth{m.index}", "type", "veth", "peer", "name", "eth0",
                     "netns", m.ns)
            self._ip("link", "set", f"veth{m.index}", "master", "br0", "up")
            self._ip("link", "set", "lo", "up", ns=m.ns)
            self._ip("addr", "add", f"{m.addr}/24", "dev", "eth0", ns=m.ns)
            self._ip("link", "set", "eth0", "up", ns=m.ns)

    def argv(self, m: Member) -> list[str]:
        initial = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        return ["nsenter", f"--net={m.ns}", ETCD, "--name", m.name,
                "--data-dir", str(m.data),
                "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
                "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", self.token]

    def start_member(self, m: Member, wait: bool = True, timeout: float = 30.0) -> None:
        """(Re)start one member on its data (after `stop` or `kill`)."""
        if m.pid is not None:
            raise RuntimeError(f"member {m.name} runs already (pid {m.pid})")
        with open(m.log, "ab") as log:
            m.proc = subprocess.Popen(self.argv(m), stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        if wait:
            self.wait_healthy(timeout, [m])

    def stop(self, m: Member, timeout: float = 10.0) -> None:
        """Stop one member the polite way (SIGTERM), by its PID."""
        self._signal(m, signal.SIGTERM, timeout)

    def kill(self, m: Member) -> None:
        """Kill one member (SIGKILL), by its PID: a crash."""
        self._signal(m, signal.SIGKILL, 10.0)

    def _signal(self, m: Member, sig: int, timeout: float) -> None:
        proc = m.proc
        if proc is None or proc.poll() is not None:
            return
        with suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def close(self) -> list[str]:
        """Kill every member by PID and remove the member namespaces and the bridge. Returns
        notes on anything found wrong (a member that had exited by itself)."""
        notes = []
        for m in self.members:
            if m.proc is not None and m.proc.poll() is not None and m.proc.returncode not in (
                    0, -signal.SIGTERM, -signal.SIGKILL):
                notes.append(f"etcd member {m.name} exited with {m.proc.returncode}; see "
                             f"{m.log}")
            self.kill(m)
        for path in self._made:
            remove_netns(path)
        self._made.clear()
        if self.own_network:
            with suppress(RuntimeError):
                self._ip("link", "del", "br0")
        return notes

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- clients ----------------------------------------------------------------------------

    def entered(self) -> AbstractContextManager[None]:
        """A context in which the calling thread (and threads it starts) is in the lab
        namespace and reaches the members."""
        return in_netns(self.lab_ns)

    def healthy(self, members: list[Member] | None = None) -> bool:
        """Does each member (all by default) answer /health with "true"? (Call in the lab
        namespace.)"""
        for m in members or self.members:
            try:
                with _OPENER.open(m.client_url + "/health", timeout=1) as resp:
                    if json.loads(resp.read()).get("health") != "true":
                        return False
            except (OSError, ValueError):
                return False
        return True

    def leader(self) -> Member:
        """The member that leads the cluster now (call in the lab namespace)."""
        for m in self.members:
            if m.pid is None:
                continue
            request = urllib.request.Request(m.client_url + "/v3/maintenance/status",
                                             data=b"{}", method="POST")
            try:
                with _OPENER.open(request, timeout=2) as resp:
                    status = json.loads(resp.read())
            except (OSError, ValueError):
                continue
            if status.get("leader") and status["leader"] == status["header"]["member_id"]:
                return m
        raise RuntimeError("no member says it leads the cluster")

    def wait_healthy(self, timeout: float = 30.0, members: list[Member] | None = None) -> None:
        deadline = time.monotonic() + timeout
        with self.entered():
            while not self.healthy(members):
                for m in members or self.members:
                    if m.proc is not None and m.proc.poll() is not None:
                        raise RuntimeError(f"etcd member {m.name} exited "
                                           f"({m.proc.returncode}): {self.log_tail(m)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the etcd cluster is not healthy after {timeout} s: "
                                       + " | ".join(self.log_tail(m) for m in self.members))
                time.sleep(0.1)

    def log_tail(self, m: Member, chars: int = 400) -> str:
        try:
            return m.log.read_text(errors="replace")[-chars:].replace("\n", " ")
        except OSError:
            return "(no log)"
