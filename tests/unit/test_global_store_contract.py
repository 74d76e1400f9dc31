"""The contract of shoal.store.protocol.GlobalStore, run against every implementation.

An implementation joins by adding a factory to IMPLEMENTATIONS: it returns a Harness (the
store, a way to let time pass for its leases, and a cleanup). The tests keep every key under
a prefix of their own and assume nothing about the store's revision when they start, so a
shared server (an etcd cluster of a test machine) can run them; time-based tests let
`advance` sleep for a real server."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import NamedTuple

import pytest

from shoal.store import protocol
from shoal.store.memory import ManualClock, MemoryStore
from shoal.store.protocol import (
    DELETE,
    PUT,
    Compacted,
    Event,
    GlobalStore,
    LeaseNotFound,
)

TTL = 3.0  # seconds; at least a real server's minimum (etcd's is about 2 s)


class Harness(NamedTuple):
    store: GlobalStore
    advance: Callable[[float], None]  # let this much time pass for the store's leases
    close: Callable[[], None]


def memory() -> Harness:
    clock = ManualClock()
    store = MemoryStore(clock=clock)
    return Harness(store, clock.advance, store.close)


# name -> factory; an etcd implementation adds itself here (skipping when no server runs)
IMPLEMENTATIONS: dict[str, Callable[[], Harness]] = {"memory": memory}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    made = IMPLEMENTATIONS[request.param]()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def kv(harness: Harness) -> GlobalStore:
    return harness.store


@pytest.fixture
def p() -> str:
    """This test's own prefix."""
    return f"/shoal-test/{uuid.uuid4().hex}/"


def take(watch: protocol.Watch, count: int) -> list[Event]:
    """The next `count` events (waiting for each up to 5 s), then none more."""
    out = []
    for _ in range(count):
        event = watch.get(timeout=5.0)
        if event is None:
            break
        out.append(event)
    extra = watch.get(timeout=0.05)
    return out if extra is None else [*out, extra]


# -- keys and revisions ----------------------------------------------------------------------


def test_a_missing_key_reads_as_none(kv: GlobalStore, p: str) -> None:
    assert kv.get(p + "nothing") is None
    assert kv.get_prefix(p)[0] == []


def test_put_then_get_gives_the_value_and_its_revisions(kv: GlobalStore, p: str) -> None:
    before = kv.revision()
    rev = kv.put(p + "a", b"one")
    assert rev is not None and rev > before
    got = kv.get(p + "a")
    assert got is not None
    assert (got.key, got.value, got.create_revision, got.mod_revision, got.version,
            got.lease) == (p + "a", b"one", rev, rev, 1, 0)
    assert kv.revision() >= rev


def test_each_write_raises_the_revision_and_the_version(kv: GlobalStore, p: str) -> None:
    first = kv.put(p + "a", b"1")
    second = kv.put(p + "a", b"2")
    other = kv.put(p + "b", b"x")
    assert first is not None and second is not None and other is not None
    assert first < second < other
    got = kv.get(p + "a")
    assert got is not None
    assert (got.value, got.create_revision, got.mod_revision, got.version) == (
        b"2", first, second, 2)


@pytest.mark.parametrize("value", [b"", b"\x00\xff\x00", "ü".encode() * 1000])
def test_values_are_bytes_kept_exactly(kv: GlobalStore, p: str, value: bytes) -> None:
    kv.put(p + "v", value)
    got = kv.get(p + "v")
    assert got is not None and got.value == value and isinstance(got.value, bytes)


def test_deleting_a_key(kv: GlobalStore, p: str) -> None:
    put = kv.put(p + "a", b"1")
    deleted = kv.delete(p + "a")
    assert put is not None and deleted is not None and deleted > put
    assert kv.get(p + "a") is None
    assert kv.delete(p + "a") is None  # nothing left to delete


def test_a_deleted_key_written_again_starts_afresh(kv: GlobalStore, p: str) -> None:
    kv.put(p + "a", b"1")
    kv.put(p + "a", b"2")
    kv.delete(p + "a")
    rev = kv.put(p + "a", b"3")
    got = kv.get(p + "a")
    assert got is not None and (got.create_revision, got.version) == (rev, 1)


def test_prefix_listing_is_sorted_and_holds_only_the_prefix(kv: GlobalStore, p: str) -> None:
    for key in ("n/b", "n/a", "n/c/deep", "m/a", "nx"):
        kv.put(p + key, key.encode())
    last = kv.put(p + "n/é", b"accented")  # after every ASCII key, as its UTF-8 bytes sort
    kvs, rev = kv.get_prefix(p + "n/")
    assert [x.key for x in kvs] == [p + k for k in ("n/a", "n/b", "n/c/deep", "n/é")]
    assert [x.value for x in kvs] == [b"n/a", b"n/b", b"n/c/deep", b"accented"]
    assert last is not None and rev >= last


# -- compare-and-swap ------------------------------------------------------------------------


def test_create_only_if_absent(kv: GlobalStore, p: str) -> None:
    rev = protocol.create(kv, p + "a", b"first")
    assert rev is not None
    assert protocol.create(kv, p + "a", b"second") is None
    got = kv.get(p + "a")
    assert got is not None and got.value == b"first" and got.mod_revision == rev


