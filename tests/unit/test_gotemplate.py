"""Go's text/template as Docker users write it in `inspect -f` (shoal.gotemplate)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.gotemplate import TemplateError, parse, render

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
