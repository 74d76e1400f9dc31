"""Unit tests for shoal.runtime.pids' waiting: the one poll loop a pidfd (wait_gone) and a
cgroup.events file (cgroup.kill_path) are waited on with."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
import time

from shoal.runtime import pids


def test_poll_until_wakes_when_the_fd_signals() -> None:
    r, w = os.pipe()
    try:
        threading.Timer(0.1, os.write, (w, b"x")).start()
        start = time.monotonic()
        ready = pids.poll_until(r, select.POLLIN,
                                lambda: bool(select.select([r], [], [], 0)[0]), 5.0)
        assert ready and time.monotonic() - start < 2.0
    finally:
        os.close(r)
        os.close(w)


def test_poll_until_gives_up_after_the_timeout() -> None:
    r, w = os.pipe()
    try:
        start = time.monotonic()
        assert pids.poll_until(r, select.POLLIN, lambda: False, 0.2) is False
        assert 0.2 <= time.monotonic() - start < 1.0
    finally:
        os.close(r)
        os.close(w)


def test_poll_until_true_at_once_does_not_wait() -> None:
    r, w = os.pipe()
    try:
        start = time.monotonic()
        assert pids.poll_until(r, select.POLLIN, lambda: True, 5.0) is True
        assert time.monotonic() - start < 0.1
    finally:
        os.close(r)
        os.close(w)


def test_wait_gone_sees_a_process_exit() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    try:
        started = pids.start_time(proc.pid)
        # the exited child stays a zombie until reaped: start_time is None for a zombie
        assert pids.wait_gone(proc.pid, started, 5.0)
    finally:
        proc.kill()  # the child this test started, by its pid
        proc.wait()


def test_wait_gone_times_out_on_a_live_process() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert pids.wait_gone(proc.pid, pids.start_time(proc.pid), 0.2) is False
    finally:
        proc.kill()
        proc.wait()
