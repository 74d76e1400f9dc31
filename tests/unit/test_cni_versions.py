"""VERSION's quick answer (no json module) against the json path, to the byte."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.plugins.cni.versions import SUPPORTED_VERSIONS, quick_answer, version_result


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_the_config_libcni_sends_is_answered_as_json_would(version: str) -> None:
    for data in (f'{{"cniVersion":"{version}"}}', f'{{"cniVersion": "{version}"}}\n'):
        assert quick_answer(data.encode()) == json.dumps(version_result(version))


def test_an_empty_config_is_answered_with_the_latest() -> None:
    assert quick_answer(b"") == quick_answer(b" \n") == json.dumps(version_result(None))
    assert json.loads(quick_answer(b"") or "")["cniVersion"] == "1.1.0"


@pytest.mark.parametrize("data", [
    b'{"cniVersion":"2.0.0"}',  # not spoken: the json path answers with the latest
    b'{"cniVersion":"1.0.0","name":"x"}',  # more keys
    b'{"cniVersion":"1.0.0"',  # not JSON
    b'{"cniVersion":"1.0.0"}{"cniVersion":"0.3.0"}',
    b'{"cniVersion":"\\u0031.0.0"}',  # an escape json would decode
    b'["1.0.0"]',
])
def test_anything_else_goes_to_json(data: bytes) -> None:
    assert quick_answer(data) is None


@given(st.dictionaries(st.sampled_from(["cniVersion", "name", "type"]),
                       st.one_of(st.sampled_from(SUPPORTED_VERSIONS), st.text(max_size=8))))
def test_a_quick_answer_is_always_the_json_paths(conf: dict[str, str]) -> None:
    for data in (json.dumps(conf), json.dumps(conf, separators=(",", ":"))):
        quick = quick_answer(data.encode())
        if quick is not None:
            assert quick == json.dumps(version_result(conf.get("cniVersion")))
