"""Spec-shaped results: ADD's (interfaces, ips, routes, dns) in the shape of the config's
version, and VERSION's. 0.3.x and 0.4.0 results carry each address's `version`; 1.0.0
dropped it. Pure functions."""

from __future__ import annotations

from .versions import version_result  # noqa: F401 (VERSION's, beside ADD's)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def interface(name: str, mac: str | None = None, sandbox: str = "",
              mtu: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name}
    if mac:
        out["mac"] = mac
    if mtu:
        out["mtu"] = mtu
    if sandbox:
        out["sandbox"] = sandbox
    return out


def add_result(version: str, interfaces: list[dict[str, Any]], address: str,
               gateway: str | None, index: int, default_route: bool,
               dns: dict[str, Any]) -> dict[str, Any]:
    """ADD's result: one IPv4 address (CIDR) on interfaces[index]."""
    ip: dict[str, Any] = {"address": address, "interface": index}
    if gateway:
        ip["gateway"] = gateway
    if not version.startswith("1."):
        ip = {"version": "4", **ip}
    out: dict[str, Any] = {"cniVersion": version, "interfaces": interfaces, "ips": [ip]}
    if default_route and gateway:
        out["routes"] = [{"dst": "0.0.0.0/0", "gw": gateway}]
    out["dns"] = dict(dns)
    return out


def passed_through(version: str, prev: dict[str, Any]) -> dict[str, Any]:
    """A chained plugin's result: the previous plugin's, unchanged but for the version."""
    return {**prev, "cniVersion": version}


