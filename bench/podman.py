"""A throwaway Podman for bench/plugins.py and the CNI tests (which load this file by path, as
they load bench/dockerd.py):
Debian's Podman 4.3 on its CNI backend, run inside a test's host network namespace and a
private mount namespace of its own, with every path it writes under one directory.

- The mount namespace (kept by a bind mount of its file, as `ip netns` keeps a network
  namespace) has a tmpfs on /run, so the namespaces Podman makes for containers
  (/run/netns/cni-*), its run root, locks and conmon's files are its own, and a tmpfs on
  /var/lib/cni, where libcni caches results and host-local keeps its leases.
- containers.conf (named by CONTAINERS_CONF) selects the CNI backend, the plugin directories
  and the network config directory; --root is temporary, --runroot and --tmpdir are on that
  /run; storage is vfs, so nothing is mounted on the machine.
- Every container and conmon goes into a cgroup parent of this module's (cgroupfs), so that
  teardown finds and kills them all by PID, and removes the cgroups.

The image is a busybox-static rootfs imported with `podman import`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

CGROUP = "/sys/fs/cgroup"
BUSYBOX = "/bin/busybox"
IMAGE = "bb:latest"
APPLETS = ("sh", "ping", "nc", "sleep", "echo", "cat", "ip", "true", "httpd", "wget",
           "hostname", "ls")
# what Podman needs on this machine: its default nofile/nproc exceed the hard limits
LIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
REFERENCE_PLUGINS = "/usr/lib/cni"
# on the private /run (Podman refuses a runroot longer than 50 characters)
RUNROOT, TMPDIR = "/run/podtest/runroot", "/run/podtest/tmp"


def available() -> str | None:
    """Why Podman cannot run here (None when it can)."""
    import shutil

    for tool in ("podman", "runc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (run: make deps)"
    if not os.access(BUSYBOX, os.X_OK):
        return "busybox-static is not installed (run: make deps)"
    if not os.path.isdir(os.path.join(CGROUP, "pids")):
        return "no cgroup v1 pids hierarchy for Podman's cgroupfs manager"
    return None


def shoal_cni_dir(python: str = sys.executable) -> str:
    """The directory holding the `shoal-cni` executable the package installed (beside the
    venv's Python)."""
    bindir = os.path.dirname(python)
    if not os.access(os.path.join(bindir, "shoal-cni"), os.X_OK):
        raise RuntimeError(f"no shoal-cni in {bindir}: the package installs it (run: make deps)")
    return bindir


class Podman:
    def __init__(self, base: Path, netns: str, env: dict[str, str],
                 plugin_dirs: list[str] | None = None) -> None:
        self.dir = base / "podman"
        self.netns = netns
        self.env = dict(env)
        self.plugin_dirs = plugin_dirs or [REFERENCE_PLUGINS]
        self.conf_dir = self.dir / "cni"
        self.mnt = self.dir / "mnt"
        self.mntns = self.mnt / "ns"
        self.group = f"shoal-podtest-{os.getpid()}-{base.name}"
        self.started = False

    # -- start and stop -------------------------------------------------------------------

    def start(self) -> None:
        d = self.dir
        for sub in ("root", "tmp", "cni", "mnt", "rootfs/bin"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        conf = d / "containers.conf"
        dirs = ", ".join(json.dumps(p) for p in self.plugin_dirs)
        conf.write_text(
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{d}/tmp/events.log"\n'
            f'tmp_dir = "{TMPDIR}"\n'
            f'image_copy_tmp_dir = "{d}/tmp"\n'
            "[network]\n"
            'network_backend = "cni"\n'
            f"cni_plugin_dirs = [{dirs}]\n"
            f'network_config_dir = "{self.conf_dir}"\n')
        self.env["CONTAINERS_CONF"] = str(conf)
        self.env.pop("CONTAINERS_STORAGE_CONF", None)
        # the mount namespace, kept by a bind mount of its file on a private mount
        subprocess.run(["mount", "--bind", str(self.mnt), str(self.mnt)], check=True)
        subprocess.run(["mount", "--make-private", str(self.mnt)], check=True)
        self.mntns.touch()
        self.started = True
        subprocess.run(["unshare", f"--mount={self.mntns}", "--propagation", "private", "sh",
                        "-c", "mount -t tmpfs podtest-run /run && mkdir -p /var/lib/cni && "
                        "mount -t tmpfs podtest-cni /var/lib/cni"], check=True)
        for ctrl in self._controllers():
            os.makedirs(os.path.join(CGROUP, ctrl, self.group), exist_ok=True)
        self.import_busybox()

    def _controllers(self) -> list[str]:
        return sorted(c for c in os.listdir(CGROUP)
                      if os.path.isfile(os.path.join(CGROUP, c, "cgroup.procs")))

    def import_busybox(self) -> None:
        rootfs = self.dir / "rootfs"
        (rootfs / "bin" / "busybox").write_bytes(Path(BUSYBOX).read_bytes())
        (rootfs / "bin" / "busybox").chmod(0o755)
        for applet in APPLETS:
            link = rootfs / "bin" / applet
            if not link.is_symlink():
                link.symlink_to("busybox")
        (rootfs / "www").mkdir(exist_ok=True)
        (rootfs / "www" / "index.html").write_text("hello from podman\n")
        tar = subprocess.run(["tar", "-C", str(rootfs), "-c", "."], capture_output=True,
                             check=True)
        self.podman("import", "-", IMAGE, stdin=tar.stdout)

    def pids(self) -> set[int]:
        found: set[int] = set()
        for top, _, files in os.walk(os.path.join(CGROUP, "pids", self.group)):
            if "cgroup.procs" in files:
                with suppress(OSError), open(os.path.join(top, "cgroup.procs")) as f:
                    found.update(int(x) for x in f.read().split())
        return found

    def stop(self) -> list[str]:
        """Remove every container (Podman's own teardown runs the plugins' DEL), then kill
        by PID whatever is left in this Podman's cgroups and remove them, and let go of the
        mount namespace. Returns notes on anything that had to be forced."""
        if not self.started:
            return []
        notes = []
        res = self.podman("rm", "-af", "-t", "0", check=False, timeout=60)
        if res.returncode != 0:
            notes.append(f"podman rm -af failed: {res.stderr.strip()[-300:]}")
        deadline = time.monotonic() + 5  # conmon may still be on its way out after rm
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with suppress(OSError):
                    what = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                    notes.append(f"killed leftover Podman process {pid}: "
                                 f"{what.decode(errors='replace')[:200]}")
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        for ctrl in self._controllers():
            top = os.path.join(CGROUP, ctrl, self.group)
            for walk_top, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
                for _ in range(50):
                    try:
                        os.rmdir(walk_top)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.02)
                else:
                    notes.append(f"cgroup {walk_top} remains")
        for point in (self.mntns, self.mnt):
            subprocess.run(["umount", "-l", str(point)], capture_output=True)
        self.started = False
        return notes

    # -- the client -----------------------------------------------------------------------

    def argv(self, *args: str) -> list[str]:
        d = self.dir
        return ["nsenter", f"--net={self.netns}", f"--mount={self.mntns}", "podman",
                "--root", str(d / "root"), "--runroot", RUNROOT, "--tmpdir", TMPDIR,
                "--storage-driver", "vfs",
                "--cgroup-manager", "cgroupfs", *args]

    def podman(self, *args: str, check: bool = True, stdin: bytes | None = None,
               timeout: float = 60, env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(self.argv(*args), input=stdin, capture_output=True,
                             timeout=timeout, env={**self.env, **(env or {})})
        out = subprocess.CompletedProcess(res.args, res.returncode,
                                          res.stdout.decode(errors="replace"),
                                          res.stderr.decode(errors="replace"))
        if check and out.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed ({out.returncode}): "
                                 f"{out.stderr.strip()[-600:]}")
        return out

    def run(self, *args: str, check: bool = True, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        """`podman run` with this machine's limits and this Podman's cgroup parent."""
        return self.podman("run", *LIMITS, f"--cgroup-parent=/{self.group}", *args,
                           check=check, env=env)

    def exec(self, name: str, *cmd: str, check: bool = False
             ) -> subprocess.CompletedProcess[str]:
        return self.podman("exec", name, *cmd, check=check)

    def ip_of(self, name: str, network: str) -> str:
        data = json.loads(self.podman("inspect", name).stdout)[0]
        return str(data["NetworkSettings"]["Networks"][network]["IPAddress"])

    def netns_of(self, name: str) -> str:
        """The container's network namespace as /proc/PID/ns/net, usable from any mount
        namespace (the netns file itself is on this Podman's private /run)."""
        data = json.loads(self.podman("inspect", name).stdout)[0]
        return f"/proc/{data['State']['Pid']}/ns/net"

    def add_network(self, name: str, plugins: list[dict[str, Any]],
                    version: str = "1.0.0") -> None:
        """A network config list in Podman's network config directory."""
        conf = {"cniVersion": version, "name": name, "plugins": plugins}
        (self.conf_dir / f"{name}.conflist").write_text(json.dumps(conf, indent=1))
