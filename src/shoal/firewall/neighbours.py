"""Shoal's accepts in other firewalls' forward chains whose policy is drop (see
`shoal.neighbours` for why and in which form).

`Neighbours.sync(bridges, mode, installed)` finds those chains, puts shoal's accepts into each
(or leaves them alone with mode 'leave'), removes them where they are no longer wanted (the
chain is gone or accepts now, the last bridge went, mode 'leave', or the table became shoal's
own after a change of backend) and returns where they are now. It runs at every command that
changes shoal's firewall, so a firewall started after shoal (Docker) is handled at the next
one; its cost there is one `nft list chains` in-process (about 0.1 ms), plus a listing of each
such chain, plus one `iptables-legacy-save` where iptables-legacy has a filter table in this
namespace. Nothing is written unless something differs."""

from __future__ import annotations

import os

from .. import systools
from ..errors import FirewallError, ShoalError
from ..neighbours import (
    ACCEPT_CHAIN,
    IptChains,
    Place,
    Rule,
    forward_drop_chains,
    nft_accept_rules,
    parse_iptables_rule,
    parse_iptables_save,
    parse_nft,
    parse_nft_rule,
    place_from_key,
)
from .nftables_rules import TABLE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .nftables import Nftables

LEGACY_NAMES = "/proc/net/ip_tables_names"  # the legacy tables of this network namespace


def iptables_variant() -> str | None:
    """'iptables-nft' or 'iptables-legacy': what `iptables-restore` runs; None if absent."""
    path = systools.find("iptables-restore")
    if path is None:
        return None
    return "iptables-legacy" if "legacy" in os.path.realpath(path) else "iptables-nft"


def legacy_filter_text() -> str | None:
    """iptables-legacy-save of the filter table, if iptables-legacy has one here."""
    try:
        with open(LEGACY_NAMES) as f:
            if "filter" not in f.read().split():
                return None
    except OSError:
        return None
    path = systools.find("iptables-legacy-save")  # never through the caller's PATH
    if path is None:
        return None
    res = systools.run(path, ["-t", "filter"])
    return res.stdout if res.returncode == 0 else None


def _restore(kind: str, script: str) -> None:
    tool = f"{kind}-restore"
    path = systools.find(tool)
    if path is None:
        raise FirewallError(f"{tool} is missing: apt-get install iptables")
    res = systools.run(path, ["--noflush"], script)
    if res.returncode != 0:
        first = (res.stderr.strip().splitlines() or ["failed"])[0]
        raise FirewallError(f"{tool} refused shoal's accepts: {first}")


