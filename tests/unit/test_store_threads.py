"""The local store and its write lock under threads (and beside other processes): locked
read-modify-writes lose no update, allocations through the address allocator never hand out
one address twice, no thread sees "database is locked" or a cursor in use by another
thread, the lock excludes other threads and other processes and still nests in one thread;
and commands starting together on a brand-new root all open it."""

from __future__ import annotations

import fcntl
import gc
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

import shoal
from shoal.ipam.addresses import StoreAddresses
from shoal.model import Container, Endpoint, Network, Sandbox, now
from shoal.names import new_id
from shoal.store import Store

THREADS = 8
SRC = str(Path(shoal.__file__).parent.parent)


@pytest.fixture
def root(tmp_path: Path) -> str:
    return str(tmp_path / "root")


@pytest.fixture
def store(root: str) -> Iterator[Store]:
    s = Store(root)
    yield s
    s.close()


def run_threads(count: int, work: Callable[[int], None], timeout: float = 30) -> None:
    """Run work(0..count-1) in threads started together; re-raise the first error."""
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def body(i: int) -> None:
        try:
            start.wait()
            work(i)
        except BaseException as e:  # noqa: BLE001  # (reported below, in the test's thread)
            errors.append(e)

    # (daemons: a thread stuck on the lock must not keep the test run from ending)
    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a thread is stuck"
    if errors:
        raise errors[0]


def network(name: str, subnet: str = "10.20.0.0/24") -> Network:
    net = IPv4Network(subnet)
    return Network(new_id(), name, "bridge", now(), subnet=net,
                   gateway=net.network_address + 1, bridge=f"br-{name}"[:15])


def container(name: str) -> Container:
    return Container(new_id(), name, now(), None, ["true"], [], "bridge", "created")


# -- no lost update -----------------------------------------------------------------------


def test_locked_read_modify_writes_lose_no_update(store: Store) -> None:
    # the read and the write are separate statements, as a command's are: only the lock
    # keeps two threads from reading the same value
    def work(i: int) -> None:
        for j in range(25):
            with store.locked():
                n = int(store.get_meta("n") or 0)
                time.sleep(0)  # (let another thread run, if it could enter)
                with store.transaction():
                    store.set_meta("n", str(n + 1))
                    store.add_network(network(f"t{i}-{j}", f"10.{i}.{j}.0/24"))
                    store.add_container(container(f"c{i}-{j}"))

    run_threads(THREADS, work)
    assert store.get_meta("n") == str(THREADS * 25)
    assert len(store.networks()) == THREADS * 25
    assert len(store.containers()) == THREADS * 25


def test_threads_allocating_addresses_never_share_one(store: Store) -> None:
    net = network("pool", "10.30.0.0/22")
    store.add_network(net)
    allocator = StoreAddresses(store)

    def work(i: int) -> None:
        for j in range(20):
            with store.locked(), store.transaction():
                current = store.network_by_id(net.id)  # (last_ip as stored now)
                ip = allocator.allocate(current)
                ctr = container(f"c{i}-{j}")
                store.add_container(ctr)
                store.add_sandbox(Sandbox(ctr.id, "", True, ctr.created))
                store.add_endpoint(Endpoint(new_id(), ctr.id, net.id, "eth0", ip, None))

    run_threads(THREADS, work)
    ips = [ep.ip for ep in store.endpoints(network_id=net.id)]
    assert len(ips) == THREADS * 20 and len(set(ips)) == THREADS * 20
    # handed out in order, continuing after the last one (none skipped, none twice)
    assert sorted(ips) == [IPv4Address("10.30.0.2") + k for k in range(THREADS * 20)]


