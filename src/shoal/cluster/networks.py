"""Overlay networks as the global store knows them:

    networks/<name>  ->  the network's record (id, subnet, gateway, VNI in its options, ...)
    vni/<vni>        ->  {"network": <network id>}

Both written with create-if-absent (`protocol.create`), so two hosts creating a network of
one name, or taking one VNI, at the same moment cannot both succeed: the network's name is
its key, which makes the name unique across the cluster in one step. A VNI is taken before
the network's record is written; one left by a creator that died in between names a network
that does not exist, and is taken back by the next creation that asks for it (`_reclaim`), or
freed by the creating host's watcher (`free_vnis`, at its full syncs); one left by a remover
killed between the record and the VNI is freed by the watchers that see the record go
(`release_vni`).

Every host mirrors these records into its local store (controller/watcher_main.py), where
the network has the same id and its kernel side is made per host (drivers/overlay.py)."""

from __future__ import annotations

from ..errors import Conflict, InvalidArgument
from ..faults import crashpoint
from ..store import protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..model import Network
    from ..store.protocol import GlobalStore, KeyValue

NETWORKS_PREFIX = "/shoal/v1/networks/"
VNI_PREFIX = "/shoal/v1/vni/"
# Docker's overlay driver hands out VNIs from 4096 (below are left to whoever set them by
# hand); the option that carries it, as Docker's `network inspect` shows it
FIRST_VNI, LAST_VNI = 4096, (1 << 24) - 1
VNI_OPTION = "com.docker.network.driver.overlay.vxlanid_list"
# the fields of a network that the cluster shares (the rest, e.g. last_ip, are per host)
SHARED = ("id", "name", "driver", "created", "subnet", "gateway", "ip_range", "internal",
          "labels", "options")


def encode(net: Network) -> bytes:
    from .. import jsonwire

    record = {}
    for name in SHARED:
        value = getattr(net, name)
        record[name] = str(value) if name in ("subnet", "gateway", "ip_range") and \
            value is not None else value
    return jsonwire.dumps(record).encode()


def decode(kv: KeyValue) -> Network | None:
    """The network a record holds; None for one that cannot be read."""
    from .. import jsonwire
    from ..model import Network

    try:
        record = jsonwire.loads(kv.value)
        net = Network(**{name: record.get(name) for name in SHARED
                         if record.get(name) is not None})
        vni_of(net)
        if net.subnet is None or net.gateway is None:
            return None
        return net
    except (ValueError, TypeError, KeyError):
        return None


def vni_of(net: Network) -> int:
    value = net.options.get(VNI_OPTION, "")
    if not (value.isascii() and value.isdigit()):
        raise ValueError(f"network {net.name} has no VNI")
    return int(value)


def parse_vni(text: str) -> int:
    """A VNI given with -o com.docker.network.driver.overlay.vxlanid_list."""
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= LAST_VNI:
        raise InvalidArgument(f"invalid VNI {text!r} in -o {VNI_OPTION}: give one number "
                              f"from 1 to {LAST_VNI}")
    return int(text)


def networks(store: GlobalStore) -> tuple[list[Network], int]:
    """Every overlay network of the cluster, and the store's revision they were read at."""
    kvs, revision = store.get_prefix(NETWORKS_PREFIX)
    return [n for n in (decode(kv) for kv in kvs) if n is not None], revision


def name_of(key: str) -> str:
    return key[len(NETWORKS_PREFIX):]


def _take_vni(store: GlobalStore, network_id: str, wanted: int | None, host: str) -> int:
    from .. import jsonwire

    value = jsonwire.dumps({"network": network_id, "host": host} if host else
                           {"network": network_id}).encode()
    if wanted is not None:
        if protocol.create(store, f"{VNI_PREFIX}{wanted}", value) is None:
            if not _reclaim(store, wanted, value):
                raise Conflict(f"VNI {wanted} is taken by another overlay network; pick "
                               f"another -o {VNI_OPTION} or leave it out")
        return wanted
    kvs, _ = store.get_prefix(VNI_PREFIX)
    taken = set()
    for kv in kvs:
        rest = kv.key[len(VNI_PREFIX):]
        if rest.isdigit():
            taken.add(int(rest))
    vni = FIRST_VNI
    while vni <= LAST_VNI:
        if vni not in taken:
            if protocol.create(store, f"{VNI_PREFIX}{vni}", value) is not None:
                return vni
            taken.add(vni)  # taken meanwhile by another host: the next one
        vni += 1
    raise Conflict("every VNI of the cluster is taken; remove an overlay network first")


