"""Nothing of the caller's directory or environment runs as root in what shoal starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .harness import SRC, Host

PLANT = "open({marker!r}, 'w').write('pwned')\n"


def test_supervisor_ignores_the_callers_directory_and_python_variables(host: Host) -> None:
    attack = Path(host.base) / "attack"
    (attack / "shoal" / "runtime").mkdir(parents=True)
    marker = str(host.base / "pwned")
    for rel in ("shoal/__init__.py", "shoal/runtime/__init__.py",
                "shoal/runtime/supervisor.py", "sitecustomize.py", "usercustomize.py"):
        (attack / rel).write_text(PLANT.format(marker=marker))
    env = {**host.env(), "PYTHONPATH": str(attack),
           "PYTHONSTARTUP": str(attack / "shoal" / "__init__.py")}
    # the CLI itself as an installed console script runs it: shoal from SRC, whatever the cwd
    boot = f"import sys; sys.path.insert(0, {SRC!r}); from shoal.cli.main import main; " \
           "sys.exit(main())"
    res = subprocess.run(
        ["nsenter", f"--net={host.ns}", sys.executable, "-I", "-c", boot, "--root", host.root,
         "--run-dir", host.run_dir, "run", "-d", "--name", "w", "--", "sleep", "30"],
        cwd=attack, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert host.shoal_json("inspect", "w")[0]["State"]["Running"] is True
    assert not os.path.exists(marker)
    # the supervisor runs from "/" with shoal's own variables only
    sup = host.shoal_json("inspect", "w")[0]
    pid = _parent_of(sup["State"]["Pid"])
    assert os.readlink(f"/proc/{pid}/cwd") == "/"
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert not any(e.startswith(b"PYTHON") for e in environ)
    host.shoal("rm", "-f", "w")


def _parent_of(pid: int) -> int:
    """The supervisor is the parent of the container's main process."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[1])
