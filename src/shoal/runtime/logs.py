"""A container's log as Docker's json-file driver keeps it: one JSON record a line,
{"log": "hello\\n", "stream": "stdout", "time": "2026-12-02T17:10:35.123456789Z"}, written by
a copier that reads the command's stdout and stderr (pipes, or a pty's master side) and,
for a foreground run, copies them to the terminal as well. Pure I/O: it knows nothing of
containers (the controller gives it descriptors and a pid).

A line longer than MAX_LINE is cut into records of that size, as Docker's copier cuts them;
a line without its newline is kept until the newline comes, or written as it is when its
stream ends. Bytes that are not UTF-8 survive the round trip (surrogate escapes, which JSON
writes as \\udcXX). A log written by an earlier shoal (raw bytes, not records) still reads:
as one stdout chunk without timestamps."""

from __future__ import annotations

import errno
import json
import os
import select
import time
from json.encoder import encode_basestring_ascii as quote_json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

STDOUT, STDERR = "stdout", "stderr"
MAX_LINE = 16 * 1024  # Docker's copier cuts longer lines into records of this size
READ_SIZE = 64 * 1024
RECORD_START = b'{"log":'


# -- timestamps --------------------------------------------------------------------------

_SECOND: list[object] = [None, ""]  # the last second formatted, and its text


def rfc3339nano(ns: int, fixed: bool = False) -> str:
    """UTC, nanoseconds: Go's RFC3339Nano (trailing zeros of the fraction dropped, as the
    json-file "time" field has it) or, `fixed`, nine digits always (as `logs -t` prints)."""
    secs, frac = divmod(ns, 1_000_000_000)
    if _SECOND[0] != secs:  # (a log's lines come many a second: format each second once)
        _SECOND[:] = [secs, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))]
    digits = f"{frac:09d}"
    if not fixed:
        digits = digits.rstrip("0")
    return f"{_SECOND[1]}.{digits}Z" if digits else f"{_SECOND[1]}Z"


