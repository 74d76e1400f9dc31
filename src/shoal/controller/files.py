"""A container's own /etc/hostname and /etc/hosts, in its directory under the run directory
(made and written without following a symlink); bind-mounted over the host's in the
container's mount namespace (runtime.process.Namespaces)."""

from __future__ import annotations

import os

from ..errors import ShoalError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipaddress import IPv4Address

    from ..model import Container
    from .context import Context


def write_container_files(ctx: Context, ctr: Container, shared: Container | None = None,
                          ips: list[IPv4Address] | None = None) -> None:
    """`shared`: the container whose sandbox (and hosts file) this one shares; `ips`: the
    container's addresses (read from its endpoints if not given)."""
    cdir = ctx.container_dir(ctr.id)
    try:
        _write_files_in(ctx, cdir, ctr, shared, ips)
    except OSError as e:  # a full disk, most likely: a clear line, not a bare errno
        raise ShoalError(f"cannot write the container's files in {cdir}: "
                         f"{e.strerror or e}") from None


def _write_files_in(ctx: Context, cdir: str, ctr: Container, shared: Container | None,
                    ips: list[IPv4Address] | None) -> None:
    from .. import dirs

    ctrs_fd = dirs.subdir(ctx.run_fd, "containers", os.path.dirname(cdir))
    try:
        fd = dirs.subdir(ctrs_fd, ctr.id, cdir)
    finally:
        os.close(ctrs_fd)
    try:
        dirs.write_file(fd, "hostname", (ctr.hostname + "\n").encode(),
                        os.path.join(cdir, "hostname"))
        if ctr.network_mode == "host":
            with open("/etc/hosts", "rb") as f:
                hosts = f.read()
        elif shared is not None:
            src = dirs.open_file(ctx.run_fd, f"containers/{shared.id}/hosts", os.O_RDONLY, 0,
                                 ctx.container_dir(shared.id) + "/hosts")
            with os.fdopen(src, "rb") as f:
                hosts = f.read()
        else:
            if ips is None:
                ips = [ep.ip for ep in ctx.store.endpoints(sandbox_id=ctr.id) if ep.ip]
            hosts = hosts_text(ctr.hostname, ips).encode()
        dirs.write_file(fd, "hosts", hosts, os.path.join(cdir, "hosts"))
    finally:
        os.close(fd)


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


def hosts_text(hostname: str, ips: list[IPv4Address]) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix",
             "ff02::1\tip6-allnodes", "ff02::2\tip6-allrouters"]
    lines += [f"{ip}\t{hostname}" for ip in ips]
    return "\n".join(lines) + "\n"


def embedded_dns(net: object) -> bool:  # TEMPORARY: the files lane defines it
    from .. import drivers
    from ..model import DEFAULT_NETWORK

    return (net is not None and getattr(net, "name", None) != DEFAULT_NETWORK
            and getattr(drivers.get(net.driver), "names", net.driver == "bridge"))  # type: ignore[attr-defined]
