"""A throwaway 'host' for integration tests: a network namespace of its own with its own
shoal root and run directory, plus an 'outside' namespace joined to it by a veth on a
documentation range (198.51.100.0/24) that stands in for the internet.

Nothing here touches the machine's own namespace. Cleanup kills only the processes found in
this host's namespaces (by PID) and unmounts everything under the test's directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SRC = str(Path(__file__).resolve().parents[2] / "src")
HOST_ADDR, OUTSIDE_ADDR = "198.51.100.2", "198.51.100.1"


def load_bench(name: str) -> Any:
    """A launcher of a real engine from bench/ (bench/podman.py, bench/dockerd.py), which the
    benchmarks and the tests share, loaded by path: bench/ is not a package."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"shoal_bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)


def _ns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _cgroup_scope(run_dir: str) -> str | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.startswith("cgroup2 "):
                root = left.split()[4]
                break
        else:
            own = os.path.join(run_dir, "cgroup2")  # shoal's own mount, where none is
            if not os.path.ismount(own):
                return None
            root = own
    h = 0xCBF29CE484222325  # FNV-1a, 64 bits, of the run directory's path
    for byte in os.fsencode(os.path.abspath(run_dir)):
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return os.path.join(root, "shoal", f"{h:016x}")


class Host:
    def __init__(self, base: Path, backend: str | None = None) -> None:
        self.base = base
        self.backend = backend
        self.ns = str(base / "host.ns")
        self.outside = str(base / "outside.ns")
        self.root = str(base / "root")
        self.run_dir = str(base / "run")
        # the host's resolv.conf as shoal sees it (SHOAL_RESOLV_CONF): never the machine's
        # own, whose servers are outside the test; its server is in the outside namespace
        self.resolv_conf = str(base / "resolv.conf")

    def setup(self) -> None:
        Path(self.resolv_conf).write_text(f"nameserver {OUTSIDE_ADDR}\n")
        for path in (self.ns, self.outside):
            Path(path).touch()
            subprocess.run(["unshare", f"--net={path}", "true"], check=True)
        self.ip("link", "set", "lo", "up")
        self.ip("link", "set", "lo", "up", ns=self.outside)
        self.ip("link", "add", "eth0", "type", "veth", "peer", "name", "uplink")
        self.ip("link", "set", "uplink", "netns", self.outside)
        self.ip("addr", "add", f"{HOST_ADDR}/24", "dev", "eth0")
        self.ip("link", "set", "eth0", "up")
        self.ip("route", "add", "default", "via", OUTSIDE_ADDR)
        self.ip("addr", "add", f"{OUTSIDE_ADDR}/24", "dev", "uplink", ns=self.outside)
        self.ip("link", "set", "uplink", "up", ns=self.outside)

    # -- running things -------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = {**os.environ, "PYTHONPATH": SRC}
        env.pop("SHOAL_FIREWALL_BACKEND", None)
        env["SHOAL_RESOLV_CONF"] = self.resolv_conf
        if self.backend:
            env["SHOAL_FIREWALL_BACKEND"] = self.backend
        return env

    def shoal(self, *args: str, check: bool = True, timeout: float = 60
              ) -> subprocess.CompletedProcess[str]:
        """Run the shoal CLI inside this host."""
        cmd = ["nsenter", f"--net={self.ns}", sys.executable, "-m", "shoal",
               "--root", self.root, "--run-dir", self.run_dir, *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                             env=self.env(), cwd=str(self.base))
        if check and res.returncode != 0:
            raise AssertionError(f"shoal {' '.join(args)} failed ({res.returncode}): "
                                 f"{res.stderr.strip()}")
        return res

    def shoal_json(self, *args: str) -> Any:
        return json.loads(self.shoal(*args).stdout)

    def python(self, code: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run Python code inside this host (for the Python API)."""
        res = subprocess.run(["nsenter", f"--net={self.ns}", sys.executable, "-c", code],
                             capture_output=True, text=True, timeout=120, env=self.env(),
                             cwd=str(self.base))
        if check and res.returncode != 0:
            raise AssertionError(f"python failed: {res.stdout}\n{res.stderr}")
        return res

    def ip(self, *args: str, ns: str | None = None) -> str:
        res = _run(["nsenter", f"--net={ns or self.ns}", "ip", *args])
        if res.returncode != 0:
            raise AssertionError(f"ip {' '.join(args)}: {res.stderr.strip()}")
        return res.stdout

    def ip_json(self, *args: str, ns: str | None = None) -> Any:
        return json.loads(self.ip("-j", *args, ns=ns) or "[]")

    def links(self, ns: str | None = None) -> dict[str, Any]:
        return {link["ifname"]: link for link in self.ip_json("link", "show", ns=ns)}

    def in_container(self, ctr: str, *cmd: str, check: bool = True
                     ) -> subprocess.CompletedProcess[str]:
        return self.shoal("exec", ctr, "--", *cmd, check=check)

    def sandbox(self, container: str) -> str:
        return self.shoal_json("inspect", container)[0]["NetworkSettings"]["SandboxKey"]

    def ip_of(self, container: str, network: str) -> str:
        data = self.shoal_json("inspect", container)[0]
        return data["NetworkSettings"]["Networks"][network]["IPAddress"]

    def wait_for(self, predicate: Any, timeout: float = 10, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def tcp_ok(self, ctr: str, addr: str, port: int) -> bool:
        code = (f"import socket; s=socket.create_connection(('{addr}', {port}), timeout=2); "
                "s.close()")
        return self.in_container(ctr, sys.executable, "-c", code, check=False).returncode == 0

    def ping_ok(self, ctr: str, addr: str) -> bool:
        return self.in_container(ctr, "ping", "-c1", "-W2", addr, check=False).returncode == 0

    def in_ns(self, ns: str, *cmd: str, check: bool = False
              ) -> subprocess.CompletedProcess[str]:
        res = _run(["nsenter", f"--net={ns}", *cmd])
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)}: {res.stderr.strip()}")
        return res

    def background(self, ns: str, *cmd: str) -> subprocess.Popen[str]:
        """A process in one of this host's namespaces (killed at cleanup)."""
        return subprocess.Popen(["nsenter", f"--net={ns}", *cmd], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def fetch(self, ns: str, addr: str, port: int, proto: str = "tcp",
              timeout: float = 2) -> str | None:
        """Connect from a namespace; what the server sent back (None if it failed). With
        udp, send 'ping' and return the answer."""
        if proto == "udp":
            code = (f"import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                    f"s.settimeout({timeout}); s.sendto(b'ping', ('{addr}', {port})); "
                    "print(s.recv(100).decode())")
        else:
            code = (f"import socket; s=socket.create_connection(('{addr}', {port}), "
                    f"timeout={timeout}); s.settimeout({timeout}); "
                    "print(s.recv(100).decode())")
        res = self.in_ns(ns, sys.executable, "-c", code)
        return res.stdout.strip() if res.returncode == 0 else None

    def listening(self, ns: str, port: int) -> bool:
        """Whether a TCP socket listens on PORT in a namespace. Asked of the kernel rather
        than by connecting: a client whose ephemeral range holds PORT can connect to itself
        (TCP simultaneous open) and so take the port from the server about to bind it."""
        res = self.in_ns(ns, "ss", "-Hltn", f"sport = :{port}")
        return res.returncode == 0 and bool(res.stdout.strip())

    def mounts(self) -> list[str]:
        base = str(self.base)
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
        return [p for p in points if p.startswith(base)]

    # -- cleanup --------------------------------------------------------------------------

    def _our_namespaces(self) -> set[int]:
        inodes = {_ns_inode(self.ns), _ns_inode(self.outside)}
        netns_dir = Path(self.run_dir) / "netns"
        if netns_dir.is_dir():
            inodes |= {_ns_inode(str(p)) for p in netns_dir.iterdir()}
        return {i for i in inodes if i}

    def _our_processes(self, inodes: set[int]) -> list[int]:
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                link = os.readlink(f"/proc/{entry}/ns/net")
            except OSError:
                continue
            if int(link.split("[")[1].rstrip("]")) in inodes:
                pids.append(int(entry))
        return pids

    def kill_processes(self) -> None:
        """SIGKILL every process in this host's namespaces (they are all the test's)."""
        inodes = self._our_namespaces()
        for _ in range(3):
            pids = self._our_processes(inodes)
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)

    def restart_host(self, networks: list[str]) -> None:
        """What a host restart does to shoal: every process of the host dies, the kernel
        forgets shoal's objects (the bridges of `networks`, the ruleset), the run directory
        (a tmpfs) is empty; the state directory stays."""
        import shutil

        bridges = ["shoal0"] + ["sh-" + self.shoal_json("network", "inspect", n)[0]["Id"][:12]
                                for n in networks]
        self.kill_processes()
        for name in bridges:
            self.ip("link", "del", name)
        self.in_ns(self.ns, "nft", "flush", "ruleset", check=True)
        for point in sorted(self.mounts(), key=len, reverse=True):
            if point.startswith(self.run_dir):
                subprocess.run(["umount", "-l", point], check=True)
        shutil.rmtree(self.run_dir)

    def cgroups(self) -> list[str]:
        """The cgroups this host's shoal made: <cgroup2>/shoal/<hash of its run dir>/*
        (the naming of shoal/runtime/cgroup.py, computed here without importing shoal)."""
        scope = _cgroup_scope(self.run_dir)
        if scope is None or not os.path.isdir(scope):
            return []
        return [os.path.join(scope, e) for e in os.listdir(scope)
                if os.path.isdir(os.path.join(scope, e))]

    def kill_cgroups(self) -> None:
        """Kill every process of this host's cgroups and remove them (also after a failure)."""
        for path in self.cgroups():
            try:
                Path(path, "cgroup.kill").write_text("1")
            except OSError:
                pass
            deadline = time.monotonic() + 10
            while "populated 1" in _read(Path(path, "cgroup.events")) and \
                    time.monotonic() < deadline:
                time.sleep(0.02)
            for _ in range(50):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
        scope = _cgroup_scope(self.run_dir)
        if scope is not None:
            try:
                os.rmdir(scope)
            except OSError:
                pass

    def cleanup(self) -> None:
        self.kill_cgroups()
        self.kill_processes()
        for point in sorted(self.mounts(), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