_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
          "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration ("10m", "1h30m", "1.5h", "300ms"), in nanoseconds; ValueError
    if it is not one."""
    s = text
    sign = 1
    if s[:1] in ("-", "+"):
        sign, s = (-1 if s[0] == "-" else 1), s[1:]
    if not s:
        raise ValueError(text)
    if s == "0":
        return 0
    total = 0
    while s:
        i = 0
        while i < len(s) and (s[i].isdigit() or s[i] == "."):
            i += 1
        number, s = s[:i], s[i:]
        if not number or number == "." or number.count(".") > 1:
            raise ValueError(text)
        j = 0
        while j < len(s) and not (s[j].isdigit() or s[j] == "."):
            j += 1
        unit, s = s[:j], s[j:]
        if unit not in _UNITS:
            raise ValueError(text)
        whole, _, frac = number.partition(".")
        total += int(whole or "0") * _UNITS[unit]
        if frac:
            total += int(frac) * _UNITS[unit] // 10 ** len(frac)
    return sign * total


def parse_time(text: str, now_ns: int | None = None) -> int:
    """What Docker's --since and --until take, in nanoseconds since the epoch: a duration
    before now ("10m", "1h30m"), an RFC3339 time with or without a zone (without: local
    time), down to a date ("2026-12-02") or an hour ("2026-12-02T17"), or Unix seconds
    ("1764694235", "1764694235.5"). ValueError names what is accepted."""
    value = text.strip()
    try:
        if value != "0":
            ago = parse_duration(value)
            return (time.time_ns() if now_ns is None else now_ns) - ago
    except ValueError:
        pass
    try:
        return _parse_datetime(value)
    except ValueError:
        pass
    secs, dot, frac = value.partition(".")
    if secs.isdigit() and (not dot or (frac.isdigit() and len(frac) <= 9)):
        return int(secs) * 1_000_000_000 + (int(frac.ljust(9, "0")) if frac else 0)
    raise ValueError(f"{text!r} is neither a time nor a duration: give an RFC3339 time "
                     "(2026-12-02T17:10:00Z), Unix seconds or a duration (10m, 1h30m)")


def _parse_datetime(value: str) -> int:
    from datetime import datetime

    if "-" not in value:
        raise ValueError(value)
    frac_ns = 0
    dot = value.find(".")
    if dot != -1:
        end = dot + 1
        while end < len(value) and value[end].isdigit():
            end += 1
        digits = value[dot + 1:end]
        if not digits or len(digits) > 9:
            raise ValueError(value)
        frac_ns = int(digits.ljust(9, "0"))
        value = value[:dot] + value[end:]
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    date, t, rest = value.partition("T")
    if len(date) > 10 and date[10] in "+-":  # "2006-01-02Z07:00": a date with a zone
        date, rest, t = date[:10], "00" + date[10:], "T"
    if t and rest[:2].isdigit() and (len(rest) == 2 or rest[2] in "+-"):
        rest = rest[:2] + ":00" + rest[2:]  # "2006-01-02T15" (an hour alone)
    parsed = datetime.fromisoformat(date + (t + rest if t else ""))
    if len(date) != 10:
        raise ValueError(value)
    secs = round(parsed.timestamp())  # without a zone: local time, as Docker reads it
    return secs * 1_000_000_000 + frac_ns


# -- records -----------------------------------------------------------------------------

class Record:
    """One line of the log: its bytes, its stream, when it was read (ns; None for a raw
    log of an earlier shoal). A record read from a log keeps its time as written until
    the time is asked for (most reads never ask)."""

    __slots__ = ("data", "stream", "_time")

    def __init__(self, data: bytes, stream: str, time_ns: int | str | None) -> None:
        self.data, self.stream, self._time = data, stream, time_ns

    @property
    def time_ns(self) -> int | None:
        if isinstance(self._time, str):
            self._time = _record_time(self._time)
        return self._time

    def __repr__(self) -> str:
        return f"Record({self.data!r}, {self.stream!r}, {self.time_ns!r})"


_AFTER_LOG = {STDOUT: ',"stream":"stdout","time":"', STDERR: ',"stream":"stderr","time":"'}


def encode(data: bytes, stream: str, time_ns: int) -> bytes:
    """One record, as json.dumps writes it compactly (its C string encoder, without the
    dict: a log's every line goes through here)."""
    text = quote_json(data.decode("utf-8", "surrogateescape"))
    return f'{{"log":{text}{_AFTER_LOG[stream]}{rfc3339nano(time_ns)}"}}\n'.encode()


def decode(line: bytes) -> Record | None:
    """A record of the log, or None if the line is not one."""
    try:
        return _record(json.loads(line))
    except ValueError:
        return None


def _record(obj: object) -> Record | None:
    try:
        data = obj["log"].encode("utf-8", "surrogateescape")  # type: ignore[index]
        stream = STDERR if obj.get("stream") == STDERR else STDOUT  # type: ignore[attr-defined]
        when = obj["time"]  # type: ignore[index]
        if not isinstance(when, str):
            return None
        return Record(data, stream, when)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def decode_lines(lines: list[bytes]) -> list[Record]:
    """Records of whole lines (with JSON's C parser once for them all); a line that is not
    a record comes as stdout without a time."""
    try:
        objs = json.loads(b"[" + b",".join(lines) + b"]")
    except ValueError:
        objs = None
    if objs is None or len(objs) != len(lines):
        objs = [_loads(line) for line in lines]
    out = []
    for line, obj in zip(lines, objs, strict=True):
        rec = _record(obj) if obj is not None else None
        out.append(rec if rec is not None else Record(line + b"\n", STDOUT, None))
    return out


def _loads(line: bytes) -> object:
    try:
        return json.loads(line)
    except ValueError:
        return None


_SECONDS: dict[str, int] = {}  # "2026-12-02T17:10:35": its Unix time, for the last second


def _record_time(text: str) -> int:
    """A record's "time" ("2026-12-02T17:10:35.123456789Z", as shoal and Docker write it),
    fast; any other RFC3339 form through parse_time."""
    if len(text) >= 20 and text[-1] == "Z" and text[19] in ".Z":
        frac = text[20:-1]
        secs = _SECONDS.get(text[:19])
        if secs is None and text[4] == "-" and text[10] == "T":
            import calendar

            try:
                secs = calendar.timegm((int(text[0:4]), int(text[5:7]), int(text[8:10]),
                                        int(text[11:13]), int(text[14:16]),
                                        int(text[17:19]), 0, 0, 0))
            except ValueError:
                secs = None
            else:
                _SECONDS.clear()
                _SECONDS[text[:19]] = secs
        if secs is not None and (not frac or (frac.isdigit() and len(frac) <= 9)):
            return secs * 1_000_000_000 + (int(frac.ljust(9, "0")) if frac else 0)
    return _parse_datetime(text)


class LogWriter:
    """Records to a log file's descriptor (opened O_APPEND): whole lines, each with the time
    it was read; what a stream sent after its last newline waits for the rest."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.partial: dict[str, bytes] = {}

    def feed(self, stream: str, data: bytes, now_ns: int | None = None) -> None:
        """Each whole line is stamped when it is cut, as Docker's copier stamps them (lines
        read at once get times of their own, in order); `now_ns`: one time for all."""
        clock = time.time_ns if now_ns is None else (lambda: now_ns)
        *lines, rest = (self.partial.pop(stream, b"") + data).split(b"\n")
        out = []
        for line in lines:
            while len(line) >= MAX_LINE:
                out.append(encode(line[:MAX_LINE], stream, clock()))
                line = line[MAX_LINE:]
            out.append(encode(line + b"\n", stream, clock()))
        while len(rest) >= MAX_LINE:
            out.append(encode(rest[:MAX_LINE], stream, clock()))
            rest = rest[MAX_LINE:]
        if rest:
            self.partial[stream] = rest
        if out:
            self._write(b"".join(out))

    def flush(self, stream: str | None = None, now_ns: int | None = None) -> None:
        """Write what waits for a newline (of one stream, or of all): its stream ended."""
        when = time.time_ns() if now_ns is None else now_ns
        for name in [stream] if stream else list(self.partial):
            rest = self.partial.pop(name, b"")
            if rest:
                self._write(encode(rest, name, when))

    def _write(self, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
        except OSError:  # a full disk: the output still reaches its reader
            pass


def open_log(path: str) -> int:
    """The log for appending, created private to root, never through a symlink."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW,
                   0o600)


