"""Go's text/template as Docker users write it in `inspect -f` (shoal.gotemplate)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.gotemplate import Struct, TemplateError, parse, render

CONTAINER: dict[str, Any] = {
    "Name": "/web",
    "Config": {"Env": ["A=1", "B=2"], "Labels": {"team": "blue", "app": "shop"},
               "Cmd": None},
    "State": {"Status": "running", "Running": True, "Pid": 42},
    "NetworkSettings": {
        "IPAddress": "172.17.0.2",
        "Networks": {"front": {"IPAddress": "10.1.0.3", "Aliases": ["a", "b"]},
                     "back": {"IPAddress": "10.2.0.3", "Aliases": []}},
        "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "53/udp": None},
    },
}


@pytest.mark.parametrize(("template", "expected"), [
    # fields, nested fields, dicts by field syntax, the dot, `$`
    ("{{.Name}}", "/web"),
    ("{{.NetworkSettings.IPAddress}}", "172.17.0.2"),
    ("{{.NetworkSettings.Networks.front.IPAddress}}", "10.1.0.3"),
    ("{{.State}}", "map[Pid:42 Running:true Status:running]"),
    ("{{.Config.Env}}", "[A=1 B=2]"),
    ("{{.State.Running}} {{.State.Pid}}", "true 42"),
    ("{{.Nope}}|{{.Nope.Deeper}}|{{.Config.Cmd}}", "<no value>|<no value>|<no value>"),
    ("{{with .State}}{{$.Name}} {{.Status}}{{end}}", "/web running"),
    # Docker's idioms
    ("{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", "10.2.0.3 10.1.0.3 "),
    ('{{(index .NetworkSettings.Ports "80/tcp") }}', "[map[HostIp:0.0.0.0 HostPort:8080]]"),
    ('{{(index (index .NetworkSettings.Ports "80/tcp") 0).HostPort}}', "8080"),
    ('{{index .NetworkSettings.Ports "80/tcp" 0 "HostPort"}}', "8080"),
    ('{{index .NetworkSettings.Networks "nope"}}', "<no value>"),
    ("{{json .Config}}",
     '{"Cmd":null,"Env":["A=1","B=2"],"Labels":{"app":"shop","team":"blue"}}'),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}} {{end}}", "app=shop team=blue "),
    ('{{if eq .State.Status "running"}}up{{else}}down{{end}}', "up"),
    ('{{if eq .State.Status "exited"}}up{{else}}down{{end}}', "down"),
    # pipelines, parentheses, literals, variables
    ("{{.State.Status | upper}}", "RUNNING"),
    ("{{.State.Status | printf \"%s!\" | upper}}", "RUNNING!"),
    ('{{len (index .NetworkSettings.Networks "front").Aliases}}', "2"),
    ("{{len .Config.Env}} {{len .Name}} {{len .Config.Labels}}", "2 4 2"),
    ('{{"a\\tb"}} {{`raw\\n`}} {{7}} {{-3}} {{1.5}} {{true}}', "a\tb raw\\n 7 -3 1.5 true"),
    ("{{$n := .State.Pid}}{{$n}} {{$n = 7}}{{$n}}", "42 7"),
    ("{{range $i, $e := .Config.Env}}{{$i}}:{{$e}} {{end}}", "0:A=1 1:B=2 "),
    ("{{range .Config.Env}}{{.}},{{end}}", "A=1,B=2,"),
    ("{{range .Config.Cmd}}x{{else}}empty{{end}}", "empty"),
    # if / else if / else, with, comparisons and logic
    ('{{if .Nope}}a{{else if eq .State.Pid 42}}b{{else}}c{{end}}', "b"),
    ('{{if .Nope}}a{{else if .Config.Cmd}}b{{else}}c{{end}}', "c"),
    ("{{with .Config.Cmd}}set{{else}}unset{{end}}", "unset"),
    ("{{eq 1 2 1}} {{ne 1 2}} {{lt 1 2}} {{le 2 2}} {{gt 1 2}} {{ge \"b\" \"a\"}}",
     "true true true true false true"),
    ('{{and .State.Running .Nope}}|{{or .Nope "dflt"}}|{{not .State.Running}}',
     "<no value>|dflt|false"),
    # the string functions and printf
    ('{{join .Config.Env ","}} {{split "a:b:c" ":"}} {{lower "AbC"}} {{title "hello wide-world"}}',
     "A=1,B=2 [a b c] abc Hello Wide-World"),
    ('{{printf "%s=%d %q %v %5s|%-3d| 100%%" "x" 7 "q" .Config.Env "ab" 1}}',
     'x=7 "q" [A=1 B=2]    ab|1  | 100%'),
    ('{{printf "%d %s"}}', "%!d(MISSING) %!s(MISSING)"),
    ('{{printf "%d" "x"}}', "%!d(string=x)"),
    ("{{println .Name .State.Pid}}", "/web 42\n"),
    # trim markers, comments
    ("a  \n {{- .State.Pid -}} \n  b", "a42b"),
    ("a {{- /* a comment */ -}} b", "ab"),
    ("{{/* nothing */}}x", "x"),
    ("{{.Name}}-{{.Name -}}", "/web-/web"),
])
def test_renders_like_go(template: str, expected: str) -> None:
    assert render(template, CONTAINER) == expected


def test_a_parsed_template_executes_on_each_object() -> None:
    t = parse("{{.Name}}:{{len .L}}")
    assert [t.execute({"Name": n, "L": [1] * i}) for i, n in enumerate("ab")] == ["a:0", "b:1"]


def test_json_leaves_html_characters_as_docker_does() -> None:
    # Docker's `json` function turns off Go's HTML escaping; U+2028 is still escaped
    assert render("{{json .}}", {"a": "<b>&\u2028", "n": [1, True, None]}) == \
        '{"a":"<b>&\\u2028","n":[1,true,null]}'


@pytest.mark.parametrize(("template", "message"), [
    ("{{.Name", "template: 1:1: unclosed action"),
    ("ab\n{{.Name}", 'template: 2:8: unexpected "}" in operand'),
    ("{{foo .Name}}", 'template: 1:3: function "foo" not defined'),
    ("{{if .Name}}x", "template: unexpected EOF (an {{end}} is missing)"),
    ("{{end}}", "template: 1:3: unexpected {{end}}"),
    ("{{len (index .A}}", "template: 1:16: unclosed left paren"),
    ("{{.Name | }}", "template: 1:11: missing value for command"),
    ("{{if}}x{{end}}", "template: 1:5: missing value for if"),
])
def test_parse_errors_are_one_line_and_point_at_the_bad_part(template: str,
                                                              message: str) -> None:
    with pytest.raises(TemplateError) as err:
        parse(template)
    assert str(err.value) == message


@pytest.mark.parametrize(("template", "message"), [
    ("{{.Name.B}}", "template: 1:3: executing at <.Name.B>: can't evaluate field B in type "
                    "string"),
    ("{{.Config.Cmd.X}}", "template: 1:3: executing at <.Config.Cmd.X>: nil pointer "
                          "evaluating interface {}.X"),
    ("{{index .Config.Env 5}}", "template: 1:3: executing at <index>: error calling index: "
                                "index out of range: 5"),
    ('{{eq .State.Pid "42"}}', "template: 1:3: executing at <eq>: error calling eq: "
                               "incompatible types for comparison"),
    ("{{range .Name}}x{{end}}", "template: 1:9: executing at <.Name>: range can't iterate "
                                "over /web"),
    ("{{.Name 1}}", "template: 1:3: executing at <.Name>: can't give argument to "
                    "non-function .Name"),
    ("{{$nope}}", "template: 1:3: undefined variable: $nope"),
])
def test_execution_errors_name_the_failing_part(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as err:
        render(template, CONTAINER)
    assert str(err.value) == message


# -- properties -------------------------------------------------------------------------------

keys = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
scalars = st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.text(
    st.characters(blacklist_categories=("Cs",)), max_size=12)
jsonable = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(keys, inner, max_size=4), max_leaves=20)


@given(st.text(st.characters(blacklist_categories=("Cs",))).filter(lambda s: "{{" not in s))
def test_text_without_actions_renders_to_itself(text: str) -> None:
    assert render(text, {"any": 1}) == text


@given(jsonable)
def test_json_is_go_s_compact_sorted_encoding(data: Any) -> None:
    expected = json.dumps(data, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    expected = expected.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    out = render("{{json .}}", data)
    assert out == expected
    assert json.loads(out) == data


def go_print(v: Any, top: bool = True) -> str:
    """%v as Go prints it, written out separately from the module's own printer."""
    if v is None:
        return "<no value>" if top else "<nil>"
    if v is True or v is False:
        return str(v).lower()
    if isinstance(v, list):
        return "[" + " ".join(go_print(x, False) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{go_print(v[k], False)}" for k in sorted(v)) + "]"
    return str(v)


