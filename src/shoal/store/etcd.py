"""The global store on a real etcd cluster (`shoal.store.protocol.GlobalStore`), through etcd's
v3 JSON gateway (the HTTP port every etcd 3.4+ member serves beside gRPC), with the etcd3gw
client: no gRPC, no generated code, one small dependency on `requests`.

Importing etcd3gw costs about 150 ms on the test machine (`python -X importtime -c 'import
etcd3gw'`: 145-200 ms over runs, of which `requests` is about 90 ms and futurist, for
etcd3gw's own watch threads, about 30 ms), so it is imported when an `EtcdStore` is made,
never when this module is: `parse_store_url` stays cheap, and only overlay operations pay for
the client.

What comes from etcd3gw: the HTTP session, the URL and API-path handling (`get_url`, which
finds /v3/ or /v3beta/ from the server's version), posting a request and turning HTTP errors
into exceptions (`post`), and leases (`lease`, `Lease.refresh`, `Lease.revoke`). What is done
here, on top of its session, and why:

- several endpoints with failover: etcd3gw's client talks to one host. `EtcdStore` keeps one
  client per endpoint (sharing one session) and moves to the next when one cannot be reached;
- the requests themselves are posted as JSON bodies built here, because etcd3gw's `put`,
  `get` and `delete` return booleans or values without the response header (the revision the
  protocol returns), and its key encoding is Latin-1 for `str` keys where etcd's keys are
  UTF-8 bytes here;
- watch: etcd3gw's `Watcher` ignores the responses that cancel a watch (a compacted start
  revision among them), drops a broken stream silently, parses one HTTP chunk as one message
  and cannot be stopped from another thread without racing its reader. `EtcdWatch` reads the
  /v3/watch stream itself, raises `Compacted`, and resumes on another member after a failure
  from the revision after the last event it got.

Timeouts: every request has a connect timeout (1 s) and a read timeout (`timeout`, 5 s by
default) on each endpoint it tries, so a call gives up after at most endpoints x (1 s +
`timeout`), with a one-line GlobalStoreError that names the store. (A member that cannot
reach a leader holds a request until there is one: after the leader dies, the election takes
1-2 s with etcd's default timings, which the 5 s leave room for; a stopped member refuses at
once.) A request that may have
been done (the connection broke or timed out after it was sent) is tried on the next member
only if doing it twice changes nothing (reads, keep-alives, grants, compaction); a write then
raises GlobalStoreError saying its outcome is unknown, since trying it again could report a
conditional write that succeeded as failed."""

from __future__ import annotations

import base64
import json
import math
import socket
import threading
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import InvalidArgument
from .protocol import DELETE, PUT, Compacted, Event, GlobalStoreError, KeyValue, LeaseNotFound

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType
    from typing import Self

DEFAULT_PORT = 2379
CONNECT_TIMEOUT = 1.0  # seconds: the members are on a LAN
# etcd's "Unavailable" answers that say the request was not done (safe to send elsewhere)
NOT_DONE = ("no leader", "not capable", "too many requests", "leader changed")


# -- the store URL ----------------------------------------------------------------------------


