"""Unit tests for a container's /etc/resolv.conf and /etc/hosts: the run options that shape
them (--dns, --dns-search, --dns-option, --add-host), the host's resolv.conf read without
trusting it, and the files' text (shoal.etcfiles, controller/files.py's host-file reader)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal import etcfiles
from shoal.controller.context import DEFAULT_RESOLV_CONF, resolv_conf_setting
from shoal.controller.files import embedded_dns, read_host_file
from shoal.errors import InvalidArgument
from shoal.etcfiles import HostResolv

HOST = HostResolv(nameservers=["198.51.100.1"], search=["lab.example"], options=["rotate"])


def lines(text: str) -> list[str]:
    """The lines a resolver reads (comments and blank lines left out)."""
    return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]


# -- the run options ---------------------------------------------------------------------------


def test_dns_servers_of_either_family_in_their_usual_spelling() -> None:
    assert etcfiles.parse_dns_server("192.0.2.53") == "192.0.2.53"
    assert etcfiles.parse_dns_server("2001:DB8::0:1") == "2001:db8::1"


@pytest.mark.parametrize("bad", ["", "300.1.1.1", "dns.example", "192.0.2.1:53",
                                 "fe80::1%eth0", "192.0.2.1\nnameserver 192.0.2.2", " 1.2.3.4"])
def test_a_bad_dns_server_is_one_clear_line(bad: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        etcfiles.parse_dns_server(bad)
    message = str(e.value)
    assert message.startswith(f"invalid --dns {bad!r}: ") and "IPv4 or IPv6 address" in message
    assert "\n" not in message


def test_search_domains() -> None:
    assert etcfiles.parse_dns_search("example.com") == "example.com"
    assert etcfiles.parse_dns_search("corp.example.com.") == "corp.example.com"
    assert etcfiles.parse_dns_search(".") == "."  # Docker's "no search domain"


@pytest.mark.parametrize("bad", ["", "-x.example", "a..b", "under_score.example", "a b",
                                 "x" * 64 + ".example", "1.2.3.4", "example.com\noptions x",
                                 ".example", "é.example"])
def test_a_bad_search_domain_is_refused(bad: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^invalid --dns-search .*: give a domain name"):
        etcfiles.parse_dns_search(bad)


@pytest.mark.parametrize("good", ["ndots:2", "timeout:1", "attempts:3", "rotate", "edns0",
                                  "single-request-reopen", "no-aaaa", "trust-ad"])
def test_resolv_conf_options(good: str) -> None:
    assert etcfiles.parse_dns_option(good) == good


@pytest.mark.parametrize("bad", ["", "a b", "ndots:1\nnameserver 192.0.2.1", "#x", ":x",
                                 "opt;x", "x" * 65])
def test_a_bad_dns_option_is_refused(bad: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^invalid --dns-option .*: give one resolv.conf"):
        etcfiles.parse_dns_option(bad)


@pytest.mark.parametrize(("text", "want"), [
    ("db:192.0.2.9", ("db", "192.0.2.9")),
    ("db.example:192.0.2.9", ("db.example", "192.0.2.9")),
    ("my_db:192.0.2.9", ("my_db", "192.0.2.9")),
    ("db=192.0.2.9", ("db", "192.0.2.9")),
    ("v6:2001:db8::1", ("v6", "2001:db8::1")),
    ("v6=2001:db8::1", ("v6", "2001:db8::1")),
    ("v6:[2001:db8::1]", ("v6", "2001:db8::1")),
    ("host.docker.internal:host-gateway", ("host.docker.internal", "host-gateway")),
])
def test_add_host(text: str, want: tuple[str, str]) -> None:
    assert etcfiles.parse_extra_host(text) == want


@pytest.mark.parametrize(("bad", "what"), [
    ("db", ""), ("db:", ""), (":192.0.2.9", ""), ("", ""),
    ("db:300.1.1.1", "is not an IP address"), ("db:gateway", "is not an IP address"),
    ("-db:192.0.2.9", "is not a host name"), ("d b:192.0.2.9", "is not a host name"),
    ("db\n1.2.3.4 evil:192.0.2.9", "is not a host name"),
])
def test_a_bad_add_host_says_how_to_write_one(bad: str, what: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        etcfiles.parse_extra_host(bad)
    message = str(e.value)
    assert message.startswith(f"invalid --add-host {bad!r}: ") and what in message
    assert message.endswith("use NAME:IP or NAME:host-gateway")


def test_an_extra_host_keeps_as_name_and_ip() -> None:
    for name, ip in (("db", "192.0.2.9"), ("v6", "2001:db8::1")):
        assert etcfiles.split_extra_host(etcfiles.extra_host_entry(name, ip)) == (name, ip)


@given(st.text(max_size=40))
def test_nothing_accepted_can_break_a_line_of_the_files(text: str) -> None:
    for parse in (etcfiles.parse_dns_server, etcfiles.parse_dns_search,
                  etcfiles.parse_dns_option, etcfiles.parse_extra_host):
        try:
            value = parse(text)
        except InvalidArgument:
            continue
        words = value if isinstance(value, tuple) else (value,)
        assert all(w and not any(c.isspace() or c == "#" for c in w) for w in words)


# -- the host's resolv.conf ----------------------------------------------------------------------


def test_the_host_file_read_as_glibc_reads_it() -> None:
    data = b"""# a comment
