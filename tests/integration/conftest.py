from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import Host


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def _host(tmp_path: Path, backend: str | None) -> Iterator[Host]:
    if os.geteuid() != 0 or not shutil.which("nsenter"):
        pytest.skip("integration tests need root and util-linux (run: make test)")
    h = Host(tmp_path, backend)
    try:
        h.setup()
        yield h
    finally:
        h.cleanup()


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    yield from _host(tmp_path, None)  # the default backend


@pytest.fixture(params=["nftables", "iptables"])
def fw_host(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Host]:
    """A host for the firewall's behaviour tests, once per backend."""
    yield from _host(tmp_path, request.param)


@pytest.fixture
def iptables_host(tmp_path: Path) -> Iterator[Host]:
    """A host on the iptables backend, for what only that backend has (rules per port)."""
    yield from _host(tmp_path, "iptables")
