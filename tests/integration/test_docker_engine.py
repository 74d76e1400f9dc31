"""shoal's Docker network plugin under a real dockerd (issue 11): Debian's docker.io 20.10,
started by the test in its host namespace and a private mount namespace whose
/run/docker/plugins holds shoal's socket (bench/dockerd.py), with a busybox-static image."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import HOST_ADDR, Host, load_bench
from .test_docker_plugin import start_plugin, stop_plugin

dockerd_mod = load_bench("dockerd")
SERVE = ["nc", "-ll", "-p", "80", "-e", "echo", "hello"]


class Plugin:
    """`shoal plugin serve` on the socket dockerd finds; `kill` and `start` again."""

    def __init__(self, host: Host, sock: str) -> None:
        self.host, self.sock = host, sock
        self.proc = start_plugin(host, sock)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def start(self) -> None:
        self.proc = start_plugin(self.host, self.sock)


@pytest.fixture
def engine(host: Host, tmp_path: Path) -> Iterator[tuple[Any, Plugin]]:
    for tool in ("dockerd", "docker", "containerd", "busybox"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (run: make deps)")
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    sock = str(plugins / "shoal.sock")
    # a short directory: containerd's socket path under it must fit a unix socket's 108 bytes
    short = tempfile.mkdtemp(prefix="shoal-dk-")
    d = dockerd_mod.Dockerd(short, netns=host.ns, plugins=str(plugins))
    plugin = Plugin(host, sock)
    try:
        d.start()
        d.import_busybox()
        yield d, plugin
    finally:
        notes = d.stop()
        stop_plugin(plugin.proc)
        shutil.rmtree(short, ignore_errors=True)
        assert not [n for n in notes if "left" in n or "remain" in n], notes


def processes(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def shoal_networks(host: Host) -> list[str]:
    return [n for n in host.shoal("network", "ls", "--format", "{{.Name}}").stdout.split()
            if n.startswith("docker-")]


def test_docker_containers_on_a_shoal_network(host: Host, engine: tuple[Any, Plugin]
                                              ) -> None:
    d, plugin = engine
    links_before = set(host.links())
    d.docker("network", "create", "-d", "shoal", "--subnet", "10.93.0.0/24", "x")
    d.docker("network", "create", "-d", "shoal", "--subnet", "10.94.0.0/24", "y")
    d.docker("run", "-d", "--name", "one", "--network", "x", "bb:latest", "sleep", "300")
    d.docker("run", "-d", "--name", "web", "--network", "x", "-p", "8080:80", "bb:latest",
             *SERVE)
    d.docker("run", "-d", "--name", "other", "--network", "y", "bb:latest", "sleep", "300")
    a, web, other = d.ip_of("one", "x"), d.ip_of("web", "x"), d.ip_of("other", "y")
    assert a.startswith("10.93.0.") and web.startswith("10.93.0.") and other.startswith("10.94.")
    # shoal has the network and the endpoints
    nid = d.docker("network", "inspect", "-f", "{{.Id}}", "x")
    net = host.shoal_json("network", "inspect", f"docker-{nid[:12]}")[0]
    assert sorted(m["IPv4Address"].split("/")[0] for m in net["Containers"].values()) == \
        sorted([a, web])
    # containers reach each other; another network is isolated; the published port is
    # reached from outside through shoal's map, with no docker-proxy
    assert d.try_docker("exec", "one", "ping", "-c1", "-W2", web).returncode == 0
    assert d.try_docker("exec", "other", "ping", "-c1", "-W1", a).returncode != 0
    host.wait_for(lambda: host.fetch(host.outside, HOST_ADDR, 8080) == "hello",
                  what="the published port from outside")
    assert processes("docker-proxy") == []
    assert "8080" in host.shoal("system", "firewall").stdout
    # the plugin is killed and started again: its state is shoal's store, so dockerd's
    # later calls (leave, delete endpoint, delete network) succeed
    plugin.kill()
    plugin.start()
    # docker rm -f and network rm leave nothing
    d.docker("rm", "-f", "one", "web", "other")
    d.docker("network", "rm", "x", "y")
    assert "8080" not in host.shoal("system", "firewall").stdout
    assert set(host.links()) - links_before <= {"shoal0"}
    assert shoal_networks(host) == []


def test_docker_names_the_plugin_when_it_is_down(host: Host, engine: tuple[Any, Plugin]
                                                 ) -> None:
    d, plugin = engine
    plugin.kill()
    res = d.try_docker("network", "create", "-d", "shoal", "--subnet", "10.95.0.0/24", "z")
    assert res.returncode != 0
    assert "shoal" in res.stderr, res.stderr
    assert shoal_networks(host) == []