; another
nameserver 127.0.0.53
nameserver   198.51.100.1   # trailing words are ignored
nameserver 198.51.100.1
nameserver ::1
nameserver not-an-address
nameserver
domain old.example
search lab.example bad_domain corp.example.
options ndots:2 timeout:1
options ndots:5 rotate evil;rm
sortlist 130.155.160.0/255.255.240.0
"""
    got = etcfiles.parse_resolv_conf(data)
    assert got.nameservers == ["127.0.0.53", "198.51.100.1", "::1"]
    assert got.search == ["lab.example", "corp.example"]  # the last search/domain line
    assert got.options == ["timeout:1", "ndots:5", "rotate"]  # a later option wins


def test_a_domain_line_gives_one_search_domain() -> None:
    assert etcfiles.parse_resolv_conf(b"search a.example\ndomain b.example c.example\n"
                                      ).search == ["b.example"]


def test_garbage_host_files_read_as_nothing() -> None:
    assert etcfiles.parse_resolv_conf(b"") == HostResolv()
    assert etcfiles.parse_resolv_conf(b"\xff\xfe\x00garbage\n\x00nameserver\n") == HostResolv()
    # only the first MAX_HOST_FILE bytes are read
    big = b"#" * etcfiles.MAX_HOST_FILE + b"\nnameserver 198.51.100.1\n"
    assert etcfiles.parse_resolv_conf(big).nameservers == []


def test_reading_the_host_file_never_blocks_nor_fails(tmp_path: Path) -> None:
    assert read_host_file(str(tmp_path / "missing")) == b""
    assert read_host_file(str(tmp_path)) == b""  # a directory
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # nobody writes to it: opening or reading it would block
    assert read_host_file(str(fifo)) == b""
    link = tmp_path / "link"
    real = tmp_path / "real"
    real.write_bytes(b"nameserver 198.51.100.1\n")
    link.symlink_to(real)  # the host's resolv.conf is often a symlink (systemd-resolved)
    assert read_host_file(str(link)) == b"nameserver 198.51.100.1\n"
    big = tmp_path / "big"
    big.write_bytes(b"#" * (etcfiles.MAX_HOST_FILE * 2))
    assert len(read_host_file(str(big))) == etcfiles.MAX_HOST_FILE


def test_the_resolv_conf_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SHOAL_RESOLV_CONF", raising=False)
    assert resolv_conf_setting(None) == DEFAULT_RESOLV_CONF == "/etc/resolv.conf"
    monkeypatch.setenv("SHOAL_RESOLV_CONF", "/srv/resolv.conf")
    assert resolv_conf_setting(None) == "/srv/resolv.conf"
    assert resolv_conf_setting("/given") == "/given"  # the option wins
    monkeypatch.chdir(tmp_path)  # the supervisor and the resolver run from /
    assert resolv_conf_setting("rel.conf") == str(tmp_path / "rel.conf")
    with pytest.raises(InvalidArgument, match="^--resolv-conf is empty"):
        resolv_conf_setting("")
    monkeypatch.setenv("SHOAL_RESOLV_CONF", "")
    with pytest.raises(InvalidArgument, match="^SHOAL_RESOLV_CONF is empty"):
        resolv_conf_setting(None)


# -- the container's resolv.conf ----------------------------------------------------------------


def test_embedded_resolver_file() -> None:
    text = etcfiles.container_resolv_conf(HOST, "/etc/resolv.conf", "127.0.0.11",
                                          dns=["192.0.2.53"], search=[], options=[])
    # --dns is where the resolver forwards, never a server of the file
    assert lines(text) == ["nameserver 127.0.0.11", "search lab.example",
                           "options ndots:0 rotate"]
    assert "192.0.2.53" in text  # said in a comment


def test_embedded_resolver_with_the_run_options() -> None:
    text = etcfiles.container_resolv_conf(HOST, "/r", "127.0.0.11", dns=[],
                                          search=["a.example", "b.example"],
                                          options=["timeout:1"])
    assert lines(text) == ["nameserver 127.0.0.11", "search a.example b.example",
                           "options ndots:0 timeout:1"]


def test_the_users_ndots_wins_over_dockers_ndots0() -> None:
    for users, host in ((["ndots:3"], HOST), ([], HOST.replace(options=["ndots:2"]))):
        text = etcfiles.container_resolv_conf(host, "/r", "127.0.0.11", [], [], users)
        opts = [ln for ln in lines(text) if ln.startswith("options")]
        assert opts == [f"options {(users or host.options)[0]}"]


def test_search_dot_means_none() -> None:
    text = etcfiles.container_resolv_conf(HOST, "/r", "127.0.0.11", [], ["."], [])
    assert not [ln for ln in lines(text) if ln.startswith("search")]


def test_default_bridge_gets_the_host_servers_a_container_can_reach() -> None:
    host = HostResolv(nameservers=["127.0.0.53", "198.51.100.1", "::1", "2001:db8::53",
                                   "127.1.2.3", "198.51.100.7"])
    text = etcfiles.container_resolv_conf(host, "/h", None, [], [], [])
    assert lines(text) == ["nameserver 198.51.100.1", "nameserver 198.51.100.7"]
    assert "127.0.0.53" in text and "not reachable" in text  # said why, in a comment


def test_only_loopback_servers_leave_no_nameserver_and_no_public_one() -> None:
    for host in (HostResolv(nameservers=["127.0.0.53"]), HostResolv()):
        text = etcfiles.container_resolv_conf(host, "/h", None, [], [], [])
        assert lines(text) == []
        assert "# no nameserver:" in text and "--dns" in text
        assert "8.8" not in text


def test_dns_given_replaces_the_host_servers_on_the_default_bridge() -> None:
    text = etcfiles.container_resolv_conf(HOST, "/h", None, ["192.0.2.53", "127.0.0.1"],
                                          ["x.example"], ["ndots:1"])
    # the user's servers as given (theirs to choose, loopback too); no ndots:0 here
    assert lines(text) == ["nameserver 192.0.2.53", "nameserver 127.0.0.1",
                           "search x.example", "options ndots:1"]
    assert lines(etcfiles.container_resolv_conf(HOST, "/h", None, [], [], [])) == [
        "nameserver 198.51.100.1", "search lab.example", "options rotate"]


def test_network_mode_host_copies_the_host_file_unless_told_otherwise() -> None:
    raw = b"nameserver 127.0.0.53\nsearch lab.example\n# the host's own comment\n"
    host = etcfiles.parse_resolv_conf(raw)
    assert etcfiles.host_mode_resolv_conf(raw, host, [], [], []) == raw
    text = etcfiles.host_mode_resolv_conf(raw, host, [], [], ["ndots:2"]).decode()
    # the host's loopback server is the container's too in mode host
    assert lines(text) == ["nameserver 127.0.0.53", "search lab.example", "options ndots:2"]


# -- /etc/hosts ---------------------------------------------------------------------------------


def test_hosts_text_as_docker_writes_it() -> None:
    text = etcfiles.hosts_text("abc123", ["172.18.0.2", "10.9.0.3"],
                               [("db", "192.0.2.9"), ("gw", "172.18.0.1")])
    assert text.splitlines() == [
        "127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix", "ff02::1\tip6-allnodes",
        "ff02::2\tip6-allrouters",
        "192.0.2.9\tdb", "172.18.0.1\tgw",
        "172.18.0.2\tabc123", "10.9.0.3\tabc123",
    ]


def test_hosts_in_network_mode_host() -> None:
    raw = b"127.0.0.1 localhost\n10.0.0.5 myhost"
    assert etcfiles.host_mode_hosts(raw, []) == raw
    assert etcfiles.host_mode_hosts(raw, [("db", "192.0.2.9")]) == (
        b"127.0.0.1 localhost\n10.0.0.5 myhost\n192.0.2.9\tdb\n")


# -- which networks have the embedded resolver ----------------------------------------------------


def test_embedded_dns_is_the_drivers_and_never_the_default_bridge() -> None:
    from shoal.model import Network

    def net(name: str, driver: str) -> Network:
        return Network(id="1" * 64, name=name, driver=driver, created="")

    assert embedded_dns(net("web", "bridge")) is True
    assert embedded_dns(net("bridge", "bridge")) is False  # Docker's default network
    assert embedded_dns(net("host", "host")) is False
    assert embedded_dns(net("none", "null")) is False
    assert embedded_dns(net("gone", "no-such-driver")) is False
    assert embedded_dns(None) is False
