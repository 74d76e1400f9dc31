"""Helpers both benchmarks use: the figures and their table, running commands, the throwaway
host namespace and its mounts, profiles as text, and per-call timing of shoal's functions."""

from __future__ import annotations

import importlib
import io
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass

TYPE_CHECKING = False
if TYPE_CHECKING:
    import cProfile

CMD_TIMEOUT = 300.0


TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout
SRC = os.path.join(TOP, "src")
VENV_PY = os.path.join(TOP, ".venv", "bin", "python")


def cli_python() -> str:
    """The interpreter the CLI is timed with: the project's venv, else this one."""
    import sys

    return VENV_PY if os.path.exists(VENV_PY) else sys.executable


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


@dataclass
class Figure:
    """One measured figure; `ok` is None where there is no target to meet."""

    name: str
    value: str
    target: str = ""
    ok: bool | None = None
    phase: str = ""  # bench/ports.py: baseline, nftables or iptables

    @property
    def mark(self) -> str:
        return "" if self.ok is None else ("OK" if self.ok else "MISS")


def figure_table(figures: list[Figure]) -> list[str]:
    """The figures as aligned columns (figure, measured, target, OK/MISS), with a phase column
    first and a blank line between phases when they have phases."""
    if not figures:
        return []
    phased = any(f.phase for f in figures)
    pw = max(len(f.phase) for f in figures)
    nw = max(max(len(f.name) for f in figures), len("figure"))
    vw = max(max(len(f.value) for f in figures), len("measured"))
    tw = max(max(len(f.target) for f in figures), len("target"))

    def line(phase: str, name: str, value: str, target: str, mark: str) -> str:
        cells = [f"{name:<{nw}}", f"{value:<{vw}}", f"{target:<{tw}}", mark]
        return "  ".join(([f"{phase:<{pw}}"] if phased else []) + cells).rstrip()

    out = [line("phase", "figure", "measured", "target", "")]
    for i, f in enumerate(figures):
        if i and f.phase != figures[i - 1].phase:
            out.append("")
        out.append(line(f.phase, f.name, f.value, f.target, f.mark))
    return out


