"""Layers: data flows down. The store and IPAM's address functions import nothing of the
layers above them (the runtime, the kernel, the controller, the firewall, drivers, the CLI);
checked in the source (every import, also those for type checking only) and in a process
that uses the store."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import shoal

SRC = Path(shoal.__file__).parent
ABOVE_THE_STORE = ("shoal.runtime", "shoal.engine", "shoal.controller", "shoal.kernel",
                   "shoal.drivers", "shoal.firewall", "shoal.netfilter", "shoal.cli",
                   "shoal.doctor", "shoal.client", "shoal.ipam")


def imports_of(path: Path) -> set[str]:
    """The modules a file of src/shoal imports, relative imports resolved."""
    package = ["shoal", *path.relative_to(SRC).parent.parts]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            out.add(module)
            out |= {f"{module}.{alias.name}" for alias in node.names}
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == "__import__" and node.args
              and isinstance(node.args[0], ast.Constant)):
            out.add(str(node.args[0].value))
    return out


def reaches(modules: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in forbidden))


def test_the_import_reader_sees_relative_imports() -> None:
    # (so that the tests below cannot pass by reading nothing)
    context = imports_of(SRC / "controller" / "context.py")
    assert "shoal.store.Store" in context and "shoal.errors" in context
    assert "shoal.model" in imports_of(SRC / "store" / "sqlite.py")


@pytest.mark.parametrize("path", sorted((SRC / "store").glob("*.py")), ids=lambda p: p.name)
def test_the_store_imports_nothing_above_it(path: Path) -> None:
    assert reaches(imports_of(path), ABOVE_THE_STORE) == []


def test_ipam_addresses_import_no_kernel_nor_runtime() -> None:
    above = ("shoal.runtime", "shoal.kernel", "shoal.engine", "shoal.controller",
             "shoal.netfilter", "shoal.firewall", "shoal.drivers", "shoal.cli")
    assert reaches(imports_of(SRC / "ipam" / "addresses.py"), above) == []
    assert reaches(imports_of(SRC / "ipam" / "protocol.py"), above) == []


def test_using_the_store_loads_no_runtime_module(tmp_path: Path) -> None:
    code = """
import sys
from shoal.store import Store
s = Store(sys.argv[1])
with s.locked():
    s.set_meta("k", "v")
s.interrupted()
s.close()
print(sorted(m for m in sys.modules if m.startswith(("shoal.runtime", "shoal.kernel",
                                                     "shoal.engine", "shoal.ipam"))))
"""
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "root")],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("path", sorted((SRC / "runtime").glob("*.py")), ids=lambda p: p.name)
def test_the_runtime_imports_no_controller(path: Path) -> None:
    assert reaches(imports_of(path), ("shoal.controller", "shoal.cli", "shoal.client",
                                      "shoal.doctor", "shoal.drivers")) == []