class Endpoint(NamedTuple):
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_store_url(text: str) -> list[Endpoint]:
    """The endpoints of a store URL, `etcd://HOST[:PORT][,HOST[:PORT]...]` (port 2379 if
    left out; an IPv6 address in brackets). InvalidArgument, one line naming the problem and
    the fix, for anything else."""
    example = "etcd://10.0.0.1:2379,10.0.0.2:2379"
    scheme, sep, rest = text.strip().partition("://")
    if not sep:
        raise InvalidArgument(f"store URL {text!r} has no scheme; write it as {example}")
    if scheme.lower() != "etcd":
        raise InvalidArgument(f"store URL {text!r}: unknown scheme {scheme!r}; only etcd:// "
                              f"is supported, e.g. {example}")
    if any(c in rest for c in "/?#@"):
        raise InvalidArgument(f"store URL {text!r}: only host:port endpoints may follow "
                              f"etcd:// (no path, query, or user); e.g. {example}")
    if not rest:
        raise InvalidArgument(f"store URL {text!r} names no endpoint; e.g. {example}")
    out: list[Endpoint] = []
    for part in rest.split(","):
        if not part:
            raise InvalidArgument(f"store URL {text!r} has an empty endpoint (two commas, or "
                                  f"one at an end); e.g. {example}")
        if part.startswith("["):
            host, close, tail = part[1:].partition("]")
            if not close or (tail and not tail.startswith(":")) or ":" not in host:
                raise InvalidArgument(f"store URL {text!r}: bad IPv6 endpoint {part!r}; write "
                                      "it as [ADDRESS]:PORT, e.g. [fd00::1]:2379")
            port_text = tail[1:] if tail else None
        else:
            host, colon, port_text_ = part.partition(":")
            if ":" in port_text_:
                raise InvalidArgument(f"store URL {text!r}: endpoint {part!r} has several "
                                      "colons; put an IPv6 address in brackets, e.g. "
                                      "[fd00::1]:2379")
            port_text = port_text_ if colon else None
        if not host:
            raise InvalidArgument(f"store URL {text!r}: endpoint {part!r} has no host; "
                                  f"e.g. {example}")
        port = DEFAULT_PORT
        if port_text is not None:
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise InvalidArgument(f"store URL {text!r}: endpoint {part!r} has a bad port "
                                      f"{port_text!r}; a port is a number from 1 to 65535")
            port = int(port_text)
        endpoint = Endpoint(host, port)
        if endpoint in out:
            raise InvalidArgument(f"store URL {text!r} names {endpoint} twice; name each "
                                  "member once")
        out.append(endpoint)
    return out


def format_store_url(endpoints: list[Endpoint]) -> str:
    return "etcd://" + ",".join(str(e) for e in endpoints)


