"""A throwaway multi-host lab for overlay networks, shared by the overlay tests and
bench/overlay.py (both load this file by path: bench/ is not a package): N hosts (3 by default),
each a tests/integration/harness.py Host with its own shoal root and run directory, joined by a
second link to one underlay bridge, and a real etcd cluster with one member in each host.
Nothing runs, listens or changes in the machine's own namespace.

    lab namespace:  ul-br 10.77.0.1/24 (the underlay; the test's own clients, a non-host)
      ├─ veth ── host 1's namespace: ul0 10.77.0.10/24  etcd m1 :2379 :2380
      │                              eth0 198.51.100.2 ── host 1's outside namespace (default)
      ├─ veth ── host 2's namespace: ul0 10.77.0.11/24  etcd m2
      │                              eth0 ...          ── host 2's outside namespace
      └─ veth ── host 3's namespace: ul0 10.77.0.12/24  etcd m3  ...

A host's default route stays on its eth0 (its "internet", as in harness.Host); the underlay
is only a connected /24, as a cluster's private network is. The etcd members are bench/etcd.py's
Cluster, given the hosts' namespaces and underlay addresses, their data under the lab's
directory (base/etcd/m<i>.data): a host's member dies with it (`LabHost.kill`), and
`Lab.stop_etcd` / `Lab.start_etcd` stop and restart the whole store on the same data.

Why harness.Host is loaded from tests/integration/ (by path, or the tests' own module when they
have imported it, so that the lab's hosts are of the class the tests use): it is the one
definition of a throwaway host and of how to kill everything it started; a second copy here
would drift from it. It imports nothing but the standard library."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import AbstractContextManager, suppress
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
HARNESS = HERE.parent / "tests" / "integration" / "harness.py"
UNDERLAY = "10.77.0"
LAB_ADDR = f"{UNDERLAY}.1"  # the lab namespace's own address on the underlay
BRIDGE = "ul-br"
UL_IF = "ul0"


def _load(name: str, path: Path) -> ModuleType:
    """The module at `path`: the one already imported from that file if there is one (the
    tests' harness, the tests' bench/etcd.py), else loaded by path as `name`."""
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file and os.path.realpath(file) == str(path):
            return module
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


harness = _load("shoal_bench_harness", HARNESS)
etcd = _load("shoal_bench_etcd", HERE / "etcd.py")


def _netns_id(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def available() -> str | None:
    """Why the lab cannot run here (None when it can)."""
    why = etcd.available()
    if why is None and not shutil.which("nsenter"):
        why = "the lab needs util-linux's nsenter"
    return why


class LabHost(harness.Host):  # type: ignore[misc,name-defined]
    """A harness.Host with a link on the lab's underlay (`address`), the lab's store in its
    shoal's environment (`shoal`; `shoal_local` runs without it), and `kill`: the machine
    dies."""

    def __init__(self, base: Path, index: int, store_url: str,
                 backend: str | None = None) -> None:
        super().__init__(base, backend)
        self.index = index  # 0-based: hosts[0] is 10.77.0.10
        self.name = f"h{index + 1}"
        self.address = f"{UNDERLAY}.{10 + index}"
        self.store_url = store_url
        self.alive = False
        self.member: Any = None  # its etcd member (bench/etcd.py's Member), set by the Lab
        self._inodes: set[int] = set()

    def attach(self, lab_ns: str) -> None:
        """The host's underlay link: a veth from its namespace (ul0, its /24 only) to the
        lab's bridge."""
        peer = f"ul-{self.name}"
        self.ip("link", "add", peer, "type", "veth", "peer", "name", UL_IF, "netns", self.ns,
                ns=lab_ns)
        self.ip("link", "set", peer, "master", BRIDGE, "up", ns=lab_ns)
        self.ip("addr", "add", f"{self.address}/24", "dev", UL_IF)
        self.ip("link", "set", UL_IF, "up")
        self.alive = True

    # -- running shoal --------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """harness.Host's environment, with the lab's store (SHOAL_STORE)."""
        return {**super().env(), "SHOAL_STORE": self.store_url}

    def local_env(self) -> dict[str, str]:
        env = super().env()
        env.pop("SHOAL_STORE", None)
        return env

    def shoal(self, *args: str, check: bool = True, timeout: float = 60
              ) -> subprocess.CompletedProcess[str]:
        """The shoal CLI in this host, joined to the lab's store (SHOAL_STORE)."""
        return self._shoal(args, self.env(), check, timeout)

    def shoal_local(self, *args: str, check: bool = True, timeout: float = 60
                    ) -> subprocess.CompletedProcess[str]:
        """The shoal CLI in this host with no store: a host of its own."""
        return self._shoal(args, self.local_env(), check, timeout)

    def _shoal(self, args: tuple[str, ...], env: dict[str, str], check: bool,
               timeout: float) -> subprocess.CompletedProcess[str]:
        cmd = ["nsenter", f"--net={self.ns}", sys.executable, "-m", "shoal",
               "--root", self.root, "--run-dir", self.run_dir, *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                             cwd=str(self.base))
        if check and res.returncode != 0:
            raise AssertionError(f"{self.name}: shoal {' '.join(args)} failed "
                                 f"({res.returncode}): {res.stderr.strip()}")
        return res

    def entered(self) -> AbstractContextManager[None]:
        """A context in which the calling thread (and the threads it starts) is in this host's
        namespace: an in-process client that talks as this host does."""
        return etcd.in_netns(self.ns)

    # -- a dead host ----------------------------------------------------------------------

    def namespaces(self) -> set[int]:
        """The inodes of this host's namespaces (its own, its outside, its sandboxes); after
        `kill`, the ones it had."""
        if self.alive:
            self._inodes = self._our_namespaces()
        return set(self._inodes)

    def processes(self) -> list[int]:
        """PIDs of the processes still in this host's namespaces or in its shoal cgroups."""
        pids = set(self._our_processes(self.namespaces()))
        for path in self.cgroups():
            with suppress(OSError):
                pids |= {int(p) for p in Path(path, "cgroup.procs").read_text().split()}
        pids.discard(os.getpid())
        return sorted(pids)

    def kill(self) -> None:
        """The machine dies: SIGKILL every process of this host (in its namespaces, its
        containers' sandboxes and its shoal cgroups: its etcd member too), then its links and
        namespaces go (the lab's end of its underlay link with them). Its directories stay,
        as a dead machine's disk does."""
        self.namespaces()  # (remember them: they are gone afterwards)
        self.alive = False
        for _ in range(2):  # (a process forked while the first round ran)
            self.kill_processes_of(self._inodes)
            self.kill_cgroups()
        if self.member is not None and self.member.proc is not None:
            with suppress(subprocess.TimeoutExpired):
                self.member.proc.wait(10)  # (the lab's child: reaped, not left a zombie)
        # (the kernel frees a namespace's links some time after its last reference goes:
        # deleted here, they are gone when kill returns, the lab's ends of the veths too)
        for ns in (self.ns, self.outside):
            for name in self.links(ns):
                if name != "lo":
                    self.in_ns(ns, "ip", "link", "del", name)
        self.cleanup_mounts()
        for path in (self.ns, self.outside):
            with suppress(OSError):
                os.unlink(path)

    def kill_processes_of(self, inodes: set[int]) -> None:
        for _ in range(3):
            pids = self._our_processes(inodes)
            if not pids:
                return
            for pid in pids:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)

    def cleanup_mounts(self) -> None:
        """Unmount everything under this host's directory (its namespace files, its
        sandboxes' and its run directory's mounts): the last reference to its namespaces,
        and so to its links."""
        for point in sorted(self.mounts(), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)

    def cleanup(self) -> None:
        if self.alive:
            self.namespaces()
            super().cleanup()
            self.alive = False
        else:  # (killed, or never attached: whatever is left)
            self.kill_processes_of(self._inodes | self._our_namespaces())
            self.kill_cgroups()
            self.cleanup_mounts()


