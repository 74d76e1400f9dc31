"""One definition of each thing: the copies and the dead code the architecture review named
(issue 8) stay gone. Read from the source, so a copy that comes back is named here."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import shoal
from shoal import ports, rules, store

SRC = Path(shoal.__file__).parent


def top_level_names() -> dict[str, list[str]]:
    """Each class, function and constant defined at the top of a module of src/shoal, with
    the modules that define it."""
    out: dict[str, list[str]] = defaultdict(list)
    for path in sorted(SRC.rglob("*.py")):
        where = str(path.relative_to(SRC))
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef | ast.FunctionDef):
                out[node.name].append(where)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name) and target.id.isupper():
                        out[target.id].append(where)
    return out


def test_each_error_class_is_defined_once() -> None:
    twice = {name: where for name, where in top_level_names().items()
             if name.endswith("Error") and len(where) > 1}
    assert twice == {}


def test_firewall_backends_raise_the_one_firewall_error() -> None:
    from shoal.errors import FirewallError
    from shoal.firewall import iptables, neighbours, nftables

    for module in (iptables, nftables, neighbours):
        assert module.FirewallError is FirewallError


def test_the_driver_list_is_defined_once() -> None:
    names = top_level_names()
    assert names["REGISTRY"] == ["drivers/__init__.py"]
    assert "DRIVERS" not in names


def test_constants_are_defined_once() -> None:
    twice = {name: where for name, where in top_level_names().items()
             if name.isupper() and len(where) > 1 and name not in ("TYPE_CHECKING", "__all__")}
    assert twice == {}


def test_unused_functions_are_gone() -> None:
    assert not hasattr(store.Store, "used_ips")
    assert not hasattr(ports, "conflicts")
    assert not hasattr(ports.Binding, "key")
    assert not hasattr(rules, "diff")
