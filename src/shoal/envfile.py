"""`--env-file FILE`: Docker's format, read by the command line as its caller sees the file.

A line is KEY=VALUE (the value kept as it is: no quotes are removed, no variables expanded),
or a bare KEY, which takes the caller's value (and is left out when the caller has none, as
a bare `-e KEY` is). Blank lines and lines starting with `#` are skipped; leading whitespace is
dropped; a key with whitespace in it, a line without a key, or bytes that are not UTF-8 are
refused with the file and line they are on."""

from __future__ import annotations

from .errors import InvalidArgument

_BOM = "\ufeff"


def parse(text: str, name: str) -> list[str]:
    """The entries of an env file's text, in order: "KEY=VALUE" or a bare "KEY"."""
    out = []
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.removesuffix("\r")
        if number == 1:
            line = line.removeprefix(_BOM)
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not key:
            raise InvalidArgument(f"env file {name}, line {number}: no variable name in {line!r}")
        if any(c.isspace() for c in key):
            raise InvalidArgument(f"env file {name}, line {number}: variable {key!r} contains "
                               "whitespace")
        if "\0" in line:
            raise InvalidArgument(f"env file {name}, line {number}: a NUL byte in {key}")
        out.append(f"{key}={value}" if sep else key)
    return out


def read(path: str) -> list[str]:
    """The entries of the env file at `path` (relative to the current directory)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InvalidArgument(f"cannot read env file {path}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise InvalidArgument(f"env file {path} contains invalid UTF-8 at line {line}") from None
    return parse(text, path)


def combined(files: list[str], env: list[str]) -> list[str]:
    """The entries of every --env-file in order, then the -e ones: a later one wins, so -e
    overrides a file, as in Docker."""
    out: list[str] = []
    for path in files:
        out += read(path)
    return out + list(env)
