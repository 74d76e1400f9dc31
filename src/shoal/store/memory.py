"""A global store in one process's memory (`shoal.store.protocol.GlobalStore`): for tests,
and for a single host that wants the global store's API without a server.

Thread-safe: one lock (a Condition) around everything; watchers wait on it. Time comes from
`clock` (time.monotonic by default); a `ManualClock` makes lease expiry a matter of
`advance()`, without waiting. Leases expire lazily: every call first expires the leases
whose time is up (one change per lease, as etcd revokes them), and a waiting watcher wakes
up when the next lease is due."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from .protocol import DELETE, PUT, Compacted, Event, KeyValue, LeaseNotFound

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType
    from typing import Self


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class _Lease:
    __slots__ = ("id", "ttl", "deadline", "keys")

    def __init__(self, id_: int, ttl: float, deadline: float) -> None:
        self.id, self.ttl, self.deadline = id_, ttl, deadline
        self.keys: set[str] = set()


class MemoryStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition(threading.RLock())
        self._revision = 1  # as etcd's: a new store is at revision 1
        self._compacted = 1  # the oldest revision whose events are kept
        self._kvs: dict[str, KeyValue] = {}
        self._leases: dict[int, _Lease] = {}
        self._next_lease = 1
        self._history: list[Event] = []  # every event since `_compacted`, in order
        self._watches: list[MemoryWatch] = []
        self._closed = False

    # -- helpers (with the lock held) --------------------------------------------------------

    def _expire(self) -> None:
        now = self._clock()
        for lease in sorted((x for x in self._leases.values() if x.deadline <= now),
                            key=lambda x: (x.deadline, x.id)):
            self._end_lease(lease)

    def _end_lease(self, lease: _Lease) -> None:
        del self._leases[lease.id]
        keys = sorted(k for k in lease.keys if k in self._kvs)
        if keys:
            self._revision += 1
            self._emit([Event(DELETE, k, b"", self._revision) for k in keys])
            for k in keys:
                del self._kvs[k]

    def _emit(self, events: list[Event]) -> None:
        self._history += events
        for watch in self._watches:
            watch._offer(events)
        self._cond.notify_all()

    def _next_deadline(self) -> float | None:
        return min((x.deadline for x in self._leases.values()), default=None)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("the store is closed")

    # -- GlobalStore ---------------------------------------------------------------------------

    def revision(self) -> int:
        with self._cond:
            self._expire()
            return self._revision

    def get(self, key: str) -> KeyValue | None:
        with self._cond:
            self._check_open()
            self._expire()
            return self._kvs.get(key)

    def get_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        with self._cond:
            self._check_open()
            self._expire()
            kvs = [kv for k, kv in self._kvs.items() if k.startswith(prefix)]
            kvs.sort(key=lambda kv: kv.key.encode())
            return kvs, self._revision

    def put(self, key: str, value: bytes, *, lease: int = 0,
            if_revision: int | None = None) -> int | None:
        if not isinstance(value, bytes):
            raise TypeError(f"a value is bytes, not {type(value).__name__}")
        with self._cond:
            self._check_open()
            self._expire()
            old = self._kvs.get(key)
            if if_revision is not None and (old.mod_revision if old else 0) != if_revision:
                return None
            if lease and lease not in self._leases:
                raise LeaseNotFound(f"lease {lease:x} is not granted (expired or revoked)")
            self._revision += 1
            if old is not None and old.lease and old.lease in self._leases:
                self._leases[old.lease].keys.discard(key)
            if lease:
                self._leases[lease].keys.add(key)
            self._kvs[key] = KeyValue(
                key, value, old.create_revision if old else self._revision, self._revision,
                old.version + 1 if old else 1, lease)
            self._emit([Event(PUT, key, value, self._revision)])
            return self._revision

    def delete(self, key: str, *, if_revision: int | None = None) -> int | None:
        with self._cond:
            self._check_open()
            self._expire()
            old = self._kvs.get(key)
            if old is None or (if_revision is not None and old.mod_revision != if_revision):
                return None
            self._revision += 1
            del self._kvs[key]
            if old.lease and old.lease in self._leases:
                self._leases[old.lease].keys.discard(key)
            self._emit([Event(DELETE, key, b"", self._revision)])
            return self._revision

    def grant(self, ttl: float) -> int:
        if ttl <= 0:
            raise ValueError("a lease's time to live is positive")
        with self._cond:
            self._check_open()
            self._expire()
            lease = _Lease(self._next_lease, ttl, self._clock() + ttl)
            self._next_lease += 1
            self._leases[lease.id] = lease
            self._cond.notify_all()  # (waiting watchers wake up when it is due)
            return lease.id

    def _live_lease(self, lease: int) -> _Lease:
        """A lease that has neither expired nor been revoked (call with the lock held)."""
        self._check_open()
        self._expire()
        found = self._leases.get(lease)
        if found is None:
            raise LeaseNotFound(f"lease {lease:x} expired or was revoked")
        return found

    def keep_alive(self, lease: int) -> float:
        with self._cond:
            found = self._live_lease(lease)
            found.deadline = self._clock() + found.ttl
            return found.ttl

    def revoke(self, lease: int) -> None:
        with self._cond:
            self._end_lease(self._live_lease(lease))

    def watch(self, prefix: str, start_revision: int | None = None) -> MemoryWatch:
        with self._cond:
            self._check_open()
            self._expire()
            if start_revision is not None and start_revision < self._compacted:
                raise Compacted(self._compacted)
            watch = MemoryWatch(self, prefix, start_revision or self._revision + 1)
            if start_revision is not None:
                watch._offer([e for e in self._history if e.revision >= start_revision])
            self._watches.append(watch)
            return watch

    def compact(self, revision: int) -> None:
        with self._cond:
            self._check_open()
            self._expire()
            if revision > self._revision:
                raise ValueError(f"revision {revision} is in the future (now "
                                 f"{self._revision})")
            if revision > self._compacted:
                self._compacted = revision
                self._history = [e for e in self._history if e.revision >= revision]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for watch in self._watches:
                watch._closed = True
            self._watches.clear()
            self._cond.notify_all()

    # -- for watches ---------------------------------------------------------------------------

    def _unwatch(self, watch: MemoryWatch) -> None:
        with self._cond:
            watch._closed = True
            if watch in self._watches:
                self._watches.remove(watch)
            self._cond.notify_all()


class MemoryWatch:
    """A watch of a MemoryStore: the events under its prefix, queued for it as they
    happen."""

    def __init__(self, store: MemoryStore, prefix: str, start_revision: int) -> None:
        self._store, self.prefix, self.start_revision = store, prefix, start_revision
        self._pending: deque[Event] = deque()
        self._closed = False

    def _offer(self, events: list[Event]) -> None:
        self._pending.extend(e for e in events
                             if e.revision >= self.start_revision and e.key.startswith(self.prefix))

    def get(self, timeout: float | None = None) -> Event | None:
        store = self._store
        deadline = None if timeout is None else time.monotonic() + timeout
        with store._cond:
            while True:
                if not store._closed:
                    store._expire()
                if self._pending:
                    return self._pending.popleft()
                if self._closed:
                    return None
                wait = None if deadline is None else deadline - time.monotonic()
                if wait is not None and wait <= 0:
                    return None
                due = store._next_deadline()
                if due is not None:  # wake up when the next lease is due
                    left = max(due - store._clock(), 0.001)
                    if store._clock is not time.monotonic:  # (another clock may jump)
                        left = min(left, 0.05)
                    wait = left if wait is None else min(wait, left)
                store._cond.wait(wait)

    def close(self) -> None:
        self._store._unwatch(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
