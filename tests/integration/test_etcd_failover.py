"""EtcdStore when members of its cluster fail: it moves to a member that answers, says in one
line which store it cannot reach when none does (and does not hang), works again once the
members are back without anything done to it, and a watch survives the loss of its member
without losing or repeating an event. Each test has a three-member cluster of its own."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.store.etcd import EtcdStore
from shoal.store.protocol import PUT, Event, GlobalStoreError

from .etcd_lab import lab_cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Any]:
    with lab_cluster(tmp_path) as made:
        yield made


@pytest.fixture
def store(cluster: Any) -> Iterator[EtcdStore]:
    made = EtcdStore(cluster.url, timeout=3.0)
    try:
        yield made
    finally:
        made.close()


def bounded(call: Any, limit: float = 60.0) -> Any:
    """call() in a thread, failing the test if it hangs; returns its result or raises its
    exception. (A new thread starts in its creator's network namespace: the lab's here.)"""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append((True, call()))
        except BaseException as exc:  # (handed back to the test)
            out.append((False, exc))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(limit)
    assert out, f"the call did not return in {limit} s"
    ok, value = out[0]
    if not ok:
        raise value
    return value


@pytest.mark.parametrize("which", ["first", "leader"])
def test_the_store_moves_on_when_its_member_is_killed(cluster: Any, which: str) -> None:
    # the store talks to the first member of its URL: that one, or the leader put first
    victim = cluster.members[0] if which == "first" else cluster.leader()
    others = [m for m in cluster.members if m is not victim]
    url = "etcd://" + ",".join(f"{m.addr}:2379" for m in [victim, *others])
    with EtcdStore(url) as store:
        moves_on(cluster, store, victim)


def moves_on(cluster: Any, store: EtcdStore, victim: Any) -> None:
    first = store.put("/k/a", b"1")  # answered by the victim, the one it talks to
    cluster.kill(victim)
    got = bounded(lambda: store.get("/k/a"))
    assert got is not None and got.value == b"1" and got.mod_revision == first
    second = bounded(lambda: store.put("/k/a", b"2", if_revision=first))
    assert second is not None and second > first
    got = store.get("/k/a")
    assert got is not None and got.value == b"2"


def test_no_member_answering_is_one_line_naming_the_store(cluster: Any,
                                                          store: EtcdStore) -> None:
    store.put("/k/a", b"1")
    for m in cluster.members:
        cluster.stop(m)
    with pytest.raises(GlobalStoreError) as caught:
        bounded(lambda: store.get("/k/a"))
    message = str(caught.value)
    assert message == (f"cannot reach the store {cluster.url}: connection refused; is etcd "
                       "running?")
    with pytest.raises(GlobalStoreError, match="cannot reach the store etcd://"):
        bounded(lambda: store.put("/k/b", b"2", if_revision=0))


def test_the_store_works_again_when_the_members_are_back(cluster: Any,
                                                         store: EtcdStore) -> None:
    rev = store.put("/k/a", b"1")
    for m in cluster.members:
        cluster.stop(m)
    with pytest.raises(GlobalStoreError):
        bounded(lambda: store.get("/k/a"))
    for m in cluster.members:
        cluster.start_member(m, wait=False)
    cluster.wait_healthy()
    # the same store object, nothing done to it
    got = bounded(lambda: store.get("/k/a"))
    assert got is not None and got.value == b"1" and got.mod_revision == rev
    later = bounded(lambda: store.put("/k/a", b"2", if_revision=rev))
    assert later is not None and later > rev


def test_a_watch_goes_on_across_the_loss_of_its_member(cluster: Any, store: EtcdStore) -> None:
    with store.watch("/w/") as watch:  # on the first member, the one the store talks to
        r1 = store.put("/w/a", b"1")
        assert watch.get(timeout=10) == Event(PUT, "/w/a", b"1", r1)
        cluster.kill(cluster.members[0])
        r2 = bounded(lambda: store.put("/w/a", b"2"))
        r3 = bounded(lambda: store.put("/w/b", b"3"))
        got = [watch.get(timeout=20), watch.get(timeout=20)]
        assert got == [Event(PUT, "/w/a", b"2", r2), Event(PUT, "/w/b", b"3", r3)]
        assert watch.get(timeout=0.5) is None  # nothing repeated


def test_a_watch_with_no_member_left_says_so(cluster: Any, store: EtcdStore) -> None:
    watch = store.watch("/w/")
    watch.RESUME_FOR = 1.0  # (give up soon: the default waits longer for members)
    r1 = store.put("/w/a", b"1")
    for m in cluster.members:
        cluster.stop(m)
    try:
        assert watch.get(timeout=10) == Event(PUT, "/w/a", b"1", r1)  # what came is kept
        with pytest.raises(GlobalStoreError, match=r"lost the store: cannot reach the store "
                                                   r"etcd://.*connection refused"):
            bounded(lambda: watch.get(timeout=30))
    finally:
        watch.close()


def test_a_member_that_does_not_answer_is_passed_over(cluster: Any) -> None:
    # 10.231.0.99 is on the underlay, and nothing has it: connecting there times out
    url = "etcd://10.231.0.99:2379," + cluster.url.removeprefix("etcd://")
    with EtcdStore(url) as store:
        rev = bounded(lambda: store.put("/k/a", b"1"))
        got = store.get("/k/a")
        assert got is not None and got.mod_revision == rev
    with EtcdStore("etcd://10.231.0.99:2379,10.231.0.98:2379", timeout=1.0) as store:
        with pytest.raises(GlobalStoreError) as caught:
            bounded(lambda: store.get("/k/a"))
        assert str(caught.value) == ("cannot reach the store etcd://10.231.0.99:2379,"
                                     "10.231.0.98:2379: timed out; is etcd running?")
