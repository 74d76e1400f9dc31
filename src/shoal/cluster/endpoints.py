"""The endpoints of overlay networks, as the global store knows them:

    endpoints/<network id>/<endpoint id>  ->  {"host", "address", "ip", "mac", "names"}

written by the watcher of the host that runs the endpoint, on that host's lease (a dead
host's endpoints go with its lease), and read by every other host's watcher, which turns
each into a VXLAN forwarding and neighbour entry (kernel/vxlan.add_remote) and a name for
its embedded resolver (the local store's remote endpoints)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..model import RemoteEndpoint
    from ..store.protocol import KeyValue

ENDPOINTS_PREFIX = "/shoal/v1/endpoints/"


def key(network_id: str, endpoint_id: str) -> str:
    return f"{ENDPOINTS_PREFIX}{network_id}/{endpoint_id}"


def split(name: str) -> tuple[str, str] | None:
    """(network id, endpoint id) of a key; None for a key of another shape."""
    network_id, sep, endpoint_id = name[len(ENDPOINTS_PREFIX):].partition("/")
    if not sep or not network_id or not endpoint_id or "/" in endpoint_id:
        return None
    return network_id, endpoint_id


def encode(ep: RemoteEndpoint) -> bytes:
    from .. import jsonwire

    return jsonwire.dumps({"host": ep.host, "address": str(ep.address), "ip": str(ep.ip),
                           "mac": ep.mac, "names": list(ep.names)}).encode()


def decode(kv: KeyValue) -> RemoteEndpoint | None:
    """The endpoint a key holds; None for one that cannot be read."""
    from ipaddress import IPv4Address

    from .. import jsonwire
    from ..model import RemoteEndpoint

    where = split(kv.key)
    if where is None:
        return None
    try:
        record = jsonwire.loads(kv.value)
        names = record.get("names") or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return None
        mac = str(record["mac"])
        if len(mac) != 17:
            return None
        return RemoteEndpoint(id=where[1], network_id=where[0], host=str(record["host"]),
                              address=IPv4Address(record["address"]),
                              ip=IPv4Address(record["ip"]), mac=mac.lower(), names=names)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
