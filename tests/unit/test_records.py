"""Unit tests for shoal.records: the dataclass stand-in the model is made of."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from shoal.model import Endpoint, Network


def test_records_parse_text_fields_on_read() -> None:
    ep = Endpoint(id="e", sandbox_id="c", network_id="n", ifname="eth0", ip="10.0.0.2",
                  mac=None)
    assert ep.ip == IPv4Address("10.0.0.2") and ep.requested_ip is None
    assert ep == Endpoint("e", "c", "n", "eth0", IPv4Address("10.0.0.2"), None)
    assert ep.replace(ip=None).ip is None
    with pytest.raises(TypeError):
        Endpoint(id="e", sandbox_id="c", network_id="n", ifname="eth0")  # type: ignore[call-arg]


def test_records_defaults_are_fresh_and_equality_is_by_fields() -> None:
    a = Network("i", "n", "bridge", "t")
    b = Network("i", "n", "bridge", "t")
    a.labels["k"] = "v"
    assert b.labels == {} and a != b
    assert a.replace(labels={}) == b
    assert "subnet=None" in repr(b)


def test_a_field_without_default_after_one_with_is_refused_at_class_creation() -> None:
    from shoal.records import Record

    with pytest.raises(TypeError, match="'b' without a default"):
        class Bad(Record):
            a: int = 0
            b: int
