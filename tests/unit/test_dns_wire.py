"""The embedded resolver's answers as bytes, read back with dnspython (pure, no sockets):
its own answers (flags, TTL 0, the question echoed in the client's case, NODATA, REFUSED,
truncation, EDNS) and the forwarded answers it keeps (TTLs lowered on a hit)."""

from __future__ import annotations

from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from shoal.dns import wire
from shoal.dns.forward import HostServers, parse_server, read_resolv_conf
from shoal.dns.server import local_answer
from shoal.dns.table import Entry, NameTable, View


def table() -> NameTable:
    t = NameTable()
    t.put(View(sandbox_id="client", entries=[Entry("n", "10.0.0.9", ["client"], "client")],
               networks=["n"], forward=True, upstreams=[]))
    t.put(View(sandbox_id="web", entries=[Entry("n", "10.0.0.2", ["web", "svc"], "web")],
               networks=["n"], forward=True, upstreams=[]))
    t.put(View(sandbox_id="inner", entries=[Entry("n", "10.0.0.7", ["inner"], "inner")],
               networks=["n"], forward=False, upstreams=[]))
    return t


def query(name: str, rdtype: str = "A", *, edns: int = -1, payload: int = 1232,
          rd: bool = True, want_dnssec: bool = False) -> tuple[dns.message.Message, bytes]:
    q = dns.message.make_query(name, rdtype, use_edns=edns, payload=payload,
                               want_dnssec=want_dnssec)
    if not rd:
        q.flags &= ~dns.flags.RD
    return q, q.to_wire()


def ask(t: NameTable, asker: str, data: bytes, tcp: bool = False) -> list[dns.message.Message]:
    q = wire.parse_query(data)
    bodies = local_answer(t, asker, q, tcp)
    assert bodies is not None, "forwarded"
    return [dns.message.from_wire(q.ident + body) for body in bodies]


def test_an_own_name_is_answered_with_authority_and_ttl_0() -> None:
    msg, data = query("web.")
    (answer,) = ask(table(), "client", data)
    assert answer.id == msg.id and answer.rcode() == dns.rcode.NOERROR
    assert answer.flags & dns.flags.QR and answer.flags & dns.flags.AA
    assert answer.flags & dns.flags.RA and answer.flags & dns.flags.RD
    assert not answer.flags & dns.flags.TC
    (rrset,) = answer.answer
    assert rrset.ttl == 0 and [r.address for r in rrset] == ["10.0.0.2"]
    assert answer.edns == -1  # no OPT asked, none given

    _msg, data = query("svc.", rd=False)
    (answer,) = ask(table(), "client", data)
    assert not answer.flags & dns.flags.RD  # copied from the query


def test_the_question_is_echoed_in_the_case_the_client_wrote() -> None:
    _msg, data = query("wEb.")
    q = wire.parse_query(data)
    assert q.name == "web"
    (answer,) = ask(table(), "client", data)
    assert answer.question[0].name.to_text() == "wEb."
    raw = q.ident + (local_answer(table(), "client", q) or [b""])[0]
    assert b"\x03wEb\x00" in raw


def test_several_addresses_come_in_every_rotation() -> None:
    t = table()
    for i in range(3):
        t.put(View(sandbox_id=f"r{i}", entries=[Entry("n", f"10.0.1.{i}", ["pool"], "")],
                   networks=["n"], forward=True, upstreams=[]))
    answers = ask(t, "client", query("pool.")[1])
    orders = [[r.address for r in a.answer[0]] for a in answers]
    assert orders == [["10.0.1.0", "10.0.1.1", "10.0.1.2"], ["10.0.1.1", "10.0.1.2", "10.0.1.0"],
                      ["10.0.1.2", "10.0.1.0", "10.0.1.1"]]


def test_other_types_of_an_own_name_are_nodata_not_forwarded() -> None:
    for rdtype in ("AAAA", "MX", "TXT"):
        (answer,) = ask(table(), "client", query("web.", rdtype)[1])
        assert answer.rcode() == dns.rcode.NOERROR and answer.answer == []
        assert answer.flags & dns.flags.AA


