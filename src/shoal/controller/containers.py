"""Containers: a sandbox plus processes. Create (its record, its sandbox and endpoints, its
ports), start its command, start a stopped one again (sharing create's sandbox-making),
record its exit and release what it held, stop, remove, exec,
and connect/disconnect it to networks (through the sandbox's endpoints)."""

from __future__ import annotations

import os

from .. import drivers
from ..errors import Conflict, InvalidArgument, NotFound, ShoalError
from ..faults import crashpoint
from ..lazy import LazyModule
from ..model import (
    CREATED,
    DEFAULT_NETWORK,
    EXITED,
    RUNNING,
    Container,
    Endpoint,
    Network,
    PublishedPort,
    now,
)
from ..names import is_hostname, new_id, random_name, validate_name
from ..records import Record
from . import files, held
from .supervise import DEFAULT_PATH

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    import subprocess
    from collections.abc import Callable

    from .. import etcfiles, ipam
    from .. import ports as portspec
    from ..runtime import pids
    from ..runtime.process import Child, Namespaces
    from ..runtime.users import Credentials
    from .context import Context
    from .networks import Networks
    from .sandboxes import Sandboxes
else:  # what only changes of state need, imported on first use
    ipam = LazyModule("shoal.ipam")
    etcfiles = LazyModule("shoal.etcfiles")
    portspec = LazyModule("shoal.ports")
    pids = LazyModule("shoal.runtime.pids")

# Docker's warning for -p/-P with --network host (whose ports are the host's own)
HOST_PORTS_DISCARDED = "Published ports are discarded when using host network mode"


class RunSpec(Record):
    """What `shoal run` asks for."""

    cmd: list[str]
    name: str | None = None
    hostname: str | None = None
    network: str = DEFAULT_NETWORK
    ip: str | None = None
    aliases: list[str] = []
    env: list[str] = []
    auto_remove: bool = False
    workdir: str = "/"
    publish: list[str] = []  # -p specs
    publish_all: bool = False  # -P
    expose: list[str] = []  # --expose specs
    dns: list[str] = []  # --dns IP
    dns_search: list[str] = []  # --dns-search DOMAIN ("." for none)
    dns_options: list[str] = []  # --dns-option OPT (Docker's --dns-opt)
    extra_hosts: list[str] = []  # --add-host NAME:IP or NAME:host-gateway
    labels: dict[str, str] = {}  # --label KEY=VALUE (the files of --label-file read)
    user: str = ""  # -u user|uid[:group|gid]
    restart: str = "no"  # --restart no|on-failure[:N]|always|unless-stopped (run -d)