def _reclaim(store: GlobalStore, vni: int, value: bytes) -> bool:
    """Take over a VNI whose network does not exist (its creator died before writing it)."""
    from .. import jsonwire

    kv = store.get(f"{VNI_PREFIX}{vni}")
    if kv is None:
        return protocol.create(store, f"{VNI_PREFIX}{vni}", value) is not None
    try:
        owner = jsonwire.loads(kv.value).get("network")
    except (ValueError, AttributeError):
        return False
    nets, _ = networks(store)
    if any(n.id == owner for n in nets):
        return False
    return store.put(kv.key, value, if_revision=kv.mod_revision) is not None


def create(store: GlobalStore, net: Network, host: str = "") -> Network:
    """Record a new overlay network in the cluster: its VNI (the one in its options, or the
    lowest free one), then its record under its name. Conflict if the name or the VNI is
    taken; nothing is left behind then. `host`, the creating host's id, goes in the VNI's
    record: if the creator is killed in between, that host's watcher frees it
    (`free_vnis`)."""
    wanted = net.options.get(VNI_OPTION)
    if store.get(NETWORKS_PREFIX + net.name) is not None:
        raise Conflict(f"network with name {net.name} already exists in the cluster")
    vni = _take_vni(store, net.id, parse_vni(wanted) if wanted else None, host)
    crashpoint("network-create:vni")
    net = net.replace(options={**net.options, VNI_OPTION: str(vni)})
    try:
        if protocol.create(store, NETWORKS_PREFIX + net.name, encode(net)) is None:
            raise Conflict(f"network with name {net.name} already exists in the cluster")
    except BaseException:
        from contextlib import suppress

        from ..errors import ShoalError

        with suppress(ShoalError, OSError):
            store.delete(f"{VNI_PREFIX}{vni}")
        raise
    return net


def delete(store: GlobalStore, net: Network) -> None:
    """Remove an overlay network from the cluster: its record, its VNI, its address blocks
    (the hosts' watchers then remove it from every host)."""
    from ..ipam.blocks import BLOCKS_PREFIX

    kv = store.get(NETWORKS_PREFIX + net.name)
    if kv is not None:
        current = decode(kv)
        if current is None or current.id == net.id:
            store.delete(kv.key, if_revision=kv.mod_revision)
    try:
        store.delete(f"{VNI_PREFIX}{vni_of(net)}")
    except ValueError:
        pass
    blocks, _ = store.get_prefix(f"{BLOCKS_PREFIX}{net.id}/")
    for block in blocks:
        store.delete(block.key)


def free_vnis(store: GlobalStore, host: str) -> list[int]:
    """Delete the VNIs `host` took for networks that do not exist: their creator was killed
    before it wrote the record. Only safe while no creation of that host is under way (its
    watcher holds the host's lock, which `network create` holds throughout). The VNIs freed."""
    from .. import jsonwire

    kvs, _ = store.get_prefix(VNI_PREFIX)
    ids = {n.id for n in networks(store)[0]}
    freed = []
    for kv in kvs:
        try:
            record = jsonwire.loads(kv.value)
            owner, holder = record.get("network"), record.get("host")
        except (ValueError, AttributeError):
            continue
        rest = kv.key[len(VNI_PREFIX):]
        if holder == host and owner not in ids and rest.isdigit() and \
                store.delete(kv.key, if_revision=kv.mod_revision) is not None:
            freed.append(int(rest))
    return freed


def release_vni(store: GlobalStore, net: Network) -> bool:
    """Delete the VNI of a removed network if it still names it (its remover was killed
    between the record and the VNI)."""
    from .. import jsonwire

    try:
        kv = store.get(f"{VNI_PREFIX}{vni_of(net)}")
    except ValueError:
        return False
    if kv is None:
        return False
    try:
        if jsonwire.loads(kv.value).get("network") != net.id:
            return False
    except (ValueError, AttributeError):
        return False
    return store.delete(kv.key, if_revision=kv.mod_revision) is not None
