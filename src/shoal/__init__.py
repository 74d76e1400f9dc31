"""shoal: Docker-style container networking on the real Linux kernel, without a daemon.

The Python API mirrors docker-py: `shoal.Client(root=..., run_dir=...)` or `shoal.from_env()`.
Names are imported lazily so that `shoal network ls` starts fast.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Client", "ContainerError", "ExecResult", "ShoalError", "__version__", "from_env"]


def __getattr__(name: str) -> Any:
    if name in ("Client", "from_env", "ContainerError", "ExecResult"):
        from . import client

        return getattr(client, name)
    if name == "ShoalError":
        from .errors import ShoalError

        return ShoalError
    if name == "__version__":  # the installed distribution's (pyproject.toml's version)
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("shoal")
        except PackageNotFoundError:
            return "unknown (not installed: pip install .)"
    raise AttributeError(name)
