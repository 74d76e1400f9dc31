"""Other firewalls' forward chains, read and judged (pure: text in, answers out).

Docker, ufw and firewalld leave a forward chain whose policy is drop: iptables' `FORWARD`
(through iptables-nft, the nft table `ip filter`, or iptables-legacy) or an nft table of their
own (`inet firewalld`). An accept in shoal's own table cannot override a drop in another
one: a packet must be accepted by every base chain of the hook. So shoal puts narrowly
scoped accepts for its own bridges into those chains, in a form it can find again:

- in an nft table: two rules `iifname/oifname { shoal's bridges } accept` carrying the
  comment `shoal:<root>`;
- in iptables' FORWARD: one jump to a chain of shoal's own, `SHOAL-ACCEPT`, which accepts
  what enters or leaves shoal's bridges.

They accept everything to and from shoal's bridges: what shoal's own chains refuse (other
networks, internal networks, addresses nobody published) is still dropped there, since a
drop anywhere is final. This module parses the listings (`nft list chains/chain/ruleset`,
`iptables-save`), renders those rules, and evaluates whether a chain lets a packet through
(for `shoal doctor`)."""

from __future__ import annotations

from .records import Record

ACCEPT_CHAIN = "SHOAL-ACCEPT"
MODES = ("accept", "leave")
KINDS = ("nft", "iptables-nft", "iptables-legacy")
NFT_COMMENT_MAX = 127  # nft keeps at most 128 bytes of a comment


class Place(Record):
    """A foreign forward chain: kind ('nft', 'iptables-nft', 'iptables-legacy'), its table
    ('inet firewalld', 'ip filter') and its name."""

    kind: str
    table: str
    chain: str

    @property
    def key(self) -> str:
        return f"{self.kind} {self.table} {self.chain}"

    @property
    def label(self) -> str:
        if self.kind == "iptables-legacy":
            return f"iptables-legacy's {self.table} {self.chain}"
        return f"{self.table} {self.chain}"


def place_from_key(key: str) -> Place | None:
    parts = key.split()
    if len(parts) != 4 or parts[0] not in KINDS:
        return None
    return Place(kind=parts[0], table=f"{parts[1]} {parts[2]}", chain=parts[3])


def comment(root: str) -> str:
    """The comment of shoal's rules in nft tables of others: names the root that made them."""
    text = f"shoal:{root}"
    return text if len(text.encode()) <= NFT_COMMENT_MAX else text[:NFT_COMMENT_MAX]


# -- nft listings -------------------------------------------------------------------------------


class NftChain(Record):
    table: str  # 'family name'
    name: str
    hook: str = ""
    policy: str = ""
    rules: list[str] = []


def _handle(line: str) -> tuple[str, int | None]:
    """A listing line without its '# handle N' (nft -a), and N."""
    text, sep, tail = line.rpartition("# handle ")
    if sep and tail.strip().isdigit():
        return text.rstrip(), int(tail)
    return line, None


def parse_nft(text: str) -> dict[tuple[str, str], NftChain]:
    """Every chain of an nft listing (`list ruleset`, `list chains`, `list chain ...`):
    its hook, policy and rule lines (with '# handle N' kept when listed with -a)."""
    out: dict[tuple[str, str], NftChain] = {}
    depth = 0
    table = ""
    chain: NftChain | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        body, _ = _handle(line)
        opens, closes = body.count("{"), body.count("}")
        if depth == 0 and body.startswith("table ") and body.endswith("{"):
            parts = body.split()
            table = f"{parts[1]} {parts[2]}" if len(parts) >= 4 else ""
        elif depth == 1 and body.startswith("chain ") and body.endswith("{"):
            name = body.split()[1]
            chain = out[(table, name)] = NftChain(table=table, name=name, rules=[])
        elif depth == 2 and chain is not None and body != "}":
            if body.startswith("type ") and " hook " in body:
                words = body.replace(";", " ; ").split()
                chain.hook = words[words.index("hook") + 1]
                if "policy" in words:
                    chain.policy = words[words.index("policy") + 1]
            else:
                chain.rules.append(line)
        depth += opens - closes
        if depth <= 1:
            chain = None
        if depth <= 0:
            depth, table = 0, ""
    return out


