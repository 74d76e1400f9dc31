"""shoal.dirs: shoal's directories and files, never through a symlink."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from shoal import dirs
from shoal.errors import InvalidArgument


@pytest.fixture
def dir_fd(tmp_path: Path) -> int:
    fd = os.open(tmp_path, dirs.O_DIR)
    yield fd
    os.close(fd)


def test_remove_tree_removes_everything_but_never_follows_a_symlink_out(
        tmp_path: Path, dir_fd: int) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    tree = tmp_path / "ctr"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "hosts").write_text("127.0.0.1 localhost\n")
    (tree / "sub" / "deeper" / "log").write_text("out")
    (tree / "link").symlink_to(outside)
    dirs.remove_tree(dir_fd, "ctr")
    assert not tree.exists()
    assert (outside / "keep").read_text() == "x"
    dirs.remove_tree(dir_fd, "ctr")  # already gone: nothing to do, no error


def test_remove_tree_leaves_a_symlink_in_place_of_the_directory(tmp_path: Path,
                                                                 dir_fd: int) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("x")
    (tmp_path / "ctr").symlink_to(victim)
    dirs.remove_tree(dir_fd, "ctr")
    assert (victim / "precious").read_text() == "x"


def test_files_are_never_opened_through_a_symlink(tmp_path: Path, dir_fd: int) -> None:
    target = tmp_path / "target"
    (tmp_path / "lock").symlink_to(target)  # dangling
    with pytest.raises(dirs.UntrustedPath) as exc:
        dirs.open_file(dir_fd, "lock", os.O_RDWR | os.O_CREAT, 0o600, "/x/lock")
    assert "/x/lock" in str(exc.value) and "symbolic link" in str(exc.value)
    with pytest.raises(dirs.UntrustedPath):
        dirs.write_file(dir_fd, "lock", b"data", "/x/lock")
    with pytest.raises(dirs.UntrustedPath):
        dirs.exists(dir_fd, "lock", "/x/lock")
    assert not target.exists()
    assert not os.path.lexists(tmp_path / "absent") and not dirs.exists(dir_fd, "absent", "")


def test_subdirectories_are_made_private_and_never_through_a_symlink(
        tmp_path: Path, dir_fd: int) -> None:
    os.close(dirs.subdir(dir_fd, "netns", "/x/netns"))
    assert stat.S_IMODE(os.stat(tmp_path / "netns").st_mode) == 0o700
    (tmp_path / "containers").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(dirs.UntrustedPath) as exc:
        dirs.subdir(dir_fd, "containers", "/x/containers")
    assert "/x/containers" in str(exc.value)
    assert not (tmp_path / "elsewhere").exists()


def test_an_empty_directory_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        dirs.open_dir("", "state directory (--root)")


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership checks need root")
def test_open_dir_creates_private_and_refuses_what_others_can_change(tmp_path: Path) -> None:
    os.close(dirs.open_dir(str(tmp_path / "a" / "b"), "state directory"))
    assert stat.S_IMODE(os.stat(tmp_path / "a" / "b").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "a").st_mode) == 0o755
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(dirs.UntrustedPath) as exc:
        dirs.open_dir(str(shared), "state directory")
    assert "writable by group and others (mode 1777)" in str(exc.value)
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o1777
    # a sticky parent (like /tmp) is fine, a directory in it root made too
    os.close(dirs.open_dir(str(shared / "mine"), "state directory"))
    user = tmp_path / "user"
    user.mkdir()
    os.chown(user, 65534, 65534)
    with pytest.raises(dirs.UntrustedPath) as exc:
        dirs.open_dir(str(user / "root"), "state directory")
    assert "owned by uid 65534" in str(exc.value)
    assert not (user / "root").exists()
    # symlinks: root's are followed, a user's are not
    (tmp_path / "rootlink").symlink_to(tmp_path / "a")
    os.close(dirs.open_dir(str(tmp_path / "rootlink" / "b"), "state directory"))
    os.symlink(tmp_path / "a", shared / "userlink")
    os.chown(shared / "userlink", 65534, 65534, follow_symlinks=False)
    with pytest.raises(dirs.UntrustedPath) as exc:
        dirs.open_dir(str(shared / "userlink" / "b"), "state directory")
    assert "symbolic link owned by uid 65534" in str(exc.value)


def test_commands_that_probe_a_new_run_directory_at_once_all_succeed(tmp_path: Path) -> None:
    """Two commands starting in a new run directory probe it together (a foreground run and
    a `logs` beside it did so in CI): neither may take the other's probe file away."""
    import threading

    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def probe() -> None:
        start.wait()
        try:
            for _ in range(300):
                dirs.probe_writable(fd)
        except BaseException as e:  # noqa: BLE001  # collected for the assertion
            errors.append(e)

    threads = [threading.Thread(target=probe) for _ in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        os.close(fd)
    assert errors == []
    assert os.listdir(tmp_path) == []  # nothing is left behind
