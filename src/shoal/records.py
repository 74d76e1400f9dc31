"""A small stand-in for dataclasses.

`dataclasses` imports `inspect` and `ast`, which costs about 20 ms at every start of the
`shoal` command (a third of the budget of `shoal network ls`). These records give the little
shoal uses of it: an __init__ taking the annotated fields in order (positional or by name)
with their defaults, equality, a readable repr, and `replace`; and fields that keep the text
they were given until first read (`Parsed`), so that reading records from the store costs no
parsing, nor the import of the parser's module, for the fields a command never looks at."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Self


_MISSING = object()


class Record:
    _fields: tuple[str, ...] = ()
    _defaults: dict[str, Any] = {}

    def __init_subclass__(cls) -> None:
        names: list[str] = []
        defaults: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            for name in klass.__dict__.get("__annotations__", {}):
                if name.startswith("_") or name in names:
                    continue
                names.append(name)
                if name in klass.__dict__:
                    default = klass.__dict__[name]
                    if isinstance(default, Parsed):
                        if default.default is _MISSING:  # a Parsed field without default
                            continue
                        default = default.default
                    defaults[name] = default
        for before, name in zip(names, names[1:], strict=False):
            if before in defaults and name not in defaults:
                raise TypeError(f"{cls.__name__}: field {name!r} without a default follows "
                                "one with a default")
        cls._fields = tuple(names)
        cls._defaults = defaults
        cls.__init__ = _deferred_init(cls)  # type: ignore[misc]

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(
            getattr(self, n) == getattr(other, n) for n in self._fields
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, like a dataclass

    def __repr__(self) -> str:
        body = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._fields)
        return f"{type(self).__name__}({body})"

    def replace(self, **changes: Any) -> Self:
        values = {n: getattr(self, n) for n in self._fields}
        values.update(changes)
        return type(self)(**values)


class Parsed:
    """A record field that may be given as text and is parsed on its first read, e.g. an
    address the store hands over as the string in its column."""

    def __init__(self, parse: Callable[[str], Any], default: Any = _MISSING) -> None:
        self.parse = parse
        self.default = default
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = obj.__dict__[self.name]
        if type(value) is str:
            value = obj.__dict__[self.name] = self.parse(value)
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.name] = value



def _deferred_init(cls: type[Record]) -> Any:
    """An __init__ that compiles the real one on the first call and puts it in its place:
    a command compiles only the records it makes (`network ls`: networks only)."""

    def __init__(self: Record, *args: Any, **kwargs: Any) -> None:
        init = _make_init(cls.__name__, list(cls._fields), cls._defaults)
        cls.__init__ = init  # type: ignore[misc]
        init(self, *args, **kwargs)

    return __init__


def _make_init(cls_name: str, names: list[str], defaults: dict[str, Any]) -> Any:
    """A specialised __init__, compiled once per class as dataclasses does it: one plain
    function with the fields as parameters (a generic loop is several times slower, and
    published ports make tens of thousands of records)."""
    params, body = [], []
    for name in names:
        if name in defaults:
            if isinstance(defaults[name], list | dict | set):  # fresh copy, never shared
                params.append(f"{name}=_MISSING")
                body.append(f"    self.{name} = type(_d_{name})(_d_{name}) "
                            f"if {name} is _MISSING else {name}")
            else:
                params.append(f"{name}=_d_{name}")
                body.append(f"    self.{name} = {name}")
        else:
            params.append(name)
            body.append(f"    self.{name} = {name}")
    source = f"def __init__(self, {', '.join(params)}):\n" + ("\n".join(body) or "    pass")
    namespace: dict[str, Any] = {"_MISSING": _MISSING}
    namespace.update({f"_d_{k}": v for k, v in defaults.items()})
    exec(source, namespace)  # source made from the class's own annotated field names
    return namespace["__init__"]
