"""The Python API, in the shape of docker-py:

    import shoal
    client = shoal.Client(root="/tmp/s/root", run_dir="/tmp/s/run")   # or shoal.from_env()
    net = client.networks.create("isolated", ipam={"Config": [{"Subnet": "10.9.0.0/24"}]})
    web = client.containers.run("python3 -m http.server 80", network="isolated", detach=True)
    print(web.attrs["NetworkSettings"]["Networks"]["isolated"]["IPAddress"])
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from .controller import Engine, RunSpec
from .errors import InvalidArgument, ShoalError
from .model import EXITED, RUNNING
from .runtime import process


class ExecResult(NamedTuple):
    exit_code: int
    output: bytes


class ContainerError(ShoalError):
    """A container run in the foreground exited non-zero (docker.errors.ContainerError)."""

    def __init__(self, container: Container, exit_status: int, command: list[str],
                 stderr: bytes) -> None:
        super().__init__(
            f"command {shlex.join(command)!r} in container {container.name} returned "
            f"non-zero exit status {exit_status}"
        )
        self.container = container
        self.exit_status = exit_status
        self.command = command
        self.stderr = stderr


def _command(cmd: str | Sequence[str]) -> list[str]:
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


class _Model:
    def __init__(self, client: Client, attrs: dict[str, Any]) -> None:
        self.client = client
        self.attrs = attrs

    @property
    def id(self) -> str:
        return str(self.attrs["Id"])

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, type(self)) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.short_id}>"


class Network(_Model):
    @property
    def name(self) -> str:
        return str(self.attrs["Name"])

    @property
    def containers(self) -> list[Container]:
        return [self.client.containers.get(cid) for cid in self.attrs["Containers"]]

    def reload(self) -> None:
        self.attrs = self.client.engine.queries.network(self.id)

    def connect(self, container: Container | str, ipv4_address: str | None = None,
                aliases: list[str] | None = None) -> None:
        ref = container.id if isinstance(container, Container) else container
        self.client.engine.connect(self.id, ref, ip=ipv4_address, aliases=aliases)
        self.reload()

    def disconnect(self, container: Container | str, force: bool = False) -> None:
        ref = container.id if isinstance(container, Container) else container
        self.client.engine.disconnect(self.id, ref)
        self.reload()

    def remove(self) -> None:
        self.client.engine.remove_network(self.id)


class Container(_Model):
    @property
    def name(self) -> str:
        return str(self.attrs["Name"]).lstrip("/")

    @property
    def status(self) -> str:
        return str(self.attrs["State"]["Status"])

    def reload(self) -> None:
        self.attrs = self.client.engine.queries.container(self.id)

    def exec_run(self, cmd: str | Sequence[str], environment: list[str] | None = None
                 ) -> ExecResult:
        proc = self.client.engine.exec(
            self.id, _command(cmd), env=environment, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        out, _ = proc.communicate()
        return ExecResult(process.wait_status(proc), out)

    def wait(self, timeout: float | None = None) -> dict[str, int]:
        """Block until the container stops; {'StatusCode': exit code}."""
        deadline = None if timeout is None else time.monotonic() + timeout
        engine = self.client.engine
        while True:
            ctr = engine.queries.container_record(self.id)
            if ctr is None or ctr.status == EXITED:
                break
            if ctr.status == RUNNING and ctr.pid:
                process.wait_gone(ctr.pid, ctr.pid_start, 0.05)
            else:
                time.sleep(0.02)
            if deadline is not None and time.monotonic() > deadline:
                raise ShoalError(f"container {self.name} did not stop within {timeout} s")
        if ctr is not None:
            self.reload()
            return {"StatusCode": ctr.exit_code}
        return {"StatusCode": int(self.attrs["State"]["ExitCode"])}

    def logs(self) -> bytes:
        try:
            path = os.path.join(self.client.engine.container_dir(self.id), "log")
            from .runtime.logs import read_all

            with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as f:
                return read_all(f.fileno())
        except FileNotFoundError:
            return b""

    def stop(self, timeout: float = 10) -> None:
        self.client.engine.stop(self.id, timeout)
        self.reload()

    def remove(self, force: bool = False) -> None:
        self.client.engine.remove_container(self.id, force=force)


class NetworkCollection:
    def __init__(self, client: Client) -> None:
        self.client = client

    def create(self, name: str, driver: str | None = None, options: dict[str, str] | None = None,
               ipam: dict[str, Any] | None = None, internal: bool = False,
               labels: dict[str, str] | None = None) -> Network:
        subnet = gateway = ip_range = None
        configs = (ipam or {}).get("Config") or []
        if len(configs) > 1:
            raise InvalidArgument("shoal supports one IPAM config (one IPv4 subnet) per network")
        if configs:
            subnet = configs[0].get("Subnet")
            gateway = configs[0].get("Gateway")
            ip_range = configs[0].get("IPRange")
        net = self.client.engine.create_network(
            name, driver=driver or "bridge", subnet=subnet, gateway=gateway, ip_range=ip_range,
            internal=internal, labels=labels, options=options,
        )
        return self.get(net.id)

    def get(self, network_id: str) -> Network:
        return Network(self.client, self.client.engine.queries.network(network_id))

    def list(self, names: list[str] | None = None, ids: list[str] | None = None,
             filters: dict[str, str | list[str]] | None = None) -> list[Network]:
        norm = {k: [v] if isinstance(v, str) else list(v) for k, v in (filters or {}).items()}
        nets = self.client.engine.networks(norm)
        if names:
            nets = [n for n in nets if n.name in names]
        if ids:
            nets = [n for n in nets if any(n.id.startswith(i) for i in ids)]
        return [self.get(n.id) for n in nets]

    def prune(self) -> dict[str, list[str]]:
        return {"NetworksDeleted": self.client.engine.prune_networks()}


class ContainerCollection:
    def __init__(self, client: Client) -> None:
        self.client = client

    def run(self, command: str | Sequence[str], name: str | None = None,
            hostname: str | None = None, network: str | None = None,
            network_mode: str | None = None, environment: list[str] | dict[str, str] | None = None,
            detach: bool = False, remove: bool = False, working_dir: str | None = None,
            ip: str | None = None, aliases: list[str] | None = None,
            dns: list[str] | None = None, dns_search: list[str] | None = None,
            dns_opt: list[str] | None = None,
            extra_hosts: dict[str, str] | list[str] | None = None) -> Container | bytes:
        """Start a container. Detached: returns the Container. Otherwise waits, returns its
        output, and raises ContainerError if it exited non-zero (as docker-py does).
        `extra_hosts`: {name: ip} or ["name:ip"] (ip may be "host-gateway")."""
        if isinstance(environment, dict):
            environment = [f"{k}={v}" for k, v in environment.items()]
        if isinstance(extra_hosts, dict):
            extra_hosts = [f"{name}:{addr}" for name, addr in extra_hosts.items()]
        spec = RunSpec(
            cmd=_command(command), name=name, hostname=hostname,
            network=network or network_mode or "bridge", ip=ip, aliases=list(aliases or []),
            env=list(environment or []), auto_remove=remove and detach,
            workdir=working_dir or os.getcwd(), dns=list(dns or []),
            dns_search=list(dns_search or []), dns_options=list(dns_opt or []),
            extra_hosts=list(extra_hosts or []),
        )
        ctr = self.client.engine.run_detached(spec)
        container = self.get(ctr.id)
        if detach:
            return container
        status = container.wait()["StatusCode"]
        output = container.logs()
        if remove:
            container.remove(force=True)
        if status != 0:
            raise ContainerError(container, status, spec.cmd, output)
        return output

    def get(self, container_id: str) -> Container:
        return Container(self.client, self.client.engine.queries.container(container_id))

    def list(self, all: bool = False) -> list[Container]:  # noqa: A002 (docker-py's name)
        return [self.get(c.id) for c in self.client.engine.containers(all_=all)]


class Client:
    """shoal's Python client. It works in the network namespace it is created in."""

    def __init__(self, root: str | None = None, run_dir: str | None = None,
                 resolv_conf: str | None = None) -> None:
        """`resolv_conf`: the host's resolv.conf (default SHOAL_RESOLV_CONF, else
        /etc/resolv.conf), read for the containers' DNS servers."""
        self.engine = Engine.open(root, run_dir, resolv_conf=resolv_conf, join_cluster=True)
        self.networks = NetworkCollection(self)
        self.containers = ContainerCollection(self)

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def from_env() -> Client:
    """A client configured from SHOAL_ROOT and SHOAL_RUN_DIR (or the defaults)."""
    return Client()
