"""The null driver: no connectivity; a container on the built-in `none` network gets a
sandbox of its own with only `lo` in it."""

from __future__ import annotations

from .api import NONE
from .modes import ModeDriver


class NullDriver(ModeDriver):
    name = "null"
    builtin_name = "none"
    sandbox = NONE
