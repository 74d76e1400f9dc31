"""The engine's small file helpers (used instead of shutil, whose import is slow)."""

from __future__ import annotations

from pathlib import Path

from shoal.engine import _copy_file, _remove_tree


def test_remove_tree_removes_everything_but_never_follows_a_symlink_out(tmp_path: Path
                                                                        ) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    tree = tmp_path / "ctr"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "hosts").write_text("127.0.0.1 localhost\n")
    (tree / "sub" / "deeper" / "log").write_text("out")
    (tree / "link").symlink_to(outside)
    _remove_tree(str(tree))
    assert not tree.exists()
    assert (outside / "keep").read_text() == "x"
    _remove_tree(str(tree))  # already gone: nothing to do, no error


def test_copy_file_copies_bytes(tmp_path: Path) -> None:
    src, dst = tmp_path / "a", tmp_path / "b"
    src.write_bytes(b"\x00\xffhosts\n")
    _copy_file(str(src), str(dst))
    assert dst.read_bytes() == b"\x00\xffhosts\n"
