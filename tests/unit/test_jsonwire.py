"""shoal.jsonwire against json: the same text out, the same values in, the same errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal import jsonwire

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=5),
    max_leaves=25,
)


def _same(a: object, b: object) -> bool:
    return json.dumps(a) == json.dumps(b)  # (NaN is not equal to itself; its text is)


@given(values)
def test_dumps_writes_what_json_writes(value: object) -> None:
    assert jsonwire.dumps(value) == json.dumps(value)


@given(values)
def test_loads_reads_what_json_reads(value: object) -> None:
    for text in (json.dumps(value), json.dumps(value, indent=2),
                 json.dumps(value, separators=(",", ":"), ensure_ascii=False)):
        assert _same(jsonwire.loads(text), json.loads(text))
        assert _same(jsonwire.loads(text.encode("utf-8", "surrogatepass")),
                     json.loads(text.encode("utf-8", "surrogatepass")))


def _outcome(load: object, text: str | bytes) -> object:
    try:
        return ("ok", json.dumps(load(text)))  # type: ignore[operator]
    except ValueError as e:
        return ("error", type(e).__name__, str(e))


@settings(max_examples=300)
@given(st.one_of(st.text(alphabet=' \t\n\r{}[]",:0123456789.eE+-truefalsnNaIiy\\u', max_size=20),
                 st.text(max_size=10)))
def test_any_text_is_read_or_refused_as_json_does(text: str) -> None:
    assert _outcome(jsonwire.loads, text) == _outcome(json.loads, text)


@pytest.mark.parametrize("text", [
    "", " ", "{", "[1,]", '{"a" 1}', "[1] [2]", "\ufeff[]", "NaN", "-Infinity", '"\x01"',
    b'\xef\xbb\xbf{}', '{"a": 1}'.encode("utf-16"), '[1]'.encode("utf-32-le"), b"[1]\n",
])
def test_edge_documents(text: str | bytes) -> None:
    assert _outcome(jsonwire.loads, text) == _outcome(json.loads, text)


def test_what_json_cannot_write_is_refused_alike() -> None:
    loop: list[object] = []
    loop.append(loop)
    for bad, kind in ((loop, ValueError), ({"x": object()}, TypeError), ({(1, 2): 1}, TypeError)):
        with pytest.raises(kind) as ours:
            jsonwire.dumps(bad)
        with pytest.raises(kind) as theirs:
            json.dumps(bad)
        assert str(ours.value) == str(theirs.value)
    assert jsonwire.dumps([1, 2]) == "[1, 2]"  # nothing of the failed calls was kept


def test_it_imports_neither_json_nor_re() -> None:
    code = ("import sys; from shoal import jsonwire; "
            "jsonwire.loads(jsonwire.dumps({'a': [1, 'b', None]})); "
            "print(sorted(m for m in ('json', 're', 'enum') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert res.stdout.strip() == "[]"
