"""Go's text/template language, the part Docker users write in `inspect --format` and in
the listings' `--format` (`ps`, `network ls`, `port`: shoal.listing).

Pure: text and data in, text out. Data are what `inspect` prints as JSON (dicts, lists, str,
int, float, bool, None); a field on a dict looks its key up, as Go does on a map.

    render("{{range $k, $v := .Labels}}{{$k}}={{$v}} {{end}}", data)

A `Struct` (a dict) stands for a Go struct: a field it lacks is an error, as on Docker's
`ps` and `network ls` rows, where a plain dict (a Go map) gives `<no value>`.
`{{define}}`, `{{template}}` and `{{block}}` name templates within one text; `{{break}}` and
`{{continue}}` end a `{{range}}`'s element early.

Errors are TemplateError, one line that names the line:column and the bad part."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["Struct", "Template", "TemplateError", "parse", "render"]


class TemplateError(Exception):
    """A template that does not parse, or does not execute on its data."""


class Struct(dict):  # type: ignore[type-arg]
    """A Go struct's fields: looking up one it lacks fails, naming `type_name`."""

    type_name = "struct"


class _Missing:
    """A map key that is not there: prints `<no value>`; fields of it are missing too."""

    def __repr__(self) -> str:
        return "<no value>"


MISSING = _Missing()

# -- lexing -----------------------------------------------------------------------------------

# token kinds
TEXT, FIELD, VAR, IDENT, STR, NUM, PUNCT, END, DOT = (
    "text", "field", "var", "ident", "string", "number", "punct", "end", "dot")
_KEYWORDS = ("if", "else", "end", "range", "with", "break", "continue", "define", "template",
             "block")
_MAX_DEPTH = 64  # nested {{template}} calls (Go allows 100000; Python's stack fewer)


class _Tok:
    __slots__ = ("kind", "value", "pos", "spaced")

    def __init__(self, kind: str, value: Any, pos: int, spaced: bool) -> None:
        self.kind, self.value, self.pos, self.spaced = kind, value, pos, spaced


def _where(src: str, pos: int) -> str:
    line = src.count("\n", 0, pos) + 1
    return f"{line}:{pos - (src.rfind(chr(10), 0, pos) + 1) + 1}"


def _shown(tok: _Tok) -> str:
    if tok.kind == END:
        return '"}}"'
    if tok.kind == STR:
        return _quote(tok.value)
    if tok.kind == FIELD:
        return '"' + "".join("." + f for f in tok.value) + '"'
    return f'"{tok.value}"'


def _name_end(src: str, i: int) -> int:
    while i < len(src) and (src[i].isalnum() or src[i] == "_"):
        i += 1
    return i


def _fields(src: str, i: int) -> tuple[list[str], int]:
    """`.A.B.C` from i (at a dot) on."""
    out = []
    while i < len(src) and src[i] == "." and i + 1 < len(src) and (
            src[i + 1].isalpha() or src[i + 1] == "_"):
        j = _name_end(src, i + 1)
        out.append(src[i + 1:j])
        i = j
    return out, i


_GO_STRING_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a",
            "b": "\b", "f": "\f", "v": "\v", "0": "\0"}


