"""shoal's directories, and the files in them, opened without trusting anyone else.

The state directory (--root) and the run directory (--run-dir) are reached from "/" one
component at a time, on directory file descriptors (openat with O_NOFOLLOW), and every
directory on the way must be one only root can change:

- owned by root (or by the user shoal runs as), and
- not writable by group or others, except a parent with the sticky bit (such as /tmp:
  others can add entries there but cannot rename or remove root's). The directory itself
  may not be writable by others even with the sticky bit: anyone could plant a `lock` or a
  `netns` in it before shoal does.

A symbolic link on the way is followed only if root owns it (such as /var/run -> /run):
one that a user made in a sticky directory could point anywhere. Why refuse rather than
only never follow symlinks? A user who owns a parent (/tmp/lab) can swap a whole directory
for another between two of shoal's steps; no check on the leaf survives that.

Missing directories are created by shoal itself: the parents 0755, the directory 0700. A
directory shoal did not create keeps its mode: shoal never chmods what it finds.

Inside them, nothing is followed through a symlink: files are opened with O_NOFOLLOW
relative to their directory's descriptor, and a symlink where shoal expects its own file or
directory is a clear error (it never creates a file at a link's target)."""

from __future__ import annotations

import errno
import os
import stat

from .errors import InvalidArgument, ShoalError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_ROOT = "/var/lib/shoal"  # --root, SHOAL_ROOT
DEFAULT_RUN_DIR = "/run/shoal"  # --run-dir, SHOAL_RUN_DIR
O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW
MAX_LINKS = 40  # as the kernel's path walk


class UntrustedPath(ShoalError):
    """A directory or file shoal will not use: someone other than root could change it."""


def _trusted_owner(uid: int) -> bool:
    return uid in (0, os.geteuid())


def _symlink_error(where: str) -> UntrustedPath:
    return UntrustedPath(f"refusing {where}: it is a symbolic link, and shoal never follows "
                         "one inside its directories; remove it")


def open_dir(path: str, what: str, create: bool = True) -> int:
    """A descriptor of one of shoal's directories (`what`: e.g. "state directory
    (--root)"), created 0700 if missing, after checking every directory on the way."""
    if not path:
        raise InvalidArgument(f"the {what} must not be empty: give a directory")
    path = os.path.abspath(path)
    parts = [p for p in path.split("/") if p]
    fd = os.open("/", O_DIR)
    where, links = "/", 0
    try:
        while parts:
            name = parts.pop(0)
            leaf = not parts
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(name, 0o700 if leaf else 0o755, dir_fd=fd)
                except FileExistsError:  # made meanwhile: looked at below like any other
                    pass
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            here = os.path.join(where, name)
            if stat.S_ISLNK(st.st_mode):
                if not _trusted_owner(st.st_uid):
                    raise UntrustedPath(
                        f"refusing the {what} {path}: {here} is a symbolic link owned by uid "
                        f"{st.st_uid}, not root; give the real path of a directory root owns")
                links += 1
                if links > MAX_LINKS:
                    raise UntrustedPath(f"refusing the {what} {path}: too many symbolic links")
                target = os.readlink(name, dir_fd=fd)
                parts = [p for p in target.split("/") if p] + parts
                if target.startswith("/"):
                    os.close(fd)
                    fd, where = os.open("/", O_DIR), "/"
                continue
            try:
                new = os.open(name, O_DIR, dir_fd=fd)
            except NotADirectoryError:
                raise UntrustedPath(f"refusing the {what} {path}: {here} is not a "
                                    "directory") from None
            os.close(fd)
            fd, where = new, os.path.normpath(here)
            _check(fd, where, what, path, leaf)
        if where == "/":
            _check(fd, where, what, path, True)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _check(fd: int, where: str, what: str, path: str, leaf: bool) -> None:
    st = os.fstat(fd)
    if not _trusted_owner(st.st_uid):
        raise UntrustedPath(
            f"refusing the {what} {path}: {where} is owned by uid {st.st_uid}, not root, so "
            "its owner could swap shoal's files; use a directory only root can change")
    writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable and (leaf or not st.st_mode & stat.S_ISVTX):
        who = {0o022: "group and others", 0o002: "others"}.get(writable, "its group")
        raise UntrustedPath(
            f"refusing the {what} {path}: {where} is writable by {who}"
            f" (mode {stat.S_IMODE(st.st_mode):o}), so they could plant files in it; "
            "use a directory only root can write to")


def exists(dir_fd: int, name: str, where: str) -> bool:
    """Is there a file `name` in the directory (a symlink there is an error)?"""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        raise _symlink_error(where)
    return True


def open_file(dir_fd: int, name: str, flags: int, mode: int, where: str) -> int:
    """os.open of a file in one of shoal's directories, never through a symlink."""
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _symlink_error(where) from None
        raise


def write_file(dir_fd: int, name: str, data: bytes, where: str, mode: int = 0o644) -> None:
    fd = open_file(dir_fd, name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode, where)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def subdir(dir_fd: int, name: str, where: str, create: bool = True) -> int:
    """A descriptor of a directory inside one of shoal's, made 0700 if missing; a symlink
    there is an error."""
    if create:
        try:
            os.mkdir(name, 0o700, dir_fd=dir_fd)
        except FileExistsError:
            pass
    try:
        return os.open(name, O_DIR, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                raise _symlink_error(where) from None
            raise UntrustedPath(f"refusing {where}: it is not a directory; remove it") from None
        raise


def bind_socket(sock: Any, dir_fd: int, name: str) -> None:
    """Bind a unix socket at `name` in one of shoal's directories, private to root: what was
    there before (a socket of a process that died) is removed first; the path goes through
    the directory's descriptor, never through a symlink on the way (nor past the 108 bytes
    of a socket's path)."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    old = os.umask(0o077)
    try:
        sock.bind(f"/proc/self/fd/{dir_fd}/{name}")
    finally:
        os.umask(old)


def probe_writable(dir_fd: int) -> None:
    """Create and remove a file in the directory: OSError if that cannot be done. The name is
    the process's own: commands that start at once in a new run directory probe it together
    (a shared name let one remove the other's file, and the other fail with ENOENT)."""
    name = f".shoal-probe.{os.getpid()}.{os.urandom(4).hex()}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
    os.close(fd)
    os.unlink(name, dir_fd=dir_fd)


def remove_tree(dir_fd: int, name: str) -> None:
    """Remove a directory shoal made and what is in it, as far as possible, never following
    a symlink (one in its place is left alone)."""
    try:
        fd = os.open(name, O_DIR, dir_fd=dir_fd)
    except OSError:
        return
    try:
        for entry in os.scandir(fd):
            try:
                if entry.is_dir(follow_symlinks=False):
                    remove_tree(fd, entry.name)
                else:
                    os.unlink(entry.name, dir_fd=fd)
            except OSError:
                pass
    finally:
        os.close(fd)
    try:
        os.rmdir(name, dir_fd=dir_fd)
    except OSError:
        pass
