"""The iptables backend: shoal's own chains in the filter and nat tables, written with one
`iptables-restore --noflush` per change, hooked into the built-in chains by one jump each.
A change of published ports only deletes and appends their DNAT rules, and one of cluster
hosts only their RETURN rules in SHOAL-VXLAN; any other change rewrites shoal's chains
(declaring a chain in iptables-restore flushes it). SHOAL-USER is created once and never
flushed. SHOAL-VXLAN exists only while the host is in a cluster: the rewrite that leaves a
cluster deletes it."""

from __future__ import annotations

from .. import systools
from ..errors import FirewallError
from . import Backend
from .iptables_rules import (
    EBT_CHAIN,
    EBT_JUMP,
    IPT_CHAINS,
    IPT_JUMPS,
    IPT_USER,
    VXLAN_CHAIN,
    ebtables_restore,
    iptables_hosts_delta,
    iptables_port_delta,
    iptables_restore,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..rules import Elements


def _run(cmd: list[str], what: str, stdin: str | None = None) -> str:
    path = systools.find(cmd[0])  # in /usr/sbin and the like, never the caller's PATH
    if path is None:
        raise FirewallError(
            f"the iptables backend needs {cmd[0]}: apt-get install iptables "
            "(or choose --firewall-backend nftables)"
        )
    res = systools.run(path, cmd[1:], stdin)
    if res.returncode != 0:
        raise FirewallError(f"{cmd[0]} refused to {what}: {res.stderr.strip().splitlines()[0]}")
    return res.stdout


class Iptables(Backend):
    name = "iptables"

    def saved(self, tool: str = "iptables-save") -> dict[str, list[str]]:
        """The tables as the save tool prints them: table -> its lines."""
        out: dict[str, list[str]] = {}
        table = ""
        for line in _run([tool], "list the rules").splitlines():
            if line.startswith("*"):
                table = line[1:]
                out[table] = []
            elif table:
                out[table].append(line)
        return out

    def apply_full(self, elements: Elements) -> None:
        saved = self.saved()
        script = iptables_restore(elements)
        head: dict[str, list[str]] = {"nat": [], "filter": []}
        if f":{IPT_USER} " not in "\n".join(saved.get("filter", [])) + " ":
            head["filter"].append(f":{IPT_USER} - [0:0]")
        tail: dict[str, list[str]] = {"nat": [], "filter": []}
        if not elements.guards and any(line.startswith(f":{VXLAN_CHAIN} ")
                                       for line in saved.get("filter", [])):
            # left the cluster: SHOAL-INPUT (declared above, so flushed) no longer jumps to it
            tail["filter"] += [f"-F {VXLAN_CHAIN}", f"-X {VXLAN_CHAIN}"]
        for table, jumps in IPT_JUMPS.items():
            lines = saved.get(table, [])
            for chain, rule in jumps:
                if f"-A {chain} {rule}" not in lines:
                    tail[table].append(f"-I {chain} 1 {rule}")
        parts = []
        for block in script.split("COMMIT\n"):
            if not block.strip():
                continue
            table = block.split("\n", 1)[0][1:]
            lines = block.rstrip("\n").split("\n")
            parts.append("\n".join(lines[:1] + head[table] + lines[1:] + tail[table]) + "\n")
        _run(["iptables-restore", "--noflush"], "apply shoal's rules",
             "COMMIT\n".join(parts) + "COMMIT\n")
        # icc=false, also where bridge netfilter is off: ebtables on the bridge ports
        script = ebtables_restore(elements)
        chain, rule = EBT_JUMP
        if f"-A {chain} {rule}" not in self.saved("ebtables-save").get("filter", []):
            script = script.replace("COMMIT", f"-I {chain} 1 {rule}\nCOMMIT")
        _run(["ebtables-restore", "--noflush"], "apply shoal's bridge rules", script)

    def apply_delta(self, added: Elements, removed: Elements,
                    present: Elements | None = None) -> bool:
        if not added and not removed:
            return True  # nothing of shoal's changes (e.g. a container without ports)
        script = iptables_port_delta(added, removed)
        what = "update shoal's port rules"
        if script is None:
            script = iptables_hosts_delta(added, removed)
            what = "update shoal's VXLAN guard"
        if script is None:
            return False  # networks or icc ports changed: rewrite the chains from the state
        _run(["iptables-restore", "--noflush"], what, script)
        return True

    def remove(self) -> None:
        # (FORWARD's policy is the user's: shoal never changes it, so there is nothing to put
        # back)
        saved = self.saved()
        out = []
        for table in ("nat", "filter"):
            lines = saved.get(table, [])
            mine = [*IPT_CHAINS[table], *([IPT_USER, VXLAN_CHAIN] if table == "filter" else [])]
            present = [c for c in mine if any(line.startswith(f":{c} ") for line in lines)]
            if not present:
                continue
            out.append(f"*{table}")
            for chain, rule in IPT_JUMPS[table]:
                if f"-A {chain} {rule}" in lines:
                    out.append(f"-D {chain} {rule}")
            out += [f"-F {c}" for c in present] + [f"-X {c}" for c in present]
            out.append("COMMIT")
        if out:
            _run(["iptables-restore", "--noflush"], "remove shoal's rules", "\n".join(out) + "\n")
        ebt = self.saved("ebtables-save").get("filter", [])
        if any(line.startswith(f":{EBT_CHAIN} ") for line in ebt):
            chain, rule = EBT_JUMP
            drop = [f"-D {chain} {rule}"] if f"-A {chain} {rule}" in ebt else []
            _run(["ebtables-restore", "--noflush"], "remove shoal's bridge rules",
                 "\n".join(["*filter", *drop, f"-F {EBT_CHAIN}", f"-X {EBT_CHAIN}", "COMMIT"])
                 + "\n")

    def show(self) -> str:
        saved = self.saved()
        out = []
        for table in ("nat", "filter"):
            mine = (*IPT_CHAINS[table], IPT_USER, VXLAN_CHAIN)
            lines = [line for line in saved.get(table, [])
                     if any(f" {c} " in f" {line} " or line.startswith(f":{c} ") for c in mine)]
            if lines:
                out.append(f"*{table}")
                out += lines
        ebt = [line for line in self.saved("ebtables-save").get("filter", [])
               if EBT_CHAIN in line]
        if ebt:
            out += ["*filter (ebtables)", *ebt]
        return "\n".join(out) + ("\n" if out else "")
