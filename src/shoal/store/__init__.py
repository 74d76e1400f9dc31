"""shoal's state.

- `sqlite.Store`: the local store, one host's state in SQLite under shoal's root, with the
  write lock that serialises mutating commands (what the controller may use of it is the
  `protocol.LocalStore` protocol);
- `protocol.GlobalStore`: the protocol of a store shared by several hosts (keys with
  revisions, compare-and-swap, leases, watch), modelled on etcd v3; `memory.MemoryStore`
  implements it in-process.

Importing this package costs what the local store costs and no more: the protocols (and
`typing`, about 10 ms) are imported only by the modules that need them, never by a command
that only reads."""

from .sqlite import SCHEMA_VERSION, Store, decode_json, sqlite3

__all__ = ["SCHEMA_VERSION", "Store", "decode_json", "sqlite3"]
