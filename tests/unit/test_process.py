"""Unit tests for the pure parts of shoal.runtime.process."""

from __future__ import annotations

import pytest

from shoal.runtime.process import _unescape


@pytest.mark.parametrize(("raw", "path"), [
    (b"/run/netns/plain", b"/run/netns/plain"),
    (b"/tmp/with\\040space", b"/tmp/with space"),
    (b"/a\\011tab\\012nl\\134back", b"/a\ttab\nnl\\back"),
    (b"/not\\9octal\\04", b"/not\\9octal\\04"),  # left as it is
])
def test_mountinfo_paths_are_unescaped(raw: bytes, path: bytes) -> None:
    assert _unescape(raw) == path
