"""Driving CNI plugins as a CNI runtime (libcni) does, inside a test's host namespace: the
command and the attachment in CNI_* variables, the config on stdin, the result (or the
spec's error object) on stdout. `run_list` executes a network config list the way libcni
does: each plugin in turn with the previous one's result as prevResult on ADD, in reverse
order with the final ADD result on DEL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .harness import SRC, Host

REFERENCE_PLUGINS = "/usr/lib/cni"


class Outcome:
    def __init__(self, res: subprocess.CompletedProcess[str]) -> None:
        self.rc, self.stdout, self.stderr = res.returncode, res.stdout, res.stderr
        self.json: Any = json.loads(res.stdout) if res.stdout.strip() else None

    def __repr__(self) -> str:
        return f"<rc={self.rc} out={self.stdout.strip()} err={self.stderr.strip()[-400:]}>"


def namespace(tmp_path: Path, name: str) -> str:
    """A namespace as a CNI runtime makes one: a bind-mounted file (unmounted at cleanup)."""
    path = tmp_path / name
    path.touch()
    subprocess.run(["unshare", f"--net={path}", "true"], check=True)
    return str(path)


def remove_namespace(path: str) -> None:
    subprocess.run(["umount", path], check=True)
    os.unlink(path)


def plugin_dir(tmp_path: Path) -> str:
    """A CNI bin directory holding shoal-cni (running this checkout's shoal), before the
    reference plugins' directory on CNI_PATH."""
    bindir = tmp_path / "cni-bin"
    bindir.mkdir(exist_ok=True)
    exe = bindir / "shoal-cni"
    exe.write_text(f"#!/bin/sh\nPYTHONPATH={SRC} exec {sys.executable} -m shoal.plugins.cni"
                   ' "$@"\n')
    exe.chmod(0o755)
    return str(bindir)


def env_for(host: Host, command: str, cid: str = "", netns: str = "", ifname: str = "",
            args: str = "", path: str = "", **extra: str) -> dict[str, str]:
    env = {**host.env(), "CNI_COMMAND": command, "SHOAL_ROOT": host.root,
           "SHOAL_RUN_DIR": host.run_dir, **extra}
    for key, value in (("CNI_CONTAINERID", cid), ("CNI_NETNS", netns),
                       ("CNI_IFNAME", ifname), ("CNI_ARGS", args), ("CNI_PATH", path)):
        if value:
            env[key] = value
    return env


def run_plugin(host: Host, command: str, conf: dict[str, Any] | str | bytes,
               cid: str = "", netns: str = "", ifname: str = "eth0",
               exe: list[str] | None = None, timeout: float = 60, **env: str) -> Outcome:
    """One plugin execution in the host namespace (shoal-cni unless `exe` is given)."""
    data = conf if isinstance(conf, (str, bytes)) else json.dumps(conf)
    if isinstance(data, str):
        data = data.encode()
    cmd = ["nsenter", f"--net={host.ns}", *(exe or [sys.executable, "-m",
                                                    "shoal.plugins.cni"])]
    res = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout,
                         env=env_for(host, command, cid, netns, ifname, **env),
                         cwd=str(host.base))
    return Outcome(subprocess.CompletedProcess(res.args, res.returncode,
                                               res.stdout.decode(), res.stderr.decode()))


def concurrent_adds(host: Host, conf: dict[str, Any], attachments: list[tuple[str, str]],
                    timeout: float = 120) -> list[Outcome]:
    """ADDs of one config for several (container id, netns) at once, as a runtime starting
    containers in parallel does; every one's outcome, in order."""
    data = json.dumps(conf).encode()
    procs = [subprocess.Popen(["nsenter", f"--net={host.ns}", sys.executable, "-m",
                               "shoal.plugins.cni"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env_for(host, "ADD", cid, netns, "eth0"), cwd=str(host.base))
             for cid, netns in attachments]
    try:
        outs = [p.communicate(data, timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [Outcome(subprocess.CompletedProcess(p.args, p.returncode, out.decode(),
                                                err.decode()))
            for p, (out, err) in zip(procs, outs, strict=True)]


def shoal_cni(host: Host, command: str, conf: dict[str, Any] | str | bytes, cid: str = "",
              netns: str = "", ifname: str = "eth0", **env: str) -> Outcome:
    return run_plugin(host, command, conf, cid, netns, ifname, **env)


def run_list(host: Host, command: str, conflist: dict[str, Any], cid: str, netns: str,
             bindir: str, ifname: str = "eth0", runtime: dict[str, Any] | None = None,
             prev: dict[str, Any] | None = None) -> Outcome:
    """A network config list, as libcni runs it: ADD in order, each plugin getting the
    previous result; DEL in reverse order with the final ADD result (`prev`). The
    runtime's capability arguments (`runtime`) reach each plugin that declares them."""
    plugins = conflist["plugins"]
    order = plugins if command == "ADD" else list(reversed(plugins))
    last: Outcome | None = None
    result = None if command == "ADD" else prev
    for plugin in order:
        conf = {k: v for k, v in plugin.items() if k != "capabilities"}
        conf.update(cniVersion=conflist["cniVersion"], name=conflist["name"])
        caps = {k: v for k, v in (runtime or {}).items()
                if plugin.get("capabilities", {}).get(k)}
        if caps:
            conf["runtimeConfig"] = caps
        if result is not None:
            conf["prevResult"] = result
        exe = os.path.join(bindir, plugin["type"])
        if not os.path.exists(exe):
            exe = os.path.join(REFERENCE_PLUGINS, plugin["type"])
        last = run_plugin(host, command, conf, cid, netns, ifname, exe=[exe],
                          CNI_PATH=f"{bindir}:{REFERENCE_PLUGINS}")
        if last.rc != 0:
            return last
        if command == "ADD":
            result = last.json
    assert last is not None
    return last


def check_result_shape(res: dict[str, Any], version: str, netns: str, ifname: str) -> None:
    """An ADD result as the spec shapes it for `version`."""
    assert res["cniVersion"] == version
    interfaces = res["interfaces"]
    assert all(isinstance(i["name"], str) and i["name"] for i in interfaces)
    inside = [n for n, i in enumerate(interfaces) if i.get("sandbox")]
    assert len(inside) == 1 and interfaces[inside[0]]["sandbox"] == netns
    assert interfaces[inside[0]]["name"] == ifname
    for itf in interfaces:
        mac = itf.get("mac", "")
        assert len(mac.split(":")) == 6, itf
    assert len(res["ips"]) == 1
    ip = res["ips"][0]
    assert ip["interface"] == inside[0]
    assert "/" in ip["address"]
    if version.startswith("1."):
        assert "version" not in ip
    else:
        assert ip["version"] == "4"
    for route in res.get("routes", []):
        assert "/" in route["dst"]
    assert isinstance(res.get("dns", {}), dict)
