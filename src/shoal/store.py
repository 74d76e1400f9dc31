"""State in SQLite (WAL) under shoal's root directory, plus the write lock that serialises
mutating commands. Readers never take the lock: WAL gives them a consistent snapshot."""

from __future__ import annotations

import fcntl
import os

try:
    # SQLite's C module alone. The sqlite3 package around it only adds date and time adapters,
    # whose imports (datetime, collections) would cost 7 ms of every command; shoal stores
    # text. Every class and function shoal uses is the C module's own.
    import _sqlite3 as sqlite3
except ImportError:  # an interpreter that has no separate C module
    import sqlite3  # type: ignore[no-redef]

from .errors import Conflict, NotFound, ShoalError
from .model import Container, Endpoint, Network, PublishedPort, Sandbox
from .records import Parsed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from ipaddress import IPv4Address
    from typing import Any

SCHEMA_VERSION = 4

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
    publish TEXT NOT NULL DEFAULT '[]', expose TEXT NOT NULL DEFAULT '[]'
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
}

_JSON = {"labels", "options", "cmd", "env", "aliases", "publish", "expose"}
_NETS = {"subnet", "ip_range"}
_ADDRS = {"gateway", "last_ip", "ip", "requested_ip", "host_ip", "dest_ip"}
_BOOLS = {"internal", "auto_remove", "owned"}


def _to_db(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _JSON:
        import json

        return json.dumps(value)
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
    which keeps `json` and the `re` it imports out of the commands that only read."""
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
    import json

    return json.loads(text)


def _start_time(pid: int) -> int | None:
    from .runtime.pids import start_time

    return start_time(pid)


def _now() -> str:
    from .model import now

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
    def __init__(self, root: str, dir_fd: int | None = None) -> None:
        """The state in directory `root`. The engine opens that directory itself, with its
        checks (shoal.dirs), and hands its descriptor over (closed with the store); without
        one, the directory is made 0700 if missing (the mode of an existing one is left)."""
        from . import dirs

        self.root = root
        if dir_fd is None:
            os.makedirs(root, mode=0o700, exist_ok=True)
            dir_fd = os.open(root, dirs.O_DIR)
        self.dir_fd = dir_fd
        path = os.path.join(root, "shoal.db")
        try:
            # never through a symlink; created private: SQLite would make it (and its
            # -wal/-shm files) world-readable
            os.close(dirs.open_file(dir_fd, "shoal.db", os.O_RDWR | os.O_CREAT, 0o600, path))
            for suffix in ("-wal", "-shm", "-journal"):
                dirs.exists(dir_fd, "shoal.db" + suffix, path + suffix)
        except BaseException:
            os.close(dir_fd)
            raise
        try:
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
        except (OSError, sqlite3.DatabaseError) as e:
            os.close(dir_fd)
            raise ShoalError(
                f"cannot open the state database {path}: {e}; move it aside to start afresh"
            ) from None
        if version > SCHEMA_VERSION:
            self.db.close()
            os.close(dir_fd)
            raise ShoalError(
                f"the state database {path} was written by a newer shoal (schema {version}); "
                "upgrade shoal"
            )
        if version < SCHEMA_VERSION:
            steps = "" if version == 0 else "".join(
                MIGRATIONS.get(v, "") for v in range(version + 1, SCHEMA_VERSION + 1))
            self.db.executescript(
                f"BEGIN IMMEDIATE; {steps} {SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;"
            )
        self._lock_fd: int | None = None
        self._lock_depth = 0
        # called with the lock held when a previous mutating command did not finish
        self.on_interrupted: Callable[[], None] | None = None
        # called at every first acquisition of the lock, after on_interrupted
        self.on_locked: Callable[[], None] | None = None

    def close(self) -> None:
        self.db.close()
        if self.dir_fd >= 0:
            os.close(self.dir_fd)
            self.dir_fd = -1

    # -- locking and transactions ---------------------------------------------------------

    def locked(self) -> _Locked:
        """The write lock, held for a whole kernel transaction (`with store.locked():`).
        Re-entrant in one process; released by the kernel if the process dies."""
        return _Locked(self)

    def _acquire(self) -> None:
        if self._lock_depth == 0:
            from .dirs import open_file

            fd = open_file(self.dir_fd, "lock", os.O_RDWR | os.O_CREAT, 0o600,
                           os.path.join(self.root, "lock"))
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._lock_fd = fd
        self._lock_depth += 1
        try:
            if self._lock_depth == 1:
                # with the lock held, any row left in ops is from a process that died
                interrupted = self.db.execute("SELECT 1 FROM ops LIMIT 1").fetchone()
                self.db.execute("INSERT INTO ops (pid, pid_start, started) VALUES (?, ?, ?)",
                                (os.getpid(), _start_time(os.getpid()), _now()))
                if interrupted and self.on_interrupted is not None:
                    self.on_interrupted()
                    self.db.execute("DELETE FROM ops WHERE pid != ?", (os.getpid(),))
                if self.on_locked is not None:
                    self.on_locked()
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        self._lock_depth -= 1
        if self._lock_depth == 0 and self._lock_fd is not None:
            if not self.db.in_transaction:
                self.db.execute("DELETE FROM ops WHERE pid = ?", (os.getpid(),))
            os.close(self._lock_fd)
            self._lock_fd = None

    def interrupted(self) -> bool:
        """Did a mutating command die before finishing (its process is gone)?"""
        rows = self.db.execute("SELECT pid, pid_start FROM ops").fetchall()
        if not rows:
            return False
        from .runtime.pids import alive

        return any(not alive(pid, start) for pid, start in rows)

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
        self.db.execute("DELETE FROM endpoints WHERE network_id=?", (id_,))
        self.db.execute("DELETE FROM networks WHERE id=?", (id_,))

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

    def delete_container(self, id_: str) -> None:
        """The container's record, with its own sandbox (which has its id) and so that
        sandbox's endpoints and ports."""
        self.db.execute("DELETE FROM sandboxes WHERE id=? AND owned=1", (id_,))
        self.db.execute("DELETE FROM containers WHERE id=?", (id_,))

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

    def delete_sandbox(self, id_: str) -> None:
        """The sandbox's record, with its endpoints and ports."""
        self.db.execute("DELETE FROM sandboxes WHERE id=?", (id_,))

    # -- endpoints --------------------------------------------------------------------------

    def add_endpoint(self, ep: Endpoint) -> None:
        if ep.ip is not None and self.ip_in_use(ep.network_id, ep.ip):
            raise Conflict(f"address {ep.ip} is already in use")
        self._insert("endpoints", ep)

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
        self._update("endpoints", id_, **changes)

    def delete_endpoint(self, id_: str) -> None:
        self.db.execute("DELETE FROM endpoints WHERE id=?", (id_,))

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