def test_a_container_address_resolves_back_to_its_name() -> None:
    (answer,) = ask(table(), "client", query("2.0.0.10.in-addr.arpa.", "PTR")[1])
    (rrset,) = answer.answer
    assert rrset.rdtype == dns.rdatatype.PTR and rrset.ttl == 0
    assert [r.target.to_text() for r in rrset] == ["web."]
    q = wire.parse_query(query("3.0.0.10.in-addr.arpa.", "PTR")[1])
    assert local_answer(table(), "client", q) is None  # no container there: forwarded


def test_other_names_are_forwarded_or_refused_on_internal_networks() -> None:
    q = wire.parse_query(query("example.org.")[1])
    assert local_answer(table(), "client", q) is None
    (answer,) = ask(table(), "inner", query("example.org.")[1])
    assert answer.rcode() == dns.rcode.REFUSED and not answer.flags & dns.flags.AA
    (answer,) = ask(table(), "inner", query("web.")[1])  # its own networks' names work
    assert [r.address for r in answer.answer[0]] == ["10.0.0.2"]
    (answer,) = ask(table(), "gone", query("web.")[1])  # a sandbox the table lost
    assert answer.rcode() == dns.rcode.REFUSED


def many(count: int) -> NameTable:
    t = table()
    for i in range(count):
        t.put(View(sandbox_id=f"m{i}", entries=[Entry("n", f"10.0.2.{i}", ["big"], "")],
                   networks=["n"], forward=True, upstreams=[]))
    return t


def test_an_answer_too_big_for_udp_is_truncated_and_whole_over_tcp() -> None:
    t = many(40)  # 12 + 8 + 40 * 16 bytes: over 512
    answer = ask(t, "client", query("big.")[1])[0]
    assert answer.flags & dns.flags.TC and answer.answer == []
    assert answer.question[0].name.to_text() == "big."
    answer = ask(t, "client", query("big.")[1], tcp=True)[0]
    assert not answer.flags & dns.flags.TC and len(answer.answer[0]) == 40
    # with EDNS the client takes up to its size
    answer = ask(t, "client", query("big.", edns=0, payload=1232)[1])[0]
    assert not answer.flags & dns.flags.TC and len(answer.answer[0]) == 40
    answer = ask(many(100), "client", query("big.", edns=0, payload=1232)[1])[0]
    assert answer.flags & dns.flags.TC and answer.edns == 0


def test_edns_is_answered_with_an_opt() -> None:
    answer = ask(table(), "client", query("web.", edns=0, payload=4096, want_dnssec=True)[1])[0]
    assert answer.edns == 0 and answer.payload == wire.EDNS_SIZE
    assert answer.ednsflags & dns.flags.DO
    answer = ask(table(), "client", query("web.", edns=0)[1])[0]
    assert answer.edns == 0 and not answer.ednsflags & dns.flags.DO


def test_a_newer_edns_version_is_badvers() -> None:
    answer = ask(table(), "client", query("web.", edns=1)[1])[0]
    assert answer.rcode() == dns.rcode.BADVERS


def test_malformed_queries_are_dropped_or_formerr() -> None:
    with pytest.raises(wire.Malformed):
        wire.parse_query(b"\x12\x34\x01")
    _msg, data = query("web.")
    with pytest.raises(wire.Malformed):  # a response, not a query
        wire.parse_query(data[:2] + bytes([data[2] | 0x80]) + data[3:])
    for bad in (data[:-3],  # the question cut short
                data[:5] + b"\x02" + data[6:],  # two questions, one there
                data[:12] + b"\x3f" + data[13:]):  # a label longer than the packet
        with pytest.raises(wire.FormError) as e:
            wire.parse_query(bad)
        answer = dns.message.from_wire(e.value.ident + wire.error_body(e.value),
                                       question_only=True)
        assert answer.rcode() == dns.rcode.FORMERR and answer.id == int.from_bytes(data[:2])


def test_other_opcodes_are_notimp() -> None:
    msg, _ = query("web.")
    msg.set_opcode(dns.opcode.NOTIFY)
    answer = ask(table(), "client", msg.to_wire())[0]
    assert answer.rcode() == dns.rcode.NOTIMP


# -- forwarded answers ----------------------------------------------------------------------


