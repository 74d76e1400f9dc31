"""Unit tests for shoal.runtime.logs: Docker's json-file records, its time forms, the
reader (records, a line still being written, raw logs of an earlier shoal), the printer
(streams, -t, --since/--until, --tail) and the copier on real pipes and processes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.runtime import logs
from shoal.runtime.logs import (
    MAX_LINE,
    STDERR,
    STDOUT,
    Copier,
    LogReader,
    LogWriter,
    Printer,
    Record,
    parse_duration,
    parse_time,
    rfc3339nano,
    tail,
)

NS = 1_000_000_000
T0 = 1_796_231_435 * NS  # 2026-12-02T17:10:35Z


def test_rfc3339nano_as_go_formats_it() -> None:
    assert rfc3339nano(T0 + 123456789) == "2026-12-02T17:10:35.123456789Z"
    assert rfc3339nano(T0 + 500000000) == "2026-12-02T17:10:35.5Z"  # trailing zeros go
    assert rfc3339nano(T0) == "2026-12-02T17:10:35Z"
    # `logs -t`: always nine digits (Docker's RFC3339NanoFixed)
    assert rfc3339nano(T0 + 500000000, fixed=True) == "2026-12-02T17:10:35.500000000Z"
    assert rfc3339nano(T0, fixed=True) == "2026-12-02T17:10:35.000000000Z"


@pytest.mark.parametrize(("text", "ns"), [
    ("10m", 600 * NS), ("1h30m", 5400 * NS), ("1.5h", 5400 * NS), ("300ms", 300_000_000),
    ("2h45m10s", (2 * 3600 + 45 * 60 + 10) * NS), ("1us", 1_000), ("1µs", 1_000),
    ("7ns", 7), ("-10m", -600 * NS), ("0", 0), (".5s", NS // 2),
])
def test_go_durations(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", ["", "10", "10x", "m", "1..5s", "1h-30m", "+", "."])
def test_not_go_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(("text", "ns"), [
    ("2026-12-02T17:10:35.123456789Z", T0 + 123456789),
    ("2026-12-02T17:10:35Z", T0),
    ("2026-12-02T17:10:35z", T0),
    ("2026-12-02T18:10:35+01:00", T0),
    ("2026-12-02T18:10:35.25+01:00", T0 + NS // 4),
    ("2026-12-02T17:10Z", T0 - 35 * NS),
    ("2026-12-02T17Z", T0 - (10 * 60 + 35) * NS),
    ("2026-12-02Z", T0 - (17 * 3600 + 10 * 60 + 35) * NS),
    ("2026-12-02+01:00", T0 - (18 * 3600 + 10 * 60 + 35) * NS),
    ("1796231435", T0), ("1796231435.5", T0 + NS // 2), ("0", 0),
    ("10m", T0 - 600 * NS),  # before now
])
def test_docker_time_forms(text: str, ns: int) -> None:
    assert parse_time(text, now_ns=T0) == ns


def test_a_time_without_a_zone_is_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC-02:00")  # (POSIX: two hours east of UTC)
    time.tzset()
    try:
        assert parse_time("2026-12-02T19:10:35") == T0
        assert parse_time("2026-12-02T19:10:35.5") == T0 + NS // 2
        assert parse_time("2026-12-03") == T0 + (4 * 3600 + 49 * 60 + 25) * NS
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


@pytest.mark.parametrize("text", ["yesterday", "", "2026-13-01", "12:30", "2026-12-02T25",
                                  "1.2.3", "2026-12-02T17:10:35.1234567890Z"])
def test_what_is_no_time_says_what_is(text: str) -> None:
    with pytest.raises(ValueError, match="RFC3339 time .* Unix seconds or a duration"):
        parse_time(text, now_ns=T0)


def _records(data: bytes) -> list[dict[str, str]]:
    return [json.loads(line) for line in data.splitlines()]


def _writer(tmp_path: object) -> tuple[LogWriter, str]:
    path = os.path.join(str(tmp_path), "log")
    return LogWriter(logs.open_log(path)), path


def test_lines_become_json_file_records(tmp_path: object) -> None:
    writer, path = _writer(tmp_path)
    writer.feed(STDOUT, b"one\ntw", now_ns=T0)
    writer.feed(STDERR, b"oops\n", now_ns=T0 + 1)
    writer.feed(STDOUT, b"o\nthree", now_ns=T0 + 2)  # the line waits for its newline
    with open(path, "rb") as f:
        data = f.read()
    assert data.startswith(b'{"log":"one\\n","stream":"stdout","time":"2026-12-02T17:10:35Z"}')
    assert [(r["log"], r["stream"]) for r in _records(data)] == [
        ("one\n", "stdout"), ("oops\n", "stderr"), ("two\n", "stdout")]
    writer.flush(now_ns=T0)  # the stream ended: the rest is written as it is
    with open(path, "rb") as f:
        assert _records(f.read())[-1] == {"log": "three", "stream": "stdout",
                                          "time": "2026-12-02T17:10:35Z"}
    os.close(writer.fd)


def test_each_line_gets_its_own_time_in_order(tmp_path: object) -> None:
    writer, path = _writer(tmp_path)
    writer.feed(STDOUT, b"".join(b"%d\n" % i for i in range(50)))
    with open(path, "rb") as f:
        recs = LogReader(f.fileno()).read()
    times = [r.time_ns for r in recs]
    assert len(recs) == 50 and times == sorted(times)  # type: ignore[type-var]
    os.close(writer.fd)


def test_a_long_line_is_cut_as_dockers_copier_cuts_it(tmp_path: object) -> None:
    writer, path = _writer(tmp_path)
    writer.feed(STDOUT, b"x" * (2 * MAX_LINE + 10) + b"\n")
    with open(path, "rb") as f:
        recs = LogReader(f.fileno()).read()
    assert [len(r.data) for r in recs] == [MAX_LINE, MAX_LINE, 11]
    assert b"".join(r.data for r in recs) == b"x" * (2 * MAX_LINE + 10) + b"\n"
    os.close(writer.fd)


@given(st.lists(st.tuples(st.sampled_from([STDOUT, STDERR]), st.binary(max_size=300)),
                max_size=12))
def test_whatever_is_written_reads_back_byte_for_byte(chunks: list[tuple[str, bytes]]
                                                      ) -> None:
    out = io.BytesIO()

    class Sink(LogWriter):
        def _write(self, data: bytes) -> None:
            out.write(data)

    writer = Sink(-1)
    for stream, data in chunks:
        writer.feed(stream, data, now_ns=T0)
    writer.flush(now_ns=T0)
    got: dict[str, bytes] = {STDOUT: b"", STDERR: b""}
    for line in out.getvalue().splitlines():
        rec = logs.decode(line)
        assert rec is not None and rec.time_ns == T0
        got[rec.stream] += rec.data
    for stream in (STDOUT, STDERR):
        assert got[stream] == b"".join(d for s, d in chunks if s == stream)


def test_the_reader_keeps_a_line_still_being_written(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "log")
    line = logs.encode(b"hello\n", STDOUT, T0)
    with open(path, "wb") as f:
        f.write(line[:10])
    fd = os.open(path, os.O_RDONLY)
    reader = LogReader(fd)
    assert reader.read() == []
    with open(path, "ab") as f:
        f.write(line[10:] + logs.encode(b"err\n", STDERR, T0 + 1))
    recs = reader.read()
    assert [(r.data, r.stream, r.time_ns) for r in recs] == [
        (b"hello\n", STDOUT, T0), (b"err\n", STDERR, T0 + 1)]
    os.close(fd)


def test_a_raw_log_of_an_earlier_shoal_reads_as_stdout(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "log")
    with open(path, "wb") as f:
        f.write(b"one\ntwo\nthree")
    fd = os.open(path, os.O_RDONLY)
    recs = LogReader(fd).read()
    os.close(fd)
    assert [(r.data, r.stream, r.time_ns) for r in recs] == [(b"one\ntwo\nthree", STDOUT,
                                                              None)]
    assert tail(recs, 2)[0].data == b"two\nthree"
    assert tail(recs, 0) == [] and tail(recs, None) == recs


def test_tail() -> None:
    recs = [Record(b"%d\n" % i, STDOUT, T0 + i) for i in range(5)]
    assert [r.data for r in tail(recs, 2)] == [b"3\n", b"4\n"]
    assert tail(recs, 9) == recs and tail(recs, 0) == []


def test_the_printer_splits_streams_stamps_and_filters() -> None:
    out, err = io.BytesIO(), io.BytesIO()
    recs = [Record(b"a\n", STDOUT, T0), Record(b"b\n", STDERR, T0 + 1),
            Record(b"c\n", STDOUT, T0 + 2), Record(b"d\n", STDOUT, T0 + 3)]
    assert Printer(out, err, timestamps=True, since=T0 + 1, until=T0 + 2).print(recs) is False
    assert out.getvalue() == b"2026-12-02T17:10:35.000000002Z c\n"
    assert err.getvalue() == b"2026-12-02T17:10:35.000000001Z b\n"
    out, err = io.BytesIO(), io.BytesIO()
    assert Printer(out, err).print(recs) is True
    assert out.getvalue() == b"a\nc\nd\n" and err.getvalue() == b"b\n"


def test_the_copier_logs_and_tees_until_the_process_exits(tmp_path: object) -> None:
    writer, path = _writer(tmp_path)
    out_r, out_w = logs.pipe()
    err_r, err_w = logs.pipe()
    tee_r, tee_w = os.pipe()
    proc = subprocess.Popen(["sh", "-c", "echo out; echo err >&2; echo more"],
                            stdout=out_w, stderr=err_w)
    os.close(out_w)
    os.close(err_w)
    copier = Copier(writer)
    copier.add_output(out_r, STDOUT, tee_w)
    copier.add_output(err_r, STDERR, None)
    copier.run(proc.pid)
    assert proc.wait() == 0
    copier.close()
    os.close(tee_w)
    with os.fdopen(tee_r, "rb") as f:
        assert f.read() == b"out\nmore\n"
    with open(path, "rb") as f:
        recs = [(r["log"], r["stream"]) for r in _records(f.read())]
    assert sorted(recs) == [("err\n", "stderr"), ("more\n", "stdout"), ("out\n", "stdout")]
    os.close(writer.fd)


def test_the_copier_returns_when_the_process_exits_though_a_child_holds_the_pipe(
        tmp_path: object) -> None:
    writer, path = _writer(tmp_path)
    out_r, out_w = logs.pipe()
    proc = subprocess.Popen(["sh", "-c", "sleep 30 & echo $!; echo done"], stdout=out_w)
    os.close(out_w)
    copier = Copier(writer)
    copier.add_output(out_r, STDOUT)
    started = time.monotonic()
    try:
        copier.run(proc.pid, linger=0.05)
        assert time.monotonic() - started < 5
        assert proc.wait() == 0
        copier.close()
        with open(path, "rb") as f:
            recs = _records(f.read())
        assert recs[1]["log"] == "done\n"
    finally:
        with open(path, "rb") as f:
            first = _records(f.read())[:1]
        if first:
            os.kill(int(first[0]["log"]), 9)
    os.close(writer.fd)


def test_the_copier_reads_what_nobody_else_reads(tmp_path: object) -> None:
    """Far more than a pipe holds: the writer never blocks for long, the copier keeps up."""
    writer, path = _writer(tmp_path)
    out_r, out_w = logs.pipe()
    proc = subprocess.Popen(["head", "-c", "2000000", "/dev/zero"], stdout=out_w)
    os.close(out_w)
    copier = Copier(writer)
    copier.add_output(out_r, STDOUT)
    copier.run(proc.pid)
    assert proc.wait() == 0
    copier.run(None, limit=1.0)
    copier.close()
    with open(path, "rb") as f:
        assert len(logs.read_all(f.fileno())) == 2000000
    os.close(writer.fd)


def test_the_copier_forwards_input_without_blocking(tmp_path: object) -> None:
    """Input to a command that reads it only slowly: more than a pipe holds goes through,
    while its output is copied as it comes."""
    in_r, in_w = os.pipe()  # what a user types
    cmd_in_r, cmd_in_w = logs.pipe()  # the command's stdin
    out_r, out_w = logs.pipe()
    tee_r, tee_w = os.pipe()
    proc = subprocess.Popen(["sh", "-c", "sleep 0.3; wc -c"], stdin=cmd_in_r, stdout=out_w)
    os.close(cmd_in_r)
    os.close(out_w)
    payload = b"y" * 300_000
    writer_pid = os.fork()
    if writer_pid == 0:
        try:
            os.close(in_r)
            os.write(in_w, payload)
        finally:
            os._exit(0)
    os.close(in_w)
    copier = Copier(None)
    copier.add_output(out_r, STDOUT, tee_w)
    copier.set_input(in_r, cmd_in_w)
    deadline = time.monotonic() + 10
    while not os.waitpid(writer_pid, os.WNOHANG)[0]:
        assert time.monotonic() < deadline
        copier.run(None, limit=0.2)
    copier.run(None, limit=0.5)  # the rest of what was typed
    assert copier.pending == b""
    os.close(cmd_in_w)
    copier.run(proc.pid)
    assert proc.wait() == 0
    copier.close()
    os.close(tee_w)
    os.close(in_r)
    with os.fdopen(tee_r, "rb") as f:
        assert f.read().strip() == b"300000"


def test_when_the_tees_reader_goes_the_command_sees_a_broken_pipe(tmp_path: object) -> None:
    """`shoal run -- yes | head -1`: once our stdout's reader is gone, the copier stops
    reading the command's pipe, and the command dies of SIGPIPE as it would unattached."""
    writer, _path = _writer(tmp_path)
    out_r, out_w = logs.pipe()
    tee_r, tee_w = os.pipe()
    os.close(tee_r)
    proc = subprocess.Popen(["yes"], stdout=out_w, restore_signals=True)
    os.close(out_w)
    copier = Copier(writer)
    copier.add_output(out_r, STDOUT, tee_w)
    try:
        copier.run(proc.pid)
        assert proc.wait(timeout=5) == -13  # SIGPIPE
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    copier.close()
    os.close(tee_w)
    os.close(writer.fd)


