"""A small command-line parser with Docker's conventions: long flags (`--name x`,
`--name=x`), short flags that combine (`-di`, `-e A=1`, `-eA=1`), repeated flags that
collect, booleans that take `=true|false`, and `--` to end the flags.

shoal does not use argparse: importing it (with re, enum and gettext) costs more than a third
of the 60 ms that `shoal network ls` may take as a whole process. Every error here is one line
that names the flag or argument and the command's --help."""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

USAGE_EXIT = 125  # as the docker CLI exits on a flag error (its own errors are 125)
FLAG, VALUE, APPEND = "flag", "value", "append"
REMAINDER = "..."  # the command and its arguments: every word after the positionals before it


class UsageError(Exception):
    """A command line that does not parse; `prog` is the command whose --help explains it."""

    def __init__(self, message: str, prog: str) -> None:
        super().__init__(message)
        self.prog = prog


class Args:
    """What a command line parsed to: one attribute per flag and argument."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return "Args(" + ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items()) + ")"


class Opt:
    """A flag: FLAG (a boolean), VALUE (the last one given wins) or APPEND (each one adds)."""

    __slots__ = ("names", "dest", "kind", "default", "convert", "choices", "metavar", "help")

    def __init__(self, *names: str, kind: str = VALUE, default: Any = None,
                 convert: Callable[[str], Any] | None = None,
                 choices: Sequence[str] | None = None, metavar: str | None = None,
                 help: str = "", dest: str | None = None) -> None:
        long = next((n for n in names if n.startswith("--")), names[0])
        self.names = names
        self.dest = dest or long.lstrip("-").replace("-", "_")
        self.kind = kind
        self.default = False if kind == FLAG else default
        self.convert = convert
        self.choices = choices
        self.metavar = metavar or ("" if kind == FLAG else self.dest.upper())
        self.help = help


class Arg:
    """A positional argument: nargs 1 (required), "?" (optional), "+" (one or more), "*"
    (any number) or REMAINDER (every word left, flags included)."""

    __slots__ = ("dest", "nargs", "metavar", "help")

    def __init__(self, dest: str, nargs: str | int = 1, metavar: str | None = None,
                 help: str = "") -> None:
        self.dest = dest
        self.nargs = nargs
        self.metavar = metavar or dest.upper()
        self.help = help


class Command:
    """A command: its flags, then either positional arguments or subcommands.

    A command with a REMAINDER argument stops reading flags at its first positional word, as
    `docker run` and `docker exec` do: what follows belongs to the command it runs."""

    def __init__(self, name: str, help: str = "", opts: Sequence[Opt] = (),
                 args: Sequence[Arg] = (), subs: Sequence[Command] = (),
                 sub_dest: str = "", aliases: Sequence[str] = (),
                 help_flags: Sequence[str] = ("-h", "--help"),
                 build: Callable[[Command], None] | None = None) -> None:
        self.name = name
        self.help = help
        self.opts = list(opts)
        self.args = list(args)
        self.subs = list(subs)
        self.sub_dest = sub_dest
        self.aliases = tuple(aliases)
        self.help_flags = tuple(help_flags)
        self._build = build  # fills opts/args/subs when the command is used (see `ready`)

    def ready(self) -> Command:
        """Build the command's flags and arguments on first use: a command line only pays for
        the command it names."""
        if self._build is not None:
            build, self._build = self._build, None
            build(self)
        return self

    def sub(self, word: str) -> Command | None:
        for cmd in self.subs:
            if word == cmd.name or word in cmd.aliases:
                return cmd
        return None

    # -- parsing ------------------------------------------------------------------------------

    def parse_args(self, argv: Sequence[str], prog: str = "shoal") -> Args:
        """Parse, or exit: 0 after printing help, 125 (USAGE_EXIT) after a one-line error."""
        try:
            return self.parse(list(argv), prog)
        except HelpRequested as h:
            sys.stdout.write(h.text)
            sys.exit(0)
        except UsageError as e:
            sys.stderr.write(f"shoal: {e} (see: {e.prog} --help)\n")
            sys.exit(USAGE_EXIT)

    def parse(self, argv: list[str], prog: str = "shoal", into: Args | None = None) -> Args:
        self.ready()
        ns = into if into is not None else Args()
        for opt in self.opts:
            setattr(ns, opt.dest, [] if opt.kind == APPEND else opt.default)
        by_name = {name: opt for opt in self.opts for name in opt.names}
        stops_at_positional = any(a.nargs == REMAINDER for a in self.args)
        words: list[str] = []
        i = 0
        while i < len(argv):
            word = argv[i]
            i += 1
            if word in self.help_flags:
                raise HelpRequested(self.help_text(prog))
            if word == "--":
                words += argv[i:]
                break
            if word.startswith("--"):
                name, eq, value = word.partition("=")
                opt = by_name.get(name)
                if opt is None:
                    raise UsageError(f"unknown flag {name}", prog)
                if opt.kind == FLAG:
                    setattr(ns, opt.dest, _boolean(value, name, prog) if eq else True)
                    continue
                if not eq:
                    if i == len(argv):
                        raise UsageError(f"flag {name} needs a value", prog)
                    value, i = argv[i], i + 1
                self._store(ns, opt, name, value, prog)
            elif word.startswith("-") and len(word) > 1:
                i = self._short_flags(ns, by_name, word, argv, i, prog)
            elif self.subs:
                cmd = self.sub(word)
                if cmd is None:
                    raise UsageError(f"unknown command {word!r}: choose one of "
                                     + ", ".join(c.name for c in self.subs), prog)
                setattr(ns, self.sub_dest, word)
                return cmd.parse(argv[i:], f"{prog} {cmd.name}", ns)
            else:
                words.append(word)
                if stops_at_positional:
                    words += argv[i:]
                    break
        if self.subs:
            raise UsageError("missing a command: choose one of "
                             + ", ".join(c.name for c in self.subs), prog)
        self._assign(ns, words, prog)
        return ns

    def _short_flags(self, ns: Args, by_name: dict[str, Opt], word: str, argv: list[str],
                     i: int, prog: str) -> int:
        """-d, -di (flags combined), -e A=1, -eA=1 (a value attached or next)."""
        for j in range(1, len(word)):
            name = "-" + word[j]
            opt = by_name.get(name)
            if opt is None:
                where = f" in {word}" if len(word) > 2 else ""
                raise UsageError(f"unknown flag {name}{where}", prog)
            if opt.kind == FLAG:
                setattr(ns, opt.dest, True)
                continue
            value = word[j + 1:]
            if value.startswith("="):
                value = value[1:]
            if not value:
                if i == len(argv):
                    raise UsageError(f"flag {name} needs a value", prog)
                value, i = argv[i], i + 1
            self._store(ns, opt, name, value, prog)
            break
        return i

    @staticmethod
    def _store(ns: Args, opt: Opt, name: str, value: str, prog: str) -> None:
        if opt.choices is not None and value not in opt.choices:
            raise UsageError(f"invalid value {value!r} for {name}: choose "
                             + " or ".join(opt.choices), prog)
        if opt.convert is not None:
            try:
                converted = opt.convert(value)
            except ValueError as e:
                raise UsageError(f"invalid value {value!r} for {name}: {e}", prog) from None
        else:
            converted = value
        if opt.kind == APPEND:
            getattr(ns, opt.dest).append(converted)
        else:
            setattr(ns, opt.dest, converted)

    def _assign(self, ns: Args, words: list[str], prog: str) -> None:
        """Hand the positional words to the arguments, in order."""
        rest = list(words)
        for n, arg in enumerate(self.args):
            later_required = sum(1 for a in self.args[n + 1:] if a.nargs in (1, "+"))
            if arg.nargs == REMAINDER:  # a `--` before the command separates it
                setattr(ns, arg.dest, rest[1:] if rest[:1] == ["--"] else rest)
                rest = []
            elif arg.nargs == "+":
                take = max(len(rest) - later_required, 0)
                if take == 0:
                    raise UsageError(f"missing {arg.metavar}", prog)
                setattr(ns, arg.dest, rest[:take])
                rest = rest[take:]
            elif arg.nargs == "*":
                take = max(len(rest) - later_required, 0)
                setattr(ns, arg.dest, rest[:take])
                rest = rest[take:]
            elif arg.nargs == "?":
                take = 1 if len(rest) > later_required else 0
                setattr(ns, arg.dest, rest[0] if take else None)
                rest = rest[take:]
            else:
                if not rest:
                    raise UsageError(f"missing {arg.metavar}", prog)
                setattr(ns, arg.dest, rest.pop(0))
        if rest:
            raise UsageError(f"unexpected argument {rest[0]!r}", prog)

    # -- help ---------------------------------------------------------------------------------

    def usage(self, prog: str) -> str:
        parts = [prog]
        if self.opts:
            parts.append("[OPTIONS]")
        if self.subs:
            parts.append("COMMAND")
        for arg in self.args:
            parts.append({1: arg.metavar, "?": f"[{arg.metavar}]",
                          "+": f"{arg.metavar} [{arg.metavar}...]",
                          "*": f"[{arg.metavar}...]",
                          REMAINDER: f"[--] {arg.metavar} [ARG...]"}[arg.nargs])
        return "usage: " + " ".join(parts)

    def help_text(self, prog: str) -> str:
        self.ready()
        out = [self.usage(prog), ""]
        if self.help:
            out += [self.help[0].upper() + self.help[1:] + ".", ""]
        rows: list[tuple[str, str]] = []
        if self.subs:
            out.append("commands:")
            rows = [(c.name, c.help) for c in self.subs]
            out += _columns(rows) + [""]
        if self.args and any(a.help for a in self.args):
            out.append("arguments:")
            out += _columns([(a.metavar, a.help) for a in self.args]) + [""]
        out.append("options:")
        rows = []
        for opt in self.opts:
            names = ", ".join(opt.names)
            if opt.kind != FLAG:
                names += f" {opt.metavar}"
            text = opt.help
            if opt.kind == APPEND:
                text += " (repeatable)" if text else "(repeatable)"
            if opt.kind == VALUE and opt.default not in (None, ""):
                text += f" (default {opt.default:g})" if isinstance(opt.default, float) \
                    else f" (default {opt.default})"
            rows.append((names, text))
        rows.append((", ".join(self.help_flags), "show this help"))
        out += _columns(rows)
        if self.subs:
            out += ["", f"Run '{prog} COMMAND --help' for a command's options."]
        return "\n".join(out) + "\n"


class HelpRequested(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _boolean(value: str, name: str, prog: str) -> bool:
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise UsageError(f"invalid value {value!r} for {name}: choose true or false", prog)


def _columns(rows: list[tuple[str, str]]) -> list[str]:
    width = min(max((len(left) for left, _ in rows), default=0), 30)
    lines = []
    for left, right in rows:
        if len(left) > width:
            lines.append(f"  {left}")
            if right:
                lines.append(f"  {'':<{width}}  {right}")
        else:
            lines.append(f"  {left:<{width}}  {right}".rstrip())
    return lines
