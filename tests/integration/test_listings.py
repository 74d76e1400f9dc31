"""`ps`, `network ls`, `port` and `network inspect` in Docker's shapes, `--format` with Go
templates and `table`, `ps --filter`, `run --label`, and `network prune` of networks whose
members are all stopped: on real containers."""

from __future__ import annotations

import json
import re

from .harness import Host


def lines(host: Host, *args: str) -> list[str]:
    return host.shoal(*args).stdout.splitlines()


def test_ps_newest_first_with_docker_s_columns_and_port_ranges(host: Host) -> None:
    host.shoal("network", "create", "app")
    host.shoal("run", "-d", "--name", "old", "--", "sleep", "100")
    host.shoal("run", "-d", "--name", "new", "--network", "app", "-p", "9000-9002:9000-9002",
               "-p", "8080:80", "--expose", "7000", "--", "sleep", "100")
    head, *rows = lines(host, "ps")
    # Docker's table: each column its widest cell plus 3 (at least 10), NAMES last
    assert re.fullmatch(r"CONTAINER ID   COMMAND +CREATED +STATUS +PORTS +NAMES", head)
    assert [r.split()[-1] for r in rows] == ["new", "old"]
    ports = ("7000/tcp, 0.0.0.0:9000-9002->9000-9002/tcp, 0.0.0.0:8080->80/tcp")
    assert rows[0][head.index("PORTS"):head.index("NAMES")].rstrip() == ports
    assert lines(host, "ps", "--format", "{{.Names}}|{{.Networks}}|{{.Ports}}") == [
        f"new|app|{ports}", "old|bridge|"]
    new = json.loads(lines(host, "ps", "--format", "json")[0])
    assert (new["Names"], new["Networks"], new["State"], new["Ports"]) == (
        "new", "app", "running", ports)
    host.shoal("network", "connect", "app", "old")
    assert lines(host, "ps", "--format", "{{.Names}} {{.Networks}}") == [
        "new app", "old app,bridge"]
    table = lines(host, "ps", "--format", "table {{.Names}}\\t{{.Networks}}\\t{{.State}}")
    assert table == ["NAMES     NETWORKS     STATE", "new       app          running",
                     "old       app,bridge   running"]
    assert lines(host, "ps", "-n", "1", "--format", "{{.Names}}") == ["new"]
    assert lines(host, "ps", "-l", "-q") == [host.shoal_json("inspect", "new")[0]["Id"][:12]]


def test_a_bad_ps_template_is_one_line_exit_1(host: Host) -> None:
    host.shoal("run", "-d", "--name", "web", "--", "sleep", "100")
    res = host.shoal("ps", "--format", "{{.Nope}}", check=False)
    assert (res.returncode, res.stdout) == (1, "")
    assert res.stderr == ("shoal: template: 1:3: executing at <.Nope>: can't evaluate field "
                          "Nope in type *formatter.ContainerContext\n")
    res = host.shoal("network", "ls", "--format", "{{if}}", check=False)
    assert res.returncode == 1 and res.stderr.startswith("shoal: template parsing error: ")
    assert len(res.stderr.splitlines()) == 1