@given(st.dictionaries(keys, jsonable, min_size=1, max_size=5), st.data())
def test_index_gives_the_printed_value(data: dict[str, Any], draw: st.DataObject) -> None:
    key = draw.draw(st.sampled_from(sorted(data)))
    literal = json.dumps(key, ensure_ascii=False)  # a Go string literal too
    assert render("{{index . " + literal + "}}", data) == go_print(data[key])


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@given(texts)
def test_printf_s_of_any_string_is_the_string(s: str) -> None:
    assert render('{{printf "%s" .}}', s) == s
    assert render("{{.}}", s) == s
    assert render("{{print .}}", s) == s


@given(texts.filter(lambda s: "{{" not in s and not s.endswith("{")),
       texts.filter(lambda s: "{{" not in s), st.integers(0, 999))
def test_trim_markers_cut_the_white_space_next_to_them(left: str, right: str, n: int) -> None:
    ws = " \t\r\n"
    assert render(left + "{{- . -}}" + right, n) == left.rstrip(ws) + str(n) + right.lstrip(ws)
    assert render(left + "{{- . }}" + right, n) == left.rstrip(ws) + str(n) + right
    assert render(left + "{{ . -}}" + right, n) == left + str(n) + right.lstrip(ws)


@given(st.lists(st.integers(0, 9), max_size=10), st.integers(0, 9))
def test_break_and_continue_in_range(items: list[int], stop: int) -> None:
    broke = render("{{range .L}}{{if eq . $.S}}{{break}}{{end}}{{.}},{{end}}",
                   {"L": items, "S": stop})
    head = items[:items.index(stop)] if stop in items else items
    assert broke == "".join(f"{i}," for i in head)
    skipped = render("{{range $i, $e := .L}}{{if eq $e $.S}}{{continue}}{{end}}{{$e}},{{end}}",
                     {"L": items, "S": stop})
    assert skipped == "".join(f"{i}," for i in items if i != stop)