class LogReader:
    """Records from a log's descriptor, as they are appended (a line still being written is
    kept until its newline arrives). A file that does not start with a record is a raw log
    of an earlier shoal: its bytes come as stdout without a time."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.rest = b""
        self.raw: bool | None = None

    def read(self) -> list[Record]:
        """What was appended since the last read (everything, the first time)."""
        chunks = []
        while chunk := os.read(self.fd, 1 << 20):
            chunks.append(chunk)
        data = self.rest + b"".join(chunks)
        if self.raw is None and data:
            self.raw = not data.startswith(RECORD_START)
        return self._parse(data)

    def read_tail(self, n: int | None) -> list[Record]:
        """The last n lines (every line with None), read from the end: a long log is not
        read whole for a few lines. The next read() starts where the log ends now."""
        if n is None:
            return self.read()
        size = os.fstat(self.fd).st_size
        self.raw = size > 0 and not os.pread(self.fd, len(RECORD_START), 0).startswith(
            RECORD_START)
        pos, data = size, b""
        while pos > 0 and data.count(b"\n") <= n:
            step = min(1 << 16, pos)
            pos -= step
            data = os.pread(self.fd, step, pos) + data
        os.lseek(self.fd, size, os.SEEK_SET)
        if pos > 0:  # (the first line read is only the end of one)
            data = data[data.index(b"\n") + 1:]
        return tail(self._parse(data), n)

    def _parse(self, data: bytes) -> list[Record]:
        if self.raw:
            self.rest = b""
            return [Record(data, STDOUT, None)] if data else []
        end = data.rfind(b"\n") + 1
        self.rest = data[end:]
        return decode_lines([line for line in data[:end].split(b"\n") if line])


def tail(records: list[Record], n: int | None) -> list[Record]:
    """The last n lines (every line with None); a raw log counts its lines."""
    if n is None:
        return records
    if n <= 0:
        return []
    if len(records) == 1 and records[0].time_ns is None:
        lines = records[0].data.splitlines(keepends=True)[-n:]
        return [Record(b"".join(lines), STDOUT, None)] if lines else []
    return records[-n:]


class Printer:
    """`logs` output: stdout's records to `out`, stderr's to `err`, each line prefixed with
    its time as `-t` asks (Docker's nine-digit RFC3339Nano), only those from `since` and up
    to `until` (ns). A raw log of an earlier shoal has no times: it prints as it is."""

    def __init__(self, out: BinaryIO, err: BinaryIO, timestamps: bool = False,
                 since: int | None = None, until: int | None = None) -> None:
        self.out, self.err = out, err
        self.timestamps, self.since, self.until = timestamps, since, until

    def print(self, records: list[Record]) -> bool:
        """False once a record after `until` was seen (nothing later is printed)."""
        last = None
        filtering = self.since is not None or self.until is not None
        try:
            for rec in records:
                if filtering and (when := rec.time_ns) is not None:
                    if self.since is not None and when < self.since:
                        continue
                    if self.until is not None and when > self.until:
                        return False
                dest = self.err if rec.stream == STDERR else self.out
                if last is not None and dest is not last:
                    last.flush()  # the two streams interleave as they were written
                last = dest
                if self.timestamps and rec.time_ns is not None:
                    dest.write(rfc3339nano(rec.time_ns, fixed=True).encode() + b" ")
                dest.write(rec.data)
        finally:
            if last is not None:
                last.flush()
        return True


def read_all(fd: int) -> bytes:
    """Every stream's bytes, in order (what docker-py's logs() returns)."""
    return b"".join(r.data for r in LogReader(fd).read())


# -- the copier --------------------------------------------------------------------------

class Copier:
    """Copies a command's output to its log (and a tee, the terminal), and optionally an
    input (the terminal) to the command, until the command exits and what it wrote is read.

    `run(pid)` returns once the process `pid` has exited and its output stopped coming (a
    process it left running may keep the pipes open: the copier then reads for at most
    `linger` seconds more); `run(None, ...)` reads until every output ends or the limit
    passes (after the container's cgroup was killed). The copier never blocks a writer: it
    reads whatever comes, and writes to the input without blocking."""

    def __init__(self, log: LogWriter | None) -> None:
        self.log = log
        self.outputs: dict[int, tuple[str, int | None]] = {}  # fd: (stream, tee fd)
        self.input: tuple[int, int] | None = None  # (src, dst)
        self.pending = b""  # read from the input, not yet written

    def add_output(self, fd: int, stream: str, tee: int | None = None) -> None:
        self.outputs[fd] = (stream, tee)

    def set_input(self, src: int, dst: int) -> None:
        os.set_blocking(dst, False)
        self.input = (src, dst)

    def run(self, pid: int | None, linger: float = 0.05, limit: float = 2.0) -> None:
        exited = _exit_watch(pid) if pid is not None else None
        poller = _Poll()
        for fd in self.outputs:
            poller.want(fd, select.POLLIN)
        if self.input is not None:
            poller.want(self.input[1] if self.pending else self.input[0],
                        select.POLLOUT if self.pending else select.POLLIN)
        if exited is not None:
            poller.want(exited, select.POLLIN)
        done = pid is None  # the process has exited: only drain now
        deadline = time.monotonic() + limit if done else None
        try:
            while self.outputs:
                if done:
                    left = deadline - time.monotonic() if deadline is not None else 0
                    if left <= 0:
                        return
                    timeout = int(min(left, linger) * 1000) if pid is not None else \
                        int(left * 1000)
                elif exited is None:  # no pidfd: look every 0.2 s
                    timeout = 200
                else:
                    timeout = -1
                events = poller.poll(timeout)
                if not events:
                    if done and pid is not None:
                        return  # nothing more came within `linger`
                    if not done and exited is None and _has_exited(pid):
                        done, deadline = True, time.monotonic() + limit
                    continue
                for fd, ev in events:
                    if fd == exited:
                        poller.drop(fd, select.POLLIN)
                        done, deadline = True, time.monotonic() + limit
                        continue
                    if self.input is not None and fd == self.input[1] and ev & select.POLLOUT:
                        self._write_input(poller)
                    if not ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
                        continue
                    if self.input is not None and fd == self.input[0]:
                        self._read_input(poller)
                    elif fd in self.outputs:
                        self._read_output(fd, poller)
        finally:
            if exited is not None:
                os.close(exited)

    def _read_output(self, fd: int, poller: _Poll) -> None:
        stream, tee = self.outputs[fd]
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError as e:  # EIO: a pty's master once every slave is closed
            if e.errno not in (errno.EIO, errno.EBADF):
                raise
            data = b""
        if not data:
            self._end_output(fd, poller)
            return
        if self.log is not None:
            self.log.feed(stream, data)
        if tee is not None:
            try:
                _write_all(tee, data)
            except OSError:
                # the reader of our output went away (`shoal run -- yes | head -1`): the
                # command's next write fails as it would have without us in between
                self._end_output(fd, poller)

    def _end_output(self, fd: int, poller: _Poll) -> None:
        stream, _tee = self.outputs.pop(fd)
        poller.drop(fd, select.POLLIN | select.POLLOUT)
        if self.input is not None and fd == self.input[1]:
            self.input, self.pending = None, b""
        os.close(fd)
        if self.log is not None:
            self.log.flush(stream)

    def _read_input(self, poller: _Poll) -> None:
        assert self.input is not None
        src, dst = self.input
        try:
            data = os.read(src, READ_SIZE)
        except OSError:
            data = b""
        poller.drop(src, select.POLLIN)  # the input ended (or hung up), or: read no more
        if data:  # until this is written
            self.pending += data
            poller.want(dst, select.POLLOUT)

    def _write_input(self, poller: _Poll) -> None:
        assert self.input is not None
        src, dst = self.input
        try:
            n = os.write(dst, self.pending)
        except BlockingIOError:
            return
        except OSError:  # the command's side closed: drop what it will never read
            n = len(self.pending)
        self.pending = self.pending[n:]
        if not self.pending:
            poller.drop(dst, select.POLLOUT)
            poller.want(src, select.POLLIN)

    def close(self) -> None:
        """Write out what waits for a newline; close the outputs not at their end."""
        for fd in list(self.outputs):
            os.close(fd)
        self.outputs.clear()
        if self.log is not None:
            self.log.flush()


class _Poll:
    """select.poll with the events wanted of each descriptor kept (one descriptor, a pty's
    master, can be both read and written)."""

    def __init__(self) -> None:
        self.poller = select.poll()
        self.masks: dict[int, int] = {}

    def want(self, fd: int, bits: int) -> None:
        self.masks[fd] = self.masks.get(fd, 0) | bits
        self.poller.register(fd, self.masks[fd])

    def drop(self, fd: int, bits: int) -> None:
        mask = self.masks.get(fd, 0) & ~bits
        if mask:
            self.masks[fd] = mask
            self.poller.register(fd, mask)
        elif fd in self.masks:
            del self.masks[fd]
            self.poller.unregister(fd)

    def poll(self, timeout: int) -> list[tuple[int, int]]:
        return self.poller.poll(timeout)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [], 1.0)


def _exit_watch(pid: int) -> int | None:
    """A descriptor that becomes readable when the process exits (a pidfd), or None where
    the kernel has none (before Linux 5.3)."""
    try:
        return os.pidfd_open(pid)
    except (OSError, AttributeError):
        return None


def _has_exited(pid: int | None) -> bool:
    """Has our child exited (not reaped: its parent's wait() still gets the status)?"""
    if pid is None:
        return True
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def pipe() -> tuple[int, int]:
    """(read end, write end) for one of the command's streams, both close-on-exec (the
    command gets its copy through dup2)."""
    return os.pipe2(os.O_CLOEXEC)