# -- helpers ----------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _range_end(prefix: bytes) -> bytes:
    """The first key after every key starting with `prefix` (b"\\0": no end, when every key
    does)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\0"
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _kv(raw: dict[str, Any]) -> KeyValue:
    return KeyValue(base64.b64decode(raw["key"]).decode("utf-8"),
                    base64.b64decode(raw.get("value", "")),
                    int(raw.get("create_revision", 0)), int(raw.get("mod_revision", 0)),
                    int(raw.get("version", 0)), int(raw.get("lease", 0)))


def _revision(response: dict[str, Any]) -> int:
    return int(response.get("header", {}).get("revision", 0))


class _Unreachable(Exception):
    """One endpoint did not answer; `sent`: the request may have reached it."""

    def __init__(self, reason: str, sent: bool) -> None:
        super().__init__(reason)
        self.reason, self.sent = reason, sent


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception, its causes and contexts, and the `reason`s urllib3 keeps."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        e = todo.pop()
        if e in seen:
            continue
        seen.append(e)
        for nxt in (e.__cause__, e.__context__, getattr(e, "reason", None),
                    *[a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    return seen


def _classify(exc: BaseException) -> _Unreachable:
    """What a failed request tells: why the endpoint did not answer and whether the request
    may have been sent."""
    import requests
    import urllib3

    chain = _causes(exc)
    not_sent = any(isinstance(e, (requests.exceptions.ConnectTimeout,
                                  urllib3.exceptions.NewConnectionError,
                                  urllib3.exceptions.ConnectTimeoutError)) for e in chain)
    for e in chain:
        if isinstance(e, OSError) and e.errno:
            import os

            return _Unreachable(os.strerror(e.errno).lower(), not not_sent)
    if any(isinstance(e, (requests.exceptions.Timeout, socket.timeout, TimeoutError))
           for e in chain):
        return _Unreachable("timed out", not not_sent)
    detail = getattr(exc, "detail_text", None)
    if detail:  # an HTTP error answer: 503 (Unavailable), 504...
        message = _message(detail)
        return _Unreachable(message, not any(m in message for m in NOT_DONE))
    return _Unreachable(str(exc) or type(exc).__name__, not not_sent)


def _message(detail: str | None) -> str:
    """The message of an error answer of the gateway ({"error": ..., "code": ...})."""
    try:
        body = json.loads(detail or "")
        if isinstance(body, str):
            return body
        return str(body.get("message") or body.get("error") or detail)
    except (ValueError, AttributeError):
        return (detail or "").strip()[:200]


# -- the store --------------------------------------------------------------------------------


class EtcdStore:
    """A GlobalStore on the etcd cluster at `url` (etcd://H1:2379,H2:2379,...). Safe to use
    from several threads (requests' connection pool is; the endpoint in use is under a
    lock)."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        import etcd3gw
        import requests

        self.endpoints = parse_store_url(url)
        self.url = format_store_url(self.endpoints)
        self.timeout = timeout
        self._etcd3gw = etcd3gw
        self._session = requests.Session()
        self._session.trust_env = False  # no proxy or netrc from the environment
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=32)
        self._session.mount("http://", adapter)
        self._clients = [etcd3gw.Etcd3Client(e.host, e.port, session=self._session,
                                             timeout=(CONNECT_TIMEOUT, timeout))  # type: ignore[arg-type]
                         for e in self.endpoints]
        self._lock = threading.Lock()
        self._current = 0  # the endpoint that answered last
        self._closed = False
        self._watches: weakref.WeakSet[EtcdWatch] = weakref.WeakSet()

    # -- requests, with failover -----------------------------------------------------------

    def _call(self, what: Callable[[Any], Any], retry_sent: bool) -> Any:
        """`what(client)` on the endpoint in use, then on the next ones while they cannot be
        reached. `retry_sent`: the request may be repeated on another member even when it
        may have been done (it changes nothing the second time)."""
        if self._closed:
            raise ValueError("the store is closed")
        errors = self._etcd3gw.exceptions
        with self._lock:
            start = self._current
        reasons: list[str] = []
        for i in range(len(self._clients)):
            index = (start + i) % len(self._clients)
            client = self._clients[index]
            try:
                result = what(client)
            except (errors.ConnectionFailedError, errors.ConnectionTimeoutError) as exc:
                failed = _classify(exc)
                if failed.sent and not retry_sent:
                    raise GlobalStoreError(
                        f"the store {self.url} did not answer a write ({failed.reason} at "
                        f"{self.endpoints[index]}); it may or may not have been done: read "
                        "the key again") from None
                reasons.append(failed.reason)
                continue
            except errors.Etcd3Exception as exc:
                raise self._refused(exc) from None
            with self._lock:
                self._current = index
            return result
        reason = reasons[-1] if len(set(reasons)) == 1 else "; ".join(
            f"{e}: {r}" for e, r in zip(self.endpoints, reasons, strict=False))
        raise GlobalStoreError(f"cannot reach the store {self.url}: {reason}; is etcd "
                               "running?")

    def _refused(self, exc: Exception) -> GlobalStoreError:
        message = _message(getattr(exc, "detail_text", None))
        if "lease not found" in message:
            return LeaseNotFound("the lease expired or was revoked")
        return GlobalStoreError(f"the store {self.url} refused the request: {message}")

    def _post(self, path: str, body: dict[str, Any], retry_sent: bool) -> dict[str, Any]:
        return self._call(lambda c: c.post(c.get_url(path), json=body), retry_sent)

    def _post_lease(self, path: str, body: dict[str, Any], lease: int,
                    retry_sent: bool) -> dict[str, Any]:
        try:
            return self._post(path, body, retry_sent)
        except LeaseNotFound:
            raise LeaseNotFound(f"lease {lease:x} is not granted (expired or revoked)"
                                ) from None

    # -- GlobalStore -----------------------------------------------------------------------

    def revision(self) -> int:
        return _revision(self._post("/kv/range", {"key": _b64(b"\0"), "count_only": True},
                                    True))

    def get(self, key: str) -> KeyValue | None:
        got = self._post("/kv/range", {"key": _b64(key.encode())}, True)
        kvs = got.get("kvs") or []
        return _kv(kvs[0]) if kvs else None

    def get_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        raw = prefix.encode()
        got = self._post("/kv/range", {"key": _b64(raw or b"\0"),
                                       "range_end": _b64(_range_end(raw))}, True)
        kvs = [_kv(x) for x in got.get("kvs") or []]
        kvs.sort(key=lambda kv: kv.key.encode())  # (etcd's order already)
        return kvs, _revision(got)

    def put(self, key: str, value: bytes, *, lease: int = 0,
            if_revision: int | None = None) -> int | None:
        if not isinstance(value, bytes):
            raise TypeError(f"a value is bytes, not {type(value).__name__}")
        request: dict[str, Any] = {"key": _b64(key.encode()), "value": _b64(value)}
        if lease:
            request["lease"] = lease
        if if_revision is None:
            # a put repeated changes nothing but the revision: safe to send again
            return _revision(self._post_lease("/kv/put", request, lease, True))
        got = self._post_lease("/kv/txn", {
            "compare": [{"key": request["key"], "target": "MOD", "result": "EQUAL",
                         "mod_revision": if_revision}],
            "success": [{"request_put": request}]}, lease, False)
        return _revision(got) if got.get("succeeded") else None

    def delete(self, key: str, *, if_revision: int | None = None) -> int | None:
        request = {"key": _b64(key.encode())}
        if if_revision is None:
            got = self._post("/kv/deleterange", request, False)
            return _revision(got) if int(got.get("deleted", 0)) else None
        got = self._post("/kv/txn", {
            "compare": [{"key": request["key"], "target": "MOD", "result": "EQUAL",
                         "mod_revision": if_revision}],
            "success": [{"request_delete_range": request}]}, False)
        if not got.get("succeeded"):
            return None
        done = (got.get("responses") or [{}])[0].get("response_delete_range", {})
        return _revision(got) if int(done.get("deleted", 0)) else None

    def grant(self, ttl: float) -> int:
        if ttl <= 0:
            raise ValueError("a lease's time to live is positive")
        # etcd's TTLs are whole seconds: round up, never grant less than asked. (A grant sent
        # twice leaves a lease nobody holds, which expires: safe to send again.)
        lease = self._call(lambda c: c.lease(max(1, math.ceil(ttl))), True)
        return int(lease.id)

    def keep_alive(self, lease: int) -> float:
        gateway = self._etcd3gw

        def refresh(client: Any) -> int:
            return int(gateway.Lease(lease, client).refresh())

        ttl = self._call(refresh, True)
        if ttl <= 0:  # the gateway answers a gone lease with no TTL
            raise LeaseNotFound(f"lease {lease:x} expired or was revoked")
        return float(ttl)

    def revoke(self, lease: int) -> None:
        gateway = self._etcd3gw
        try:
            self._call(lambda c: gateway.Lease(lease, c).revoke(), False)
        except LeaseNotFound:
            raise LeaseNotFound(f"lease {lease:x} expired or was revoked") from None

    def watch(self, prefix: str, start_revision: int | None = None) -> EtcdWatch:
        compacted = False
        if start_revision is not None:
            # does the history still hold start_revision? (a read at it says; the watch would
            # say so only after it was made, on its own time)
            try:
                self._post("/kv/range", {"key": _b64(prefix.encode() or b"\0"),
                                         "revision": start_revision, "count_only": True},
                           True)
            except GlobalStoreError as exc:
                if "compacted" in str(exc):
                    compacted = True
                elif "future revision" not in str(exc):
                    raise
        watch = EtcdWatch(self, prefix, start_revision, compacted)
        self._watches.add(watch)
        return watch

    def compact(self, revision: int) -> None:
        try:
            self._post("/kv/compaction", {"revision": revision, "physical": True}, True)
        except GlobalStoreError as exc:
            if "future revision" in str(exc):
                raise ValueError(f"revision {revision} is in the future") from None
            if "compacted" not in str(exc):  # compacted already: nothing to do
                raise

    def close(self) -> None:
        """Close the store and its watches (their `get` returns None)."""
        self._closed = True
        for watch in list(self._watches):
            watch.close()
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# -- watch ------------------------------------------------------------------------------------