def forward_drop_chains(chains: dict[tuple[str, str], NftChain], own_tables: set[str]
                        ) -> list[NftChain]:
    """Other tables' IPv4 forward base chains whose policy is drop."""
    return [c for c in chains.values()
            if c.hook == "forward" and c.policy == "drop" and c.table not in own_tables
            and c.table.split()[0] in ("ip", "inet")]


def nft_accept_rules(bridges: list[str], note: str) -> list[str]:
    """The two rules shoal inserts at the top of another table's forward chain."""
    names = ", ".join(f'"{b}"' for b in sorted(bridges))
    return [f'iifname {{ {names} }} accept comment "{note}"',
            f'oifname {{ {names} }} accept comment "{note}"']


def _tokens(text: str) -> list[str]:
    """Words of a rule; a quoted string or a { ... } set is one word."""
    out, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch == '"':
            j = text.find('"', i + 1)
            j = n if j < 0 else j + 1
            out.append(text[i:j])
            i = j
        elif ch == "{":
            j = text.find("}", i)
            j = n if j < 0 else j + 1
            out.append(text[i:j])
            i = j
        else:
            j = i
            while j < n and not text[j].isspace():
                j += 1
            out.append(text[i:j])
            i = j
    return out


def _names(value: str) -> list[str] | None:
    """Interface names of a match value: "x", x, { "x", "y" }; None for @named sets."""
    if value.startswith("@"):
        return None
    if value.startswith("{"):
        return [v.strip().strip('"') for v in value.strip("{} ").split(",") if v.strip()]
    return [value.strip('"')]


class Rule(Record):
    """What shoal understands of a rule: interface matches, whether anything else is
    matched, and the verdict."""

    iif: list[str] | None = None
    iif_not: bool = False
    oif: list[str] | None = None
    oif_not: bool = False
    other: bool = False  # matches something else (ct state, addresses, ...): may not match
    verdict: str = ""  # accept, drop, jump, goto, return, or '' (no verdict)
    target: str = ""
    note: str = ""  # its comment


NFT_IGNORED = {"counter", "log"}


def parse_nft_rule(line: str) -> Rule:
    body, _ = _handle(line)
    words = _tokens(body)
    rule = Rule()
    i = 0
    while i < len(words):
        w = words[i]
        if w in ("iifname", "oifname", "meta") and i + 1 < len(words):
            if w == "meta":  # meta iifname "x"
                i += 1
                w = words[i]
                if w not in ("iifname", "oifname"):
                    rule.other = True
                    i += 2
                    continue
            negated = words[i + 1] == "!="
            j = i + 2 if negated else i + 1
            if j >= len(words):
                rule.other = True
                break
            names = _names(words[j])
            if names is None:
                rule.other = True
            elif w == "iifname":
                rule.iif, rule.iif_not = names, negated
            else:
                rule.oif, rule.oif_not = names, negated
            i = j + 1
        elif w == "counter":
            i += 1
            while i + 1 < len(words) and words[i] in ("packets", "bytes"):
                i += 2
        elif w == "comment" and i + 1 < len(words):
            rule.note = words[i + 1].strip('"')
            i += 2
        elif w in ("accept", "drop", "return", "continue"):
            rule.verdict = w
            i += 1
        elif w == "reject":
            rule.verdict = "drop"
            break
        elif w in ("jump", "goto") and i + 1 < len(words):
            rule.verdict, rule.target = w, words[i + 1]
            i += 2
        elif w == "log":
            i += 1
        else:
            rule.other = True
            i += 1
    return rule


# -- iptables-save --------------------------------------------------------------------------------


class IptChains(Record):
    """One table of iptables-save: the built-in chains' policies and every chain's rules."""

    policies: dict[str, str] = {}
    rules: dict[str, list[str]] = {}


