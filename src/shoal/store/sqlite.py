"""The local store: state in SQLite (WAL) under shoal's root directory, plus the write lock
that serialises mutating commands. Readers never take the lock: WAL gives them a consistent
snapshot. What the controller may use of it is `shoal.store.protocol.LocalStore`.

Threads. One Store may be used by several threads of one process:

- the write lock is two locks: an in-process re-entrant lock (`_thread.RLock`) that the
  threads of this process queue on, around the depth counter and the `flock` of the `lock`
  file that serialises processes (a `flock` belongs to an open file, not to a thread, so
  without the first one a second thread would see the depth above 0 and walk in). Only the
  thread that holds it counts depth, so `locked()` nests within one thread;
- every thread has its own SQLite connection (opened on its first query, closed with the
  store or when the thread ends): a transaction is one connection's, so one thread's
  `transaction()` never takes in another thread's statements, and no thread reads a cursor
  another one is stepping ("recursive use of cursors"). Two threads writing at once queue
  on SQLite's own write lock (`BEGIN IMMEDIATE`, busy timeout 30 s), as two processes do;
  a thread that only reads sees committed state, never another thread's open transaction.

The alternative, one connection behind one lock, would make every reader in the process
wait for a writer's whole kernel transaction; WAL exists so that readers need not.

The store knows nothing of processes: which process holds an intent row (`ops`) and whether
that process still lives is asked of the `processes` object the caller hands in (the
controller gives it `shoal.runtime.pids`), so the store does not import the runtime."""

from __future__ import annotations

import _thread
import fcntl
import os

try:
    # SQLite's C module alone. The sqlite3 package around it only adds date and time adapters,
    # whose imports (datetime, collections) would cost 7 ms of every command; shoal stores
    # text. Every class and function shoal uses is the C module's own.
    import _sqlite3 as sqlite3
except ImportError:  # an interpreter that has no separate C module
    import sqlite3  # type: ignore[no-redef]

from ..errors import Conflict, NotFound, ShoalError
from ..model import Container, Endpoint, Network, PublishedPort, RemoteEndpoint, Sandbox
from ..records import Parsed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from ipaddress import IPv4Address
    from typing import Any

    from .protocol import Processes

SCHEMA_VERSION = 7

SCHEMA = """
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL, driver TEXT NOT NULL, created TEXT NOT NULL,
    subnet TEXT, gateway TEXT, ip_range TEXT, internal INTEGER NOT NULL DEFAULT 0,
    labels TEXT NOT NULL DEFAULT '{}', options TEXT NOT NULL DEFAULT '{}',
    bridge TEXT UNIQUE, last_ip TEXT
);
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL, created TEXT NOT NULL, hostname TEXT,
    cmd TEXT NOT NULL, env TEXT NOT NULL, network_mode TEXT NOT NULL, status TEXT NOT NULL,
    pid INTEGER, pid_start INTEGER, supervisor_pid INTEGER, supervisor_start INTEGER,
    exit_code INTEGER NOT NULL DEFAULT 0, started_at TEXT, finished_at TEXT,
    auto_remove INTEGER NOT NULL DEFAULT 0, error TEXT NOT NULL DEFAULT '', workdir TEXT,
    publish TEXT NOT NULL DEFAULT '[]', expose TEXT NOT NULL DEFAULT '[]',
    dns TEXT NOT NULL DEFAULT '[]', dns_search TEXT NOT NULL DEFAULT '[]',
    dns_options TEXT NOT NULL DEFAULT '[]', extra_hosts TEXT NOT NULL DEFAULT '[]',
    labels TEXT NOT NULL DEFAULT '{}', user TEXT NOT NULL DEFAULT '',
    restart_policy TEXT NOT NULL DEFAULT 'no', restart_max INTEGER NOT NULL DEFAULT 0,
    restart_count INTEGER NOT NULL DEFAULT 0, stopped_by_user INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sandboxes (
    id TEXT PRIMARY KEY, path TEXT NOT NULL DEFAULT '', owned INTEGER NOT NULL,
    created TEXT NOT NULL, owner TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS endpoints (
    id TEXT PRIMARY KEY,
    sandbox_id TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
    network_id TEXT NOT NULL REFERENCES networks(id),
    ifname TEXT NOT NULL, ip TEXT, mac TEXT, aliases TEXT NOT NULL DEFAULT '[]',
    requested_ip TEXT,
    UNIQUE (network_id, ip), UNIQUE (sandbox_id, network_id), UNIQUE (sandbox_id, ifname)
);
CREATE INDEX IF NOT EXISTS endpoints_by_network ON endpoints(network_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS ports (
    sandbox_id TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
    network_id TEXT NOT NULL REFERENCES networks(id),
    proto TEXT NOT NULL, host_ip TEXT NOT NULL, host_port INTEGER NOT NULL,
    container_port INTEGER NOT NULL, dest_ip TEXT NOT NULL,
    UNIQUE (proto, host_ip, host_port)
);
CREATE INDEX IF NOT EXISTS ports_by_sandbox ON ports(sandbox_id);
CREATE INDEX IF NOT EXISTS ports_by_host_port ON ports(proto, host_port);
-- one row per mutating command in progress (intent before action): a row left by a process
-- that died means its command was interrupted, and the next command repairs the state
CREATE TABLE IF NOT EXISTS ops (pid INTEGER NOT NULL, pid_start INTEGER, started TEXT);
-- overlay networks (cluster/): the endpoints of other hosts, mirrored from the global store by
-- this host's watcher, and the address blocks this host holds a lease on
CREATE TABLE IF NOT EXISTS remote_endpoints (
    id TEXT PRIMARY KEY, network_id TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
    host TEXT NOT NULL, address TEXT NOT NULL, ip TEXT NOT NULL, mac TEXT NOT NULL,
    names TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS remote_endpoints_by_network ON remote_endpoints(network_id);
CREATE TABLE IF NOT EXISTS blocks (
    network_id TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
    block TEXT NOT NULL, PRIMARY KEY (network_id, block)
);
"""