def test_put_if_revision(kv: GlobalStore, p: str) -> None:
    rev = kv.put(p + "a", b"1")
    assert rev is not None
    newer = kv.put(p + "a", b"2", if_revision=rev)
    assert newer is not None and newer > rev
    # a writer that read the old revision loses, and changes nothing
    assert kv.put(p + "a", b"stale", if_revision=rev) is None
    got = kv.get(p + "a")
    assert got is not None and got.value == b"2" and got.mod_revision == newer
    # a revision on a key that does not exist never matches
    assert kv.put(p + "missing", b"x", if_revision=rev) is None
    assert kv.get(p + "missing") is None


def test_delete_if_revision(kv: GlobalStore, p: str) -> None:
    rev = kv.put(p + "a", b"1")
    assert rev is not None
    newer = kv.put(p + "a", b"2")
    assert kv.delete(p + "a", if_revision=rev) is None
    assert kv.get(p + "a") is not None
    assert kv.delete(p + "a", if_revision=newer) is not None
    assert kv.get(p + "a") is None


def test_a_failed_condition_does_not_change_the_revision(kv: GlobalStore, p: str) -> None:
    rev = kv.put(p + "a", b"1")
    assert rev is not None
    kv.put(p + "a", b"x", if_revision=rev + 1000)
    kv.delete(p + "a", if_revision=rev + 1000)
    got = kv.get(p + "a")
    assert got is not None and got.mod_revision == rev and got.version == 1


def test_only_one_of_racing_creators_wins(kv: GlobalStore, p: str) -> None:
    results: list[int | None] = []
    start = threading.Barrier(8)

    def create(i: int) -> None:
        start.wait()
        results.append(protocol.create(kv, p + "leader", str(i).encode()))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len([r for r in results if r is not None]) == 1


def test_compare_and_swap_loses_no_update_under_threads(kv: GlobalStore, p: str) -> None:
    def bump(old: bytes | None) -> bytes:
        return str(int(old or b"0") + 1).encode()

    def worker() -> None:
        for _ in range(50):
            protocol.update(kv, p + "counter", bump)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = kv.get(p + "counter")
    assert got is not None and got.value == b"300" and got.version == 300


# -- leases ----------------------------------------------------------------------------------


def test_keys_of_an_expired_lease_vanish(harness: Harness, p: str) -> None:
    kv = harness.store
    lease = kv.grant(TTL)
    assert lease != 0
    kv.put(p + "host/a", b"up", lease=lease)
    kv.put(p + "keep", b"no lease")
    got = kv.get(p + "host/a")
    assert got is not None and got.lease == lease
    harness.advance(TTL / 2)
    assert kv.get(p + "host/a") is not None  # not yet
    harness.advance(TTL + 1.5)
    assert kv.get(p + "host/a") is None
    assert [x.key for x in kv.get_prefix(p)[0]] == [p + "keep"]
    with pytest.raises(LeaseNotFound):
        kv.keep_alive(lease)
    with pytest.raises(LeaseNotFound):
        kv.put(p + "late", b"x", lease=lease)
    assert kv.get(p + "late") is None


def test_keep_alive_restarts_the_time_to_live(harness: Harness, p: str) -> None:
    kv = harness.store
    lease = kv.grant(TTL)
    kv.put(p + "a", b"1", lease=lease)
    for _ in range(3):  # three times 0.6 TTL: longer than one TTL in all
        harness.advance(TTL * 0.6)
        assert kv.keep_alive(lease) >= TTL
    assert kv.get(p + "a") is not None
    harness.advance(TTL + 1.5)
    assert kv.get(p + "a") is None


def test_revoke_deletes_the_lease_keys_at_once(kv: GlobalStore, p: str) -> None:
    mine, other = kv.grant(TTL * 10), kv.grant(TTL * 10)
    kv.put(p + "a", b"1", lease=mine)
    kv.put(p + "b", b"2", lease=mine)
    kv.put(p + "c", b"3", lease=other)
    kv.put(p + "d", b"4", lease=mine)
    kv.put(p + "d", b"5")  # written again without a lease: no longer the lease's
    kv.revoke(mine)
    assert [x.key for x in kv.get_prefix(p)[0]] == [p + "c", p + "d"]
    with pytest.raises(LeaseNotFound):
        kv.revoke(mine)
    with pytest.raises(LeaseNotFound):
        kv.keep_alive(mine)
    kv.revoke(other)


def test_a_key_can_move_to_another_lease(harness: Harness, p: str) -> None:
    kv = harness.store
    short, long = kv.grant(TTL), kv.grant(TTL * 10)
    kv.put(p + "a", b"1", lease=short)
    kv.put(p + "a", b"2", lease=long)
    harness.advance(TTL + 1.5)
    got = kv.get(p + "a")
    assert got is not None and got.value == b"2" and got.lease == long
    kv.revoke(long)


# -- watch -----------------------------------------------------------------------------------