def parse_iptables_save(text: str, table: str = "filter") -> IptChains | None:
    """The chains of one table in iptables-save output; None if the table is not there."""
    current = ""
    found = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            current = line[1:]
            if current == table:
                found = IptChains(policies={}, rules={})
        elif found is None or current != table:
            continue
        elif line.startswith(":"):
            parts = line[1:].split()
            found.rules.setdefault(parts[0], [])
            if len(parts) > 1 and parts[1] != "-":
                found.policies[parts[0]] = parts[1]
        elif line.startswith("-A "):
            chain = line.split()[1]
            found.rules.setdefault(chain, []).append(line)
    return found


def _split_quoted(text: str) -> list[str]:
    out = []
    for word in _tokens(text):
        out.append(word[1:-1] if len(word) >= 2 and word[0] == word[-1] == '"' else word)
    return out


def parse_iptables_rule(line: str) -> Rule:
    words = _split_quoted(line)
    rule = Rule()
    i = 2 if words[:1] == ["-A"] else 0
    negate = False
    while i < len(words):
        w = words[i]
        if w == "!":
            negate = True
            i += 1
            continue
        if w in ("-i", "--in-interface", "-o", "--out-interface") and i + 1 < len(words):
            name = words[i + 1]
            name = name[:-1] + "*" if name.endswith("+") else name
            if w.startswith("-i") or w == "--in-interface":
                rule.iif, rule.iif_not = [name], negate
            else:
                rule.oif, rule.oif_not = [name], negate
            i += 2
        elif w == "-m" and i + 1 < len(words) and words[i + 1] == "comment":
            i += 2
        elif w == "--comment" and i + 1 < len(words):
            rule.note = words[i + 1]
            i += 2
        elif w in ("-j", "-g") and i + 1 < len(words):
            target = words[i + 1]
            verdicts = {"ACCEPT": "accept", "DROP": "drop", "REJECT": "drop",
                        "RETURN": "return"}
            if target in verdicts:
                rule.verdict = verdicts[target]
            elif target in ("LOG", "NFLOG", "MARK", "CONNMARK", "NOTRACK", "TRACE"):
                rule.verdict = ""
            else:
                rule.verdict, rule.target = ("jump" if w == "-j" else "goto"), target
            i += 2
            if rule.verdict in ("drop",) and target == "REJECT":
                break
        elif w in ("-c",):
            i += 3
        else:
            rule.other = True
            i += 1
        negate = False
    return rule


# -- evaluation ---------------------------------------------------------------------------------


def _name_matches(pattern: str, name: str) -> bool:
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return pattern == name


def _if_matches(names: list[str] | None, negated: bool, name: str) -> bool:
    if names is None:
        return True
    hit = any(_name_matches(p, name) for p in names)
    return not hit if negated else hit


def verdict(chains: dict[str, list[Rule]], chain: str, iif: str, oif: str, policy: str
            ) -> str:
    """What a base chain does with a new forwarded packet from iif to oif: 'accept' or
    'drop' (its policy when no rule decides). A rule that also matches something shoal
    cannot judge (addresses, connection states) is taken not to match, so an accept counts
    only when it holds for every such packet."""
    result = _walk(chains, chain, iif, oif, 0)
    return policy if result == "return" else result


def _walk(chains: dict[str, list[Rule]], chain: str, iif: str, oif: str, depth: int) -> str:
    if depth > 16:
        return "return"
    for rule in chains.get(chain, []):
        if rule.other or not _if_matches(rule.iif, rule.iif_not, iif) or \
                not _if_matches(rule.oif, rule.oif_not, oif):
            continue
        if rule.verdict in ("accept", "drop", "return"):
            return rule.verdict
        if rule.verdict in ("jump", "goto"):
            result = _walk(chains, rule.target, iif, oif, depth + 1)
            if result != "return" or rule.verdict == "goto":
                return result
    return "return"