class Neighbours:
    def __init__(self, nft: Nftables | None, own: str, note: str) -> None:
        """nft: a libnftables handle to list with (None where nft is missing); own: the
        backend's own home ('nftables', 'iptables-nft' or 'iptables-legacy'); note: the
        comment of shoal's nft rules."""
        self.nft = nft
        self.own = own
        self.note = note
        self._legacy: str | None = None

    # -- finding ------------------------------------------------------------------------------

    def drop_places(self) -> list[Place]:
        """Other firewalls' forward chains whose policy is drop."""
        out = []
        if self.nft is not None:
            text = self.nft.run("list chains\n", "list the chains")
            # (parsed only when some chain drops: most hosts have none)
            chains = parse_nft(text) if "hook forward" in text and "policy drop" in text else {}
            for c in forward_drop_chains(chains, {f"ip {TABLE}"}):
                if c.table == "ip filter" and systools.find("iptables-nft-restore"):
                    if self.own != "iptables-nft":
                        out.append(Place(kind="iptables-nft", table=c.table, chain=c.name))
                else:
                    out.append(Place(kind="nft", table=c.table, chain=c.name))
        if self.own != "iptables-legacy":
            self._legacy = legacy_filter_text()
            saved = parse_iptables_save(self._legacy or "")
            if saved is not None and saved.policies.get("FORWARD") == "DROP":
                out.append(Place(kind="iptables-legacy", table="ip filter", chain="FORWARD"))
        return out

    # -- syncing ------------------------------------------------------------------------------

    def sync(self, bridges: list[str], mode: str, installed: list[str]) -> list[str]:
        wanted = self.drop_places() if mode == "accept" and bridges else []
        keys = [p.key for p in wanted]
        for key in installed:
            place = place_from_key(key)
            if place is not None and key not in keys:
                self.remove(place)
        for place in wanted:
            self.ensure(place, bridges)
        return keys

    def ensure(self, place: Place, bridges: list[str]) -> None:
        if place.kind == "nft":
            self._ensure_nft(place, bridges)
        else:
            self._ensure_iptables(place, bridges)

    def remove(self, place: Place) -> None:
        if place.kind == "nft":
            handles = [h for h, _ in self._nft_ours(place)]
            if handles:
                self._nft_write(place, handles, [])
            return
        jump, chain = self._iptables_state(place)
        lines = []
        if jump:
            lines.append(f"-D {place.chain} -j {ACCEPT_CHAIN}")
        if chain is not None:
            lines += [f"-F {ACCEPT_CHAIN}", f"-X {ACCEPT_CHAIN}"]
        if lines:
            _restore(place.kind, "\n".join(["*filter", *lines, "COMMIT"]) + "\n")

    # nft tables of others: two commented rules at the top of the chain

    def _nft_ours(self, place: Place) -> list[tuple[int, str]]:
        """(handle, rule) of shoal's rules in that chain."""
        assert self.nft is not None
        try:
            text = self.nft.run_with_handles(f"list chain {place.table} {place.chain}\n",
                                             "list a chain")
        except ShoalError:
            return []
        chain = parse_nft(text).get((place.table, place.chain))
        out = []
        for line in chain.rules if chain else []:
            body, _, handle = line.rpartition("# handle ")
            if f'comment "{self.note}"' in body and handle.strip().isdigit():
                out.append((int(handle), body.strip()))
        return out

    def _nft_write(self, place: Place, delete: list[int], insert: list[str]) -> None:
        assert self.nft is not None
        where = f"{place.table} {place.chain}"
        lines = [f"delete rule {where} handle {h}" for h in delete]
        lines += [f"insert rule {where} {rule}" for rule in reversed(insert)]
        self.nft.run("\n".join(lines) + "\n", f"put shoal's accepts into {where}")

    def _ensure_nft(self, place: Place, bridges: list[str]) -> None:
        want = nft_accept_rules(bridges, self.note)
        ours = self._nft_ours(place)
        have = sorted(_nft_shape(rule) for _, rule in ours)
        if have == sorted(_nft_shape(rule) for rule in want):
            return
        self._nft_write(place, [h for h, _ in ours], want)

    # iptables (nft or legacy): a jump to SHOAL-ACCEPT at the top of FORWARD

    def _iptables_state(self, place: Place) -> tuple[bool, set[tuple[str, str]] | None]:
        """(whether FORWARD jumps to SHOAL-ACCEPT, what SHOAL-ACCEPT accepts or None if it
        does not exist)."""
        if place.kind == "iptables-legacy":
            saved = parse_iptables_save(self._legacy if self._legacy is not None
                                        else legacy_filter_text() or "")
            return _ipt_state(saved, place.chain)
        if self.nft is None:
            return False, None
        chains = {}
        for name in (place.chain, ACCEPT_CHAIN):
            try:
                chains.update(parse_nft(self.nft.run(f"list chain {place.table} {name}\n",
                                                      "list a chain")))
            except ShoalError:
                pass
        top = chains.get((place.table, place.chain))
        jump = top is not None and any(
            parse_nft_rule(r).target == ACCEPT_CHAIN for r in top.rules)
        mine = chains.get((place.table, ACCEPT_CHAIN))
        if mine is None:
            return jump, None
        return jump, {shape for r in mine.rules if (shape := _rule_shape(parse_nft_rule(r)))}

    def _ensure_iptables(self, place: Place, bridges: list[str]) -> None:
        jump, accepted = self._iptables_state(place)
        want = {(d, b) for b in bridges for d in ("i", "o")}
        if jump and accepted == want:
            return
        lines = ["*filter", f":{ACCEPT_CHAIN} - [0:0]"]  # (declaring it flushes it)
        for b in sorted(bridges):
            lines += [f"-A {ACCEPT_CHAIN} -i {b} -j ACCEPT", f"-A {ACCEPT_CHAIN} -o {b} -j ACCEPT"]
        if not jump:
            lines.append(f"-I {place.chain} 1 -j {ACCEPT_CHAIN}")
        _restore(place.kind, "\n".join([*lines, "COMMIT"]) + "\n")


def _rule_shape(rule: Rule) -> tuple[str, str] | None:
    if rule.other or rule.verdict != "accept":
        return None
    if rule.iif and len(rule.iif) == 1 and rule.oif is None and not rule.iif_not:
        return ("i", rule.iif[0])
    if rule.oif and len(rule.oif) == 1 and rule.iif is None and not rule.oif_not:
        return ("o", rule.oif[0])
    return None


def _nft_shape(line: str) -> tuple[str, tuple[str, ...]]:
    rule = parse_nft_rule(line)
    if rule.iif is not None:
        return ("i", tuple(sorted(rule.iif)))
    return ("o", tuple(sorted(rule.oif or [])))


def _ipt_state(saved: IptChains | None, chain: str) -> tuple[bool, set[tuple[str, str]] | None]:
    if saved is None:
        return False, None
    jump = any(parse_iptables_rule(r).target == ACCEPT_CHAIN for r in saved.rules.get(chain, []))
    if ACCEPT_CHAIN not in saved.rules:
        return jump, None
    return jump, {shape for r in saved.rules[ACCEPT_CHAIN]
                  if (shape := _rule_shape(parse_iptables_rule(r)))}