def test_ps_filters(host: Host) -> None:
    host.shoal("network", "create", "app")
    host.shoal("run", "-d", "--name", "web", "--network", "app", "--label", "tier=front",
               "-l", "app=shop", "-p", "8080:80", "--", "sleep", "100")
    host.shoal("run", "-d", "--name", "webdb", "--label", "app=shop", "--expose", "5432",
               "--", "sleep", "100")
    host.shoal("run", "--name", "job", "--", "true")

    def names(*filters: str, all_: bool = False) -> list[str]:
        args = ["ps", "--format", "{{.Names}}", *(["-a"] if all_ else [])]
        for f in filters:
            args += ["--filter", f]
        return lines(host, *args)

    assert names() == ["webdb", "web"]
    assert names(all_=True) == ["job", "webdb", "web"]
    assert names("name=web") == ["webdb", "web"]
    assert names("name=^/web$") == ["web"]
    web_id = host.shoal_json("inspect", "web")[0]["Id"]
    assert names(f"id={web_id[:6]}") == ["web"]
    assert names("label=app=shop") == ["webdb", "web"]
    assert names("label=app=shop", "label=tier") == ["web"]
    assert names("network=app") == ["web"]
    assert names("network=bridge") == ["webdb"]
    assert names("publish=80") == ["web"] and names("publish=80/udp") == []
    assert names("expose=5000-6000/tcp") == ["webdb"]
    assert names("expose=80") == ["web"]  # -p exposes its port, as in Docker
    assert names("status=exited") == ["job"]  # without -a, as in Docker
    assert names("status=exited", "status=running") == ["job", "webdb", "web"]
    res = host.shoal("ps", "--filter", "status=up", check=False)
    assert res.returncode != 0 and res.stdout == ""
    assert res.stderr.startswith("shoal: invalid filter 'status=up': use one of created, ")
    res = host.shoal("ps", "-f", "colour=red", check=False)
    assert res.returncode != 0 and "invalid filter 'colour'" in res.stderr


def test_run_labels_in_inspect_and_ps(host: Host) -> None:
    label_file = host.base / "labels"
    label_file.write_text("# the team's\nteam=db\nempty\n\nown=file\n")
    host.shoal("run", "-d", "--name", "web", "--label", "own=flag", "-l", "x=a=b",
               "--label-file", str(label_file), "--", "sleep", "100")
    config = host.shoal_json("inspect", "web")[0]["Config"]
    assert config["Labels"] == {"team": "db", "empty": "", "own": "flag", "x": "a=b"}
    assert host.shoal("inspect", "-f", '{{index .Config.Labels "team"}}', "web").stdout == \
        "db\n"
    assert lines(host, "ps", "--format", "{{.Labels}}") == ["empty=,own=flag,team=db,x=a=b"]
    host.shoal("run", "-d", "--name", "bare", "--", "sleep", "100")
    assert host.shoal_json("inspect", "bare")[0]["Config"]["Labels"] == {}  # as Docker: {}
    res = host.shoal("run", "--label-file", str(host.base / "nope"), "--", "true", check=False)
    assert res.returncode == 125 and "cannot read --label-file" in res.stderr


def test_network_ls_sorted_by_name_and_formats(host: Host) -> None:
    for name in ("zeta", "alpha", "mid"):
        host.shoal("network", "create", name)
    head, *rows = lines(host, "network", "ls")
    assert head == "NETWORK ID     NAME      DRIVER    SCOPE"
    assert [r.split()[1] for r in rows] == ["alpha", "bridge", "host", "mid", "none", "zeta"]
    assert rows[0].split()[2:] == ["bridge", "local"]
    assert lines(host, "network", "ls", "--format", "{{.Name}}:{{.Driver}}",
                 "--filter", "driver=bridge") == [
        "alpha:bridge", "bridge:bridge", "mid:bridge", "zeta:bridge"]
    assert lines(host, "network", "ls", "--format", "table {{.Name}}\\t{{.Internal}}") == [
        "NAME      INTERNAL", "alpha     false", "bridge    false", "host      false",
        "mid       false", "none      false", "zeta      false"]


