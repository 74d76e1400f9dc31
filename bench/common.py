"""Helpers both benchmarks use: formatting figures, the mounts of a throwaway namespace, and
per-call timing of shoal's functions."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterable


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def netns_id(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


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