# Changes from one schema version to the next, for databases written by an older shoal.
MIGRATIONS = {
    2: """ALTER TABLE containers ADD COLUMN publish TEXT NOT NULL DEFAULT '[]';
          ALTER TABLE containers ADD COLUMN expose TEXT NOT NULL DEFAULT '[]';""",
    # sandboxes of their own: endpoints and ports belong to a sandbox, not to a container
    # (a container's own sandbox has its id, so the rows keep their values)
    4: """CREATE TABLE sandboxes (
              id TEXT PRIMARY KEY, path TEXT NOT NULL DEFAULT '', owned INTEGER NOT NULL,
              created TEXT NOT NULL, owner TEXT NOT NULL DEFAULT '');
          INSERT INTO sandboxes (id, path, owned, created, owner)
              SELECT id, '', 1, created, id FROM containers
              WHERE network_mode != 'host' AND network_mode NOT LIKE 'container:%';
          CREATE TABLE endpoints4 (
              id TEXT PRIMARY KEY,
              sandbox_id TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
              network_id TEXT NOT NULL REFERENCES networks(id),
              ifname TEXT NOT NULL, ip TEXT, mac TEXT, aliases TEXT NOT NULL DEFAULT '[]',
              requested_ip TEXT,
              UNIQUE (network_id, ip), UNIQUE (sandbox_id, network_id),
              UNIQUE (sandbox_id, ifname));
          INSERT INTO endpoints4 SELECT id, container_id, network_id, ifname, ip, mac, aliases,
              requested_ip FROM endpoints;
          DROP TABLE endpoints;
          ALTER TABLE endpoints4 RENAME TO endpoints;
          CREATE TABLE ports4 (
              sandbox_id TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
              network_id TEXT NOT NULL REFERENCES networks(id),
              proto TEXT NOT NULL, host_ip TEXT NOT NULL, host_port INTEGER NOT NULL,
              container_port INTEGER NOT NULL, dest_ip TEXT NOT NULL,
              UNIQUE (proto, host_ip, host_port));
          INSERT INTO ports4 SELECT container_id, network_id, proto, host_ip, host_port,
              container_port, dest_ip FROM ports;
          DROP TABLE ports;
          ALTER TABLE ports4 RENAME TO ports;""",
    # names: --dns, --dns-search, --dns-option and --add-host of each container
    5: """ALTER TABLE containers ADD COLUMN dns TEXT NOT NULL DEFAULT '[]';
          ALTER TABLE containers ADD COLUMN dns_search TEXT NOT NULL DEFAULT '[]';
          ALTER TABLE containers ADD COLUMN dns_options TEXT NOT NULL DEFAULT '[]';
          ALTER TABLE containers ADD COLUMN extra_hosts TEXT NOT NULL DEFAULT '[]';""",
    # --label, -u/--user (as given), --restart and what its policy needs to know
    6: """ALTER TABLE containers ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
          ALTER TABLE containers ADD COLUMN user TEXT NOT NULL DEFAULT '';
          ALTER TABLE containers ADD COLUMN restart_policy TEXT NOT NULL DEFAULT 'no';
          ALTER TABLE containers ADD COLUMN restart_max INTEGER NOT NULL DEFAULT 0;
          ALTER TABLE containers ADD COLUMN restart_count INTEGER NOT NULL DEFAULT 0;
          ALTER TABLE containers ADD COLUMN stopped_by_user INTEGER NOT NULL DEFAULT 0;""",
}

