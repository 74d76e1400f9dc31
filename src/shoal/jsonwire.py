"""JSON for the commands that start often (each shoal-cni ADD and DEL, `shoal run`), through
the C codec of CPython's own json package (`_json`) without importing json itself.

Why: `import json` brings re and enum (json.decoder compiles regular expressions at import):
about 7 ms of a shoal-cni ADD on the project's 2-core machine, where the interpreter starts
in 15 ms and the ADD's own work takes about 12 ms. A runtime runs the plugin at every
container start and stop. `_json` is the scanner and encoder json.loads and json.dumps use
on CPython; this module gives them json's defaults:

- `loads(text)`: json.loads's result for every document (strict, NaN/Infinity accepted as
  json accepts them); an invalid document raises json's JSONDecodeError (a ValueError), for
  which json is imported then: errors are rare.
- `dumps(value)`: json.dumps(value)'s text (ensure_ascii, ", " and ": " separators, keys in
  insertion order, no NaN checks waived).

When `_json` is missing (another Python), both fall back to json. tests/unit/test_jsonwire.py
holds them to json's answers for generated documents and values."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_WHITESPACE = " \t\n\r"
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


class _Options:
    """What the C scanner reads of a JSONDecoder: json.loads's defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


def _default(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _codec() -> Any:
    try:
        import _json

        _json.make_scanner, _json.make_encoder, _json.encode_basestring_ascii  # noqa: B018
        return _json
    except (ImportError, AttributeError):
        return None


_C = _codec()
_SCAN = _C.make_scanner(_Options()) if _C is not None else None


def _error(message: str, text: str, pos: int) -> ValueError:
    from json import JSONDecodeError

    return JSONDecodeError(message, text, pos)


def loads(text: str | bytes) -> Any:
    """json.loads(text)."""
    if isinstance(text, (bytes, bytearray)):
        # json.loads detects UTF-16 and UTF-32 by their zero bytes and refuses a BOM: those
        # go to it; UTF-8 is decoded here as json decodes it
        if b"\x00" in text[:4] or text[:3] == b"\xef\xbb\xbf" or text[:2] in (b"\xff\xfe",
                                                                               b"\xfe\xff"):
            return _json_loads(text)
        text = bytes(text).decode("utf-8", "surrogatepass")
    if _SCAN is None or text.startswith("\ufeff"):
        return _json_loads(text)
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _SCAN(text, start)
    except StopIteration as stop:
        raise _error("Expecting value", text, stop.value) from None
    end = len(text) - len(text[end:].lstrip(_WHITESPACE))
    if end != len(text):
        raise _error("Extra data", text, end)
    return value


def dumps(value: Any) -> str:
    """json.dumps(value)."""
    if _C is None:
        import json

        return json.dumps(value)
    # a new encoder for each call, as json makes one: its markers (the containers being
    # encoded, to refuse a circular one) must start empty
    encode = _C.make_encoder({}, _default, _C.encode_basestring_ascii, None, ": ", ", ",
                             False, False, True)
    return "".join(encode(value, 0))


def _json_loads(text: str | bytes) -> Any:
    import json

    return json.loads(text)