class Containers:
    def __init__(self, ctx: Context, networks: Networks, sandboxes: Sandboxes) -> None:
        self.ctx, self.networks, self.sandboxes = ctx, networks, sandboxes

    # -- reading ---------------------------------------------------------------------------

    def get(self, ref: str) -> Container:
        return self.ctx.store.container(ref)

    def list(self, all_: bool = False) -> list[Container]:
        ctrs = self.ctx.store.containers()
        return ctrs if all_ else [c for c in ctrs if self.effective_status(c) == RUNNING]

    @staticmethod
    def effective_status(ctr: Container) -> str:
        """The status as the kernel sees it: a 'running' container whose process is gone is
        reported as exited even before its supervisor has recorded it."""
        if ctr.status == RUNNING and not pids.alive(ctr.pid, ctr.pid_start):
            return EXITED
        return ctr.status

    @staticmethod
    def output_may_come(ctr: Container | None) -> bool:
        """Can more of a container's output reach its log? While its process runs, and once
        it has exited, until its supervisor has recorded the exit: the supervisor copies what
        the process wrote last before it records it (unless the supervisor is gone too)."""
        if ctr is None or ctr.status != RUNNING:
            return False
        return pids.alive(ctr.pid, ctr.pid_start) or \
            pids.alive(ctr.supervisor_pid, ctr.supervisor_start)

    def mode_name(self, ctr: Container) -> str:
        if ctr.shares_sandbox_of:
            other = self.ctx.store.container_by_id(ctr.shares_sandbox_of)
            return f"container:{other.name if other else ctr.shares_sandbox_of}"
        return ctr.network_mode

    def log_path(self, ref: str) -> str:
        return os.path.join(self.ctx.container_dir(self.get(ref).id), "log")

    # -- create ----------------------------------------------------------------------------

    def _resolve_mode(self, spec: RunSpec) -> tuple[str, Network | None, Container | None]:
        """(network_mode, network to join or None, container whose sandbox to share)."""
        store = self.ctx.store
        if spec.network.startswith("container:"):
            other = store.container(spec.network.split(":", 1)[1])
            while other.shares_sandbox_of:
                other = store.container(other.shares_sandbox_of)
            if other.network_mode == "host":
                return "host", None, None
            if self.effective_status(other) != RUNNING:
                raise Conflict(f"cannot join the network of container {other.name}: "
                               "it is not running")
            return f"container:{other.id}", None, other
        net = store.network(spec.network)
        mode = drivers.sandbox_mode(net.driver)
        if mode == drivers.HOST:
            return "host", None, None
        if mode == drivers.NONE:
            return "none", None, None
        return net.name, net, None

    def create(self, spec: RunSpec) -> Container:
        if not spec.cmd:
            raise InvalidArgument("no command given: shoal run [OPTIONS] -- CMD [ARG...]")
        if spec.name is not None:
            validate_name(spec.name, "container")
        if spec.hostname is not None and not is_hostname(spec.hostname):
            raise InvalidArgument(
                f"invalid hostname {spec.hostname!r}: use letters, digits and '-', "
                "at most 63 characters"
            )
        env = _parse_env(spec.env)
        _check_workdir(spec.workdir)
        if spec.user:
            _credentials(spec.user)  # checked now, before anything is made for it
        bindings = [b for text in spec.publish for b in portspec.parse_publish(text)]
        exposed = [e for text in spec.expose for e in portspec.parse_expose(text)]
        exposed += [(b.container_port, b.proto) for b in bindings
                    if (b.container_port, b.proto) not in exposed]
        if spec.publish_all:
            published = {(b.container_port, b.proto) for b in bindings}
            bindings += [portspec.Binding(container_port=port, proto=proto)
                         for port, proto in exposed if (port, proto) not in published]
        requested = ipam.parse_address(spec.ip, "--ip") if spec.ip else None
        for alias in spec.aliases:
            validate_name(alias, "alias")
        dns, extra = _parse_dns(spec)
        from .lifecycle import parse_restart

        policy, retries = parse_restart(spec.restart)
        if policy != "no" and spec.auto_remove:
            raise InvalidArgument("conflicting options: --restart and --rm; a container "
                                  "removed when it exits cannot be restarted")
        ctx, store = self.ctx, self.ctx.store
        with store.locked():
            mode, net, shared = self._resolve_mode(spec)
            if net is None and (requested or spec.aliases):
                raise InvalidArgument(
                    f"--ip and --network-alias need a bridge network, not network mode {mode}"
                )
            if net is not None and net.name == DEFAULT_NETWORK and (requested or spec.aliases):
                raise InvalidArgument(
                    "user-specified IP addresses and aliases are supported on user-defined "
                    "networks only; create one with shoal network create"
                )
            if bindings and mode == "host" and not spec.network.startswith("container:"):
                bindings = []  # as Docker: accepted, with its warning (scripts pass both)
                ctx.netfilter.warnings.append(HOST_PORTS_DISCARDED)
            default_ip = drivers.get(net.driver).host_binding_ip(net) if net else None
            if bindings and default_ip:  # a -p without an address: the network's default
                from ipaddress import IPv4Address

                bindings = [b if b.ip_given else b.replace(host_ip=IPv4Address(default_ip))
                            for b in bindings]
            if bindings and net is None:
                raise InvalidArgument(
                    f"ports can only be published on a bridge network, not network mode {mode}"
                )
            if spec.hostname and (mode == "host" or shared):
                raise InvalidArgument(
                    f"conflicting options: --hostname and network mode {spec.network}"
                )
            extra_hosts = [etcfiles.extra_host_entry(host, self._host_gateway(mode, net)
                                                     if ip == etcfiles.HOST_GATEWAY else ip)
                           for host, ip in extra]
            name = spec.name or self._unused_name()
            if spec.name is not None and store.name_taken(spec.name):
                raise Conflict(
                    f"container name {spec.name} is already in use; remove that container "
                    "(shoal rm) or pick another --name"
                )
            cid = new_id()
            # --network container:X shares X's hostname, as in Docker (and so its /etc/hostname)
            default_hostname = (os.uname().nodename if mode == "host" else
                                shared.hostname if shared is not None else cid[:12])
            ctr = Container(
                id=cid, name=name, created=now(),
                hostname=spec.hostname or default_hostname,
                cmd=list(spec.cmd), env=env, network_mode=mode, auto_remove=spec.auto_remove,
                workdir=spec.workdir,
                publish=[[b.container_port, b.proto, str(b.host_ip), b.host_port]
                         for b in bindings],
                expose=[[port, proto] for port, proto in exposed],
                dns=dns.dns, dns_search=dns.dns_search, dns_options=dns.dns_options,
                extra_hosts=extra_hosts, labels=dict(spec.labels), user=spec.user,
                restart_policy=policy, restart_max=retries,
                # until a supervisor takes over, the creating process answers for it: if that
                # dies before the start, reconcile rolls the half-made container back
                supervisor_pid=os.getpid(), supervisor_start=pids.start_time(os.getpid()),
            )
            endpoint = None
            published: list[PublishedPort] = []
            held_socks: list[socket.socket] = []
            with store.transaction():
                store.add_container(ctr)
                if ctr.has_own_sandbox:  # a container's own sandbox has its id
                    self.sandboxes.add(cid, owner=cid)
                if net is not None:
                    endpoint = self.sandboxes.create_endpoint(
                        cid, net, requested, spec.aliases, plugged=True, ifname="eth0")
                    published = self._publish(ctr, net, endpoint, bindings, held_socks)
            if held_socks:
                ctx.held[cid] = held_socks
            crashpoint("run:rows")

            def undo() -> None:
                with store.transaction():
                    store.delete_sandbox(cid)
                    store.delete_container(cid)
                files.remove_container_dir(ctx, cid)

            self._attach(ctr, shared, [(endpoint, net)] if endpoint and net else [],
                         bool(bindings), published, undo)
            return ctr

    def _publish(self, ctr: Container, net: Network, endpoint: Endpoint,
                 bindings: list[portspec.Binding], held_socks: list[socket.socket]
                 ) -> list[PublishedPort]:
        """Host ports for the container's bindings, on its endpoint `endpoint` of `net`
        (inside the caller's transaction), each held by a socket added to `held_socks`."""
        if not bindings:
            return []
        from ..kernel import links

        assert endpoint.ip is not None
        host_ips = ({a.ip for a in links.addresses(self.ctx.host, family=4)}
                    if any(b.host_ip != portspec.ANY for b in bindings) else set())
        return ipam.HostPorts(self.ctx.store).allocate(ctr.id, net, endpoint.ip, bindings,
                                                       host_ips, held_socks)

    def _attach(self, ctr: Container, shared: Container | None,
                pairs: list[tuple[Endpoint, Network]], publishes: bool,
                published: list[PublishedPort], undo: Callable[[], None]) -> None:
        """What `run` and `start` do once the rows of a container's addresses and ports are
        written: its files, its sandbox made with its endpoints joined (the first gets the
        default route), the firewall's elements. If a step fails, the kernel's side is undone,
        then `undo` puts the rows back, and the error is raised."""
        ctx, cid = self.ctx, ctr.id
        try:
            files.write_container_files(ctx, ctr, shared,
                                        [ep.ip for ep, _net in pairs if ep.ip],
                                        [net for _ep, net in pairs])
            if ctr.has_own_sandbox:
                self.sandboxes.make(cid, pairs)
            crashpoint("run:sandbox")
            from ..netfilter import net_rule

            netfilter = ctx.netfilter
            if pairs and netfilter.ensure_forwarding():
                netfilter.reload()
            elif publishes or any(not net_rule(net).icc for _ep, net in pairs):
                # otherwise the container adds nothing to the firewall's sets
                netfilter.apply(added=netfilter.container_elements(ctr))
            # a client already sending to a port now published keeps the entry that sent
            # its packets to the host: flushed, its next packet is translated
            ctx.flush_conntrack([], [(p.proto, str(p.host_ip), p.host_port)
                                     for p in published])
            crashpoint("run:firewall")
        except BaseException:
            ctx.release_held(cid)
            if ctr.has_own_sandbox:
                self.sandboxes.unmake(cid)
            from contextlib import suppress

            for ep, net in pairs:  # the kernel would remove their veths only later
                with suppress(ShoalError, OSError):
                    drivers.get(net.driver).leave(ctx, None, net, ep)
            undo()
            raise

    def _host_gateway(self, mode: str, net: Network | None) -> str:
        """What --add-host NAME:host-gateway names: the gateway of the container's network
        (the host's address on it); in network mode host or none, the default bridge's
        gateway, Docker's default host-gateway-ip (a host address: reachable in mode host)."""
        if net is None:
            net = self.ctx.store.network(DEFAULT_NETWORK)
        if net.gateway is None:
            raise InvalidArgument(f"--add-host NAME:host-gateway: network {net.name} has no "
                                  "gateway; give NAME:IP")
        return str(net.gateway)

    def _unused_name(self) -> str:
        attempt = 0
        while self.ctx.store.name_taken(name := random_name(attempt)):
            attempt += 1
        return name

    # -- processes -------------------------------------------------------------------------

    def namespaces(self, ctr: Container) -> Namespaces:
        from ..runtime.process import Namespaces

        sandbox = ctr.sandbox_id
        return Namespaces(
            netns=self.sandboxes.path(sandbox) if sandbox else None,
            hostname=None if ctr.network_mode == "host" else ctr.hostname,
            files=files.mounts(self.ctx, ctr.id),
            # the container's processes see neither shoal's state nor its run directory
            hidden=[self.ctx.root, self.ctx.run_dir],
        )

    @staticmethod
    def process_env(ctr: Container, home: str = "/root") -> dict[str, str]:
        """The command's environment: HOME is the -u user's (from passwd) unless -e sets it."""
        env = {"PATH": os.environ.get("PATH", DEFAULT_PATH), "HOSTNAME": ctr.hostname,
               "HOME": home}
        for item in ctr.env:
            key, _, value = item.partition("=")
            env[key] = value
        return env

    def start_process(self, ctr: Container, stdin: int | None, stdout: int | None,
                      stderr: int | None, new_session: bool, tty: bool = False) -> Child:
        """Start the container's command in its sandbox and record it as running. If it cannot
        start, the container is finished with Docker's exit code (126/127) and the error is
        raised."""
        store = self.ctx.store
        with store.locked():
            current = store.container_by_id(ctr.id)
            if current is None or current.status != CREATED:
                raise NotFound(f"container {ctr.name} was removed before it started")
            proc = self._spawn(ctr, stdin, stdout, stderr, new_session, tty)
            crashpoint("run:spawned")
            me = os.getpid()
            with store.transaction():
                store.update_container(
                    ctr.id, status=RUNNING, pid=proc.pid, pid_start=pids.start_time(proc.pid),
                    supervisor_pid=me, supervisor_start=pids.start_time(me), started_at=now(),
                )
            return proc

    def respawn(self, container_id: str, stdin: int | None, stdout: int | None,
                stderr: int | None) -> Child | None:
        """The restart policy's start (by the supervisor): the command again in the sandbox
        the container kept, after everything of its last run was killed. None if the user
        stopped or removed it meanwhile."""
        store = self.ctx.store
        with store.locked():
            cur = store.container_by_id(container_id)
            if cur is None or cur.status != RUNNING or cur.stopped_by_user:
                return None
            self.ctx.cgroups.kill(cur.id)  # what the last run left behind ends with it
            proc = self._spawn(cur, stdin, stdout, stderr, True)
            with store.transaction():
                store.update_container(cur.id, pid=proc.pid, pid_start=pids.start_time(proc.pid),
                                       started_at=now(), restart_count=cur.restart_count + 1)
            return proc

    def _spawn(self, ctr: Container, stdin: int | None, stdout: int | None,
               stderr: int | None, new_session: bool, tty: bool = False) -> Child:
        """The container's command in its cgroup and namespaces (lock held). If it cannot
        start, the container is finished with Docker's exit code (126/127), and the error
        raised."""
        from ..runtime import process

        procs_fd = self.ctx.cgroups.create(ctr.id)
        try:
            # -u is resolved at each start, as Docker does (the passwd file may change)
            creds = _credentials(ctr.user, 125) if ctr.user else None
            return process.spawn(
                ctr.cmd, self.namespaces(ctr),
                self.process_env(ctr, creds.home if creds else "/root"), ctr.workdir,
                stdin, stdout, stderr, new_session, procs_fd, creds, tty=tty,
            )
        except process.CommandError as e:
            self._finish(ctr.id, None, e.exit_code, error=str(e))
            raise
        finally:
            if procs_fd is not None:
                os.close(procs_fd)

    def run_detached(self, spec: RunSpec) -> Container:
        """Create the container and hand it to a supervisor process that starts the command,
        records its exit and, with --rm, removes it. Returns once the command runs."""
        ctr = self.create(spec)
        return self._supervise(ctr, lambda: self.remove(ctr.id, force=True))

    def _supervise(self, ctr: Container, undo: Callable[[], None]) -> Container:
        """Hand a created (or re-made, see `start`) container to a supervisor process that
        starts its command, keeps its restart policy and records its exit. Returns once the
        command runs; if the supervisor cannot start it, `undo` rolls the container back."""
        import subprocess
        import sys

        from ..runtime import process
        from .supervise import BOOT, package_parent, supervisor_env

        ctx = self.ctx
        log = os.path.join(ctx.container_dir(ctr.id), "log")
        read_end, write_end = os.pipe()
        # the supervisor inherits the sockets holding the published ports and adopts them
        held_fds = tuple(sock.fileno() for sock in ctx.held.get(ctr.id, ()))
        # The lock is held from the supervisor's start until it is recorded as the container's:
        # a command that sees this one die in between (its lock released by the kernel) then
        # rolls the container back before the supervisor can start it (the supervisor's start
        # takes the lock and finds it gone), never while the supervisor starts it.
        with ctx.store.locked():
            try:
                # Isolated (-I: no PYTHON* variables, no user site, neither the caller's
                # directory nor the script's on sys.path), started in "/", with only the
                # variables shoal itself reads: nothing of the caller's directory or
                # environment runs as root. The package that runs now is the one the
                # supervisor imports.
                supervisor = subprocess.Popen(
                    [sys.executable, "-I", "-c", BOOT, package_parent(), ctx.root,
                     ctx.run_dir, ctr.id, str(write_end), log],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, pass_fds=(write_end, *held_fds),
                    start_new_session=True, close_fds=True, cwd="/",
                    # (the host's resolv.conf it reads is this command's, --resolv-conf too)
                    env={**supervisor_env(os.environ), "SHOAL_RESOLV_CONF": ctx.resolv_conf},
                )
            except BaseException:
                os.close(write_end)
                os.close(read_end)
                undo()
                raise
            os.close(write_end)
            ctx.release_held(ctr.id)  # this process's copies: the supervisor holds the ports
            # the supervisor answers for the container from now on, even if this command dies
            # before the start (the orphan check of the next command must not roll it back)
            with ctx.store.transaction():
                ctx.store.hand_over(ctr.id, supervisor.pid, pids.start_time(supervisor.pid),
                                    CREATED)
        with os.fdopen(read_end) as pipe:
            report = pipe.read()
        status, _, detail = report.partition("\t")
        if status == "ok":
            return ctx.store.container_by_id(ctr.id) or ctr
        if status == "cmd":
            code, _, message = detail.partition("\t")
            raise process.CommandError(int(code), message)
        # the supervisor died (or failed) while starting the command: a process may run in
        # the sandbox without its pid recorded, and would keep the namespace and veths alive
        pids.kill_all_in(self.sandboxes.path(ctr.id))
        undo()
        raise ShoalError(detail or "the container's supervisor died before starting it")

    # -- start (a stopped container again) -------------------------------------------------

    def start(self, ref: str) -> Container:
        """Run a stopped container's command again, as `run -d` ran it: a new sandbox, its
        endpoints joined again (a requested --ip kept, else an address from IPAM), its
        published ports taken again (a fixed host port taken meanwhile is an error, and
        nothing is left half-made), its files rewritten, the resolver told (by the lock's
        release), then a supervisor. A running container is left as it is."""
        from ipaddress import ip_address

        ctx, store = self.ctx, self.ctx.store
        with store.locked():
            ctr = self._reap_if_orphaned(self.get(ref))
            if ctr.status == RUNNING:
                return ctr
            if ctr.status == CREATED:
                raise Conflict(f"container {ctr.name} is being created or started by another "
                               "command; wait for it to finish")
            if ctr.has_own_sandbox and ctr.network_mode not in ("host", "none"):
                try:
                    store.network(ctr.network_mode)
                except NotFound:  # (Docker's answer too: "network ... not found")
                    raise NotFound(f"network {ctr.network_mode} not found: it was removed while "
                                   f"container {ctr.name} was stopped; remove the container "
                                   "(shoal rm) and run it again on another network") from None
            shared = None
            if ctr.shares_sandbox_of:
                shared = store.container_by_id(ctr.shares_sandbox_of)
                if shared is None or self.effective_status(shared) != RUNNING:
                    raise Conflict(f"cannot join the network of container "
                                   f"{shared.name if shared else ctr.shares_sandbox_of}: it is "
                                   "not running; start it first")
            bindings = [portspec.Binding(container_port=int(port), proto=str(proto),
                                         host_ip=ip_address(str(host_ip)),
                                         host_port=None if host_port is None else int(host_port))
                        for port, proto, host_ip, host_port in ctr.publish]
            me = os.getpid()
            before = {"status": ctr.status, "supervisor_pid": ctr.supervisor_pid,
                      "supervisor_start": ctr.supervisor_start,
                      "restart_count": ctr.restart_count, "stopped_by_user": ctr.stopped_by_user}
            # until the supervisor takes over, this process answers for it (see create)
            ready = ctr.replace(status=CREATED, supervisor_pid=me,
                                supervisor_start=pids.start_time(me), restart_count=0,
                                stopped_by_user=False)
            pairs: list[tuple[Endpoint, Network]] = []
            published: list[PublishedPort] = []
            held_socks: list[socket.socket] = []
            with store.transaction():
                store.update_container(ctr.id, **{k: getattr(ready, k) for k in before})
                if ctr.has_own_sandbox:
                    for ep in sorted(store.endpoints(sandbox_id=ctr.id),
                                     key=lambda e: (len(e.ifname), e.ifname)):
                        net = store.network_by_id(ep.network_id)
                        addr = self.sandboxes.allocate(net, ep.requested_ip)
                        store.update_endpoint(ep.id, ip=addr, mac=ipam.mac_for(addr))
                        pairs.append((ep.replace(ip=addr, mac=ipam.mac_for(addr)), net))
                main = next((p for p in pairs if p[1].name == ctr.network_mode),
                            pairs[0] if pairs else None)
                if main is not None:
                    published = self._publish(ready, main[1], main[0], bindings, held_socks)
            if held_socks:
                ctx.held[ctr.id] = held_socks
            crashpoint("start:rows")

            def undo() -> None:
                with store.transaction():
                    store.delete_ports(ctr.id)
                    self.sandboxes.release_addresses(ctr.id)
                    store.update_container(ctr.id, **before)

            self._attach(ready, shared, pairs, bool(published), published, undo)

        def abandon() -> None:
            with store.locked():
                self._finish(ctr.id, None, ctr.exit_code,
                             error="its supervisor failed to start it again")

        return self._supervise(ready, abandon)

    def run_foreground(self, spec: RunSpec, interactive: bool = False,
                       tty: bool = False) -> int:
        """Run the container attached to this terminal; returns the command's exit status.
        Its output goes to this process's stdout and stderr and to the container's log (a
        pty's, with `tty`: see runtime.attach)."""
        import signal

        from ..runtime import logs, process
        from ..runtime.attach import Streams

        # this process holds the container's published ports: a disconnect elsewhere asks
        # it to let go of those no longer published
        previous_usr1 = held.handle_port_releases(self.ctx)
        try:
            ctr = self.create(spec)
            streams = None
            try:
                log_fd = logs.open_log(os.path.join(self.ctx.container_dir(ctr.id), "log"))
                try:
                    streams = Streams(tty, interactive, log_fd)  # (which closes it from now)
                except BaseException:
                    os.close(log_fd)
                    raise
                proc = self.start_process(ctr, *streams.child, new_session=tty, tty=tty)
            except process.CommandError:
                if streams is not None:
                    streams.close()
                raise
            except BaseException:
                if streams is not None:
                    streams.close()
                self.remove(ctr.id, force=True)
                raise
            streams.started()
            try:
                code = streams.wait(proc)
                self.finish(ctr.id, proc.pid, code)
            finally:
                streams.drain()
            return code
        finally:
            if previous_usr1 is not None:
                signal.signal(signal.SIGUSR1, previous_usr1)

    def exec(self, ref: str, cmd: list[str], env: list[str] | None = None,
             stdin: int | None = None, stdout: int | None = None,
             stderr: int | None = None, user: str | None = None, workdir: str | None = None,
             detach: bool = False, tty: bool = False) -> subprocess.Popen[bytes]:
        """Run a command in a running container: as `user` (default: the container's -u),
        in `workdir` (default: the container's), detached from this terminal with `detach`
        (a session of its own; the caller gives it no streams and does not wait); with `tty`,
        stdin is a pty's slave side, made its controlling terminal."""
        from ..runtime import process

        if not cmd:
            raise InvalidArgument("no command given: shoal exec NAME -- CMD [ARG...]")
        ctr = self.get(ref)
        if self.effective_status(ctr) != RUNNING:
            raise Conflict(f"container {ctr.name} is not running")
        assert ctr.pid is not None
        if workdir is not None and not (os.path.isabs(workdir) and os.path.isdir(workdir)):
            raise process.CommandError(126, f"the working directory {workdir!r} does not exist "
                                       "(or is not an absolute path to a directory): give "
                                       "exec -w an existing one")
        who = ctr.user if user is None else user
        creds = _credentials(who, 126) if who else None
        proc_env = self.process_env(ctr.replace(env=ctr.env + _parse_env(env or [])),
                                    creds.home if creds else "/root")
        # the command joins the container's cgroup: what it leaves running ends with it
        procs_fd = self.ctx.cgroups.join_fd(ctr.id)
        try:
            return process.exec_in(ctr.pid, cmd, proc_env, workdir or ctr.workdir, stdin,
                                   stdout, stderr, procs_fd, creds,
                                   strict_cwd=workdir is not None, new_session=detach, tty=tty)
        finally:
            if procs_fd is not None:
                os.close(procs_fd)

    def exec_attached(self, ref: str, cmd: list[str], env: list[str] | None = None,
                      interactive: bool = False, tty: bool = False, user: str | None = None,
                      workdir: str | None = None) -> int:
        """`exec` as the CLI runs it: attached to this process's streams (a pty's, with
        `tty`); its exit status. (Docker does not log an exec's output; nor does shoal.)"""
        from ..runtime.attach import Streams

        streams = Streams(tty, interactive)
        try:
            proc = self.exec(ref, cmd, env, *streams.child, user=user, workdir=workdir,
                             tty=tty)
            streams.started()
            return streams.wait(proc, forward=tty)
        finally:
            streams.drain(limit=0)

    # -- exit and removal ------------------------------------------------------------------

    def finish(self, container_id: str, pid: int | None, exit_code: int) -> None:
        """Record that a container's process exited and release its sandbox."""
        with self.ctx.store.locked():
            self._finish(container_id, pid, exit_code)

    def _finish(self, container_id: str, pid: int | None, exit_code: int,
                error: str = "") -> None:
        ctx, store = self.ctx, self.ctx.store
        ctr = store.container_by_id(container_id)
        if ctr is None or ctr.status == EXITED or (pid is not None and ctr.pid != pid):
            return
        # Everything that runs in the container ends with it (its cgroup is killed), before
        # its network is released: no process of it may keep an address handed out again.
        ctx.cgroups.kill(ctr.id)
        # A sandbox that other running containers share (--network container:NAME) lives
        # until the last of them stops, and its addresses with it; its ports go now.
        keep = (ctr.has_own_sandbox and ctr.status == RUNNING
                and bool(store.sharing_sandbox(ctr.id)))
        # The rules go in the same transaction that releases the ports and addresses (a backend
        # that rewrites whole chains reads the state inside it); if the firewall refuses,
        # nothing is released. The sandbox goes last: a DNAT rule never outlives its address.
        released_ports = [(proto, host_ip, int(host_port)) for proto, host_ip, host_port, _d, _p
                          in store.port_rows(ctr.id)]
        released_ips: list[str] = []
        with store.transaction():
            removed = ctx.netfilter.container_elements(ctr, ports_only=keep)
            store.delete_ports(ctr.id)
            if not keep:
                released_ips = self.sandboxes.release_addresses(ctr.id)
            store.update_container(
                ctr.id, status=EXITED, exit_code=exit_code, finished_at=now(), error=error
            )
            ctx.netfilter.apply(removed=removed)
        crashpoint("stop:released")
        if not keep and ctr.has_own_sandbox:
            self.sandboxes.unmake(ctr.id)
        # connections tracked to its addresses and ports would otherwise keep going there,
        # and reach the next container given the address
        ctx.flush_conntrack(released_ips, released_ports)
        ctx.release_held(ctr.id)
        if keep:
            return
        if ctr.auto_remove:
            self._delete(ctr)
        if ctr.shares_sandbox_of:
            self.release_shared(ctr.shares_sandbox_of)

    def release_shared(self, owner_id: str) -> bool:
        """Release the sandbox of an exited container once no running container shares it
        any more (its addresses, then its namespace; --rm is honoured then). True if it was
        released."""
        ctx, store = self.ctx, self.ctx.store
        owner = store.container_by_id(owner_id)
        if owner is None or owner.status != EXITED or not owner.has_own_sandbox \
                or store.sharing_sandbox(owner.id):
            return False
        if not any(ep.ip is not None for ep in store.endpoints(sandbox_id=owner.id)):
            released: list[str] = []
        else:
            with store.transaction():
                removed = ctx.netfilter.container_elements(owner)
                released = self.sandboxes.release_addresses(owner.id)
                ctx.netfilter.apply(removed=removed)
        self.sandboxes.unmake(owner.id)
        ctx.flush_conntrack(released, [])
        if owner.auto_remove:
            self._delete(owner)
        return bool(released)

    def _delete(self, ctr: Container) -> None:
        self.ctx.cgroups.kill(ctr.id)  # (gone already, unless it never started)
        with self.ctx.store.transaction():
            self.ctx.store.delete_sandbox(ctr.id)
            self.ctx.store.delete_container(ctr.id)
        files.remove_container_dir(self.ctx, ctr.id)

    def stop(self, ref: str, timeout: float = 10.0) -> Container:
        from ..runtime import process

        ctr = self.get(ref)
        if ctr.status == RUNNING:
            self.ctx.handling.add(ctr.id)  # (before the lock: its orphan check skips it)
            try:
                ctr = self._stopped_by_user(ctr)
                sig = process.terminate(ctr.pid or 0, ctr.pid_start, timeout)
                self._await_supervisor(ctr, sig)
            finally:
                self.ctx.handling.discard(ctr.id)
        return self.ctx.store.container_by_id(ctr.id) or ctr

    def _stopped_by_user(self, ctr: Container) -> Container:
        """Note that the user ends the container (stop, rm -f): its restart policy must not
        start it again. Its record as it is now (a restart may have changed its pid)."""
        store = self.ctx.store
        with store.locked():
            with store.transaction():
                store.update_container(ctr.id, stopped_by_user=True)
            return store.container_by_id(ctr.id) or ctr

    def _await_supervisor(self, ctr: Container, sig: int | None) -> None:
        """After the process is gone, give its supervisor a moment to record the exit; finish
        the container here if the supervisor is gone too. Its exit status is then not ours to
        read (it is not our child): 128 + the signal that ended it, as far as shoal knows
        (SIGTERM: 143, SIGKILL: 137; a process that handled SIGTERM and exited with a code of
        its own is recorded as 143 too), or 255 if it was gone before shoal signalled it."""
        store = self.ctx.store
        code = 128 + sig if sig else 255
        deadline = 50
        while deadline:
            cur = store.container_by_id(ctr.id)
            if cur is None or cur.status != RUNNING:
                return
            if not pids.alive(cur.supervisor_pid, cur.supervisor_start):
                break
            pids.wait_gone(cur.supervisor_pid or 0, cur.supervisor_start, 0.05)
            deadline -= 1
        with store.locked():
            cur = store.container_by_id(ctr.id)
            if cur is not None and cur.status == RUNNING and not pids.alive(
                cur.pid, cur.pid_start
            ):
                self._finish(cur.id, cur.pid, code,
                             error="" if sig else "process exited while unsupervised")

    def remove(self, ref: str, force: bool = False) -> None:
        from ..runtime import process

        store = self.ctx.store
        ctr = self.get(ref)
        # before anything is stopped (only a running container can be joined)
        users = (store.sharing_sandbox(ctr.id)
                 if ctr.has_own_sandbox and ctr.status == RUNNING else [])
        if users:
            raise Conflict(
                f"container {ctr.name} shares its network with running containers "
                f"({', '.join(users)}); remove those first"
            )
        if ctr.status == RUNNING:
            if not force and pids.alive(ctr.pid, ctr.pid_start):
                raise Conflict(
                    f"container {ctr.name} is running: stop it first (shoal stop {ctr.name}) "
                    "or remove it with -f"
                )
            self.ctx.handling.add(ctr.id)  # (before the lock: its orphan check skips it)
            try:
                ctr = self._stopped_by_user(ctr)
                sig = process.terminate(ctr.pid or 0, ctr.pid_start, 0)
                self._await_supervisor(ctr, sig)
            finally:
                self.ctx.handling.discard(ctr.id)
        with store.locked():
            cur = store.container_by_id(ctr.id)
            if cur is None:
                return
            users = store.sharing_sandbox(cur.id)
            if users:
                raise Conflict(
                    f"container {cur.name} shares its network with running containers "
                    f"({', '.join(users)}); remove those first"
                )
            if cur.status != EXITED:  # created but never started: release what it holds
                self._finish(cur.id, None, 0)
            elif cur.has_own_sandbox:  # a sandbox kept for containers that shared it
                self.release_shared(cur.id)
            if store.container_by_id(cur.id) is not None:
                self._delete(cur)

    def prune(self) -> list[str]:
        """Remove stopped containers; their ids."""
        removed = []
        with self.ctx.store.locked():
            for ctr in self.ctx.store.containers():
                if self.effective_status(ctr) == EXITED:
                    self.remove(ctr.id, force=True)
                    removed.append(ctr.id)
        return removed

    # -- orphans ---------------------------------------------------------------------------

    def reap_orphans(self) -> None:
        """At the first lock of every mutating command: containers whose supervisor died
        (killed, OOM; a foreground `run` whose CLI was killed) are finished now rather than
        at the next `system reconcile`, so that their addresses and ports are free for this
        very command. Cheap: one query for the distinct supervisors of running and created
        containers and one read of the supervisors' cgroup (the live `run -d` supervisors);
        only a supervisor not in it (a foreground `run`, a creating command, or a dead one)
        is looked up in /proc, by its pid. (A signal 0 would not do: a dead supervisor may
        stay a zombie for a while, and a pid can be reused.)"""
        store = self.ctx.store
        rows = store.supervisors()
        me = os.getpid()
        rows = [(pid, start) for pid, start in rows if pid != me]
        if not rows:
            return
        live = self.ctx.cgroups.supervisors()
        dead = [pid for pid, start in rows if pid not in live and not pids.alive(pid, start)]
        for pid in dead:
            for cid in store.supervised_by(pid):
                ctr = store.container_by_id(cid)
                if ctr is not None and ctr.id not in self.ctx.handling:
                    if line := self.reap(ctr):
                        self.ctx.repairs.append(line)

    def reap(self, ctr: Container) -> str:
        """Finish a container whose supervisor is gone (checked here); one line saying what
        was done, or "" if it is supervised after all.

        Nobody would record its exit, honour --rm, or hold its published ports' sockets, so
        a container whose main process still runs is killed (everything in its cgroup) and
        marked exited 137, as Docker does with its containers when the daemon goes without
        live-restore."""
        if pids.alive(ctr.supervisor_pid, ctr.supervisor_start):
            return ""
        if ctr.status == CREATED:
            if ctr.has_own_sandbox:  # a command may have started in it, its pid unrecorded
                pids.kill_all_in(self.sandboxes.path(ctr.id))
            if ctr.started_at != Container.started_at:  # it ran before: `start` was cut short
                self._finish(ctr.id, None, ctr.exit_code, error="its start was interrupted")
                return f"container {ctr.name}: its start was interrupted; marked exited"
            self._finish(ctr.id, None, 255, error="its creation was interrupted")
            self._delete(ctr)
            return f"container {ctr.name}: its creation was interrupted; rolled back"
        if ctr.status != RUNNING:
            return ""
        if pids.alive(ctr.pid, ctr.pid_start):
            self._kill_main(ctr)
            self._finish(ctr.id, ctr.pid, 137, error="its supervisor died; killed")
            what = "its supervisor died; killed and marked exited"
        else:
            self._finish(ctr.id, ctr.pid, 255, error="process exited while unsupervised")
            what = "its process is gone; marked exited"
        gone = self.ctx.store.container_by_id(ctr.id) is None
        return f"container {ctr.name}: {what}" + (" and removed (--rm)" if gone else "")

    @staticmethod
    def _kill_main(ctr: Container) -> None:
        import signal

        if ctr.pid and pids.alive(ctr.pid, ctr.pid_start):
            try:
                os.kill(ctr.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            pids.wait_gone(ctr.pid, ctr.pid_start, 5.0)

    def _reap_if_orphaned(self, ctr: Container) -> Container:
        """A running container whose process and supervisor are both gone (killed while no
        shoal command ran) is marked exited; its exit code is unknown (Docker uses 255)."""
        if (ctr.status == RUNNING and not pids.alive(ctr.pid, ctr.pid_start)
                and not pids.alive(ctr.supervisor_pid, ctr.supervisor_start)):
            self._finish(ctr.id, ctr.pid, 255, error="process exited while unsupervised")
            return self.ctx.store.container_by_id(ctr.id) or ctr.replace(status=EXITED)
        return ctr

    # -- connect / disconnect --------------------------------------------------------------

    def connect(self, net_ref: str, ctr_ref: str, ip: str | None = None,
                aliases: list[str] | None = None) -> Endpoint:
        """A new endpoint of the container's sandbox on a network, joined at once if the
        container runs (else when it starts)."""
        requested = ipam.parse_address(ip, "--ip") if ip else None
        for alias in aliases or []:
            validate_name(alias, "alias")
        store = self.ctx.store
        with store.locked():
            net = store.network(net_ref)
            ctr = self._reap_if_orphaned(store.container(ctr_ref))
            if drivers.sandbox_mode(net.driver) != drivers.ENDPOINTS:
                raise Conflict(f"containers cannot be connected to network {net.name}; "
                               f"it is a network mode: use shoal run --network {net.name}")
            if not ctr.network_mode or ctr.network_mode in ("host", "none") or \
                    ctr.shares_sandbox_of:
                raise Conflict(
                    f"container {ctr.name} uses network mode {self.mode_name(ctr)}; "
                    "it cannot be connected to other networks"
                )
            if net.name == DEFAULT_NETWORK and (requested or aliases):
                raise InvalidArgument("user-specified IP addresses and aliases are supported on "
                                      "user-defined networks only")
            if any(ep.network_id == net.id for ep in store.endpoints(sandbox_id=ctr.id)):
                raise Conflict(f"container {ctr.name} is already connected to network {net.name}")
            running = ctr.status == RUNNING
            with store.transaction():
                ep = self.sandboxes.create_endpoint(ctr.id, net, requested, aliases or [],
                                                    plugged=running, pending=running)
            crashpoint("connect:row")
            if running:
                self.sandboxes.join(ctr.id, ep, net)
            files.refresh_container_files(self.ctx, ctr)
            return ep

    def disconnect(self, net_ref: str, ctr_ref: str) -> None:
        store = self.ctx.store
        with store.locked():
            net = store.network(net_ref)
            ctr = self._reap_if_orphaned(store.container(ctr_ref))
            ep = next((e for e in store.endpoints(sandbox_id=ctr.id)
                       if e.network_id == net.id), None)
            if ep is None:
                raise Conflict(f"container {ctr.name} is not connected to network {net.name}")
            rows = store.port_rows(ctr.id, net.id)
            self.sandboxes.leave(ctr.id, ep, net, in_sandbox=ctr.status == RUNNING)
            files.refresh_container_files(self.ctx, ctr)
            if rows:
                held.release_elsewhere(self.ctx, ctr, [(proto, host_ip, int(port))
                                                       for proto, host_ip, port, _d, _p in rows])


class _Dns(Record):
    dns: list[str]
    dns_search: list[str]
    dns_options: list[str]


def _parse_dns(spec: RunSpec) -> tuple[_Dns, list[tuple[str, str]]]:
    """The DNS options and the --add-host entries, checked (host-gateway not resolved)."""
    dns = _Dns(dns=[etcfiles.parse_dns_server(s) for s in spec.dns],
               dns_search=[etcfiles.parse_dns_search(d) for d in spec.dns_search],
               dns_options=[etcfiles.parse_dns_option(o) for o in spec.dns_options])
    extra = [etcfiles.parse_extra_host(e) for e in spec.extra_hosts]
    if spec.network.startswith("container:"):
        # Docker's rule: the files are the other container's (its resolv.conf and hosts)
        for flag, given in (("--dns", dns.dns), ("--dns-search", dns.dns_search),
                            ("--dns-option", dns.dns_options), ("--add-host", extra)):
            if given:
                raise InvalidArgument(f"conflicting options: {flag} and the network mode "
                                      f"{spec.network}; give it to that container instead")
    return dns, extra


def _parse_env(items: list[str]) -> list[str]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not key or "\0" in item:
            raise InvalidArgument(f"invalid environment variable {item!r}: use -e KEY=VALUE")
        if not sep:
            if key not in os.environ:
                continue
            value = os.environ[key]
        out.append(f"{key}={value}")
    return out


def _credentials(user: str, exit_code: int | None = None) -> Credentials:
    """The credentials of a -u value. A user or group that does not exist: Docker's message,
    as InvalidArgument (run checks it before anything is made: exit 125), or with
    `exit_code` as a CommandError (at a start, 125; in exec, 126, as Docker)."""
    from ..runtime import users

    try:
        return users.resolve(user)
    except users.UnknownUser as e:
        if exit_code is None:
            raise InvalidArgument(str(e)) from None
        from ..runtime.process import CommandError

        raise CommandError(exit_code, str(e)) from None


def _check_workdir(path: str) -> None:
    """The command's working directory must exist: shoal runs host commands, there is no image
    to make it in (Docker creates a missing -w in the container's filesystem)."""
    if not os.path.isabs(path):
        raise InvalidArgument(f"the working directory {path!r} is invalid: -w needs an "
                              "absolute path")
    if not os.path.isdir(path):
        raise InvalidArgument(f"the working directory {path} does not exist (or is not a "
                              "directory): create it, or give -w an existing one")
