"""`shoal inspect -f` and `shoal network inspect -f`: Go templates on the real objects."""

from __future__ import annotations

from .harness import Host


def test_inspect_with_a_template(host: Host) -> None:
    host.shoal("network", "create", "app")
    host.shoal("run", "-d", "--name", "web", "--network", "app", "--", "sleep", "100")
    out = host.shoal("inspect", "-f", "{{.NetworkSettings.Networks.app.IPAddress}}", "web")
    assert out.stdout.strip() == host.ip_of("web", "app") != ""
    assert out.stdout.count("\n") == 1
    two = host.shoal("inspect", "--format", "{{.Name}} {{.State.Status}}", "web", "web")
    assert two.stdout.splitlines() == ["/web running", "/web running"]
    assert host.shoal("network", "inspect", "-f", "{{.Name}} {{.Driver}}", "app").stdout == \
        "app bridge\n"
    # without -f: the JSON list as before
    assert host.shoal_json("network", "inspect", "app")[0]["Name"] == "app"


def test_a_bad_template_is_one_line_on_stderr(host: Host) -> None:
    host.shoal("network", "create", "app")
    for cmd in (["inspect", "-f", "{{.Name", "web"],
                ["network", "inspect", "-f", "{{nosuchfunc .Name}}", "app"]):
        res = host.shoal(*cmd, check=False)
        assert res.returncode == 1 and res.stdout == ""
        lines = res.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("shoal: template parsing error: ")
    res = host.shoal("network", "inspect", "-f", "{{.Name.X}}", "app", check=False)
    assert res.returncode == 1
    assert res.stderr == ("shoal: template: 1:3: executing at <.Name.X>: can't evaluate "
                          "field X in type string\n")
