"""The multi-host lab of the overlay tests: bench/overlay_lab.py's Lab (three hosts on one
underlay, an etcd member in each), skipped with the reason when it cannot run here, and checked
after the block for anything it left behind."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from .harness import load_bench

lab_bench = load_bench("overlay_lab")


@contextmanager
def overlay_lab(base: Path, size: int = 3, backend: str | None = None) -> Iterator[Any]:
    """A started lab of `size` hosts (see bench/overlay_lab.py for its API). Everything is
    removed afterwards, also when the block raises; when the block passed, cleanup is checked:
    no etcd member exited by itself and nothing of any host is left."""
    why = lab_bench.available()
    if why is not None:
        pytest.skip(why)
    lab = lab_bench.Lab(base, size, backend)
    spaces: set[int] = set()
    with lab:
        for host in lab.hosts:
            spaces |= host.namespaces()
        yield lab
        for host in lab.hosts:
            spaces |= host.namespaces()  # (and the sandboxes made meanwhile)
    # (only when the block passed: a failure's own error is the one to see)
    assert not lab.notes, lab.notes
    assert all(m.pid is None for m in lab.etcd.members)
    left = lab.hosts[0]._our_processes(spaces)
    assert not left, f"a host's process outlived the lab: {_commands(left)}"
    assert not any(h.mounts() for h in lab.hosts)
    assert not os.path.ismount(lab.ns)


def _commands(pids: list[int]) -> dict[int, str]:
    """PID -> command line (what a leftover process is, for the failure's message)."""
    out = {}
    for pid in pids:
        try:
            out[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            out[pid] = "(gone)"
    return out
