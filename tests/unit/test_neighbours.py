"""Reading other firewalls' chains and judging what they do with shoal's traffic (pure)."""

from __future__ import annotations

from shoal import neighbours as nb

FIREWALLD = """table ip shoal {
	set bridges {
		type ifname
		elements = { "shoal0",
			"sh-1" }
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		oifname @bridges drop
	}
}
table inet firewalld { # handle 7
	chain filter_FORWARD { # handle 1
		type filter hook forward priority filter + 10; policy drop;
		iifname { "shoal0", "sh-1" } accept comment "shoal:/var/lib/shoal" # handle 5
		oifname "sh-*" counter packets 0 bytes 0 accept # handle 6
		ct state established,related accept # handle 8
		jump filter_FORWARD_ZONES # handle 9
	}
	chain filter_FORWARD_ZONES { # handle 2
		iifname "eth0" goto filter_FWD_public # handle 3
	}
}
"""


def test_parse_nft_finds_chains_hooks_policies_and_rules() -> None:
    chains = nb.parse_nft(FIREWALLD)
    fwd = chains[("inet firewalld", "filter_FORWARD")]
    assert (fwd.hook, fwd.policy) == ("forward", "drop")
    assert len(fwd.rules) == 4 and fwd.rules[0].endswith("# handle 5")
    assert chains[("ip shoal", "forward")].rules == ["oifname @bridges drop"]
    assert chains[("inet firewalld", "filter_FORWARD_ZONES")].hook == ""
    drops = nb.forward_drop_chains(chains, {"ip shoal"})
    assert [(c.table, c.name) for c in drops] == [("inet firewalld", "filter_FORWARD")]


def test_parse_nft_rule() -> None:
    rule = nb.parse_nft_rule('iifname { "shoal0", "sh-1" } accept comment "shoal:/x" # handle 5')
    assert (rule.iif, rule.oif, rule.other, rule.verdict, rule.note) == (
        ["shoal0", "sh-1"], None, False, "accept", "shoal:/x")
    rule = nb.parse_nft_rule('oifname != "sh-*" counter packets 3 bytes 9 jump x')
    assert (rule.oif, rule.oif_not, rule.verdict, rule.target) == (["sh-*"], True, "jump", "x")
    assert nb.parse_nft_rule("ct state established,related accept").other
    assert nb.parse_nft_rule("reject with icmpx admin-prohibited").verdict == "drop"
    assert nb.parse_nft_rule('iifname @bridges accept').other


def test_parse_iptables() -> None:
    saved = nb.parse_iptables_save("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n*filter\n"
                                   ":FORWARD DROP [0:0]\n:SHOAL-ACCEPT - [0:0]\n"
                                   "-A FORWARD -j SHOAL-ACCEPT\n"
                                   "-A SHOAL-ACCEPT -i shoal0 -j ACCEPT\n"
                                   '-A FORWARD -o sh+ -m comment --comment "a b" -j ACCEPT\n'
                                   "-A FORWARD ! -i docker0 -o docker0 -m conntrack "
                                   "--ctstate DNAT -j ACCEPT\nCOMMIT\n")
    assert saved is not None and saved.policies == {"FORWARD": "DROP"}
    rules = [nb.parse_iptables_rule(r) for r in saved.rules["FORWARD"]]
    assert rules[0].verdict == "jump" and rules[0].target == "SHOAL-ACCEPT"
    assert (rules[1].oif, rules[1].note, rules[1].other) == (["sh*"], "a b", False)
    assert rules[2].iif_not and rules[2].other
    assert nb.parse_iptables_save("*nat\nCOMMIT\n") is None


def _chains(text: str) -> dict[str, list[nb.Rule]]:
    return {name: [nb.parse_nft_rule(r) for r in c.rules]
            for (_, name), c in nb.parse_nft(text).items()}


def test_verdict_walks_rules_before_the_policy() -> None:
    chains = _chains(FIREWALLD)
    assert nb.verdict(chains, "filter_FORWARD", "shoal0", "eth0", "drop") == "accept"
    assert nb.verdict(chains, "filter_FORWARD", "eth0", "sh-2", "drop") == "accept"  # sh-*
    assert nb.verdict(chains, "filter_FORWARD", "eth0", "shoal0", "drop") == "drop"
    assert nb.verdict(chains, "filter_FORWARD", "docker0", "eth0", "drop") == "drop"


def test_verdict_follows_jumps_and_returns() -> None:
    chains = {"FORWARD": [nb.parse_iptables_rule("-A FORWARD -j SHOAL-ACCEPT"),
                          nb.parse_iptables_rule("-A FORWARD -j DROP")],
              "SHOAL-ACCEPT": [nb.parse_iptables_rule("-A SHOAL-ACCEPT -o shoal0 -j ACCEPT"),
                               nb.parse_iptables_rule("-A SHOAL-ACCEPT -j RETURN")]}
    assert nb.verdict(chains, "FORWARD", "eth0", "shoal0", "accept") == "accept"
    assert nb.verdict(chains, "FORWARD", "shoal0", "eth0", "accept") == "drop"


def test_accept_rules_and_places() -> None:
    assert nb.nft_accept_rules(["sh-1", "shoal0"], "shoal:/r") == [
        'iifname { "sh-1", "shoal0" } accept comment "shoal:/r"',
        'oifname { "sh-1", "shoal0" } accept comment "shoal:/r"']
    place = nb.Place(kind="nft", table="inet firewalld", chain="filter_FORWARD")
    assert nb.place_from_key(place.key) == place
    assert nb.place_from_key("bogus") is None
    assert len(nb.comment("/" + "x" * 300).encode()) <= nb.NFT_COMMENT_MAX