def test_watch_from_now_reports_puts_and_deletes_in_order(kv: GlobalStore, p: str) -> None:
    kv.put(p + "w/before", b"old")
    with kv.watch(p + "w/") as watch:
        r1 = kv.put(p + "w/a", b"1")
        kv.put(p + "elsewhere", b"x")
        r2 = kv.put(p + "w/a", b"2")
        r3 = kv.delete(p + "w/before")
        events = take(watch, 3)
    assert events == [Event(PUT, p + "w/a", b"1", r1), Event(PUT, p + "w/a", b"2", r2),
                      Event(DELETE, p + "w/before", b"", r3)]


def test_nothing_to_report_times_out(kv: GlobalStore, p: str) -> None:
    with kv.watch(p) as watch:
        assert watch.get(timeout=0.05) is None


def test_watch_from_a_past_revision_replays_from_it(kv: GlobalStore, p: str) -> None:
    r1 = kv.put(p + "a", b"1")
    r2 = kv.put(p + "a", b"2")
    r3 = kv.delete(p + "a")
    assert r1 is not None and r2 is not None and r3 is not None
    with kv.watch(p, start_revision=r2) as watch:  # inclusive
        r4 = kv.put(p + "b", b"3")
        events = take(watch, 3)
    assert events == [Event(PUT, p + "a", b"2", r2), Event(DELETE, p + "a", b"", r3),
                      Event(PUT, p + "b", b"3", r4)]


def test_watch_from_a_future_revision_waits_for_it(kv: GlobalStore, p: str) -> None:
    rev = kv.put(p + "a", b"0")
    assert rev is not None
    with kv.watch(p, start_revision=rev + 2) as watch:
        kv.put(p + "a", b"1")  # rev + 1 (or later, on a shared server: then none is seen)
        later = kv.put(p + "a", b"2")
        events = take(watch, 1 if later == rev + 2 else 2)
    assert events[-1] == Event(PUT, p + "a", b"2", later)
    assert all(e.revision >= rev + 2 for e in events)


def test_list_then_watch_after_it_misses_nothing(kv: GlobalStore, p: str) -> None:
    kv.put(p + "a", b"1")
    kvs, rev = kv.get_prefix(p)
    # changes between the listing and the watch are not lost
    r2 = kv.put(p + "b", b"2")
    with kv.watch(p, start_revision=rev + 1) as watch:
        r3 = kv.put(p + "a", b"3")
        events = take(watch, 2)
    assert [x.key for x in kvs] == [p + "a"]
    assert events == [Event(PUT, p + "b", b"2", r2), Event(PUT, p + "a", b"3", r3)]


def test_an_expiring_lease_is_reported_as_deletes_of_one_revision(harness: Harness,
                                                                   p: str) -> None:
    kv = harness.store
    lease = kv.grant(TTL)
    kv.put(p + "a", b"1", lease=lease)
    kv.put(p + "b", b"2", lease=lease)
    with kv.watch(p) as watch:
        harness.advance(TTL + 1.5)
        events = take(watch, 2)
    assert sorted((e.kind, e.key) for e in events) == [(DELETE, p + "a"), (DELETE, p + "b")]
    assert len({e.revision for e in events}) == 1
    assert events[0].revision <= kv.revision()


def test_a_waiting_watcher_wakes_up_on_a_change(kv: GlobalStore, p: str) -> None:
    got: list[Event | None] = []
    with kv.watch(p) as watch:
        waiter = threading.Thread(target=lambda: got.append(watch.get(timeout=10)))
        waiter.start()
        rev = kv.put(p + "a", b"1")
        waiter.join(timeout=10)
    assert got == [Event(PUT, p + "a", b"1", rev)]


def test_closing_a_watch_ends_a_waiting_get(kv: GlobalStore, p: str) -> None:
    got: list[Event | None] = []
    watch = kv.watch(p)
    waiter = threading.Thread(target=lambda: got.append(watch.get(timeout=10)))
    waiter.start()
    watch.close()
    waiter.join(timeout=5)
    assert not waiter.is_alive() and got == [None]
    kv.put(p + "a", b"1")
    assert watch.get(timeout=0.05) is None


def test_two_watchers_each_get_every_event(kv: GlobalStore, p: str) -> None:
    with kv.watch(p) as one, kv.watch(p + "x") as two:
        kv.put(p + "x1", b"1")
        kv.put(p + "y1", b"2")
        assert [e.key for e in take(one, 2)] == [p + "x1", p + "y1"]
        assert [e.key for e in take(two, 1)] == [p + "x1"]


def test_compacted_history_cannot_be_watched(kv: GlobalStore, p: str) -> None:
    r1 = kv.put(p + "a", b"1")
    r2 = kv.put(p + "a", b"2")
    assert r1 is not None and r2 is not None
    kv.compact(r2)
    with pytest.raises(Compacted) as caught:
        kv.watch(p, start_revision=r1)
    assert caught.value.revision >= r2
    with kv.watch(p, start_revision=r2) as watch:  # from the compaction on: still there
        assert [e.revision for e in take(watch, 1)] == [r2]
    got = kv.get(p + "a")  # values are kept
    assert got is not None and got.value == b"2"
