"""A container's own /etc/hostname, /etc/hosts and /etc/resolv.conf, in its directory under
the run directory (made and written without following a symlink); bind-mounted over the
host's in the container's mount namespace (runtime.process.Namespaces), which `exec` joins.

What they say is shoal.etcfiles' (pure); this module reads the host's files and the store.
A file is rewritten in place (truncated and written, the same inode) when the container's
networks change: the bind mount is of that inode, so the container sees the new text."""

from __future__ import annotations

import os
import stat

from ..errors import ShoalError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..etcfiles import HostResolv
    from ..model import Container, IPAddress, Network
    from .context import Context

HOST_HOSTS = "/etc/hosts"  # what a container in network mode host starts from
# the files in the container's directory, and where the container sees each
ETC_FILES = {"hostname": "/etc/hostname", "hosts": "/etc/hosts",
             "resolv.conf": "/etc/resolv.conf"}


def embedded_dns(net: Network | None) -> bool:
    """Do containers on this network get their names from the embedded resolver? On a
    network whose driver serves names (drivers.api `names`), except Docker's default
    `bridge` network, which has no embedded DNS in Docker either."""
    from .. import drivers
    from ..model import DEFAULT_NETWORK

    if net is None or net.name == DEFAULT_NETWORK:
        return False
    try:
        return bool(drivers.get(net.driver).names)
    except ShoalError:  # a network of a driver no longer registered
        return False


def mounts(ctx: Context, container_id: str) -> list[tuple[str, str]]:
    """(the file in the container's directory, where the container sees it), each."""
    cdir = ctx.container_dir(container_id)
    return [(os.path.join(cdir, name), target) for name, target in ETC_FILES.items()]


def read_host_file(path: str) -> bytes:
    """A file of the host's (its resolv.conf, /etc/hosts) as far as it can be read: a
    regular file only (never a FIFO or a device, whatever a symlink there points to), at most
    etcfiles.MAX_HOST_FILE bytes; missing or unreadable reads as empty."""
    from ..etcfiles import MAX_HOST_FILE

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        chunks, left = [], MAX_HOST_FILE
        while left > 0 and (chunk := os.read(fd, left)):
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    except OSError:
        return b""
    finally:
        os.close(fd)


def write_container_files(ctx: Context, ctr: Container, shared: Container | None = None,
                          ips: list[IPAddress] | None = None,
                          nets: list[Network] | None = None) -> None:
    """`shared`: the container whose sandbox (and files) this one shares; `ips`, `nets`: the
    container's addresses and networks (read from its endpoints if not given)."""
    cdir = ctx.container_dir(ctr.id)
    try:
        _write_files_in(ctx, cdir, ctr, shared, ips, nets)
    except OSError as e:  # a full disk, most likely: a clear line, not a bare errno
        raise ShoalError(f"cannot write the container's files in {cdir}: "
                         f"{e.strerror or e}") from None


def refresh_container_files(ctx: Context, ctr: Container) -> None:
    """After a connect or disconnect: the container's hosts and resolv.conf follow its
    networks, and so do the copies of the running containers that share its sandbox. A
    failure only warns: the change of network is made."""
    try:
        write_container_files(ctx, ctr)
        for name in ctx.store.sharing_sandbox(ctr.id):
            write_container_files(ctx, ctx.store.container(name), ctr)
    except ShoalError as e:
        ctx.netfilter.warnings.append(f"{e}; its /etc/hosts and /etc/resolv.conf may be "
                                      "out of date")


def _own_networks(ctx: Context, ctr: Container) -> tuple[list[IPAddress], list[Network]]:
    store = ctx.store
    eps = store.endpoints(sandbox_id=ctr.id)
    return ([ep.ip for ep in eps if ep.ip], [store.network_by_id(ep.network_id) for ep in eps])


def _write_files_in(ctx: Context, cdir: str, ctr: Container, shared: Container | None,
                    ips: list[IPAddress] | None, nets: list[Network] | None) -> None:
    from .. import dirs, etcfiles

    ctrs_fd = dirs.subdir(ctx.run_fd, "containers", os.path.dirname(cdir))
    try:
        fd = dirs.subdir(ctrs_fd, ctr.id, cdir)
    finally:
        os.close(ctrs_fd)
    extra = [etcfiles.split_extra_host(e) for e in ctr.extra_hosts]
    try:
        dirs.write_file(fd, "hostname", (ctr.hostname + "\n").encode(),
                        os.path.join(cdir, "hostname"))
        raw = read_host_file(ctx.resolv_conf)
        host = etcfiles.parse_resolv_conf(raw)
        if ctr.network_mode == "host":
            hosts = etcfiles.host_mode_hosts(read_host_file(HOST_HOSTS), extra)
            resolv = etcfiles.host_mode_resolv_conf(raw, host, ctr.dns, ctr.dns_search,
                                                    ctr.dns_options)
        elif shared is not None:
            hosts = _read_own(ctx, shared, "hosts")
            try:
                resolv = _read_own(ctx, shared, "resolv.conf")
            except FileNotFoundError:  # made before shoal wrote one: as its owner's would be
                _ips, shared_nets = _own_networks(ctx, shared)
                resolv = _resolv_conf(ctx, shared, host, shared_nets)
        else:
            if ips is None or nets is None:
                own_ips, own_nets = _own_networks(ctx, ctr)
                ips = own_ips if ips is None else ips
                nets = own_nets if nets is None else nets
            hosts = etcfiles.hosts_text(ctr.hostname, [str(ip) for ip in ips], extra).encode()
            resolv = _resolv_conf(ctx, ctr, host, nets)
        dirs.write_file(fd, "hosts", hosts, os.path.join(cdir, "hosts"))
        dirs.write_file(fd, "resolv.conf", resolv, os.path.join(cdir, "resolv.conf"))
    finally:
        os.close(fd)


def _resolv_conf(ctx: Context, ctr: Container, host: HostResolv, nets: list[Network]
                 ) -> bytes:
    from .. import etcfiles

    embedded = None
    if any(embedded_dns(net) for net in nets):
        from ..dns.listen import ADDRESS

        embedded = ADDRESS
    return etcfiles.container_resolv_conf(host, ctx.resolv_conf, embedded, ctr.dns,
                                          ctr.dns_search, ctr.dns_options).encode()


def _read_own(ctx: Context, ctr: Container, name: str) -> bytes:
    """One of a container's files, never through a symlink."""
    from .. import dirs

    src = dirs.open_file(ctx.run_fd, f"containers/{ctr.id}/{name}", os.O_RDONLY, 0,
                         os.path.join(ctx.container_dir(ctr.id), name))
    with os.fdopen(src, "rb") as f:
        return f.read()


def remove_container_dir(ctx: Context, container_id: str) -> None:
    from .. import dirs

    try:
        fd = os.open("containers", dirs.O_DIR, dir_fd=ctx.run_fd)
    except OSError:
        return
    try:
        dirs.remove_tree(fd, container_id)
    finally:
        os.close(fd)
