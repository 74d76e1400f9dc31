"""Names: validation of user-given names, random container names, and the deterministic
kernel names every object shoal creates carries (so garbage collection can find them)."""

from __future__ import annotations

import os

from .errors import InvalidArgument

# Names are checked against character sets rather than regular expressions: importing `re`
# (with enum) costs more than a whole `shoal network ls` may spend on shoal's own code.
ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
NAME_CHARS = ALNUM | frozenset("_.-")
HOSTNAME_CHARS = ALNUM | frozenset("-")
MAX_NAME = 128
IFNAMSIZ = 15  # bytes usable in a Linux interface name


def is_name(text: str) -> bool:
    """[a-zA-Z0-9][a-zA-Z0-9_.-]*: a letter or digit first, so that a name such as "-rf"
    can't read as an option to ip or iptables."""
    return bool(text) and text[0] in ALNUM and NAME_CHARS.issuperset(text)


def is_hostname(text: str) -> bool:
    """A DNS label (RFC 1123): 1 to 63 of [a-zA-Z0-9-], a letter or digit at both ends."""
    return (0 < len(text) <= 63 and text[0] in ALNUM and text[-1] in ALNUM
            and HOSTNAME_CHARS.issuperset(text))



def validate_name(name: str, what: str) -> str:
    """Check a container or network name the way Docker does."""
    if not name:
        raise InvalidArgument(f"{what} name must not be empty")
    if len(name) > MAX_NAME:
        raise InvalidArgument(f"{what} name {name[:20]!r}... is longer than {MAX_NAME} characters")
    if not is_name(name):
        raise InvalidArgument(
            f"invalid {what} name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-]* are allowed"
        )
    return name


def validate_ifname(name: str, what: str = "interface") -> str:
    """A Linux interface name: 1 to 15 bytes, no '/', whitespace or ':'; not '.' or '..'."""
    size = len(name.encode(errors="replace"))  # argv may carry surrogate-escaped bytes
    if size > IFNAMSIZ:
        raise InvalidArgument(
            f"{what} name {name!r} is {size} bytes; Linux allows at most {IFNAMSIZ}"
        )
    if not is_name(name):
        raise InvalidArgument(
            f"invalid {what} name {name!r}: use 1 to 15 of [a-zA-Z0-9_.-], starting with a "
            "letter or digit"
        )
    return name


def new_id() -> str:
    """A 64-hex-digit id, as Docker uses."""
    return os.urandom(32).hex()


HEX = frozenset("0123456789abcdef")
MARK = "shoal root="
IFALIASZ = 255  # bytes the kernel keeps of a link's alias (IFALIASZ 256, with the NUL)


def owner_mark(root: str) -> str:
    """The alias shoal gives the links it makes: which state directory (root) made them."""
    mark = MARK + root
    return mark.encode(errors="surrogateescape")[:IFALIASZ].decode(errors="ignore")


def marked_root(alias: str | None) -> str | None:
    """The root named by a link's alias, if it carries shoal's mark (None otherwise: no
    alias, as an older shoal made them, or someone else's)."""
    return alias[len(MARK):] if alias and alias.startswith(MARK) else None


def is_id(text: str) -> bool:
    """Is this one of shoal's ids (64 lowercase hex digits, as new_id makes)?"""
    return len(text) == 64 and HEX.issuperset(text)


def short_id(full: str) -> str:
    return full[:12]


_ADJECTIVES = (
    "agile amber bold brave calm clever cosmic eager fancy gentle happy jolly keen kind "
    "lucid merry nimble noble proud quiet rapid serene sharp shiny silent steady swift "
    "tidy vivid wise witty zealous"
).split()
_NOUNS = (
    "anchovy barracuda carp cod dolphin eel flounder grouper haddock herring koi mackerel "
    "marlin minnow perch pike salmon sardine shark skate snapper sole sprat sturgeon "
    "trout tuna turbot wahoo whiting"
).split()


def random_name(attempt: int = 0) -> str:
    """A Docker-like 'adjective_noun' container name; after the first few attempts (names
    already taken) a number is added, as Docker does, so there is always a free one."""
    a, b, n = os.urandom(3)
    name = f"{_ADJECTIVES[a % len(_ADJECTIVES)]}_{_NOUNS[b % len(_NOUNS)]}"
    return name if attempt < 5 else f"{name}{n + 256 * attempt}"
