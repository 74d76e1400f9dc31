"""The controller: the one place that sequences the store, the drivers, the firewall and the
runtime, and rolls back when a step fails. Everything above (CLI, Python API, the
supervisor) calls `Engine`; see engine.py for the module map."""

from __future__ import annotations

from .containers import RunSpec
from .engine import Engine

__all__ = ["Engine", "RunSpec"]
