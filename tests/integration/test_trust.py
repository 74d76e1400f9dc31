"""shoal trusts nothing it did not make: the tools it runs, its directories and what is in
them, another shoal root's objects, and the input it is given (issue 7, items 1, 2, 5, 11,
13, 14)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .harness import Host

FAKE_TOOL = "#!/bin/sh\necho pwned >> {marker}\nexit 0\n"


def shoal_env(host: Host, root: str | None = None, run_dir: str | None = None,
              env: dict[str, str] | None = None, cwd: str | None = None,
              *args: str) -> subprocess.CompletedProcess[str]:
    cmd = ["nsenter", f"--net={host.ns}", sys.executable, "-m", "shoal",
           "--root", host.root if root is None else root,
           "--run-dir", host.run_dir if run_dir is None else run_dir, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                          env=env or host.env(), cwd=cwd or str(host.base))


def one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    lines = res.stderr.strip().splitlines()
    assert res.returncode != 0, res
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    return lines[0]


# -- item 1: system tools are found in a fixed path, run from "/" with a clean environment --


def _plant_tools(base: Path, names: list[str]) -> tuple[Path, str]:
    fake = base / "fakebin"
    fake.mkdir()
    marker = str(base / "pwned")
    for name in names:
        tool = fake / name
        tool.write_text(FAKE_TOOL.format(marker=marker))
        tool.chmod(0o755)
    return fake, marker


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_firewall_tools_ignore_the_callers_path(host: Host, backend: str) -> None:
    tools = ["iptables-restore", "iptables-save", "ebtables-restore", "ebtables-save", "nft"]
    fake, marker = _plant_tools(host.base, tools)
    # the fake tools come first in PATH, and again through an empty entry (the cwd)
    env = {**host.env(), "PATH": f"{fake}::{os.environ['PATH']}",
           "SHOAL_FIREWALL_BACKEND": backend,
           # no libnftables: the nftables backend has to run the nft command
           "SHOAL_LIBNFTABLES": "/nonexistent/libnftables.so",
           "LD_PRELOAD": "/nonexistent/preload.so"}
    res = shoal_env(host, None, None, env, str(fake), "network", "create", "lab")
    assert res.returncode == 0, res.stderr
    assert not os.path.exists(marker), "a tool from the caller's PATH ran as root"
    if backend == "iptables":
        rules = host.in_ns(host.ns, "iptables", "-t", "nat", "-S", "SHOAL", check=True).stdout
        assert "-N SHOAL" in rules
    else:
        assert "table ip shoal" in host.in_ns(host.ns, "nft", "list", "tables",
                                              check=True).stdout