def _shutdown(response: Any) -> None:
    """Break a streaming response's connection from any thread: its reader gets EOF.
    (Closing the response instead waits for the reader's lock.)"""
    conn = getattr(response.raw, "connection", None) or getattr(response.raw, "_connection",
                                                                None)
    sock = getattr(conn, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _keepalive(response: Any) -> None:
    """TCP keep-alives on a watch's connection, so that a member that vanished without
    closing it (its host is gone) is noticed in about 10 s; and no read timeout, since a
    watch may rightly stay silent for hours."""
    conn = getattr(response.raw, "connection", None)
    sock = getattr(conn, "sock", None)
    if sock is None:
        return
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 4), ("TCP_KEEPINTVL", 2), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


class _Broken(Exception):
    """A watch stream failed (not the watch: it goes on elsewhere)."""


class _Messages:
    """The JSON messages of a gateway stream, one after another, however the HTTP chunks cut
    them (the gateway ends each with a newline, but a chunk may hold part of one, or
    several)."""

    def __init__(self, response: Any) -> None:
        self._chunks = response.iter_content(chunk_size=None)
        self._buffer = ""
        self._decoder = json.JSONDecoder()

    def next(self) -> dict[str, Any] | None:
        """The next message, None at the end of the stream."""
        while True:
            text = self._buffer.lstrip()
            if text:
                try:
                    message, end = self._decoder.raw_decode(text)
                except ValueError:
                    pass
                else:
                    self._buffer = text[end:]
                    return message
            chunk = next(self._chunks, None)
            if chunk is None:
                return None
            self._buffer = text + chunk.decode("utf-8")


