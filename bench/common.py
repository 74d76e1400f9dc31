"""Helpers both benchmarks use: formatting figures and the mounts of a throwaway namespace."""

from __future__ import annotations

import os
import re
import subprocess


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


def unmount_all(prefix: str) -> list[str]:
    """`umount -l` every mount under `prefix`; returns what could not be unmounted."""
    for _ in range(5):
        points = mounts_under(prefix)
        if not points:
            return []
        for point in points:
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=60)
    return mounts_under(prefix)
