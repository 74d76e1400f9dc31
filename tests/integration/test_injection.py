"""Names and options that reach a subprocess, a ruleset or a path cannot inject anything."""

from __future__ import annotations

import os

import pytest

from .harness import Host

NASTY = ["; rm -rf /tmp/shoal-pwned", "a'b", 'a"b', "a\nb", "../etc", "x/../../y", "$(id)",
         "`id`", "a b", "-rf", "sh-\"; flush ruleset; \""]


@pytest.mark.parametrize("value", NASTY)
def test_nasty_names_are_refused_or_kept_as_data(host: Host, value: str) -> None:
    host.shoal("network", "ls")
    ruleset = host.in_ns(host.ns, "nft", "list", "ruleset", check=True).stdout
    for args in (["network", "create", value], ["network", "create", "-o",
                                                  f"shoal.bridge.name={value}", "n"],
                 ["run", "--name", value, "--", "true"], ["run", "--hostname", value, "--",
                                                           "true"],
                 ["run", "-p", f"{value}:80:80", "--", "true"],
                 ["run", "--network-alias", value, "--network", "bridge", "--", "true"]):
        res = host.shoal(*args, check=False)
        assert res.returncode != 0 and len(res.stderr.strip().splitlines()) == 1, (args, res)
    # labels and environment values are data: stored and passed on verbatim
    host.shoal("network", "create", "--label", f"k={value}", "labelled")
    assert host.shoal_json("network", "inspect", "labelled")[0]["Labels"] == {"k": value}
    out = host.shoal("run", "--rm", "-e", f"V={value}", "--", "sh", "-c", 'printf %s "$V"')
    assert out.stdout == value
    assert not os.path.exists("/tmp/shoal-pwned")
    host.shoal("network", "rm", "labelled")
    assert host.in_ns(host.ns, "nft", "list", "ruleset", check=True).stdout == ruleset
