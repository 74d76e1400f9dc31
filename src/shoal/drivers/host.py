"""The host driver: no isolation; a container on the built-in `host` network runs in the
host's own network namespace (no sandbox, no endpoint)."""

from __future__ import annotations

from .api import HOST
from .modes import ModeDriver


class HostDriver(ModeDriver):
    name = "host"
    builtin_name = "host"
    sandbox = HOST