def p90(values: list[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def progress(label: str, done: int, total: int) -> None:
    if sys.stderr.isatty() and (done == total or done % max(1, total // 20) == 0):
        sys.stderr.write(f"\r  {label} {done}/{total}" + ("\n" if done == total else ""))
        sys.stderr.flush()


def run(cmd: list[str], env: dict[str, str] | None = None, stdin: str | None = None,
        timeout: float = CMD_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run a command to completion (killed after `timeout`), raising if it fails."""
    proc = subprocess.run(cmd, env=env, input=stdin, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} exited {proc.returncode}: "
                           f"{proc.stderr.strip()[:500]}")
    return proc


def cli_env(src: str, tmp: str) -> dict[str, str]:
    """The environment the CLI is timed in, as an installed shoal runs: shoal from `src`,
    bytecode cached (under `tmp`, since this session may set PYTHONDONTWRITEBYTECODE)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPATH=src, PYTHONPYCACHEPREFIX=os.path.join(tmp, "pycache"))
    return env


def profile_text(prof: cProfile.Profile, sort: str, limit: int) -> str:
    """The top `limit` functions of a profile, sorted by `sort` (tottime, cumulative)."""
    import pstats

    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats(sort).print_stats(limit)
    return out.getvalue()


def netns_id(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def ns_key(path: str) -> str:
    """A namespace's identity as one string, "dev:inode" (as --outer-ns passes it)."""
    dev, ino = netns_id(path)
    return f"{dev}:{ino}"


def unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(prefix: str) -> list[str]:
    """Mount points at or below `prefix` in this mount namespace, deepest first."""
    prefix = os.path.realpath(prefix)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = unescape(line.split()[4])
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(set(found), key=lambda p: (p.count("/"), p), reverse=True)


def remove_cgroups(src: str, run_dir: str) -> list[str]:
    """Remove the cgroups the benchmark's shoal made for `run_dir` (shoal/runtime/cgroup.py
    names them <cgroup2>/shoal/<hash of the run dir>/...), killing what is left in them;
    returns the ones that could not be removed."""
    import sys

    sys.path.insert(0, src)
    from shoal.runtime.cgroup import TOP, mount_point, scope_name

    root = mount_point()
    if root is None:
        return []
    scope = os.path.join(root, TOP, scope_name(run_dir))
    if not os.path.isdir(scope):
        return []
    left = []
    for path in [os.path.join(scope, e) for e in os.listdir(scope)] + [scope]:
        if not os.path.isdir(path):
            continue
        try:
            with open(os.path.join(path, "cgroup.kill"), "w") as f:
                f.write("1")
        except OSError:
            pass
        for _ in range(100):
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError:  # (still emptying)
                time.sleep(0.02)
        else:
            left.append(path)
    return left


def unmount_all(prefix: str) -> list[str]:
    """`umount -l` every mount under `prefix`; returns what could not be unmounted."""
    for _ in range(5):
        points = mounts_under(prefix)
        if not points:
            return []
        for point in points:
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=60)
    return mounts_under(prefix)


def make_host_ns(tmp: str) -> str:
    """The throwaway host namespace, bound at TMP/hostns, and its run directory TMP/run on a
    tmpfs (shoal's default /run/shoal is on the tmpfs /run is on Debian). Returns the
    namespace file; refuses to go on if it is the namespace this process is in."""
    nsfile = os.path.join(tmp, "hostns")
    open(nsfile, "x").close()
    run(["unshare", f"--net={nsfile}", "true"])
    os.mkdir(os.path.join(tmp, "run"), 0o700)
    run(["mount", "-t", "tmpfs", "-o", "mode=0700", "shoal-bench", os.path.join(tmp, "run")])
    if netns_id(nsfile) == netns_id("/proc/self/ns/net"):
        raise RuntimeError("the throwaway namespace is the current one; refusing to go on")
    return nsfile


def remove_tmp(tmp: str) -> list[str]:
    """Unmount everything under `tmp` and delete it; what is still mounted is returned (and
    `tmp` then kept)."""
    left = unmount_all(tmp)
    if not left:
        shutil.rmtree(tmp, ignore_errors=True)
    return left


def check_in(nsfile: str, not_ns: str | None = None) -> None:
    """Refuse to touch anything unless this thread is in the throwaway namespace at `nsfile`
    (and not in the namespace "dev:inode" `not_ns`, where the benchmark was started)."""
    if netns_id("/proc/thread-self/ns/net") != netns_id(nsfile):
        raise RuntimeError("not inside the throwaway host namespace; refusing to go on")
    if ns_key("/proc/thread-self/ns/net") == not_ns:
        raise RuntimeError("this is the namespace the script started in; refusing to go on")


class Breakdown:
    """Per-call times of the functions named "module:Class.method" or "module:function" while
    installed, in call order. A name that is not there is skipped."""

    def __init__(self, specs: Iterable[str]) -> None:
        self.specs = tuple(specs)
        self.calls: dict[str, list[float]] = {}
        self._undo: list[tuple[object, str, object]] = []

    def install(self) -> None:
        for spec in self.specs:
            module_name, _, path = spec.partition(":")
            owner: object = importlib.import_module(module_name)
            *parents, attr = path.split(".")
            for part in parents:
                owner = getattr(owner, part)
            if isinstance(owner, type):  # the class's own function, not an inherited one
                original = owner.__dict__.get(attr)
            else:
                original = getattr(owner, attr, None)
            if original is None:
                continue
            setattr(owner, attr, self._timed(path, original))
            self._undo.append((owner, attr, original))

    def uninstall(self) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()

    def _timed(self, name: str, func: Callable[..., object]) -> Callable[..., object]:
        times = self.calls.setdefault(name, [])

        def wrapper(*a: object, **kw: object) -> object:
            start = time.perf_counter()
            try:
                return func(*a, **kw)
            finally:
                times.append(time.perf_counter() - start)

        return wrapper

    def take(self) -> dict[str, list[float]]:
        calls = {k: v[:] for k, v in self.calls.items() if v}
        for v in self.calls.values():
            v.clear()
        return calls


def processes_in(namespaces: set[tuple[int, int]]) -> list[tuple[int, str]]:
    """(pid, command name) of every process, other than this one, whose network namespace is
    one of these."""
    me = os.getpid()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            if netns_id(f"/proc/{entry}/ns/net") not in namespaces:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            name = os.path.basename(argv[0].decode(errors="replace"))
            if b"shoal.runtime.supervisor" in argv:
                name = "supervisor"
            out.append((int(entry), name))
        except OSError:
            continue
    return out


def kill_leftovers(tmp: str) -> list[str]:
    """Kill (by pid) any process still in a namespace this phase made: the throwaway host and
    outside namespaces and every namespace file still mounted under `tmp`. They can only be
    processes this script started (directly or through shoal)."""
    spaces = set()
    for path in [os.path.join(tmp, "hostns"), os.path.join(tmp, "outside"), *mounts_under(tmp)]:
        with suppress(OSError):
            st = os.stat(path)
            if os.path.isfile(path) and st.st_size == 0:
                spaces.add((st.st_dev, st.st_ino))
    here = netns_id("/proc/self/ns/net")
    spaces.discard(here)  # never this (the machine's own) namespace
    killed = []
    for pid, comm in processes_in(spaces):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed.append(f"{comm}[{pid}]")
    return killed
