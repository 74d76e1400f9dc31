"""Docker's listing formats (shoal.listing): `table`, `json`, a Go template, `table` and a
template with Docker's titles, aligned as Go's text/tabwriter with Docker's settings."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.gotemplate import TemplateError
from shoal.listing import Listing, format_rows, formatted, tabwrite

TITLES = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER"}
DEFAULT = "table {{.ID}}\t{{.Name}}\t{{.Driver}}"
ROWS = [{"ID": "0123456789ab", "Name": "bridge", "Driver": "bridge"},
        {"ID": "ba9876543210", "Name": "a-much-longer-name", "Driver": "null"}]


def test_go_s_trailing_tab_example_left_aligned() -> None:
    # Go's text/tabwriter Example_trailingTab, with left alignment: a line whose last cell
    # is not tab-terminated is not part of that column, and splits its block
    text = "a\tb\taligned\t\naa\tbb\taligned\t\naaa\tbbb\tunaligned\naaaa\tbbbb\taligned\t\n"
    assert tabwrite(text, minwidth=0).split("\n") == [
        "a      b      aligned   ",
        "aa     bb     aligned   ",
        "aaa    bbb    unaligned",
        "aaaa   bbbb   aligned   ",
        "",
    ]


def test_a_shorter_line_ends_a_column_block() -> None:
    text = "x\tyyyyyyyyyyyy\tz\nshort\nxxxxxxxxxxxxxxx\ty\tz"
    assert tabwrite(text).split("\n") == [
        "x         yyyyyyyyyyyy   z",
        "short",
        "xxxxxxxxxxxxxxx   y         z",
    ]


cells = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=14)


@given(st.integers(1, 5).flatmap(lambda n: st.lists(st.lists(cells, min_size=n, max_size=n),
                                                    min_size=1, max_size=6)))
def test_every_column_starts_at_one_offset(table: list[list[str]]) -> None:
    lines = tabwrite("\n".join("\t".join(r) for r in table)).split("\n")
    widths = [max([10] + [len(r[j]) + 3 for r in table]) for j in range(len(table[0]) - 1)]
    for line, row in zip(lines, table, strict=True):
        at = 0
        for j, cell in enumerate(row):
            assert line[at:at + len(cell)] == cell
            if j < len(widths):
                assert line[at + len(cell):at + widths[j]] == " " * (widths[j] - len(cell))
                at += widths[j]
        assert len(line) == at + len(row[-1])  # the last cell is not padded


def test_table_is_the_default_with_docker_s_titles() -> None:
    assert format_rows("table", ROWS, TITLES, DEFAULT).split("\n") == [
        "NETWORK ID     NAME                 DRIVER",
        "0123456789ab   bridge               bridge",
        "ba9876543210   a-much-longer-name   null",
        "",
    ]


def test_table_and_a_template_titles_the_fields_it_uses() -> None:
    # `\t` typed as two characters is a tab, as in Docker; functions keep the titles as they
    # are; text around the fields stays in the header too
    out = format_rows("table {{upper .Name}}\\t{{.ID}} ({{.Driver}})", ROWS, TITLES, DEFAULT)
    assert out.split("\n") == [
        "NAME                 NETWORK ID (DRIVER)",
        "BRIDGE               0123456789ab (bridge)",
        "A-MUCH-LONGER-NAME   ba9876543210 (null)",
        "",
    ]
    assert format_rows("table {{.Name}}", [], TITLES, DEFAULT) == "NAME\n"  # no rows: a header


def test_a_template_is_a_line_for_each_row_without_a_header() -> None:
    assert format_rows("  {{.Name}}\\t{{.Driver}} ", ROWS, TITLES, DEFAULT) == \
        "bridge\tbridge\na-much-longer-name\tnull\n"
    assert format_rows("{{.Name}}", [], TITLES, DEFAULT) == ""
    assert format_rows('{{.Name}}{{if eq .Driver "null"}} (null){{end}}\\n', ROWS, TITLES,
                       DEFAULT) == "bridge\n\na-much-longer-name (null)\n\n"


@given(st.lists(st.dictionaries(st.sampled_from(["ID", "Name", "Labels", "Ports"]), cells),
                max_size=5))
def test_json_is_a_line_a_row_that_parses_back(rows: list[dict[str, str]]) -> None:
    out = format_rows("json", rows, TITLES, DEFAULT)
    assert out.count("\n") == len(rows)
    assert [json.loads(line) for line in out.splitlines()] == rows
    assert format_rows("{{json .}}", rows, TITLES, DEFAULT) == out


def test_bad_templates() -> None:
    with pytest.raises(TemplateError, match="unclosed action"):
        Listing("table {{.Name", DEFAULT)
    with pytest.raises(TemplateError) as err:
        format_rows("{{.Image}}", ROWS, TITLES, DEFAULT, "*formatter.networkContext")
    assert str(err.value) == ("template: 1:3: executing at <.Image>: can't evaluate field "
                              "Image in type *formatter.networkContext")


@given(st.lists(st.fixed_dictionaries({"ID": cells, "Name": cells, "Driver": cells}),
                max_size=5))
def test_the_plain_table_is_the_template_s_table(rows: list[dict[str, str]]) -> None:
    plain = format_rows("table {{.ID}}\\t{{.Name}}\\t{{.Driver}}", rows, TITLES, DEFAULT)
    # a comment makes the same table go through the template
    assert format_rows("table {{.ID}}\\t{{.Name}}\\t{{.Driver}}{{/* */}}", rows, TITLES,
                       DEFAULT) == plain


def test_the_default_table_does_not_import_the_template_module() -> None:
    import subprocess
    import sys

    # (the CLI's own path: `shoal network ls` prints through it)
    code = ("import sys; from shoal.cli import main; "
            "main._print_rows([{'ID': 'x', 'Name': 'n', 'Driver': 'd', 'Scope': 's'}], "
            "'table', main.NETWORK_TITLES, main.NETWORK_TABLE, 'n'); "
            "print('shoal.gotemplate' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.splitlines() == ["NETWORK ID   NAME      DRIVER    SCOPE", "x            n"
                                "         d         s", "False"]


def test_formatted_gives_the_error_s_one_line() -> None:
    assert formatted("{{.Name", ROWS, TITLES, DEFAULT) == (
        "", "template parsing error: template: 1:1: unclosed action")
    assert formatted("{{.Nope}}", ROWS, TITLES, DEFAULT, "*x") == (
        "", "template: 1:3: executing at <.Nope>: can't evaluate field Nope in type *x")
    assert formatted("{{.Name}}", ROWS, TITLES, DEFAULT) == ("bridge\na-much-longer-name\n", None)