@given(jsonable)
def test_a_defined_template_renders_as_its_body_inline(data: Any) -> None:
    body = "[{{json .}}|{{len (printf \"%v\" .)}}]"
    assert render('{{define "T"}}' + body + '{{end}}<{{template "T" .}}>', data) == \
        "<" + render(body, data) + ">"
    assert render('{{block "B" .}}' + body + "{{end}}", data) == render(body, data)


@pytest.mark.parametrize(("template", "data", "expected"), [
    ('{{define "row"}}{{.Name}}={{.IP}};{{end}}{{range .}}{{template "row" .}}{{end}}',
     [{"Name": "a", "IP": "10.0.0.2"}, {"Name": "b", "IP": "10.0.0.3"}],
     "a=10.0.0.2;b=10.0.0.3;"),
    ('{{template "x"}}{{define "x"}}no dot: {{.}}{{end}}', {"a": 1}, "no dot: <no value>"),
    # a later define of the same name wins (Go's redefinition)
    ('{{define "x"}}1{{end}}{{define "x"}}2{{end}}{{template "x"}}', None, "2"),
    ('{{block "b" .A}}[{{.}}]{{end}}{{define "b"}}<{{.}}>{{end}}', {"A": 5}, "<5>"),
    # recursion, down a nested list
    ('{{define "t"}}{{range .}}({{template "t" .}}){{end}}{{end}}{{template "t" .}}',
     [[[]], []], "(())()"),
    ("{{range .}}{{range .}}{{if eq . 2}}{{break}}{{end}}{{.}}{{end}};{{end}}",
     [[1, 2, 3], [4]], "1;4;"),
    ("{{range .}}{{with .}}{{continue}}{{end}}x{{end}}", [1, 0, 1], "x"),
])
def test_define_template_block_break_continue(template: str, data: Any,
                                              expected: str) -> None:
    assert render(template, data) == expected


@pytest.mark.parametrize(("template", "message"), [
    ("{{break}}", "template: 1:3: {{break}} outside {{range}}"),
    ("{{if .}}{{continue}}{{end}}", "template: 1:11: {{continue}} outside {{range}}"),
    ('{{range .}}{{define "x"}}{{end}}{{end}}',
     "template: 1:14: unexpected {{define}}: only at the top level"),
    ('{{range .}}{{template "x"}}{{end}}{{define "x"}}{{break}}{{end}}',
     "template: 1:51: {{break}} outside {{range}}"),
    ("{{template .X}}", 'template: 1:12: unexpected ".X" in template clause'),
    ('{{block "b"}}{{end}}', "template: 1:3: missing value for block clause"),
])
def test_named_templates_and_loop_control_errors(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as err:
        parse(template)
    assert str(err.value) == message


def test_template_execution_errors() -> None:
    with pytest.raises(TemplateError) as err:
        render('{{template "nope" .}}', {})
    assert str(err.value) == ('template: 1:12: executing at <{{template "nope"}}>: '
                              'template "nope" not defined')
    with pytest.raises(TemplateError) as err:  # endless recursion ends with one line
        render('{{define "r"}}{{template "r" .}}{{end}}{{template "r" .}}', {})
    assert "exceeded maximum template depth" in str(err.value)


def test_a_struct_s_missing_field_is_an_error_a_map_s_is_no_value() -> None:
    row = Struct({"Names": "web"})
    row.type_name = "*formatter.ContainerContext"
    assert render("{{.Names}}", row) == "web"
    assert render("{{.Nope}}", {"Names": "web"}) == "<no value>"
    with pytest.raises(TemplateError) as err:
        render("{{.Nope}}", row)
    assert str(err.value) == ("template: 1:3: executing at <.Nope>: can't evaluate field Nope "
                              "in type *formatter.ContainerContext")
    assert render('{{printf "%d" .}}', row) == "%!d(*formatter.ContainerContext=map[Names:web])"


def test_functions_replaced_for_one_execution() -> None:
    t = parse("{{upper .A}}|{{json .A}}")
    assert t.execute({"A": "x"}) == 'X|"x"'
    assert t.execute({"A": "TITLE"}, funcs={"upper": lambda s: s, "json": lambda s: s}) == \
        "TITLE|TITLE"
    assert t.execute({"A": "x"}) == 'X|"x"'  # the module's functions are left as they were
