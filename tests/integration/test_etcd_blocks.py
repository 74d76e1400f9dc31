"""Address blocks (ipam/blocks.py) on a real three-member etcd cluster: three hosts, each
talking to a member of its own, race for every block of a subnet and never share one; a
host's blocks come free when its lease is revoked (a dead host's expire the same way)."""

from __future__ import annotations

import threading
from ipaddress import IPv4Network
from pathlib import Path

from shoal.errors import Conflict
from shoal.ipam import blocks
from shoal.store.etcd import EtcdStore

from .etcd_lab import lab_cluster

NET = "fedcba9876543210" * 4
SUBNET = IPv4Network("10.60.0.0/23")  # 8 blocks of /26


def test_hosts_racing_on_three_members_never_share_a_block(tmp_path: Path) -> None:
    with lab_cluster(tmp_path) as cluster:
        stores = [EtcdStore(f"etcd://{m.addr}:2379", timeout=5.0) for m in cluster.members]
        try:
            hosts = [blocks.BlockLeases(s, NET, SUBNET, f"host-{i}", s.grant(30))
                     for i, s in enumerate(stores)]
            won: list[tuple[str, IPv4Network]] = []
            errors: list[BaseException] = []
            lock = threading.Lock()
            start = threading.Barrier(len(hosts))

            def claim_all(h: blocks.BlockLeases) -> None:
                start.wait()
                try:
                    while True:
                        block = h.claim()
                        with lock:
                            won.append((h.host, block))
                except Conflict:
                    return
                except BaseException as e:  # (handed to the test)
                    errors.append(e)
            threads = [threading.Thread(target=claim_all, args=(h,)) for h in hosts]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert not errors, errors
            assert sorted(b for _, b in won) == blocks.blocks(SUBNET)
            assert {b: h for h, b in won} == hosts[1].holders()
            # a host that goes (its lease revoked, as when it expires) frees its blocks
            gone = hosts[0]
            stores[0].revoke(gone.lease)
            left = hosts[2].holders()
            assert "host-0" not in left.values()
            assert len(left) == len(won) - sum(1 for h, _ in won if h == "host-0")
        finally:
            for s in stores:
                s.close()
