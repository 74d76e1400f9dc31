"""The global store's URL (shoal.store.etcd.parse_store_url): what it accepts, and a one-line
error naming the problem and the fix for what it does not."""

from __future__ import annotations

import pytest

from shoal.errors import InvalidArgument
from shoal.store.etcd import Endpoint, format_store_url, parse_store_url


@pytest.mark.parametrize(("text", "endpoints"), [
    ("etcd://10.0.0.1:2379", [Endpoint("10.0.0.1", 2379)]),
    ("etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:12379",
     [Endpoint("10.0.0.1", 2379), Endpoint("10.0.0.2", 2379), Endpoint("10.0.0.3", 12379)]),
    ("etcd://store.example", [Endpoint("store.example", 2379)]),  # etcd's client port
    ("ETCD://h1:1,h2", [Endpoint("h1", 1), Endpoint("h2", 2379)]),
    ("etcd://[fd00::1]:2379,[fd00::2]", [Endpoint("fd00::1", 2379), Endpoint("fd00::2", 2379)]),
    ("  etcd://h:2379\n", [Endpoint("h", 2379)]),
])
def test_accepted(text: str, endpoints: list[Endpoint]) -> None:
    assert parse_store_url(text) == endpoints


def test_formatting_gives_back_a_url_that_parses_the_same() -> None:
    endpoints = parse_store_url("etcd://h1,[fd00::1]:3000")
    assert format_store_url(endpoints) == "etcd://h1:2379,[fd00::1]:3000"
    assert parse_store_url(format_store_url(endpoints)) == endpoints


@pytest.mark.parametrize(("text", "problem", "fix"), [
    ("10.0.0.1:2379", "has no scheme", "etcd://10.0.0.1:2379,10.0.0.2:2379"),
    ("http://10.0.0.1:2379", "unknown scheme 'http'", "only etcd://"),
    ("etcd://", "names no endpoint", "e.g. etcd://"),
    ("etcd://h1:2379/v3", "only host:port endpoints", "no path"),
    ("etcd://user@h1", "only host:port endpoints", "no path, query, or user"),
    ("etcd://h1,,h2", "empty endpoint", "two commas"),
    ("etcd://h1,", "empty endpoint", "one at an end"),
    ("etcd://:2379", "has no host", "e.g. etcd://"),
    ("etcd://h1:port", "bad port 'port'", "a number from 1 to 65535"),
    ("etcd://h1:0", "bad port '0'", "a number from 1 to 65535"),
    ("etcd://h1:65536", "bad port '65536'", "a number from 1 to 65535"),
    ("etcd://h1:", "bad port ''", "a number from 1 to 65535"),
    ("etcd://fd00::1", "several colons", "[fd00::1]:2379"),
    ("etcd://[fd00::1", "bad IPv6 endpoint", "[ADDRESS]:PORT"),
    ("etcd://[fd00::1]x", "bad IPv6 endpoint", "[ADDRESS]:PORT"),
    ("etcd://h1:2379,h1", "names h1:2379 twice", "name each member once"),
])
def test_refused_with_the_problem_and_the_fix(text: str, problem: str, fix: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_store_url(text)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"store URL {text!r}")
    assert problem in message and fix in message