@pytest.mark.parametrize("n", [0, 1, 2, 7, 500, 4000, None])
def test_tail_read_from_the_end_is_the_tail_of_the_whole(tmp_path: object, n: int | None
                                                          ) -> None:
    writer, path = _writer(tmp_path)
    writer.feed(STDOUT, b"".join(b"line %d %s\n" % (i, b"x" * (i % 300)) for i in range(3000)))
    writer.feed(STDERR, b"unfinished")  # (a line still being written is not shown)
    with open(path, "rb") as f:
        whole = tail(LogReader(f.fileno()).read(), n)
    fd = os.open(path, os.O_RDONLY)
    reader = LogReader(fd)
    got = reader.read_tail(n)
    assert [(r.data, r.stream, r.time_ns) for r in got] == \
        [(r.data, r.stream, r.time_ns) for r in whole]
    writer.feed(STDOUT, b"later\n")
    assert [r.data for r in reader.read()] == [b"later\n"]  # a follow goes on from there
    os.close(fd)
    os.close(writer.fd)


def test_tail_of_a_raw_log_read_from_the_end(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "log")
    with open(path, "wb") as f:
        f.write(b"".join(b"raw %d\n" % i for i in range(100000)))
    fd = os.open(path, os.O_RDONLY)
    got = LogReader(fd).read_tail(2)
    os.close(fd)
    assert [(r.data, r.time_ns) for r in got] == [(b"raw 99998\nraw 99999\n", None)]