def upstream_reply(sent: bytes, *records: str, rcode: int = 0, authority: str = "",
                   edns: bool = True) -> bytes:
    q = dns.message.from_wire(sent)
    r = dns.message.make_response(q)
    r.set_rcode(rcode)
    for text in records:
        r.answer.append(dns.rrset.from_text(*text.split()))
    if authority:
        r.authority.append(dns.rrset.from_text(*authority.split(maxsplit=4)))
    if not edns:
        r.use_edns(False)
    return r.to_wire()


def test_the_upstream_query_has_a_fresh_id_and_the_resolvers_own_opt() -> None:
    msg = dns.message.make_query("Example.ORG.", "A", use_edns=0, want_dnssec=True,
                                 options=[dns.edns.GenericOption(10, b"12345678")])
    q = wire.parse_query(msg.to_wire())
    sent = dns.message.from_wire(wire.upstream_query(q, 0xBEEF))
    assert sent.id == 0xBEEF and sent.question[0].name.to_text() == "Example.ORG."
    assert sent.payload == wire.EDNS_SIZE and sent.ednsflags & dns.flags.DO
    assert sent.flags & dns.flags.RD and not sent.flags & dns.flags.QR
    assert not sent.options  # the client's cookie is its own


def test_a_kept_answer_is_replayed_with_the_clients_id_case_and_lower_ttls() -> None:
    _msg, data = query("example.org.")
    q = wire.parse_query(data)
    sent = wire.upstream_query(q, 4242)
    reply = upstream_reply(sent, "example.org. 120 IN CNAME host.example.org.",
                           "host.example.org. 90 IN A 192.0.2.7")
    wire.check_answer(reply, sent)
    kept = wire.keep(reply)
    assert kept.ttl == 90 and kept.rcode == dns.rcode.NOERROR
    msg2, data2 = query("EXAMPLE.org.")  # another client, another case, no EDNS
    answer = dns.message.from_wire(kept.reply(wire.parse_query(data2), elapsed=30))
    assert answer.id == msg2.id and answer.question[0].name.to_text() == "EXAMPLE.org."
    assert answer.edns == -1  # the upstream's OPT is not passed on
    assert [(rr.rdtype, rr.ttl) for rr in answer.answer] == [(dns.rdatatype.CNAME, 90),
                                                            (dns.rdatatype.A, 60)]
    assert str(answer.answer[1][0]) == "192.0.2.7"
    assert answer.flags & dns.flags.RA and not answer.flags & dns.flags.AA
    # a client with EDNS gets the resolver's OPT
    answer = dns.message.from_wire(kept.reply(wire.parse_query(query("example.org.",
                                                                       edns=0)[1])))
    assert answer.edns == 0 and answer.payload == wire.EDNS_SIZE
    assert [rr.ttl for rr in answer.answer] == [120, 90]


def test_a_cache_hit_never_goes_below_zero() -> None:
    _msg, data = query("example.org.")
    q = wire.parse_query(data)
    kept = wire.keep(upstream_reply(wire.upstream_query(q, 1), "example.org. 5 IN A 192.0.2.7"))
    assert dns.message.from_wire(kept.reply(q, elapsed=9)).answer[0].ttl == 0


def test_negative_answers_are_kept_for_the_soas_minimum_and_errors_not_at_all() -> None:
    _msg, data = query("nothing.example.org.")
    q = wire.parse_query(data)
    sent = wire.upstream_query(q, 7)
    soa = "example.org. 3600 IN SOA ns.example.org. admin.example.org. 1 7200 900 1209600 60"
    assert wire.keep(upstream_reply(sent, rcode=dns.rcode.NXDOMAIN, authority=soa)).ttl == 60
    assert wire.keep(upstream_reply(sent, authority=soa)).ttl == 60  # NODATA
    assert wire.keep(upstream_reply(sent, rcode=dns.rcode.NXDOMAIN)).ttl == 0  # no SOA
    assert wire.keep(upstream_reply(sent, rcode=dns.rcode.SERVFAIL)).ttl == 0
    long = upstream_reply(sent, "nothing.example.org. 86400 IN A 192.0.2.1")
    assert wire.keep(long).ttl == 300  # capped
    kept = wire.keep(upstream_reply(sent, rcode=dns.rcode.NXDOMAIN, authority=soa))
    answer = dns.message.from_wire(kept.reply(q, elapsed=10))
    assert answer.rcode() == dns.rcode.NXDOMAIN and answer.authority[0].ttl == 3590