_JSON = {"labels", "options", "cmd", "env", "aliases", "publish", "expose", "dns",
         "dns_search", "dns_options", "extra_hosts", "names"}
_NETS = {"subnet", "ip_range"}
_ADDRS = {"gateway", "last_ip", "ip", "requested_ip", "host_ip", "dest_ip", "address"}
_BOOLS = {"internal", "auto_remove", "owned", "stopped_by_user"}


def _to_db(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _JSON:
        from .. import jsonwire

        return jsonwire.dumps(value)
    if name in _NETS or name in _ADDRS:
        return str(value)
    if name in _BOOLS:
        return int(value)
    return value


def _from_db(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _JSON:
        return decode_json(value)
    if name in _NETS:  # (of either family: the text says which)
        from ipaddress import ip_network

        return ip_network(value)
    if name in _ADDRS:
        from ipaddress import ip_address

        return ip_address(value)
    if name in _BOOLS:
        return bool(value)
    return value


def decode_json(text: str) -> Any:
    """A JSON column. The columns hold lists and objects of strings, written by json.dumps;
    those without a backslash (no escaped quote, no non-ASCII) are split on their quotes here,
    which is faster still than shoal.jsonwire (json's codec without json's imports)."""
    if text in ("[]", "{}"):
        return [] if text == "[]" else {}
    if "\\" not in text:
        parts = text.split('"')
        strings, seps = parts[1::2], parts[2:-1:2]
        if parts[0] == "[" and parts[-1] == "]" and all(sep == ", " for sep in seps):
            return strings
        if parts[0] == "{" and parts[-1] == "}" and len(strings) % 2 == 0 and all(
                sep == (": " if i % 2 == 0 else ", ") for i, sep in enumerate(seps)):
            return dict(zip(strings[::2], strings[1::2], strict=True))
    from .. import jsonwire

    return jsonwire.loads(text)


class PidsOnly:
    """What a store is given when its caller names no `processes`: a process is known by its
    pid alone (no start time), and it lives while signal 0 reaches it. (A pid reused by a
    later process would look alive: the controller passes shoal.runtime.pids, which also
    compares start times.)"""

    @staticmethod
    def start_time(pid: int) -> int | None:
        return None

    @staticmethod
    def alive(pid: int | None, started: int | None) -> bool:
        if not pid:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _now() -> str:
    from ..model import now

    return now()


_PARSED: dict[type, frozenset[str]] = {}


def _row(cls: type, row: sqlite3.Row) -> Any:
    """A record from a row. Fields the record parses itself on first read (`Parsed`: the
    addresses of networks and endpoints) get their column's text as it is."""
    parsed = _PARSED.get(cls)
    if parsed is None:
        parsed = _PARSED[cls] = frozenset(
            n for n in cls._fields if isinstance(getattr(cls, n, None), Parsed))
    return cls(**{name: row[name] if name in parsed else _from_db(name, row[name])
                  for name in cls._fields})


def _values(obj: Any) -> dict[str, Any]:
    return {name: _to_db(name, getattr(obj, name)) for name in obj._fields}


class Store:
    def __init__(self, root: str, dir_fd: int | None = None,
                 processes: Processes | None = None) -> None:
        """The state in directory `root`. The engine opens that directory itself, with its
        checks (shoal.dirs), and hands its descriptor over (closed with the store); without
        one, the directory is made 0700 if missing (the mode of an existing one is left).
        `processes` tells who this process is and whether another one still runs (for the
        intent rows); without it, see PidsOnly."""
        from .. import dirs

        self.root = root
        self.processes: Processes = processes if processes is not None else PidsOnly()
        self._me: tuple[int, int | None] | None = None  # (pid, start time) of this process
        if dir_fd is None:
            os.makedirs(root, mode=0o700, exist_ok=True)
            dir_fd = os.open(root, dirs.O_DIR)
        self.dir_fd = dir_fd
        self.path = path = os.path.join(root, "shoal.db")
        try:
            # never through a symlink; created private: SQLite would make it (and its
            # -wal/-shm files) world-readable
            os.close(dirs.open_file(dir_fd, "shoal.db", os.O_RDWR | os.O_CREAT, 0o600, path))
            for suffix in ("-wal", "-shm", "-journal"):
                dirs.exists(dir_fd, "shoal.db" + suffix, path + suffix)
        except BaseException:
            os.close(dir_fd)
            raise
        # the write lock: threads of this process queue on the RLock, processes on the flock
        self._mutex = _thread.RLock()
        self._lock_fd: int | None = None
        self._lock_depth = 0
        # one connection per thread (see the module's docstring), all of them listed so that
        # close() closes them; a thread's own is dropped with the thread
        self._local = _thread._local()
        self._connections: dict[int, sqlite3.Connection] = {}
        self._connections_mutex = _thread.allocate_lock()
        self._opened = 0  # connections opened so far: the key of the next one
        self._closed = False
        try:
            db = self._connect()
            version = db.execute("PRAGMA user_version").fetchone()[0]
            journal = db.execute("PRAGMA journal_mode").fetchone()[0]
            if journal != "wal" or version < SCHEMA_VERSION:
                version = self._initialise(db)
        except (OSError, sqlite3.DatabaseError) as e:
            self._close_connections()
            os.close(dir_fd)
            raise ShoalError(
                f"cannot open the state database {path}: {e}; move it aside to start afresh"
            ) from None
        except BaseException:
            self._close_connections()
            os.close(dir_fd)
            raise
        if version > SCHEMA_VERSION:
            self._close_connections()
            os.close(dir_fd)
            raise ShoalError(
                f"the state database {path} was written by a newer shoal (schema {version}); "
                "upgrade shoal"
            )
        # called with the lock held when a previous mutating command did not finish
        self.on_interrupted: Callable[[], None] | None = None
        # called at every first acquisition of the lock, after on_interrupted
        self.on_locked: Callable[[], None] | None = None
        # called when the outermost lock is about to be released, still held, with every
        # transaction of it committed: what changed is final and nobody else changes it yet
        # (the embedded resolver is told then, see controller/resolver.py)
        self.on_unlocking: Callable[[], None] | None = None
        # the sandboxes whose endpoints or containers changed under the lock held now (a
        # rolled-back change may be in it: a reader finds nothing changed then); take_touched
        self._touched: set[str] = set()
        self._touched_remote: set[str] = set()

    def _initialise(self, db: sqlite3.Connection) -> int:
        """Turn a new database to WAL and write the schema (or migrate an older one), with the
        write lock held: SQLite answers a second connection that changes the journal mode
        at the same moment "database is locked" at once, without waiting for its busy timeout
        (two commands starting on a new root). The schema version found, after the change."""
        fd = self._open_lock_file()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            db.execute("PRAGMA journal_mode=WAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version < SCHEMA_VERSION:
                steps = "" if version == 0 else "".join(
                    MIGRATIONS.get(v, "") for v in range(version + 1, SCHEMA_VERSION + 1))
                db.executescript(f"BEGIN IMMEDIATE; {steps} {SCHEMA} "
                                 f"PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
                version = SCHEMA_VERSION
            return version
        finally:
            os.close(fd)

    def _connect(self) -> sqlite3.Connection:
        """This thread's connection, opened on its first use."""
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                             check_same_thread=False)  # (close() may come from another thread)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            db.close()
            raise
        with self._connections_mutex:
            self._opened += 1
            key = self._opened
            self._connections[key] = db
        self._local.db = db
        # when the thread ends, its _local entry goes and with it this guard, which forgets
        # and closes the connection
        self._local.guard = _Forget(self._connections, self._connections_mutex, key)
        return db

    @property
    def db(self) -> sqlite3.Connection:
        """The calling thread's SQLite connection."""
        try:
            return self._local.db
        except AttributeError:
            if self._closed:
                raise ShoalError("the store is closed") from None
            return self._connect()

    def _close_connections(self) -> None:
        with self._connections_mutex:
            connections = list(self._connections.values())
            self._connections.clear()
        for db in connections:
            db.close()

    def close(self) -> None:
        """Close every thread's connection and the directory (no thread may use the store
        any more)."""
        self._closed = True
        self._local = _thread._local()
        self._close_connections()
        if self.dir_fd >= 0:
            os.close(self.dir_fd)
            self.dir_fd = -1

    # -- locking and transactions ---------------------------------------------------------

    def locked(self) -> _Locked:
        """The write lock, held for a whole kernel transaction (`with store.locked():`).
        Re-entrant in one thread; excludes the other threads of this process and every other
        process; released by the kernel if the process dies."""
        return _Locked(self)

    def _open_lock_file(self) -> int:
        from ..dirs import open_file

        return open_file(self.dir_fd, "lock", os.O_RDWR | os.O_CREAT, 0o600,
                         os.path.join(self.root, "lock"))

    def _identity(self) -> tuple[int, int | None]:
        """(pid, start time) of this process, asked once per process (a forked child asks
        again)."""
        pid = os.getpid()
        if self._me is None or self._me[0] != pid:
            self._me = (pid, self.processes.start_time(pid))
        return self._me

    def _acquire(self) -> None:
        self._mutex.acquire()
        try:
            if self._lock_depth == 0:
                fd = self._open_lock_file()
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
                self._lock_fd = fd
        except BaseException:
            self._mutex.release()
            raise
        self._lock_depth += 1
        try:
            if self._lock_depth == 1:
                # with the lock held, any row left in ops is from a process that died
                pid, start = self._identity()
                interrupted = self.db.execute("SELECT 1 FROM ops LIMIT 1").fetchone()
                self.db.execute("INSERT INTO ops (pid, pid_start, started) VALUES (?, ?, ?)",
                                (pid, start, _now()))
                if interrupted and self.on_interrupted is not None:
                    self.on_interrupted()
                    self.db.execute("DELETE FROM ops WHERE pid != ?", (pid,))
                if self.on_locked is not None:
                    self.on_locked()
        except BaseException:
            self._release_lock()
            raise

    def _release(self) -> None:
        if self._lock_depth == 1 and self.on_unlocking is not None \
                and not self.db.in_transaction:
            try:
                self.on_unlocking()
            except BaseException:
                self._release_lock()
                raise
        self._release_lock()

    def _release_lock(self) -> None:
        try:
            self._lock_depth -= 1
            if self._lock_depth == 0 and self._lock_fd is not None:
                try:
                    if not self.db.in_transaction:
                        self.db.execute("DELETE FROM ops WHERE pid = ?", (os.getpid(),))
                finally:
                    os.close(self._lock_fd)
                    self._lock_fd = None
        finally:
            self._mutex.release()

    def peek_touched(self) -> bool:
        """Has a sandbox been touched since the last take_touched?"""
        return bool(self._touched)

    def take_touched(self) -> set[str]:
        """The sandboxes touched since the last call, and forget them."""
        touched, self._touched = self._touched, set()
        return touched

    def interrupted(self) -> bool:
        """Did a mutating command die before finishing (its process is gone)?"""
        rows = self.db.execute("SELECT pid, pid_start FROM ops").fetchall()
        return any(not self.processes.alive(pid, start) for pid, start in rows)

    def transaction(self) -> _Transaction:
        """`with store.transaction():` one SQLite transaction, rolled back if the block fails;
        inside another one, the block joins it."""
        return _Transaction(self.db)

    # -- meta ------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def delete_meta(self, key: str) -> None:
        self.db.execute("DELETE FROM meta WHERE key=?", (key,))

    # -- generic ----------------------------------------------------------------------------

    def _insert(self, table: str, obj: Any) -> None:
        vals = _values(obj)
        cols = ", ".join(vals)
        marks = ", ".join("?" for _ in vals)
        try:
            self.db.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", list(vals.values()))
        except sqlite3.IntegrityError as e:
            raise Conflict(f"{table[:-1]} already exists: {e}") from None

    def _update(self, table: str, id_: str, **changes: Any) -> None:
        sets = ", ".join(f"{k}=?" for k in changes)
        vals = [_to_db(k, v) for k, v in changes.items()]
        self.db.execute(f"UPDATE {table} SET {sets} WHERE id=?", [*vals, id_])

    def _find(self, table: str, cls: type, ref: str, what: str) -> Any:
        row = self.db.execute(f"SELECT * FROM {table} WHERE name=? OR id=?", (ref, ref)).fetchone()
        if row is None and len(ref) >= 1 and all(c in "0123456789abcdef" for c in ref):
            rows = self.db.execute(
                f"SELECT * FROM {table} WHERE id LIKE ? LIMIT 2", (ref + "%",)
            ).fetchall()
            if len(rows) > 1:
                raise NotFound(f"{what} id prefix {ref!r} is ambiguous; give more characters")
            row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"no such {what}: {ref}")
        return _row(cls, row)

    # -- networks ---------------------------------------------------------------------------

    def add_network(self, net: Network) -> None:
        self._insert("networks", net)

    def network(self, ref: str) -> Network:
        return self._find("networks", Network, ref, "network")

    def network_by_id(self, id_: str) -> Network:
        row = self.db.execute("SELECT * FROM networks WHERE id=?", (id_,)).fetchone()
        if row is None:
            raise NotFound(f"no such network: {id_}")
        return _row(Network, row)

    def networks(self) -> list[Network]:
        rows = self.db.execute("SELECT * FROM networks ORDER BY created, name").fetchall()
        return [_row(Network, r) for r in rows]

    def update_network(self, id_: str, **changes: Any) -> None:
        self._update("networks", id_, **changes)

    def delete_network(self, id_: str) -> None:
        if self.db.execute("SELECT 1 FROM remote_endpoints WHERE network_id=? LIMIT 1",
                           (id_,)).fetchone():
            self._touched_remote.add(id_)  # (the resolver forgets their names)
        self.db.execute("DELETE FROM endpoints WHERE network_id=?", (id_,))
        self.db.execute("DELETE FROM remote_endpoints WHERE network_id=?", (id_,))
        self.db.execute("DELETE FROM blocks WHERE network_id=?", (id_,))
        self.db.execute("DELETE FROM networks WHERE id=?", (id_,))

    # -- overlay networks: other hosts' endpoints, this host's address blocks -----------------

    def put_remote(self, ep: RemoteEndpoint) -> None:
        vals = _values(ep)
        cols = ", ".join(vals)
        marks = ", ".join("?" for _ in vals)
        self.db.execute(f"INSERT OR REPLACE INTO remote_endpoints ({cols}) VALUES ({marks})",
                        list(vals.values()))
        self._touched_remote.add(ep.network_id)

    def delete_remote(self, id_: str) -> None:
        row = self.db.execute("SELECT network_id FROM remote_endpoints WHERE id=?",
                              (id_,)).fetchone()
        if row:
            self._touched_remote.add(row[0])
            self.db.execute("DELETE FROM remote_endpoints WHERE id=?", (id_,))

    def remotes(self, network_id: str | None = None) -> list[RemoteEndpoint]:
        sql, args = "SELECT * FROM remote_endpoints", []
        if network_id is not None:
            sql, args = sql + " WHERE network_id=?", [network_id]
        return [_row(RemoteEndpoint, r) for r in self.db.execute(sql + " ORDER BY id", args)]

    def take_touched_remote(self) -> set[str]:
        """The networks whose remote endpoints changed since the last call; forgets them."""
        touched, self._touched_remote = self._touched_remote, set()
        return touched

    def add_block(self, network_id: str, block: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO blocks (network_id, block) VALUES (?, ?)",
                        (network_id, block))

    def delete_block(self, network_id: str, block: str) -> None:
        self.db.execute("DELETE FROM blocks WHERE network_id=? AND block=?",
                        (network_id, block))

    def blocks(self, network_id: str | None = None) -> list[tuple[str, str]]:
        """(network id, block) of each address block this host holds."""
        sql, args = "SELECT network_id, block FROM blocks", []
        if network_id is not None:
            sql, args = sql + " WHERE network_id=?", [network_id]
        return [(r[0], r[1]) for r in self.db.execute(sql + " ORDER BY network_id, block",
                                                       args)]

    # -- containers -------------------------------------------------------------------------

    def add_container(self, ctr: Container) -> None:
        self._insert("containers", ctr)

    def container(self, ref: str) -> Container:
        return self._find("containers", Container, ref, "container")

    def container_by_id(self, id_: str) -> Container | None:
        row = self.db.execute("SELECT * FROM containers WHERE id=?", (id_,)).fetchone()
        return _row(Container, row) if row else None

    def containers(self) -> list[Container]:
        rows = self.db.execute("SELECT * FROM containers ORDER BY created").fetchall()
        return [_row(Container, r) for r in rows]

    def update_container(self, id_: str, **changes: Any) -> None:
        self._update("containers", id_, **changes)
        if "name" in changes:  # the names the embedded resolver answers change with it
            self._touched.add(id_)

    def delete_container(self, id_: str) -> None:
        """The container's record, with its own sandbox (which has its id) and so that
        sandbox's endpoints and ports."""
        self.db.execute("DELETE FROM sandboxes WHERE id=? AND owned=1", (id_,))
        self.db.execute("DELETE FROM containers WHERE id=?", (id_,))
        self._touched.add(id_)

    # -- sandboxes --------------------------------------------------------------------------

    def add_sandbox(self, sandbox: Sandbox) -> None:
        self._insert("sandboxes", sandbox)

    def sandbox_by_id(self, id_: str) -> Sandbox | None:
        row = self.db.execute("SELECT * FROM sandboxes WHERE id=?", (id_,)).fetchone()
        return _row(Sandbox, row) if row else None

    def sandboxes(self, owned: bool | None = None) -> list[Sandbox]:
        sql, args = "SELECT * FROM sandboxes", []
        if owned is not None:
            sql += " WHERE owned=?"
            args.append(int(owned))
        return [_row(Sandbox, r) for r in self.db.execute(sql + " ORDER BY created", args)]

    def sandbox_by_owner(self, owner: str) -> Sandbox | None:
        row = self.db.execute("SELECT * FROM sandboxes WHERE owner=?", (owner,)).fetchone()
        return _row(Sandbox, row) if row else None

    def update_sandbox(self, id_: str, **changes: Any) -> None:
        self._update("sandboxes", id_, **changes)
        self._touched.add(id_)

    def delete_sandbox(self, id_: str) -> None:
        """The sandbox's record, with its endpoints and ports."""
        self.db.execute("DELETE FROM sandboxes WHERE id=?", (id_,))
        self._touched.add(id_)

    def supervisors(self) -> list[tuple[int, int | None]]:
        """(pid, start time) of each process answering for a running or created container,
        once each."""
        return [(r[0], r[1]) for r in self.db.execute(
            "SELECT DISTINCT supervisor_pid, supervisor_start FROM containers "
            "WHERE status IN ('running', 'created') AND supervisor_pid IS NOT NULL")]

    def supervised_by(self, pid: int) -> list[str]:
        """Ids of the running and created containers that process `pid` answers for."""
        return [r[0] for r in self.db.execute(
            "SELECT id FROM containers WHERE supervisor_pid=? "
            "AND status IN ('running', 'created')", (pid,))]

    def hand_over(self, id_: str, pid: int, start: int | None, status: str) -> None:
        """Process (pid, start) answers for the container from now on, if it still has
        `status` (a container that a command already finished stays as it is)."""
        self.db.execute("UPDATE containers SET supervisor_pid=?, supervisor_start=? "
                        "WHERE id=? AND status=?", (pid, start, id_, status))

    # -- endpoints --------------------------------------------------------------------------

    def add_endpoint(self, ep: Endpoint) -> None:
        if ep.ip is not None and self.ip_in_use(ep.network_id, ep.ip):
            raise Conflict(f"address {ep.ip} is already in use")
        self._insert("endpoints", ep)
        self._touched.add(ep.sandbox_id)

    def endpoints(self, sandbox_id: str | None = None, network_id: str | None = None
                  ) -> list[Endpoint]:
        sql, args = "SELECT * FROM endpoints WHERE 1=1", []
        if sandbox_id is not None:
            sql += " AND sandbox_id=?"
            args.append(sandbox_id)
        if network_id is not None:
            sql += " AND network_id=?"
            args.append(network_id)
        return [_row(Endpoint, r) for r in self.db.execute(sql + " ORDER BY ifname", args)]

    def plugged(self, network_id: str) -> int:
        """Endpoints of a network that hold an address: one bridge port each."""
        return self.db.execute("SELECT COUNT(*) FROM endpoints WHERE network_id=? AND ip IS NOT "
                               "NULL", (network_id,)).fetchone()[0]

    def update_endpoint(self, id_: str, **changes: Any) -> None:
        self._touch_endpoint(id_)
        self._update("endpoints", id_, **changes)

    def delete_endpoint(self, id_: str) -> None:
        self._touch_endpoint(id_)
        self.db.execute("DELETE FROM endpoints WHERE id=?", (id_,))

    def _touch_endpoint(self, id_: str) -> None:
        row = self.db.execute("SELECT sandbox_id FROM endpoints WHERE id=?", (id_,)).fetchone()
        if row:
            self._touched.add(row[0])

    def ip_in_use(self, network_id: str, ip: IPv4Address) -> bool:
        return self.db.execute(
            "SELECT 1 FROM endpoints WHERE network_id=? AND ip=?", (network_id, str(ip))
        ).fetchone() is not None

    def sharing_sandbox(self, container_id: str) -> list[str]:
        """Names of running containers using this container's sandbox (container:<id>)."""
        rows = self.db.execute(
            "SELECT name FROM containers WHERE network_mode=? AND status='running'",
            (f"container:{container_id}",),
        )
        return [r[0] for r in rows]

    def name_taken(self, name: str) -> bool:
        return self.db.execute(
            "SELECT 1 FROM containers WHERE name=?", (name,)
        ).fetchone() is not None

    # -- published ports --------------------------------------------------------------------

    def add_ports(self, ports: list[PublishedPort]) -> None:
        if not ports:
            return
        cols = list(PublishedPort._fields)
        rows = [[_to_db(c, getattr(p, c)) for c in cols] for p in ports]
        try:
            self.db.executemany(
                f"INSERT INTO ports ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                rows)
        except sqlite3.IntegrityError as e:
            raise Conflict(f"a host port is already published: {e}") from None

    def ports(self, sandbox_id: str | None = None) -> list[PublishedPort]:
        if sandbox_id is None:
            rows = self.db.execute("SELECT * FROM ports")
        else:
            rows = self.db.execute("SELECT * FROM ports WHERE sandbox_id=?", (sandbox_id,))
        return [_row(PublishedPort, r) for r in rows]

    def port_sample(self, limit: int) -> list[tuple[str, str, int, str, int]]:
        """The first `limit` published ports (as port_rows), without a scan."""
        return self.db.execute(
            "SELECT proto, host_ip, host_port, dest_ip, container_port FROM ports LIMIT ?",
            (limit,)).fetchall()

    def port_rows(self, sandbox_id: str, network_id: str | None = None
                  ) -> list[tuple[str, str, int, str, int]]:
        """(proto, host_ip, host_port, dest_ip, container_port) of a sandbox's ports, as
        stored: building records for 10,000 ports would cost more than the firewall update."""
        sql = ("SELECT proto, host_ip, host_port, dest_ip, container_port FROM ports "
               "WHERE sandbox_id=?")
        args: list[str] = [sandbox_id]
        if network_id is not None:
            sql += " AND network_id=?"
            args.append(network_id)
        return list(self.db.execute(sql, args))

    def holders(self, wanted: list[tuple[str, int]]) -> list[tuple[str, int, str, str]]:
        """(proto, host_port, host_ip, sandbox_id) of published ports among `wanted`."""
        if len(wanted) > 64:
            rows = self.db.execute("SELECT proto, host_port, host_ip, sandbox_id FROM ports")
            keys = set(wanted)
            return [r for r in rows if (r[0], r[1]) in keys]
        out = []
        for proto, port in wanted:
            out += self.db.execute(
                "SELECT proto, host_port, host_ip, sandbox_id FROM ports "
                "WHERE proto=? AND host_port=?", (proto, port)).fetchall()
        return out

    def published_host_ports(self, lo: int = 1, hi: int = 65535) -> set[tuple[int, str]]:
        rows = self.db.execute(
            "SELECT host_port, proto FROM ports WHERE host_port BETWEEN ? AND ?", (lo, hi))
        return {(r[0], r[1]) for r in rows}

    def delete_ports(self, sandbox_id: str, network_id: str | None = None) -> None:
        if network_id is None:
            self.db.execute("DELETE FROM ports WHERE sandbox_id=?", (sandbox_id,))
        else:
            self.db.execute("DELETE FROM ports WHERE sandbox_id=? AND network_id=?",
                            (sandbox_id, network_id))


class _Locked:
    """What `Store.locked()` returns. (A class rather than contextlib.contextmanager: contextlib
    and what it imports would cost every command a millisecond.)"""

    __slots__ = ("store",)

    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self) -> None:
        self.store._acquire()

    def __exit__(self, *exc: object) -> None:
        self.store._release()


class _Forget:
    """Kept in a thread's local storage beside its connection: when the thread ends (or the
    store is closed) it goes, and the connection is forgotten and closed."""

    __slots__ = ("connections", "mutex", "key")

    def __init__(self, connections: dict[int, sqlite3.Connection], mutex: Any, key: int
                 ) -> None:
        self.connections, self.mutex, self.key = connections, mutex, key

    def __del__(self) -> None:
        with self.mutex:
            db = self.connections.pop(self.key, None)
        if db is not None:
            db.close()


class _Transaction:
    __slots__ = ("db", "outer")

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.outer = False

    def __enter__(self) -> None:
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
            self.outer = True

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if self.outer:
            self.db.execute("ROLLBACK" if kind is not None else "COMMIT")
