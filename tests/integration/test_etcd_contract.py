"""The GlobalStore contract (tests/unit/test_global_store_contract.py, the one definition of
it, its test functions unchanged) run against EtcdStore on a real three-member etcd cluster:
the contract's `harness` fixture is replaced here by one that hands out an EtcdStore on the
cluster this module starts; every test function is the contract's own."""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .etcd_lab import lab_cluster

_path = Path(__file__).resolve().parents[1] / "unit" / "test_global_store_contract.py"
_spec = importlib.util.spec_from_file_location("shoal_global_store_contract", _path)
assert _spec is not None and _spec.loader is not None
contract = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = contract
_spec.loader.exec_module(contract)

# the contract's tests and the fixtures they use (kv, p), collected as this module's own
globals().update({name: value for name, value in vars(contract).items()
                  if name.startswith("test_") or name in ("kv", "p")})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with lab_cluster(tmp_path_factory.mktemp("etcd-contract")) as made:
        yield made


@pytest.fixture
def harness(cluster: Any) -> Iterator[Any]:
    from shoal.store.etcd import EtcdStore

    store = EtcdStore(cluster.url)
    try:
        yield contract.Harness(store, time.sleep, store.close)
    finally:
        store.close()