def test_an_answer_to_another_question_is_not_taken() -> None:
    q = wire.parse_query(query("example.org.")[1])
    sent = wire.upstream_query(q, 99)
    other = wire.upstream_query(wire.parse_query(query("example.net.")[1]), 99)
    with pytest.raises(ValueError):
        wire.check_answer(upstream_reply(other, "example.net. 5 IN A 192.0.2.1"), sent)
    wrong_id = upstream_reply(wire.upstream_query(q, 98), "example.org. 5 IN A 192.0.2.1")
    with pytest.raises(ValueError):
        wire.check_answer(wrong_id, sent)
    with pytest.raises(ValueError):
        wire.check_answer(sent, sent)  # a query, not an answer
    upper = upstream_reply(wire.upstream_query(wire.parse_query(query("EXAMPLE.org.")[1]), 99),
                           "EXAMPLE.org. 5 IN A 192.0.2.1")
    wire.check_answer(upper, sent)  # the case may differ


def test_a_big_kept_answer_is_truncated_for_a_plain_udp_client() -> None:
    q = wire.parse_query(query("example.org.")[1])
    records = [f"example.org. 60 IN A 192.0.2.{i}" for i in range(1, 60)]
    kept = wire.keep(upstream_reply(wire.upstream_query(q, 1), *records))
    answer = dns.message.from_wire(kept.reply(q))
    assert answer.flags & dns.flags.TC and answer.answer == []
    answer = dns.message.from_wire(kept.reply(q, tcp=True))
    assert len(answer.answer[0]) == 59


def test_upstream_addresses_are_read_as_docker_writes_them() -> None:
    assert parse_server("192.0.2.1") == ("192.0.2.1", 53)
    assert parse_server("192.0.2.1:5353") == ("192.0.2.1", 5353)
    assert parse_server("[2001:db8::1]:5353") == ("2001:db8::1", 5353)
    assert parse_server("2001:db8::1") == ("2001:db8::1", 53)
    for bad in ("example.org", "192.0.2.1:x", "192.0.2.1:0", "[2001:db8::1", "300.1.1.1"):
        assert parse_server(bad) is None, bad
    text = ("# generated\nnameserver 127.0.0.53\nnameserver 192.0.2.1 # comment\n"
            "search example.org\nnameserver bogus\nnameserver 127.0.0.53\n"
            "options edns0\n")
    assert read_resolv_conf(text) == [("127.0.0.53", 53), ("192.0.2.1", 53)]


def test_the_host_servers_follow_their_file(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    servers = HostServers(str(path))
    assert servers.servers() == []  # no file: no servers
    path.write_text("nameserver 127.0.0.53\n")
    assert servers.servers() == [("127.0.0.53", 53)]  # loopback is kept
    path.write_text("nameserver 192.0.2.1\nnameserver 192.0.2.2\n")
    assert servers.servers() == [("192.0.2.1", 53), ("192.0.2.2", 53)]
    other = tmp_path / "other.conf"
    other.write_text("nameserver 192.0.2.9\n")
    servers.set_path(str(other))
    assert servers.servers() == [("192.0.2.9", 53)] and servers.path == str(other)
    other.unlink()
    assert servers.servers() == []


def test_a_name_with_both_families_answers_each_type_with_its_own() -> None:
    t = table()
    t.put(View(sandbox_id="dual", entries=[Entry("n", "10.0.0.5", ["dual"], "dual"),
                                           Entry("n", "fd00::5", ["dual"], "dual")],
               networks=["n"], forward=True, upstreams=[]))
    (a,) = ask(t, "client", query("dual.", "A")[1])
    assert [r.address for r in a.answer[0]] == ["10.0.0.5"]
    (aaaa,) = ask(t, "client", query("dual.", "AAAA")[1])
    assert [r.address for r in aaaa.answer[0]] == ["fd00::5"]
