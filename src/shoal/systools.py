"""Running the system's own tools (nft, iptables-restore, ebtables-save...) as root, immune to
the caller: a tool is looked up only in a fixed search path of root-owned directories (never
the caller's PATH, nor the current directory), and runs from "/" with a minimal environment
(no LD_*, no locale or configuration variables of the caller's).

Containers' commands are not run through here: they are the user's commands, found through
the caller's PATH as they would be in the foreground."""

from __future__ import annotations

import os
import subprocess

SEARCH_PATH = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")
ENV = {"PATH": ":".join(SEARCH_PATH), "LC_ALL": "C"}


def find(name: str) -> str | None:
    """The absolute path of a system tool in the fixed search path, or None."""
    for directory in SEARCH_PATH:
        path = os.path.join(directory, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def run(path: str, args: list[str], stdin: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    """Run a tool found by `find`, from "/", with the minimal environment; its output is
    captured as text."""
    return subprocess.run([path, *args], input=stdin, capture_output=True, text=True,
                          env=dict(ENV), cwd="/", close_fds=True)
