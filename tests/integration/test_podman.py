"""shoal-cni under a real Podman (issue 11)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import HOST_ADDR, Host, load_bench

podman_mod = load_bench("podman")
Podman, REFERENCE_PLUGINS = podman_mod.Podman, podman_mod.REFERENCE_PLUGINS


@pytest.fixture
def podman(host: Host, tmp_path: Path) -> Iterator[Any]:
    why = podman_mod.available()
    if why:
        pytest.skip(why)
    env = {**host.env(), "SHOAL_ROOT": host.root, "SHOAL_RUN_DIR": host.run_dir}
    p = Podman(tmp_path, host.ns, env, [REFERENCE_PLUGINS])
    try:
        p.start()
        yield p
    finally:
        notes = p.stop()
        assert not notes, notes


def test_reference_bridge(host: Host, podman: Any) -> None:
    podman.add_network("ref", [
        {"type": "bridge", "bridge": "cni-ref0", "isGateway": True, "ipMasq": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.89.0.0/24"}]],
                  "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "portmap", "capabilities": {"portMappings": True}}], version="0.4.0")
    podman.run("-d", "--name", "web", "--network", "ref", "-p", "8080:80", "bb:latest",
               "nc", "-ll", "-p", "80", "-e", "echo", "hello")
    host.wait_for(lambda: host.fetch(host.outside, HOST_ADDR, 8080) is not None, what="x")
