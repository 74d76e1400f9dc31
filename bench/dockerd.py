"""A throwaway dockerd for bench/dns.py and the Docker plugin's tests (which load this file by
path): started inside a throwaway network namespace (the caller's, or `netns`) and in a
private mount namespace, with every path it writes under one temporary directory. With
`plugins`, that directory is /run/docker/plugins in dockerd's mount namespace, where it
discovers plugins' sockets (shoal's). Its processes (dockerd, containerd, shims,
containers) are kept in one pids cgroup this module makes, so that they can all be found and
killed by PID at the end."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from contextlib import suppress

CGROUP = "/sys/fs/cgroup"


def group_of(tmp: str) -> str:
    """The cgroup (under every controller) of the dockerd a bench run in `tmp` starts."""
    return f"shoal-dockerbench-{os.path.basename(tmp)}"


def pids_in(group: str) -> set[int]:
    found: set[int] = set()
    for top, _, files in os.walk(os.path.join(CGROUP, "pids", group)):
        if "cgroup.procs" in files:
            with suppress(OSError), open(os.path.join(top, "cgroup.procs")) as f:
                found.update(int(x) for x in f.read().split())
    return found


def remove_cgroups(group: str) -> list[str]:
    left = []
    for ctrl in sorted(os.listdir(CGROUP)):
        top = os.path.join(CGROUP, ctrl, group)
        if not os.path.isdir(top):
            continue
        for path, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
            for _ in range(50):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                left.append(path)
    return [f"WARNING cgroup left: {p}" for p in left]


def kill_group(group: str) -> list[str]:
    """SIGKILL, by PID, every process in the pids cgroup `group` (only processes the bench's
    dockerd started are there), then remove its cgroups; returns notes on what was done."""
    notes = []
    for _ in range(50):
        pids = pids_in(group)
        if not pids:
            break
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        notes.append(f"killed leftover docker processes {sorted(pids)}")
        time.sleep(0.1)
    return notes + remove_cgroups(group)


class Dockerd:
    def __init__(self, tmp: str, netns: str | None = None, plugins: str | None = None
                 ) -> None:
        self.netns = netns
        self.plugins = plugins
        self.dir = os.path.join(tmp, "docker")
        self.sock = os.path.join(self.dir, "docker.sock")
        self.group = group_of(tmp)
        self.proc: subprocess.Popen[bytes] | None = None

    # -- start and stop -----------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        os.makedirs(self.dir)
        for sub in ("data", "exec", "etc"):
            os.mkdir(os.path.join(self.dir, sub))
        config = os.path.join(self.dir, "etc", "daemon.json")
        with open(config, "w") as f:
            f.write("{}\n")
        daemon = os.path.join(CGROUP, "pids", self.group, "daemon")
        os.makedirs(daemon)
        d = self.dir
        argv = ["dockerd", f"--data-root={d}/data", f"--exec-root={d}/exec",
                f"--pidfile={d}/docker.pid", f"-H=unix://{self.sock}",
                f"--config-file={config}", "--storage-driver=vfs",
                "--exec-opt=native.cgroupdriver=cgroupfs", f"--cgroup-parent=/{self.group}",
                "--log-level=warn"]
        # the private mount namespace: a fresh /run (so /run/docker, /var/run/docker.pid
        # and containerd's /run paths are its own) and /etc/docker (dockerd 20.10 writes its
        # key.json there whatever --config-file says); nothing propagates back to the machine
        if not os.path.isdir("/etc/docker"):
            raise RuntimeError("/etc/docker is missing (docker.io makes it); dockerd would "
                               "write its key there: reinstall docker.io")
        script = ('echo $$ > "$1/cgroup.procs" && shift && mount -t tmpfs bench-run /run '
                  '&& mount -t tmpfs bench-etc /etc/docker && '
                  'if [ -n "$1" ]; then mkdir -p /run/docker/plugins && '
                  'mount --bind "$1" /run/docker/plugins; fi && shift && exec "$@"')
        enter = ["nsenter", f"--net={self.netns}"] if self.netns else []
        self.proc = subprocess.Popen(
            [*enter, "unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
             script, "sh", daemon, self.plugins or "", *argv],
            stdout=open(os.path.join(d, "dockerd.log"), "wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited {self.proc.returncode}: {self.log()}")
            if os.path.exists(self.sock) and subprocess.run(
                    self.cli("version"), capture_output=True, timeout=30).returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"dockerd did not answer in {timeout:.0f} s: {self.log()}")

    def log(self) -> str:
        with suppress(OSError), open(os.path.join(self.dir, "dockerd.log"), "rb") as f:
            return f.read()[-600:].decode(errors="replace").strip()
        return ""

    def stop(self) -> list[str]:
        """SIGTERM dockerd, wait, then SIGKILL by PID what is left of what it started, and
        remove the cgroups; returns notes on anything that had to be forced or is left."""
        notes = []
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                notes.append("dockerd did not stop in 30 s after SIGTERM")
        notes += kill_group(self.group)
        if self.proc is not None:
            self.proc.wait()
        return notes

    # -- the client ---------------------------------------------------------------------

    def cli(self, *args: str) -> list[str]:
        return ["docker", "-H", f"unix://{self.sock}", *args]

    def docker(self, *args: str, stdin: str | None = None) -> str:
        res = self.try_docker(*args, stdin=stdin)
        if res.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args[:6])} exited {res.returncode}: "
                               f"{res.stderr.strip()[:500]}")
        return res.stdout.strip()

    def try_docker(self, *args: str, stdin: str | None = None
                   ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.cli(*args), input=stdin, capture_output=True, text=True,
                              timeout=120)

    def import_busybox(self, tag: str = "bb:latest") -> None:
        """A one-binary image: busybox-static's /bin/busybox and links for its applets."""
        root = os.path.join(self.dir, "rootfs")
        os.makedirs(os.path.join(root, "bin"))
        for sub in ("etc", "proc", "sys", "dev", "tmp"):
            os.mkdir(os.path.join(root, sub))
        shutil.copy2(shutil.which("busybox") or "/bin/busybox", os.path.join(root, "bin"))
        for applet in ("sh", "sleep", "cat", "ls", "ip", "nslookup", "true", "ping", "nc",
                       "echo"):
            os.symlink("busybox", os.path.join(root, "bin", applet))
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        imp = subprocess.run(self.cli("import", "-", tag), stdin=tar.stdout,
                             capture_output=True, timeout=120)
        assert tar.stdout
        tar.stdout.close()
        tar.wait()
        if imp.returncode != 0 or tar.returncode != 0:
            raise RuntimeError(f"docker import failed: {imp.stderr.decode()[-300:]}")

    def pid_of(self, name: str) -> int:
        return int(self.docker("inspect", "-f", "{{.State.Pid}}", name))

    def ip_of(self, name: str, net: str) -> str:
        data = json.loads(self.docker("inspect", name))[0]
        return str(data["NetworkSettings"]["Networks"][net]["IPAddress"])
