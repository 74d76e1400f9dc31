"""A real etcd cluster for the global store's integration tests: bench/etcd.py's Cluster in a
lab namespace of the test's own, and the test's thread inside that namespace while it talks to
the cluster (see bench/etcd.py for why a thread's setns is the simplest safe way)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from .harness import load_bench

etcd_bench = load_bench("etcd")


@contextmanager
def lab_cluster(base: Path, size: int = 3) -> Iterator[Any]:
    """A started cluster of `size` members; the calling thread is in the lab namespace until
    the block ends. Everything is removed afterwards, also when the block raises."""
    why = etcd_bench.available()
    if why is not None:
        pytest.skip(why)
    base.mkdir(parents=True, exist_ok=True)
    lab = str(base / "lab.ns")
    etcd_bench.make_netns(lab)
    cluster = etcd_bench.Cluster(base, lab, size)
    try:
        cluster.start()
        with cluster.entered():
            yield cluster
    finally:
        notes = cluster.close()
        etcd_bench.remove_netns(lab)
    # (only when the block passed: a failure's own error is the one to see)
    assert not notes, notes  # no member exited by itself
    assert not os.path.exists(lab)
    assert all(m.pid is None for m in cluster.members)
