"""What every part of the controller shares: where shoal keeps things, the store, and the
kernel handles of the host namespace, each made on first use. Building a Context does
nothing: `open()` (called by Engine.bootstrap) opens the directories and the store."""

from __future__ import annotations

import os

from ..dirs import DEFAULT_ROOT, DEFAULT_RUN_DIR  # noqa: F401 (the engine's defaults)
from ..errors import InvalidArgument, ShoalError
from ..names import owner_mark

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

    from ..kernel.netlink import Netlink
    from ..netfilter import Netfilter
    from ..runtime.cgroup import Cgroups
    from ..store import Store
    from .resolver import ResolverLink

DEFAULT_RESOLV_CONF = "/etc/resolv.conf"


def resolv_conf_setting(value: str | None) -> str:
    """--resolv-conf FILE, else SHOAL_RESOLV_CONF, else /etc/resolv.conf: the host's file
    the containers' resolv.conf and the embedded resolver's upstream servers come from. Only
    ever read (controller/files.read_host_file); a missing file means no servers. Absolute:
    the supervisor and the resolver run from "/"."""
    if value is None:
        value = os.environ.get("SHOAL_RESOLV_CONF")
        if value is None:
            return DEFAULT_RESOLV_CONF
        what = "SHOAL_RESOLV_CONF"
    else:
        what = "--resolv-conf"
    if not value or "\0" in value:
        raise InvalidArgument(f"{what} is {'empty' if not value else 'not a path'}: give the "
                              f"host's resolv.conf, or leave {what} out for the default "
                              f"{DEFAULT_RESOLV_CONF}")
    return os.path.abspath(value)


class Context:
    def __init__(self, root: str, run_dir: str, firewall_args: tuple[str | None, ...],
                 resolv_conf: str | None = None, store_url: str | None = None,
                 advertise: str | None = None) -> None:
        self.root, self.run_dir = os.path.abspath(root), os.path.abspath(run_dir)
        self.netns_dir = os.path.join(self.run_dir, "netns")
        self.mark = owner_mark(self.root)  # on the links shoal makes: which root made them
        self.firewall_args = firewall_args
        self.run_fd = -1
        self._store: Store | None = None
        self._host: Netlink | None = None
        self._host_fd: int | None = None
        self._netns_dir_ready = False
        self._netfilter: Netfilter | None = None
        self._cgroups: Cgroups | None = None
        self.repairs: list[str] = []  # what this command repaired on its way
        # container id -> the sockets holding its published host ports, while this process
        # answers for the container (see kernel/hostports.py and controller/held.py)
        self.held: dict[str, list[socket.socket]] = {}
        self.handling: set[str] = set()  # containers this command finishes itself
        self._resolver: ResolverLink | None = None
        # the host's resolv.conf (see resolv_conf_setting); None: SHOAL_RESOLV_CONF or the
        # default
        self.resolv_conf = resolv_conf_setting(resolv_conf)
        from .cluster import ClusterLink

        # the host's cluster (--store, --advertise-addr; remembered once joined)
        self.cluster = ClusterLink(self, store_url, advertise)

    # -- opening and closing -------------------------------------------------------------------

    def open(self) -> None:
        """The run directory and the store (see shoal.dirs for the checks on both and on
        every directory above them)."""
        from .. import dirs
        from ..runtime import pids
        from ..store import Store

        self.run_fd = dirs.open_dir(self.run_dir, "run directory (--run-dir)")
        try:
            # the store asks the runtime about processes through what it is handed here
            self._store = Store(self.root, dirs.open_dir(self.root, "state directory (--root)"),
                                processes=pids)
        except BaseException:
            os.close(self.run_fd)
            self.run_fd = -1
            raise

    def close(self) -> None:
        self.cluster.close()
        for cid in list(self.held):
            self.release_held(cid)
        if self._host is not None:
            self._host.close()
            self._host = None
        if self._host_fd is not None:
            os.close(self._host_fd)
            self._host_fd = None
        if self._store is not None:
            self._store.close()
            self._store = None
        if self.run_fd >= 0:
            os.close(self.run_fd)
            self.run_fd = -1

    @property
    def store(self) -> Store:
        if self._store is None:
            raise ShoalError("the engine is not bootstrapped: call Engine.bootstrap() first")
        return self._store

    # -- kernel handles (drivers.api.HostHandles) ---------------------------------------------

    @property
    def host(self) -> Netlink:
        """A netlink socket in the host namespace (the one shoal was started in)."""
        from ..kernel.netlink import Netlink

        if self._host is None:
            self._host = Netlink()
        return self._host

    @property
    def host_fd(self) -> int:
        from ..kernel import ns

        if self._host_fd is None:
            self._host_fd = ns.current_netns_fd()
        return self._host_fd

    @property
    def netfilter(self) -> Netfilter:
        """The firewall's side of the controller, made on first use (reading the state never
        needs it)."""
        if self._netfilter is None:
            from ..netfilter import Netfilter

            self._netfilter = Netfilter(self.store, *self.firewall_args)
        return self._netfilter

    @property
    def netfilter_made(self) -> bool:
        return self._netfilter is not None

    @property
    def cgroups(self) -> Cgroups:
        """The containers' cgroups (see runtime/cgroup.py: why a cgroup, and where)."""
        if self._cgroups is None:
            from ..runtime.cgroup import Cgroups

            self._cgroups = Cgroups(self.run_dir)
        return self._cgroups

    @property
    def resolver(self) -> ResolverLink:
        """The embedded resolver, as the commands see it (controller/resolver.py)."""
        if self._resolver is None:
            from .resolver import ResolverLink

            self._resolver = ResolverLink(self)
        return self._resolver

    @property
    def warnings(self) -> list[str]:
        """Things the user should know that did not stop the command."""
        return self._netfilter.warnings if self._netfilter is not None else []

    # -- places ----------------------------------------------------------------------------

    def container_dir(self, container_id: str) -> str:
        return os.path.join(self.run_dir, "containers", container_id)

    def owned_sandbox_path(self, sandbox_id: str) -> str:
        return os.path.join(self.netns_dir, sandbox_id)

    def prepare_netns_dir(self) -> None:
        """The directory of the sandboxes' namespace files, a private mount point."""
        from .. import dirs
        from ..kernel import ns

        if not self._netns_dir_ready:
            # made here, never through a symlink; the mount below then uses the path, which
            # nobody else can change (the run directory is root's alone, see shoal.dirs)
            os.close(dirs.subdir(self.run_fd, "netns", self.netns_dir))
            if not ns.is_mountpoint(self.netns_dir):
                ns.ensure_private_mount(self.netns_dir)
            self._netns_dir_ready = True

    # -- small shared steps ----------------------------------------------------------------

    def release_held(self, container_id: str) -> None:
        for sock in self.held.pop(container_id, ()):
            sock.close()

    def flush_conntrack(self, addresses: list[str], ports: list[tuple[str, str, int]]) -> None:
        """Delete the conntrack entries of released addresses and of published or released
        host ports ((proto, host ip, port)); a failure only warns (the change is made)."""
        if not addresses and not ports:
            return
        from ..kernel import conntrack, links

        try:
            conntrack.flush(addresses, ports,
                            lambda: [str(a.ip) for a in links.addresses(self.host, family=4)])
        except (ShoalError, OSError) as e:
            self.netfilter.warnings.append(f"could not flush conntrack entries: {e}")
