"""Modules imported on their first use rather than when the importing module loads.

A read-only command (`shoal network ls`, `ps`, `inspect`) is mostly Python starting up and
importing; the engine names the modules it needs for changes (addresses, ports, the firewall,
processes) through these stand-ins so that reading the state never loads them."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class LazyModule:
    """Stands for the module `name`; the first attribute looked up imports it."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: Any = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            self._module = __import__(self._name, fromlist=["_"])
        return getattr(self._module, attr)

    def __repr__(self) -> str:
        state = "imported" if self._module is not None else "not imported yet"
        return f"<lazy module {self._name!r}, {state}>"
