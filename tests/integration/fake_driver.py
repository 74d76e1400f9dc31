"""A network driver that touches no kernel object: it records what the controller asks of
it, in order, so that a test can prove the driver seam (shoal.drivers.api.NetworkDriver)."""

from __future__ import annotations

from typing import Any

from shoal.drivers import ENDPOINTS, GLOBAL


class FakeDriver:
    name = "fake"
    scope = GLOBAL
    sandbox = ENDPOINTS
    user_networks = True
    addresses = True
    names = False

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.present: set[str] = set()  # endpoints "plugged in"

    def validate(self, h: Any, net: Any, others: list[Any]) -> Any:
        self.calls.append(("validate", net.name))
        if net.options.get("fake.fail") == "validate":
            from shoal.errors import InvalidArgument

            raise InvalidArgument("the fake driver refuses this network")
        # the firewall matches on the network's interface: a name no link has
        return net.replace(bridge="fk-" + net.id[:12])

    def builtin(self, net: Any) -> Any:
        return net

    def create_network(self, h: Any, net: Any) -> None:
        self.calls.append(("create_network", net.name))

    def delete_network(self, h: Any, net: Any) -> None:
        self.calls.append(("delete_network", net.name))

    def max_endpoints(self, net: Any) -> tuple[int, str] | None:
        return None

    def port_name(self, ep: Any) -> str | None:
        return None

    def owns_link(self, name: str) -> bool:
        return name.startswith("fk-")

    def icc(self, net: Any) -> bool:
        return True

    def masquerade(self, net: Any) -> bool:
        return True

    def host_binding_ip(self, net: Any) -> str | None:
        return None

    def join(self, h: Any, sandbox: Any, net: Any, ep: Any, first: bool,
             fresh: bool = False) -> None:
        self.calls.append(("join", net.name, ep.ifname, str(ep.ip), first))
        self.present.add(ep.id)

    def leave(self, h: Any, sandbox: Any, net: Any, ep: Any) -> None:
        self.calls.append(("leave", net.name, ep.ifname, sandbox is not None))
        self.present.discard(ep.id)

    def endpoint_present(self, h: Any, net: Any, ep: Any) -> bool:
        self.calls.append(("endpoint_present", net.name, ep.ifname))
        return ep.id in self.present

    def repair(self, h: Any, net: Any) -> str | None:
        self.calls.append(("repair", net.name))
        return None

    def gc(self, h: Any, nets: list[Any], live: list[Any]) -> list[str]:
        self.calls.append(("gc", sorted(n.name for n in nets), len(live)))
        return []

    def foreign_root(self, h: Any) -> str | None:
        return None

    def diagnose(self, h: Any, net: Any, ep: Any, who: str) -> list[Any]:
        from shoal.checks import OK, Check

        return [Check(OK, f"{who or 'network ' + net.name}: fake is fine")]
