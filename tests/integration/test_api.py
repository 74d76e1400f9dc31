"""The Python API, docker-py's shape, used from a program running inside the sandboxed host."""

from __future__ import annotations

import json
import textwrap

from .harness import Host


def test_python_api_networks_and_containers(host: Host) -> None:
    script = textwrap.dedent(f"""
        import json, shoal
        out = {{}}
        client = shoal.Client(root={host.root!r}, run_dir={host.run_dir!r})
        net = client.networks.create("apinet", ipam={{"Config": [{{"Subnet": "10.77.0.0/24"}}]}},
                                     labels={{"by": "api"}})
        out["net"] = [net.name, net.attrs["IPAM"]["Config"][0]["Subnet"], len(net.id)]
        out["list"] = sorted(n.name for n in client.networks.list())
        out["filtered"] = [n.name for n in client.networks.list(filters={{"label": "by=api"}})]
        web = client.containers.run(["python3", "-m", "http.server", "8000"], name="web",
                                    network="apinet", detach=True)
        out["web"] = [web.name, web.status,
                      web.attrs["NetworkSettings"]["Networks"]["apinet"]["IPAddress"]]
        probe = client.containers.run("sleep 60", name="probe", network="apinet", detach=True)
        code = ("import socket, time\\n"
                "for _ in range(100):\\n"
                "    try:\\n"
                "        socket.create_connection(('10.77.0.2', 8000), timeout=1); break\\n"
                "    except OSError: time.sleep(0.05)\\n"
                "print('connected')")
        res = probe.exec_run(["python3", "-c", code])
        out["exec"] = [res.exit_code, res.output.decode().strip()]
        net.reload()
        out["members"] = sorted(c.name for c in net.containers)
        other = client.networks.create("second")
        other.connect(probe, aliases=["p2"])
        probe.reload()
        out["connected"] = sorted(probe.attrs["NetworkSettings"]["Networks"])
        other.disconnect(probe)
        probe.reload()
        out["disconnected"] = sorted(probe.attrs["NetworkSettings"]["Networks"])
        out["fg"] = client.containers.run(["echo", "hello"], remove=True).decode()
        try:
            client.containers.run(["sh", "-c", "exit 4"], remove=True)
        except shoal.ContainerError as e:
            out["fg_error"] = e.exit_status
        try:
            client.networks.create("apinet")
        except shoal.ShoalError as e:
            out["dup"] = str(e)
        web.stop(timeout=5)
        out["stopped"] = [web.status, web.attrs["State"]["ExitCode"]]
        web.remove()
        probe.remove(force=True)
        out["left"] = [c.name for c in client.containers.list(all=True)]
        other.remove()
        net.remove()
        out["after"] = sorted(n.name for n in client.networks.list())
        print(json.dumps(out))
    """)
    out = json.loads(host.python(script).stdout)
    assert out["net"] == ["apinet", "10.77.0.0/24", 64]
    assert out["list"] == ["apinet", "bridge", "host", "none"]
    assert out["filtered"] == ["apinet"]
    assert out["web"] == ["web", "running", "10.77.0.2"]
    assert out["exec"] == [0, "connected"]
    assert out["members"] == ["probe", "web"]
    assert out["connected"] == ["apinet", "second"]
    assert out["disconnected"] == ["apinet"]
    assert out["fg"] == "hello\n"
    assert out["fg_error"] == 4
    assert "already exists" in out["dup"]
    assert out["stopped"] == ["exited", 143]
    assert out["left"] == []
    assert out["after"] == ["bridge", "host", "none"]
    host.wait_for(lambda: not [n for n in host.links() if n.startswith(("vsh", "sh-"))],
                  what="links removed")
