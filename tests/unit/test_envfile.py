"""--env-file's format, as Docker reads it (docker/cli opts/file.go)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal import envfile
from shoal.errors import InvalidArgument


def test_lines_comments_blank_lines_and_bare_keys() -> None:
    text = "\ufeff# first\n\n   \n  KEY=value with spaces \nEMPTY=\nBARE\nA=b=c\r\n#x=y\n"
    assert envfile.parse(text, "f") == ["KEY=value with spaces ", "EMPTY=", "BARE", "A=b=c"]


@pytest.mark.parametrize(("text", "needle"), [
    ("A=1\nB C=2\n", "env file f, line 2: variable 'B C' contains whitespace"),
    ("=x\n", "env file f, line 1: no variable name in '=x'"),
    ("A=\0\n", "line 1: a NUL byte in A"),
])
def test_errors_name_the_file_and_line(text: str, needle: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        envfile.parse(text, "f")
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_the_flags_come_after_the_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("X=a\nY=a\n")
    b.write_text("X=b\n")
    assert envfile.combined([str(a), str(b)], ["Y=flag"]) == ["X=a", "Y=a", "X=b", "Y=flag"]
    missing = "cannot read env file .*/missing: No such file or directory$"
    with pytest.raises(InvalidArgument, match=missing):
        envfile.combined([str(tmp_path / "missing")], [])
    with pytest.raises(InvalidArgument, match="Is a directory"):
        envfile.read(str(tmp_path))


KEYS = st.text(st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="=#"),
               min_size=1, max_size=8)
VALUES = st.text(st.characters(blacklist_characters="\n\r\0"), max_size=12)


@given(st.lists(st.tuples(KEYS, VALUES), max_size=6))
def test_key_value_lines_round_trip(pairs: list[tuple[str, str]]) -> None:
    text = "".join(f"{k}={v}\n" for k, v in pairs)
    assert envfile.parse(text, "f") == [f"{k}={v}" for k, v in pairs]
