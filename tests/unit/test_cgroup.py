"""Unit tests for the pure parts of shoal.runtime.cgroup: where cgroup v2 is, and the names
of one shoal's cgroups."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from shoal.runtime.cgroup import SUPERVISORS, Cgroups, mount_point, scope_name

HYBRID = """\
25 1 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
PURE = "30 24 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
ESCAPED = "30 24 0:26 / /tmp/my\\040cgroup rw - cgroup2 none rw\n"
NONE = "22 1 0:21 / /proc rw - proc proc rw\n"


def test_the_cgroup2_mount_is_read_from_mountinfo(tmp_path: Path) -> None:
    for text, where in ((HYBRID, "/sys/fs/cgroup/unified"), (PURE, "/sys/fs/cgroup"),
                        (ESCAPED, "/tmp/my cgroup"), (NONE, None)):
        f = tmp_path / "mountinfo"
        f.write_text(text)
        assert mount_point(str(f)) == where
    assert mount_point(str(tmp_path / "missing")) is None


def test_each_run_directory_has_its_own_scope() -> None:
    a, b = scope_name("/run/shoal"), scope_name("/tmp/lab/run")
    assert a != b and len(a) == len(b) == 16 and int(a, 16) >= 0
    assert scope_name("/run/shoal/") == a  # the same directory, however it is spelled


def test_the_harness_finds_the_same_scope(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "harness", Path(__file__).parents[1] / "integration" / "harness.py")
    assert spec is not None and spec.loader is not None
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)
    scope = harness._cgroup_scope(str(tmp_path / "run"))
    if scope is not None:  # (a machine without cgroup v2 has no scope to compare)
        assert scope.endswith("/shoal/" + scope_name(str(tmp_path / "run")))


def test_leftovers_are_container_directories_only(tmp_path: Path) -> None:
    groups = Cgroups(str(tmp_path / "run"))
    groups._looked, groups._scope = True, str(tmp_path)
    for name in ("a" * 64, "b" * 64, SUPERVISORS):
        (tmp_path / name).mkdir()
    (tmp_path / "cgroup.events").write_text("populated 0\n")
    assert sorted(groups.leftovers({"a" * 64})) == ["b" * 64]
    assert groups.path("c" * 64) == str(tmp_path / ("c" * 64))