def _lex(src: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(src)
    while i < n:
        start = src.find("{{", i)
        if start < 0:
            toks.append(_Tok(TEXT, src[i:], i, False))
            break
        text = src[i:start]
        j = start + 2
        if src.startswith("- ", j) or src.startswith("-\t", j) or src.startswith("-\n", j):
            text = text.rstrip(" \t\r\n")
            j += 2
        if text:
            toks.append(_Tok(TEXT, text, i, False))
        if src.startswith("/*", j):
            k = src.find("*/", j)
            close = src.find("}}", k) if k >= 0 else -1
            if close < 0:
                raise TemplateError(f"template: {_where(src, start)}: unclosed comment")
            trim = src[close - 2:close] == " -" if close >= 2 else False
            i = close + 2
            if trim:
                while i < n and src[i] in " \t\r\n":
                    i += 1
            continue
        i = _lex_action(src, j, toks, start)
        if toks[-1].value:  # ` -}}`: trim the text after
            while i < n and src[i] in " \t\r\n":
                i += 1
    return toks


def _lex_action(src: str, i: int, toks: list[_Tok], start: int) -> int:
    """The tokens of one action, its END last (value: whether it trims the text after)."""
    n = len(src)
    toks.append(_Tok(PUNCT, "{{", start, False))
    spaced = True
    while True:
        if i >= n:
            raise TemplateError(f"template: {_where(src, start)}: unclosed action")
        c = src[i]
        if c in " \t\r\n":
            if src.startswith("-}}", i + 1):
                toks.append(_Tok(END, True, i + 1, True))
                return i + 4
            i += 1
            spaced = True
            continue
        pos = i
        if src.startswith("}}", i):
            toks.append(_Tok(END, False, i, spaced))
            return i + 2
        if c == ".":
            names, i = _fields(src, i)
            if names:
                toks.append(_Tok(FIELD, names, pos, spaced))
            else:
                if i + 1 < n and src[i + 1].isdigit():
                    i = _lex_number(src, i, toks, spaced)
                else:
                    toks.append(_Tok(DOT, ".", pos, spaced))
                    i += 1
        elif c == "$":
            j = _name_end(src, i + 1)
            names, j2 = _fields(src, j)
            toks.append(_Tok(VAR, (src[i:j], names), pos, spaced))
            i = j2
        elif c.isalpha() or c == "_":
            j = _name_end(src, i)
            word = src[i:j]
            if word in ("true", "false"):
                toks.append(_Tok(NUM, word == "true", pos, spaced))
            elif word == "nil":
                toks.append(_Tok(NUM, None, pos, spaced))
            else:
                toks.append(_Tok(IDENT, word, pos, spaced))
            i = j
        elif c == '"':
            i = _lex_string(src, i, toks, spaced)
        elif c == "`":
            j = src.find("`", i + 1)
            if j < 0:
                raise TemplateError(f"template: {_where(src, pos)}: unterminated raw quoted "
                                    "string")
            toks.append(_Tok(STR, src[i + 1:j], pos, spaced))
            i = j + 1
        elif c == "'":
            j = src.find("'", i + 1)
            body = src[i + 1:j] if j > 0 else ""
            ch = _GO_STRING_ESCAPES.get(body[1:], "") if body.startswith("\\") else body
            if len(ch) != 1:
                raise TemplateError(f"template: {_where(src, pos)}: malformed character "
                                    "constant")
            toks.append(_Tok(NUM, ord(ch), pos, spaced))
            i = j + 1
        elif c.isdigit() or (c in "+-" and i + 1 < n and (src[i + 1].isdigit()
                                                          or src[i + 1] == ".")):
            i = _lex_number(src, i, toks, spaced)
        elif src.startswith(":=", i):
            toks.append(_Tok(PUNCT, ":=", pos, spaced))
            i += 2
        elif c in "()|,=":
            toks.append(_Tok(PUNCT, c, pos, spaced))
            i += 1
        else:
            raise TemplateError(f"template: {_where(src, pos)}: unexpected {_quote(c)} in "
                                "operand" if c == "}" else
                                f"template: {_where(src, pos)}: unrecognized character in "
                                f"action: {_quote(c)}")
        spaced = False


def _lex_number(src: str, i: int, toks: list[_Tok], spaced: bool) -> int:
    j = i + 1
    while j < len(src) and (src[j].isalnum() or src[j] in "._" or (
            src[j] in "+-" and src[j - 1] in "eE")):
        j += 1
    word = src[i:j].replace("_", "")
    try:
        value: int | float = int(word, 0)
    except ValueError:
        try:
            value = float(word)
        except ValueError:
            raise TemplateError(f"template: {_where(src, i)}: bad number syntax: "
                                f'"{src[i:j]}"') from None
    toks.append(_Tok(NUM, value, i, spaced))
    return j


def _lex_string(src: str, i: int, toks: list[_Tok], spaced: bool) -> int:
    out, j = [], i + 1
    while True:
        if j >= len(src) or src[j] == "\n":
            raise TemplateError(f"template: {_where(src, i)}: unterminated quoted string")
        c = src[j]
        if c == '"':
            toks.append(_Tok(STR, "".join(out), i, spaced))
            return j + 1
        if c == "\\" and j + 1 < len(src):
            e = src[j + 1]
            if e in "xuU":
                width = {"x": 2, "u": 4, "U": 8}[e]
                try:
                    out.append(chr(int(src[j + 2:j + 2 + width], 16)))
                except ValueError:
                    raise TemplateError(f"template: {_where(src, j)}: invalid syntax in "
                                        "quoted string") from None
                j += 2 + width
                continue
            if e not in _GO_STRING_ESCAPES:
                raise TemplateError(f"template: {_where(src, j)}: invalid syntax in quoted "
                                    "string")
            out.append(_GO_STRING_ESCAPES[e])
            j += 2
            continue
        out.append(c)
        j += 1


# -- parsing ----------------------------------------------------------------------------------
# Nodes are tuples: ("text", s) ("action", pipe) ("if"|"with", pipe, body, else)
# ("range", pipe, body, else). A pipe: (decl_names, is_assign, [command]); a command: [operand];
# an operand: (pos, kind, value, chained_fields).


class _Parser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.toks = _lex(src)
        self.i = 0
        self.loops = 0  # how many {{range}} bodies the parser is in
        self.defs: dict[str, list[Any]] = {}

    def err(self, tok: _Tok, msg: str) -> TemplateError:
        return TemplateError(f"template: {_where(self.src, tok.pos)}: {msg}")

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def next(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def parse(self) -> list[Any]:
        body, stop = self.list_until(())
        return body

    def list_until(self, stops: tuple[str, ...]) -> tuple[list[Any], str]:
        """Nodes up to an `{{end}}` or `{{else}}` (the word that stopped returned)."""
        out: list[Any] = []
        while self.i < len(self.toks):
            tok = self.next()
            if tok.kind == TEXT:
                out.append(("text", tok.value))
                continue
            head = self.peek()
            if head.kind == IDENT and head.value in _KEYWORDS:
                self.next()
                word = head.value
                if word in ("end", "else"):
                    if word not in stops:
                        raise self.err(head, f"unexpected {{{{{word}}}}}")
                    if word == "end":
                        self.expect_end("end")
                    return out, word
                if word in ("break", "continue"):
                    if not self.loops:
                        raise self.err(head, f"{{{{{word}}}}} outside {{{{range}}}}")
                    self.expect_end(word)
                    out.append((word,))
                elif word in ("define", "template", "block"):
                    node = self.named(word, head, top=not stops)
                    if node is not None:
                        out.append(node)
                else:
                    out.append(self.block(word, head))
                continue
            out.append(("action", self.pipe(head, decl_ok=True)))
        if stops:
            raise TemplateError("template: unexpected EOF (an {{end}} is missing)")
        return out, ""

    def named(self, word: str, head: _Tok, top: bool) -> Any:
        """`{{define "n"}}..{{end}}` (nothing left in place), `{{template "n" [pipe]}}`,
        `{{block "n" pipe}}..{{end}}` (a define and a template in one)."""
        name = self.next()
        if name.kind != STR:
            raise self.err(name, f"unexpected {_shown(name)} in {word} clause")
        pipe = None
        if word == "define":
            if not top:
                raise self.err(head, "unexpected {{define}}: only at the top level")
            self.expect_end("define clause")
        elif self.peek().kind == END:
            if word == "block":
                raise self.err(head, "missing value for block clause")
            self.next()
        else:
            pipe = self.pipe(head, decl_ok=False, context=f"{word} clause")
        if word != "template":
            loops, self.loops = self.loops, 0  # a template's body is not in the caller's range
            body, _ = self.list_until(("end",))
            self.loops = loops
            self.defs[name.value] = body
        return None if word == "define" else ("template", name.value, pipe, name.pos)

    def block(self, word: str, head: _Tok) -> Any:
        pipe = self.pipe(head, decl_ok=True, context=word)
        self.loops += word == "range"
        body, stop = self.list_until(("end", "else"))
        self.loops -= word == "range"
        other: list[Any] = []
        if stop == "else":
            nxt = self.peek()
            if nxt.kind == IDENT and nxt.value in ("if", "with") and word != "range":
                self.next()
                other = [self.block(nxt.value, nxt)]  # shares the {{end}}
            else:
                self.expect_end("else")
                other, stop = self.list_until(("end",))
        return (word, pipe, body, other)

    def expect_end(self, what: str) -> None:
        tok = self.next()
        if tok.kind != END:
            raise self.err(tok, f"unexpected {_shown(tok)} in {what}")

    def pipe(self, head: _Tok, decl_ok: bool, context: str = "command") -> Any:
        decl: list[str] = []
        assign = False
        # `$x :=`, `$k, $v :=`, `$x =`
        j, done = self.i, False
        while self.toks[j].kind == VAR and not self.toks[j].value[1]:
            nxt = self.toks[j + 1]
            if nxt.kind != PUNCT or nxt.value not in (":=", "=", ",") or (
                    nxt.value == "," and decl):
                break
            decl.append(self.toks[j].value[0])
            j += 2
            if nxt.value != ",":
                assign, done = nxt.value == "=", True
                self.i = j
                break
        if not done:
            decl = []
        if decl and not decl_ok:
            raise self.err(head, "unexpected variable declaration")
        cmds = []
        while True:
            cmds.append(self.command(context))
            tok = self.next()
            if tok.kind == END or (tok.kind == PUNCT and tok.value == ")"):
                if tok.kind == PUNCT and context != "paren":
                    raise self.err(tok, 'unexpected ")" in operand')
                if tok.kind == END and context == "paren":
                    raise self.err(tok, "unclosed left paren")
                break
            if not (tok.kind == PUNCT and tok.value == "|"):
                raise self.err(tok, f"unexpected {_shown(tok)} in {context}")
        if not cmds:
            raise self.err(head, f"missing value for {context}")
        return (decl, assign, cmds)

    def command(self, context: str) -> list[Any]:
        ops = []
        while True:
            tok = self.peek()
            if tok.kind == END or (tok.kind == PUNCT and tok.value in ("|", ")")):
                break
            ops.append(self.operand())
        if not ops:
            tok = self.peek()
            if context in ("if", "with", "range"):
                raise self.err(tok, f"missing value for {context}")
            raise self.err(tok, "missing value for command" if tok.value != ")" else
                           'unexpected ")" in operand')
        return ops

    def operand(self) -> Any:
        tok = self.next()
        if tok.kind == PUNCT and tok.value == "(":
            node: Any = (tok.pos, "pipe", self.pipe(tok, decl_ok=False, context="paren"), [])
        elif tok.kind == IDENT and tok.value not in FUNCS and tok.value not in _LAZY:
            raise self.err(tok, f'function "{tok.value}" not defined')
        elif tok.kind in (FIELD, DOT, STR, NUM, IDENT):
            node = (tok.pos, tok.kind, tok.value, [])
        elif tok.kind == VAR:
            node = (tok.pos, VAR, tok.value[0], list(tok.value[1]))
        else:
            raise self.err(tok, f"unexpected {_shown(tok)} in operand")
        nxt = self.peek()
        while nxt.kind == FIELD and not nxt.spaced:
            if node[1] in (STR, NUM):
                raise self.err(nxt, "unexpected . after term")
            node[3].extend(nxt.value)
            self.next()
            nxt = self.peek()
        return node


# -- values as Go prints them -----------------------------------------------------------------


def _go_type(v: Any) -> str:
    if isinstance(v, Struct):
        return v.type_name
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "map[string]interface {}"
    if isinstance(v, (list, tuple)):
        return "[]interface {}"
    return "<nil>" if v is None or v is MISSING else type(v).__name__


def _float(f: float) -> str:
    """Go's %v of a float64: shortest digits, an exponent below 1e-4 and from 1e6 on."""
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "+Inf" if f > 0 else "-Inf"
    from decimal import Decimal

    sign, digits, exp = Decimal(repr(f)).as_tuple()
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    point = len(digits) + int(exp)  # digits before the decimal point
    e = point - 1
    if ds == "0":
        return "-0" if sign else "0"
    if e < -4 or e >= 6:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        out = f"{mant}e{'-' if e < 0 else '+'}{abs(e):02d}"
    elif point <= 0:
        out = "0." + "0" * -point + ds
    elif point >= len(ds):
        out = ds + "0" * (point - len(ds))
    else:
        out = ds[:point] + "." + ds[point:]
    return ("-" if sign else "") + out


def show(v: Any, top: bool = True) -> str:
    """A value as `{{.}}` prints it (Go's fmt %v)."""
    if v is MISSING or (v is None and top):
        return "<no value>"
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return _float(v)
    if isinstance(v, dict):
        return "map[" + " ".join(f"{show(k, False)}:{show(v[k], False)}"
                                 for k in sorted(v, key=str)) + "]"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(show(x, False) for x in v) + "]"
    return str(v)


def _quote(s: str) -> str:
    """Go's strconv.Quote, near enough: JSON's escapes, non-printables as \\x or \\u."""
    out = ['"']
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif c in "\n\t\r\a\b\f\v":
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r", "\a": "\\a", "\b": "\\b",
                        "\f": "\\f", "\v": "\\v"}[c])
        elif not c.isprintable() and c != " ":
            o = ord(c)
            out.append(f"\\x{o:02x}" if o < 0x80 else f"\\u{o:04x}" if o < 0x10000
                       else f"\\U{o:08x}")
        else:
            out.append(c)
    return "".join(out) + '"'