def test_readers_in_threads_beside_writers_see_no_error(store: Store) -> None:
    net = network("r")
    store.add_network(net)
    stop = threading.Event()

    def work(i: int) -> None:
        if i % 2:  # a reader: cursors stepped while other threads write
            while not stop.is_set():
                for ep in store.endpoints(network_id=net.id):
                    assert ep.network_id == net.id
                store.networks()
            return
        for j in range(40):
            with store.locked(), store.transaction():
                ctr = container(f"c{i}-{j}")
                store.add_container(ctr)
                store.add_sandbox(Sandbox(ctr.id, "", True, ctr.created))
                store.add_endpoint(Endpoint(new_id(), ctr.id, net.id, "eth0", None, None))
        if i == 0:
            stop.set()

    run_threads(THREADS, work)
    assert len(store.endpoints(network_id=net.id)) == (THREADS // 2) * 40


# -- exclusion ----------------------------------------------------------------------------


def test_a_thread_inside_locked_excludes_the_other_threads(store: Store) -> None:
    inside, most = [0], [0]
    count = threading.Lock()

    def work(i: int) -> None:
        for _ in range(30):
            with store.locked():
                with count:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(0.0005)
                with count:
                    inside[0] -= 1

    run_threads(THREADS, work)
    assert most[0] == 1


def test_a_thread_inside_locked_excludes_another_process(store: Store, root: str) -> None:
    probe = ("import fcntl, os, sys\n"
             "fd = os.open(os.path.join(sys.argv[1], 'lock'), os.O_RDWR)\n"
             "try:\n"
             "    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
             "except BlockingIOError:\n"
             "    print('held')\n"
             "else:\n"
             "    print('free')\n")

    def other_process_sees() -> str:
        return subprocess.run([sys.executable, "-c", probe, root], capture_output=True,
                              text=True, check=True).stdout.strip()

    entered, leave = threading.Event(), threading.Event()

    def holder() -> None:
        with store.locked():
            entered.set()
            leave.wait(30)

    t = threading.Thread(target=holder, daemon=True)
    t.start()
    assert entered.wait(10)
    try:
        assert other_process_sees() == "held"
    finally:
        leave.set()
        t.join(10)
    assert other_process_sees() == "free"


def test_another_process_holding_the_lock_excludes_every_thread(store: Store,
                                                                 root: str) -> None:
    fd = os.open(os.path.join(root, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # (another open file: as another process's would be)
    entered: list[float] = []

    def work(i: int) -> None:
        with store.locked():
            entered.append(time.monotonic())

    released = 0.0
    try:
        waiter = threading.Thread(target=run_threads, args=(3, work), daemon=True)
        waiter.start()
        time.sleep(0.3)
        assert entered == []
        released = time.monotonic()
    finally:
        os.close(fd)
    waiter.join(30)
    assert len(entered) == 3 and min(entered) >= released


def test_locked_and_transaction_still_nest_in_each_thread(store: Store) -> None:
    def work(i: int) -> None:
        for j in range(10):
            with store.locked():
                with store.locked(), store.transaction():
                    store.add_network(network(f"n{i}-{j}", f"10.{i}.{j}.0/24"))
                    with store.transaction():
                        store.set_meta(f"k{i}", str(j))
                with store.locked():
                    assert store.get_meta(f"k{i}") == str(j)
            # a failed inner block rolls back the whole (outer) transaction
            with pytest.raises(RuntimeError), store.locked(), store.transaction():
                store.set_meta(f"k{i}", "lost")
                with store.transaction():
                    raise RuntimeError

    run_threads(4, work)
    assert [store.get_meta(f"k{i}") for i in range(4)] == ["9"] * 4
    assert len(store.networks()) == 40


def test_a_thread_sees_no_other_thread_s_open_transaction(store: Store) -> None:
    seen: list[list[str]] = []
    with store.locked(), store.transaction():
        store.add_network(network("uncommitted"))
        reader = threading.Thread(target=lambda: seen.append(
            [n.name for n in store.networks()]), daemon=True)
        reader.start()
        reader.join(10)  # (not blocked by the writer: WAL, a connection of its own)
    assert seen == [[]]
    assert [n.name for n in store.networks()] == ["uncommitted"]


def test_connections_of_ended_threads_are_closed(store: Store, root: str) -> None:
    def open_db_files() -> int:
        names = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                names.append(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                pass
        return names.count(os.path.join(root, "shoal.db"))

    store.networks()
    for _ in range(10):
        run_threads(6, lambda i: store.networks())
    gc.collect()
    # 61 connections were opened; SQLite keeps the descriptors of closed ones while another
    # connection of the process has the file locked (closing one would drop every POSIX lock
    # of the process on it) and reuses them: no more than were open at once
    assert open_db_files() <= 6 + 1
    store.close()
    assert open_db_files() == 0


def test_a_closed_store_cannot_be_used(store: Store) -> None:
    store.close()
    with pytest.raises(Exception, match="closed"):
        store.networks()


# -- a brand-new root ---------------------------------------------------------------------


WORKER = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from shoal.store import Store
base, rounds, t0 = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
failed = 0
for i in range(rounds):
    while time.time() < t0 + i * 0.04:  # every worker opens root i at the same moment
        pass
    try:
        s = Store(os.path.join(base, str(i)))
        with s.locked():
            s.set_meta(f"w{os.getpid()}", "1")
        s.close()
    except Exception as e:
        failed += 1
        print(f"round {i}: {e}", file=sys.stderr)
print(failed)
"""


def test_commands_opening_a_new_root_together_all_succeed(tmp_path: Path) -> None:
    # SQLite answers a second connection turning a new database to WAL at the same moment
    # "database is locked" at once, busy timeout or not (found once in the integration
    # suite; before the fix about one round in six failed here)
    rounds, workers = 30, 3
    t0 = time.time() + 1.0
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, SRC, str(tmp_path), str(rounds),
                               str(t0)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(workers)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [int(out) for out, _ in results] == [0] * workers, [err for _, err in results]
    for i in range(rounds):
        s = Store(str(tmp_path / str(i)))
        try:
            assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            writers = s.db.execute("SELECT COUNT(*) FROM meta WHERE key LIKE 'w%'").fetchone()
            assert writers[0] == workers
        finally:
            s.close()