class Lab:
    """`size` hosts on one underlay, an etcd member in each. A context manager: everything it
    made is removed on leaving, also when setting up or the block failed."""

    def __init__(self, base: Path, size: int = 3, backend: str | None = None) -> None:
        if not 1 <= size <= 200:
            raise ValueError(f"a lab has 1 to 200 hosts, not {size}")
        self.base = base
        self.ns = str(base / "lab.ns")
        self.store_url = "etcd://" + ",".join(f"{UNDERLAY}.{10 + i}:{etcd.CLIENT_PORT}"
                                              for i in range(size))
        self.hosts = [LabHost(base / f"h{i + 1}", i, self.store_url, backend)
                      for i in range(size)]
        self.etcd = etcd.Cluster(base, self.ns, where=[(h.ns, h.address) for h in self.hosts])
        assert self.etcd.url == self.store_url
        for host, member in zip(self.hosts, self.etcd.members, strict=True):
            host.member = member
        self._made_ns = False
        self.notes: list[str] = []  # what cleanup found wrong (a member that exited)

    # -- making and removing --------------------------------------------------------------

    def setup(self, timeout: float = 30.0) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        etcd.make_netns(self.ns)
        self._made_ns = True
        if _netns_id(self.ns) == _netns_id("/proc/self/ns/net"):
            raise RuntimeError("the lab namespace is this process's own; refusing to go on")
        lab_ip = ["nsenter", f"--net={self.ns}", "ip"]
        for args in (["link", "set", "lo", "up"], ["link", "add", BRIDGE, "type", "bridge"],
                     ["addr", "add", f"{LAB_ADDR}/24", "dev", BRIDGE],
                     ["link", "set", BRIDGE, "up"]):
            subprocess.run([*lab_ip, *args], check=True, capture_output=True, timeout=30)
        for host in self.hosts:
            host.base.mkdir(parents=True, exist_ok=True)
            host.setup()
            host.attach(self.ns)
        self.etcd.start(timeout)

    def close(self) -> None:
        """Kill every member and every host's processes (by PID), remove the namespaces."""
        self.notes = self.etcd.close()
        for host in self.hosts:
            host.cleanup()
        if self._made_ns:
            etcd.remove_netns(self.ns)
            self._made_ns = False

    def __enter__(self) -> Lab:
        try:
            self.setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the store ------------------------------------------------------------------------

    def entered(self) -> AbstractContextManager[None]:
        """A context in which the calling thread is in the lab namespace (10.77.0.1 on the
        underlay, a machine that is no host) and reaches every host's underlay address."""
        return etcd.in_netns(self.ns)

    def member(self, host: LabHost) -> Any:
        """The etcd member (bench/etcd.py's Member) that runs in `host`."""
        return host.member

    def live_members(self) -> list[Any]:
        return [h.member for h in self.hosts if h.alive]

    def stop_etcd(self, kill: bool = False) -> None:
        """Stop every member (SIGTERM, or SIGKILL with `kill`), by PID; their data stay."""
        for m in self.etcd.members:
            (self.etcd.kill if kill else self.etcd.stop)(m)

    def start_etcd(self, timeout: float = 30.0) -> None:
        """Start again, on their data, the members of the hosts still alive; wait until they
        are healthy (a majority of them must be alive)."""
        members = self.live_members()
        for m in members:
            if m.pid is None:
                self.etcd.start_member(m, wait=False)
        self.wait_etcd(timeout)

    def wait_etcd(self, timeout: float = 30.0) -> None:
        """Wait until every live host's member answers /health with "true"."""
        self.etcd.wait_healthy(timeout, self.live_members())


def main() -> int:
    """Start a lab, print what it is, wait for Enter, remove it (to try things by hand)."""
    import tempfile

    why = available()
    if why is not None:
        print(f"overlay_lab: {why}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="shoal-lab-") as tmp, Lab(Path(tmp)) as lab:
        print(f"store: {lab.store_url}")
        for h in lab.hosts:
            print(f"{h.name}: {h.address}  nsenter --net={h.ns}  root {h.root}  "
                  f"run {h.run_dir}")
        with suppress(EOFError, KeyboardInterrupt):
            input("the lab is up; Enter removes it ")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