def to_json(v: Any) -> str:
    """Docker's `json`: Go's encoding/json, compact, map keys sorted, and (Docker turns off
    the HTML escaping) <, > and & as they are; U+2028 and U+2029 escaped as Go always does."""
    import json

    if v is MISSING:
        v = None
    text = json.dumps(v, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    for c, e in (("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(c, e)
    return text


def truth(v: Any) -> bool:
    return not (v is None or v is MISSING or v is False or v == 0 and not isinstance(v, str)
                or (isinstance(v, (str, list, tuple, dict)) and len(v) == 0))


# -- functions --------------------------------------------------------------------------------


def _sprintf(fmt: str, *args: Any) -> str:
    out, i, n, a = [], 0, len(fmt), 0
    while i < n:
        c = fmt[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        j = i + 1
        flags = ""
        while j < n and fmt[j] in "-+# 0":
            flags += fmt[j]
            j += 1
        k = j
        while j < n and fmt[j].isdigit():
            j += 1
        width = int(fmt[k:j]) if j > k else None
        prec = None
        if j < n and fmt[j] == ".":
            k = j = j + 1
            while j < n and fmt[j].isdigit():
                j += 1
            prec = int(fmt[k:j] or 0)
        if j >= n:
            out.append("%!(NOVERB)")
            break
        verb = fmt[j]
        i = j + 1
        if verb == "%":
            out.append("%")
            continue
        if a >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        v = args[a]
        a += 1
        s = _verb(verb, v, flags, prec)
        if width is not None and len(s) < width:
            pad = width - len(s)
            if "-" in flags:
                s += " " * pad
            elif "0" in flags and verb in "dfx" and not isinstance(v, str):
                sign = s[0] if s[:1] in "+-" else ""
                s = sign + "0" * pad + s[len(sign):]
            else:
                s = " " * pad + s
        out.append(s)
    if a < len(args):
        out.append("%!(EXTRA " + ", ".join(f"{_go_type(x)}={show(x, False)}"
                                           for x in args[a:]) + ")")
    return "".join(out)


def _verb(verb: str, v: Any, flags: str, prec: int | None) -> str:
    ints = isinstance(v, int) and not isinstance(v, bool)
    if verb == "v":
        return show(v, False)
    if verb == "s" and isinstance(v, str):
        return v[:prec] if prec is not None else v
    if verb == "s" and isinstance(v, (list, dict)):
        return show(v, False)
    if verb == "q" and isinstance(v, str):
        return _quote(v)
    if verb == "d" and ints:
        return ("+" if "+" in flags and v >= 0 else "") + str(v)
    if verb in "xX" and ints:
        return format(v, verb)
    if verb in "xX" and isinstance(v, str):
        return v.encode().hex() if verb == "x" else v.encode().hex().upper()
    if verb == "t" and isinstance(v, bool):
        return show(v)
    if verb in "fFeg" and isinstance(v, (int, float)) and not isinstance(v, bool):
        return format(float(v), f".{6 if prec is None else prec}{verb.lower()}")
    return f"%!{verb}({_go_type(v)}={show(v, False)})"


def _print(*args: Any) -> str:
    """Go's fmt.Sprint: a space between two operands when neither is a string."""
    out = []
    for i, v in enumerate(args):
        if i and not isinstance(v, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(show(v, False))
    return "".join(out)


def _index(item: Any, *keys: Any) -> Any:
    for k in keys:
        if isinstance(item, dict):
            if not isinstance(k, str):
                raise _CallError(f"value has type {_go_type(k)}; should be string")
            item = item.get(k, MISSING)
        elif isinstance(item, (list, tuple, str)):
            if not isinstance(k, int) or isinstance(k, bool):
                raise _CallError(f"cannot index slice/array with type {_go_type(k)}")
            if not 0 <= k < len(item):
                raise _CallError(f"index out of range: {k}")
            item = item[k] if not isinstance(item, str) else ord(item[k])
        elif item is None or item is MISSING:
            raise _CallError("index of untyped nil")
        else:
            raise _CallError(f"can't index item of type {_go_type(item)}")
    return item


def _len(v: Any) -> int:
    if isinstance(v, str):
        return len(v.encode())
    if isinstance(v, (list, tuple, dict)):
        return len(v)
    raise _CallError(f"len of type {_go_type(v)}")


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "int" if isinstance(v, int) else "float"
    if isinstance(v, str):
        return "string"
    if v is None or v is MISSING:
        return "nil"
    return "other"


def _eq(a: Any, *bs: Any) -> bool:
    if not bs:
        raise _CallError("missing argument for comparison")
    for b in bs:
        ka, kb = _kind(a), _kind(b)
        if ka == "other" or kb == "other":
            raise _CallError("invalid type for comparison")
        if ka != kb and "nil" not in (ka, kb):
            raise _CallError("incompatible types for comparison")
        if (None if a is MISSING else a) == (None if b is MISSING else b):
            return True
    return False


def _less(a: Any, b: Any) -> bool:
    ka, kb = _kind(a), _kind(b)
    if ka not in ("int", "float", "string") or kb not in ("int", "float", "string"):
        raise _CallError("invalid type for comparison")
    if ka != kb:
        raise _CallError("incompatible types for comparison")
    return bool(a < b)


def _title(s: str) -> str:
    out, prev = [], " "
    for c in s:
        out.append(c.upper() if not (prev.isalnum() or prev == "_") else c)
        prev = c
    return "".join(out)


def _str_arg(name: str, v: Any) -> str:
    if not isinstance(v, str):
        raise _CallError(f"wrong type for value; expected string; got {_go_type(v)}")
    return v


def _join(items: Any, sep: Any) -> str:
    if not isinstance(items, (list, tuple)):
        raise _CallError(f"wrong type for value; expected []string; got {_go_type(items)}")
    return _str_arg("join", sep).join(_str_arg("join", x) for x in items)


class _CallError(Exception):
    pass


FUNCS: dict[str, Callable[..., Any]] = {
    "index": _index,
    "json": to_json,
    "len": _len,
    "join": _join,
    "split": lambda s, sep: _str_arg("split", s).split(_str_arg("split", sep)) if sep
    else list(_str_arg("split", s)),
    "upper": lambda s: _str_arg("upper", s).upper(),
    "lower": lambda s: _str_arg("lower", s).lower(),
    "title": lambda s: _title(_str_arg("title", s)),
    "printf": lambda fmt, *a: _sprintf(_str_arg("printf", fmt), *a),
    "print": _print,
    "println": lambda *a: " ".join(show(v, False) for v in a) + "\n",
    "eq": _eq,
    "ne": lambda a, b: not _eq(a, b),
    "lt": _less,
    "le": lambda a, b: _less(a, b) or _eq(a, b),
    "gt": lambda a, b: not (_less(a, b) or _eq(a, b)),
    "ge": lambda a, b: not _less(a, b),
    "not": lambda v: not truth(v),
    "pad": lambda s, a, b: " " * a + s + " " * b if _str_arg("pad", s) else s,
    "truncate": lambda s, n: _str_arg("truncate", s)[:n],
}
_LAZY = ("and", "or")  # evaluate their arguments only as far as needed


# -- execution --------------------------------------------------------------------------------


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Exec:
    def __init__(self, src: str, data: Any, defs: dict[str, list[Any]],
                 funcs: dict[str, Callable[..., Any]]) -> None:
        self.src = src
        self.vars: list[tuple[str, Any]] = [("$", data)]
        self.out: list[str] = []
        self.defs, self.funcs = defs, funcs
        self.depth = 0

    def err(self, node: Any, msg: str) -> TemplateError:
        return TemplateError(f"template: {_where(self.src, node[0])}: executing at "
                             f"<{self.show_node(node)}>: {msg}")

    def show_node(self, node: Any) -> str:
        _, kind, value, chain = node
        head = {FIELD: lambda: "".join("." + f for f in value), DOT: lambda: ".",
                STR: lambda: _quote(value), VAR: lambda: value, IDENT: lambda: value,
                NUM: lambda: show(value), "pipe": lambda: "(...)"}[kind]()
        return head + "".join("." + f for f in chain)

    def run(self, nodes: list[Any], dot: Any) -> None:
        for node in nodes:
            kind = node[0]
            if kind == "text":
                self.out.append(node[1])
            elif kind == "action":
                value = self.pipe(node[1], dot)
                if not node[1][0]:  # a declaration prints nothing
                    self.out.append(show(value))
            elif kind == "break":
                raise _Break
            elif kind == "continue":
                raise _Continue
            elif kind == "template":
                self.call(node, dot)
            elif kind in ("if", "with"):
                mark = len(self.vars)
                value = self.pipe(node[1], dot)
                if truth(value):
                    self.run(node[2], value if kind == "with" else dot)
                else:
                    self.run(node[3], dot)
                del self.vars[mark:]
            else:
                self.range(node, dot)

    def call(self, node: Any, dot: Any) -> None:
        _, name, pipe, pos = node
        body = self.defs.get(name)
        where = f"template: {_where(self.src, pos)}: executing at <{{{{template {_quote(name)}}}}}>"
        if body is None:
            raise TemplateError(f'{where}: template "{name}" not defined')
        if self.depth >= _MAX_DEPTH:
            raise TemplateError(f"{where}: exceeded maximum template depth ({_MAX_DEPTH})")
        value = self.pipe(pipe, dot) if pipe is not None else None
        saved, self.vars = self.vars, [("$", value)]
        self.depth += 1
        try:
            self.run(body, value)
        finally:
            self.depth -= 1
            self.vars = saved

    def range(self, node: Any, dot: Any) -> None:
        mark = len(self.vars)
        decl, _, cmds = node[1]
        value = self.pipe(([], False, cmds), dot)
        if isinstance(value, dict):
            pairs: list[tuple[Any, Any]] = [(k, value[k]) for k in sorted(value)]
        elif isinstance(value, (list, tuple)):
            pairs = list(enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            pairs = [(i, i) for i in range(value)]
        elif value is None or value is MISSING:
            pairs = []
        else:
            raise self.err(cmds[0][0], f"range can't iterate over {show(value)}")
        for k, v in pairs:
            if len(decl) == 1:
                self.vars.append((decl[0], v))
            elif len(decl) == 2:
                self.vars += [(decl[0], k), (decl[1], v)]
            try:
                self.run(node[2], v)
            except _Continue:
                pass
            except _Break:
                del self.vars[mark:]
                break
            del self.vars[mark:]
        if not pairs:
            self.run(node[3], dot)
        del self.vars[mark:]

    def var(self, node: Any, name: str) -> Any:
        for n, v in reversed(self.vars):
            if n == name:
                return v
        raise TemplateError(f"template: {_where(self.src, node[0])}: undefined variable: "
                            f"{name}")

    def pipe(self, pipe: Any, dot: Any) -> Any:
        decl, assign, cmds = pipe
        value: Any = MISSING
        final = False
        for cmd in cmds:
            value = self.command(cmd, dot, value if final else None, final)
            final = True
        if decl:
            if assign:
                for i in range(len(self.vars) - 1, -1, -1):
                    if self.vars[i][0] == decl[0]:
                        self.vars[i] = (decl[0], value)
                        break
                else:
                    raise self.err(cmds[0][0], f"undefined variable: {decl[0]}")
            else:
                self.vars.append((decl[-1], value))
        return value

    def command(self, cmd: list[Any], dot: Any, piped: Any, has_piped: bool) -> Any:
        first = cmd[0]
        if first[1] == IDENT:
            name = first[2]
            if name in _LAZY:
                return self.lazy(name, first, cmd[1:], dot, piped, has_piped)
            fn = self.funcs.get(name)
            if fn is None:
                raise TemplateError(f"template: {_where(self.src, first[0])}: function "
                                    f'"{name}" not defined')
            args = [self.operand(op, dot) for op in cmd[1:]]
            if has_piped:
                args.append(piped)
            try:
                result = fn(*args)
            except _CallError as e:
                raise self.err(first, f"error calling {name}: {e}") from None
            except TypeError:
                raise self.err(first, f"wrong number of args for {name}: got "
                               f"{len(args)}") from None
            return self.chain(first, result, first[3])
        if len(cmd) > 1 or has_piped:
            raise self.err(first, f"can't give argument to non-function {self.show_node(first)}")
        return self.operand(first, dot)

    def lazy(self, name: str, node: Any, ops: list[Any], dot: Any, piped: Any,
             has_piped: bool) -> Any:
        if len(ops) + has_piped < 1:
            raise self.err(node, f"wrong number of args for {name}: want at least 1 got 0")
        value: Any = None
        thunks = [lambda op=op: self.operand(op, dot) for op in ops]
        if has_piped:
            thunks.append(lambda: piped)
        for th in thunks:
            value = th()
            if truth(value) == (name == "or"):
                return value
        return value

    def operand(self, node: Any, dot: Any) -> Any:
        _, kind, value, chain = node
        if kind == FIELD:
            return self.chain(node, dot, value + chain)
        if kind == DOT:
            return self.chain(node, dot, chain)
        if kind == VAR:
            return self.chain(node, self.var(node, value), chain)
        if kind == "pipe":
            return self.chain(node, self.pipe(value, dot), chain)
        if kind == IDENT:
            return self.command([node], dot, None, False)
        return value

    def chain(self, node: Any, value: Any, fields: list[str]) -> Any:
        for f in fields:
            if value is MISSING:
                continue
            if isinstance(value, Struct) and f not in value:
                raise self.err(node, f"can't evaluate field {f} in type {value.type_name}")
            if isinstance(value, dict):
                value = value.get(f, MISSING)
            elif value is None:
                raise self.err(node, f"nil pointer evaluating interface {{}}.{f}")
            else:
                raise self.err(node, f"can't evaluate field {f} in type {_go_type(value)}")
        return value


class Template:
    """A parsed template: execute it on data as often as needed."""

    def __init__(self, src: str) -> None:
        self.src = src
        parser = _Parser(src)
        self.nodes = parser.parse()
        self.defs = parser.defs

    def execute(self, data: Any, funcs: dict[str, Callable[..., Any]] | None = None) -> str:
        """The text for `data`; `funcs` replace functions of the same name (as Docker's
        table header replaces `upper`, `json` and the others so the titles stay as they
        are)."""
        ex = _Exec(self.src, data, self.defs, {**FUNCS, **funcs} if funcs else FUNCS)
        ex.run(self.nodes, data)
        return "".join(ex.out)


def parse(template: str) -> Template:
    return Template(template)


def render(template: str, data: Any) -> str:
    return parse(template).execute(data)