def test_port_format(host: Host) -> None:
    host.shoal("network", "create", "app")
    host.shoal("run", "-d", "--name", "web", "--network", "app", "-p", "8080:80",
               "-p", "127.0.0.1:5353:53/udp", "--", "sleep", "100")
    assert lines(host, "port", "web") == ["53/udp -> 127.0.0.1:5353", "80/tcp -> 0.0.0.0:8080"]
    assert lines(host, "port", "web", "--format",
                 "{{.PrivatePort}}/{{.Type}} {{.HostIp}}:{{.HostPort}}") == [
        "53/udp 127.0.0.1:5353", "80/tcp 0.0.0.0:8080"]
    assert lines(host, "port", "web", "80", "--format", "{{.HostPort}}") == ["8080"]
    assert lines(host, "port", "web", "--format", "table") == [
        "PRIVATE PORT   TYPE      HOST IP     HOST PORT",
        "53             udp       127.0.0.1   5353",
        "80             tcp       0.0.0.0     8080"]
    assert [json.loads(x) for x in lines(host, "port", "web", "--format", "json")][1] == {
        "HostIp": "0.0.0.0", "HostPort": "8080", "PrivatePort": 80, "Type": "tcp"}
    res = host.shoal("port", "web", "--format", "{{.Nope}}", check=False)
    assert res.returncode == 1 and res.stdout == "" and len(res.stderr.splitlines()) == 1


def test_network_inspect_lists_running_containers_only(host: Host) -> None:
    host.shoal("network", "create", "app")
    host.shoal("run", "-d", "--name", "up", "--network", "app", "--", "sleep", "100")
    host.shoal("run", "-d", "--name", "down", "--network", "app", "--", "sleep", "100")
    host.shoal("stop", "-t", "0", "down")
    (net,) = host.shoal_json("network", "inspect", "app")
    assert list(net) == ["Name", "Id", "Created", "Scope", "Driver", "EnableIPv6", "IPAM",
                         "Internal", "Attachable", "Ingress", "ConfigFrom", "ConfigOnly",
                         "Containers", "Options", "Labels"]
    assert (net["Ingress"], net["ConfigFrom"], net["ConfigOnly"]) == (
        False, {"Network": ""}, False)
    assert [c["Name"] for c in net["Containers"].values()] == ["up"]


def test_network_prune_removes_networks_whose_members_are_stopped(host: Host) -> None:
    host.shoal("network", "create", "idle")
    host.shoal("network", "create", "busy")
    host.shoal("network", "create", "empty")
    host.shoal("run", "-d", "--name", "gone", "--network", "idle", "--", "sleep", "100")
    host.shoal("network", "connect", "busy", "gone")
    host.shoal("run", "-d", "--name", "live", "--network", "busy", "--", "sleep", "100")
    host.shoal("stop", "-t", "0", "gone")
    out = host.shoal("network", "prune", "-f").stdout
    assert out.splitlines()[0] == "Deleted Networks:"
    assert sorted(out.splitlines()[1:]) == ["empty", "idle"]
    names = lines(host, "network", "ls", "--format", "{{.Name}}")
    assert names == ["bridge", "busy", "host", "none"]
    # the stopped container stays whole: on busy still, inspects, doctor finds nothing wrong
    gone = host.shoal_json("inspect", "gone")[0]
    assert sorted(gone["NetworkSettings"]["Networks"]) == ["busy"]
    assert lines(host, "ps", "-a", "--filter", "name=gone", "--format", "{{.Networks}}") == [
        "busy"]
    doctor = host.shoal("doctor", check=False)
    assert doctor.returncode == 0, doctor.stdout
    assert host.shoal("system", "reconcile").stdout.strip() == "nothing to repair"
    # its network is gone: start says so, as Docker does, and leaves it as it was
    res = host.shoal("start", "gone", check=False)
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.startswith("shoal: network idle not found: it was removed while "
                                 "container gone was stopped")
    assert host.shoal_json("inspect", "gone")[0]["State"]["Status"] == "exited"
    veths = host.ip("-o", "link", "show", "type", "veth").splitlines()
    assert len([v for v in veths if ": vsh" in v]) == 1  # live's only
    host.shoal("rm", "gone")
    assert host.shoal("network", "prune").stdout == ""  # busy has a running member
    host.shoal("rm", "-f", "live")
    assert host.shoal("network", "prune").stdout.splitlines() == ["Deleted Networks:", "busy"]
