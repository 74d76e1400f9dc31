"""The resolver's event loop: one thread, epoll, callbacks for readable and writable
descriptors, and timers. A callback that raises is counted and the loop goes on."""

from __future__ import annotations

import heapq
import select
import sys
import time
from collections.abc import Callable

Callback = Callable[[], None]


class Timer:
    __slots__ = ("when", "callback", "cancelled")

    def __init__(self, when: float, callback: Callback) -> None:
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: Timer) -> bool:
        return self.when < other.when


class Loop:
    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._readers: dict[int, Callback] = {}
        self._writers: dict[int, Callback] = {}
        self._timers: list[Timer] = []
        self._running = False
        self.errors = 0  # callbacks that raised

    def _mask(self, fd: int) -> int:
        return ((select.EPOLLIN if fd in self._readers else 0)
                | (select.EPOLLOUT if fd in self._writers else 0))

    def _update(self, fd: int, registered: bool) -> None:
        mask = self._mask(fd)
        if not mask:
            if registered:
                self._epoll.unregister(fd)
        elif registered:
            self._epoll.modify(fd, mask)
        else:
            self._epoll.register(fd, mask)

    def add_reader(self, fd: int, callback: Callback) -> None:
        registered = fd in self._readers or fd in self._writers
        self._readers[fd] = callback
        self._update(fd, registered)

    def set_writer(self, fd: int, callback: Callback | None) -> None:
        registered = fd in self._readers or fd in self._writers
        if callback is None:
            if fd not in self._writers:
                return
            del self._writers[fd]
        else:
            self._writers[fd] = callback
        self._update(fd, registered)

    def remove(self, fd: int) -> None:
        """Forget a descriptor (before it is closed)."""
        if self._readers.pop(fd, None) is not None or self._writers.pop(fd, None):
            self._writers.pop(fd, None)
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):
                pass

    def call_later(self, delay: float, callback: Callback) -> Timer:
        timer = Timer(time.monotonic() + delay, callback)
        heapq.heappush(self._timers, timer)
        return timer

    def stop(self) -> None:
        self._running = False

    def run(self) -> None:
        self._running = True
        epoll, readers, writers, timers = self._epoll, self._readers, self._writers, self._timers
        monotonic = time.monotonic
        writable = select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP
        readable = select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP
        while self._running:
            while timers and timers[0].cancelled:
                heapq.heappop(timers)
            timeout = min(max(timers[0].when - monotonic(), 0.0), 1.0) if timers else 1.0
            try:
                events = epoll.poll(timeout, 256)
            except InterruptedError:
                continue
            for fd, mask in events:
                callback = writers.get(fd) if mask & writable else None
                if callback is not None:
                    self._call(callback)
                if mask & readable:
                    callback = readers.get(fd)
                    if callback is not None:
                        self._call(callback)
            if timers:
                now = monotonic()
                while timers and timers[0].when <= now:
                    timer = heapq.heappop(timers)
                    if not timer.cancelled:
                        self._call(timer.callback)

    def _call(self, callback: Callback) -> None:
        try:
            callback()
        except Exception as e:  # one bad packet or peer must not stop the resolver
            self.errors += 1
            if self.errors <= 100:
                print(f"shoal resolver: {type(e).__name__}: {e}", file=sys.stderr)

    def close(self) -> None:
        self._epoll.close()
