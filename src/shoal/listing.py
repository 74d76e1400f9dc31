"""Docker's CLI listings (`ps`, `network ls`, `port`) as `--format` asks for them:

- `table`: the command's default columns;
- `json`: each row as `{{json .}}`, one a line;
- a Go template (shoal.gotemplate), executed on each row, a line each;
- `table` and a template: a header row (the template executed on the columns' titles),
  then the rows, aligned as Go's text/tabwriter does with Docker's settings (cells end at
  a tab; a column is as wide as its widest cell plus 3, at least 10; the last cell of a
  line is not padded).

As Docker's CLI does, the two characters `\\t` and `\\n` in a format mean a tab and a
newline, and spaces around it are trimmed. Pure: rows in, text out; TemplateError out of a
template that does not parse or execute."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

TABLE, JSON = "table", "json"

# the functions that Docker's header row replaces, so that a title stays as it is
_SAME = {name: (lambda s, *_: s) for name in
         ("json", "split", "join", "title", "lower", "upper", "truncate")}


class Listing:
    """A `--format` parsed: `default` is the table format `table` stands for."""

    def __init__(self, fmt: str, default: str) -> None:
        self.json = fmt == JSON
        if fmt == TABLE:
            fmt = default
        self.table = fmt.startswith(TABLE)
        text = fmt[len(TABLE):] if self.table else fmt
        text = text.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
        self.template: Any = None
        # a table of plain fields (every default table) is filled in without the template
        # module: `shoal ps` and `network ls` stay quick to start
        cells = text.split("\t")
        self.fields = [c[3:-2] for c in cells] if self.table and all(
            c.startswith("{{.") and c.endswith("}}") and c[3:-2].isidentifier()
            for c in cells) else None
        if not self.json and self.fields is None:
            from .gotemplate import parse

            self.template = parse(text)

    def render(self, rows: list[dict[str, Any]], titles: dict[str, str],
               type_name: str = "struct") -> str:
        """The listing's text (each line newline-terminated). `titles`: each field's column
        title (Docker's header names); `type_name`: the Go type a field error names (Docker's
        row context, e.g. *formatter.ContainerContext)."""
        fields = self.fields
        if fields is not None and all(f in titles for f in fields) and all(
                isinstance(r.get(f), str) for r in rows for f in fields):
            return tabwrite("".join("\t".join(line) + "\n" for line in
                                    [[titles[f] for f in fields]]
                                    + [[r[f] for f in fields] for r in rows]))
        if fields is not None:  # (a missing field: the template names it)
            from .gotemplate import parse

            self.template, self.fields = parse("\t".join(f"{{{{.{f}}}}}" for f in fields)), None
        from .gotemplate import Struct, to_json

        if self.json:
            return "".join(to_json(r) + "\n" for r in rows)
        out = []
        for row in rows:
            data = Struct(row)
            data.type_name = type_name
            out.append(self.template.execute(data) + "\n")
        if not self.table:
            return "".join(out)
        header = self.template.execute(dict(titles), funcs=_SAME) + "\n"
        return tabwrite(header + "".join(out))


def formatted(fmt: str, rows: list[dict[str, Any]], titles: dict[str, str], default: str,
              type_name: str = "struct") -> tuple[str, str | None]:
    """(the listing's text, None), or ("", the one line that says why) for a template that
    does not parse or execute on a row."""
    try:
        listing = Listing(fmt, default)
    except Exception as e:
        from .gotemplate import TemplateError  # (raised only once imported)

        if not isinstance(e, TemplateError):
            raise
        return "", f"template parsing error: {e}"
    try:
        return listing.render(rows, titles, type_name), None
    except Exception as e:
        from .gotemplate import TemplateError

        if not isinstance(e, TemplateError):
            raise
        return "", str(e)


def format_rows(fmt: str, rows: list[dict[str, Any]], titles: dict[str, str], default: str,
                type_name: str = "struct") -> str:
    """Listing(fmt, default).render(rows, titles, type_name)."""
    return Listing(fmt, default).render(rows, titles, type_name)


def tabwrite(text: str, minwidth: int = 10, padding: int = 3) -> str:
    """Go's text/tabwriter.NewWriter(w, minwidth, 1, padding, ' ', 0) over `text`: the
    columns of each block of consecutive lines that have that column, padded with spaces."""
    lines = [line.split("\t") for line in text.split("\n")]
    widths: list[int] = []
    out: list[str] = []

    def write(l0: int, l1: int) -> None:
        for line in lines[l0:l1]:
            out.append("".join(c.ljust(widths[j]) if j < len(widths) else c
                               for j, c in enumerate(line)))

    def block(l0: int, l1: int) -> None:
        column = len(widths)
        this = l0
        while this < l1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write(l0, this)
            l0 = this
            width = minwidth
            while this < l1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            block(l0, this)
            widths.pop()
            l0 = this
        write(l0, l1)

    block(0, len(lines))
    return "\n".join(out)