class EtcdWatch:
    """A watch of a prefix on an EtcdStore: a /v3/watch stream read by a thread of its own,
    which queues the events. When the stream breaks (its member died), the thread watches
    again, on the next member that answers, from the revision after the last event; when
    none answers for a while, `get` raises GlobalStoreError (after the events it got)."""

    RESUME_FOR = 15.0  # seconds of trying to resume before giving up

    def __init__(self, store: EtcdStore, prefix: str, start_revision: int | None,
                 compacted: bool = False) -> None:
        self._store, self.prefix = store, prefix
        self._cond = threading.Condition()
        self._events: deque[Event] = deque()
        self._error: GlobalStoreError | None = None
        self._closed = False
        self._next = start_revision  # the first revision not reported yet (None: from now)
        self._response: Any = None
        messages = self._open(expect_compacted=compacted)
        self._thread = threading.Thread(target=self._run, args=(messages,), daemon=True,
                                        name=f"etcd-watch {prefix}")
        self._thread.start()

    # -- the stream ---------------------------------------------------------------------------

    def _request(self) -> dict[str, Any]:
        raw = self.prefix.encode()
        create: dict[str, Any] = {"key": _b64(raw or b"\0"), "range_end": _b64(_range_end(raw))}
        if self._next is not None:
            create["start_revision"] = self._next
        return {"create_request": create}

    def _open(self, expect_compacted: bool = False) -> _Messages:
        """Start the stream (on the endpoint the store uses, or the next ones) and wait for
        etcd to say the watch is created; Compacted when it cancels the watch for that."""
        store = self._store
        body = self._request()

        def connect(client: Any) -> tuple[Any, _Messages, dict[str, Any]]:
            import requests

            errors = store._etcd3gw.exceptions
            try:
                response = store._session.post(client.get_url("/watch"), json=body,
                                               stream=True, timeout=client.timeout)
            except requests.exceptions.Timeout as exc:
                raise errors.ConnectionTimeoutError(str(exc)) from exc
            except requests.exceptions.ConnectionError as exc:
                raise errors.ConnectionFailedError(str(exc)) from exc
            if response.status_code != 200:
                text = response.text
                response.close()
                raise errors.Etcd3Exception(text, response.reason)
            messages = _Messages(response)
            try:
                first = messages.next()
            except Exception as exc:  # (the stream broke or timed out before an answer)
                _shutdown(response)
                response.close()
                raise errors.ConnectionFailedError(str(exc)) from exc
            if first is None or "error" in first:
                _shutdown(response)
                response.close()
                error = (first or {}).get("error", "the watch stream ended at once")
                raise errors.ConnectionFailedError(json.dumps(error))
            return response, messages, first

        response, messages, first = store._call(connect, True)
        with self._cond:
            self._response = response
        try:
            result = self._check(first)
            if not result.get("created"):
                raise GlobalStoreError(f"the store {store.url} did not create the watch: "
                                       f"{json.dumps(first)[:200]}")
            if self._next is None:
                self._next = _revision(result) + 1
            if expect_compacted:  # etcd cancels it next, saying down to where
                try:
                    while (message := messages.next()) is not None:
                        self._check(message)
                except GlobalStoreError:
                    raise
                except Exception:  # (no answer in time: the read before said compacted)
                    pass
                raise Compacted(self._next + 1)
        except BaseException:
            _shutdown(response)
            response.close()
            raise
        _keepalive(response)
        return messages

    def _check(self, message: dict[str, Any]) -> dict[str, Any]:
        """A stream message's result; Compacted or GlobalStoreError if it ends the watch,
        _Broken if the stream failed (the gateway says so in an error message, e.g.
        "transport is closing" when its member stops: watch again elsewhere)."""
        if "error" in message:
            raise _Broken(json.dumps(message["error"])[:200])
        result = message.get("result", {})
        if int(result.get("compact_revision", 0)):
            raise Compacted(int(result["compact_revision"]))
        if result.get("canceled"):
            raise GlobalStoreError(f"the store {self._store.url} canceled a watch: "
                                   f"{result.get('cancel_reason', 'no reason given')}")
        return result

    def _run(self, messages: _Messages) -> None:
        import time

        while True:
            try:
                while (message := messages.next()) is not None:
                    result = self._check(message)
                    events = [Event(DELETE if ev.get("type") == "DELETE" else PUT,
                                    base64.b64decode(ev["kv"]["key"]).decode("utf-8"),
                                    base64.b64decode(ev["kv"].get("value", "")),
                                    int(ev["kv"]["mod_revision"]))
                              for ev in result.get("events") or []]
                    if events:
                        with self._cond:
                            self._events.extend(events)
                            self._next = events[-1].revision + 1
                            self._cond.notify_all()
            except GlobalStoreError as exc:  # (Compacted among them)
                self._fail(exc)
                return
            except Exception:  # the stream broke: resume below
                pass
            with self._cond:
                if self._closed:
                    return
            deadline = time.monotonic() + self.RESUME_FOR
            while True:
                try:
                    messages = self._open()
                    break
                except GlobalStoreError as exc:
                    with self._cond:
                        if self._closed:
                            return
                    if isinstance(exc, Compacted) or time.monotonic() > deadline:
                        self._fail(exc if isinstance(exc, Compacted) else GlobalStoreError(
                            f"the watch of {self.prefix!r} lost the store: {exc}; list the "
                            f"keys again and watch from the listing's revision + 1"))
                        return
                    with self._cond:
                        self._cond.wait(0.2)
            with self._cond:
                if self._closed:
                    _shutdown(self._response)
                    return

    def _fail(self, error: GlobalStoreError) -> None:
        with self._cond:
            if not self._closed:
                self._error = error
            self._cond.notify_all()

    # -- Watch ----------------------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> Event | None:
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._events:
                    return self._events.popleft()
                if self._closed:
                    return None
                if self._error is not None:
                    raise self._error
                wait = None if deadline is None else deadline - time.monotonic()
                if wait is not None and wait <= 0:
                    return None
                self._cond.wait(wait)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._events.clear()
            response = self._response
            self._cond.notify_all()
        if response is not None:
            _shutdown(response)
        self._thread.join(timeout=5)
        if response is not None:
            response.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
