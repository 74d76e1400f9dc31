"""The plugin's HTTP server: HTTP/1.x over a unix socket, with the standard library only.

dockerd's plugin client POSTs a JSON body to /Plugin.Activate and /NetworkDriver.*; every
answer is JSON with Docker's plugin content type. A success is 200; a failure is 500 (404
for an unknown call) with {"Err": "one line"}, which dockerd shows its user. One request is
served at a time (each takes shoal's store lock anyway) and each connection carries one."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import socketserver
import stat
import sys
from contextlib import suppress

from ...errors import NotFound, ShoalError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .driver import DockerDriver

CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"
MAX_BODY = 1 << 20  # a request is a few hundred bytes; a port map of 65535 ports fits


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: dockerd dials again
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        status, body = self.server.answer(self.path, self._body())
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST  # noqa: N815

    def _body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        if not 0 <= length <= MAX_BODY:
            return None
        return self.rfile.read(length) if length else b""

    def address_string(self) -> str:
        return "dockerd"  # a unix socket's peer has no address

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if os.environ.get("SHOAL_DEBUG"):
            sys.stderr.write(f"shoal plugin: {format % args}\n")


class _Server(socketserver.UnixStreamServer):
    def __init__(self, path: str, driver: DockerDriver) -> None:
        self.driver = driver
        super().__init__(path, _Handler)

    def answer(self, path: str, raw: bytes | None) -> tuple[int, dict[str, Any]]:
        if raw is None:
            return 400, {"Err": "bad request: a body of at most 1 MiB with a Content-Length"}
        try:
            req = json.loads(raw) if raw.strip() else {}
        except ValueError as e:
            return 400, {"Err": f"bad request: the body is not JSON ({e})"}
        if not isinstance(req, dict):
            return 400, {"Err": "bad request: the body must be a JSON object"}
        try:
            return 200, self.driver.handle(path, req)
        except NotFound as e:
            return (404 if path not in self.driver.routes else 500), {"Err": str(e)}
        except ShoalError as e:
            return 500, {"Err": str(e)}
        except Exception as e:  # never a traceback to dockerd; SHOAL_DEBUG=1 shows it
            if os.environ.get("SHOAL_DEBUG"):
                import traceback

                traceback.print_exc()
            return 500, {"Err": f"internal error in shoal: {type(e).__name__}: {e}"}


def check_socket_path(path: str) -> None:
    """A path the plugin may listen at: its directory exists, and nothing but a socket
    (a stale one, removed) is there."""
    if not path or not os.path.isabs(path):
        raise ShoalError(f"--socket {path!r} must be an absolute path (e.g. "
                         "/run/docker/plugins/shoal.sock)")
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise ShoalError(f"cannot listen at {path}: the directory {parent} does not exist; "
                         "create it (mkdir -p) or give another --socket")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ShoalError(f"cannot listen at {path}: a file that is not a socket is there; "
                         "remove it or give another --socket")


def _listening(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def serve(path: str, driver: DockerDriver, ready: Any = None) -> None:
    """Listen at `path` until SIGTERM or SIGINT; the socket is removed at the end. A stale
    socket at `path` (a killed plugin's) is replaced; one that answers is refused."""
    check_socket_path(path)
    if os.path.lexists(path):
        if _listening(path):
            raise ShoalError(f"cannot listen at {path}: another process serves that socket "
                             "(another shoal plugin?); stop it first")
        os.unlink(path)
    old = os.umask(0o077)  # only root (dockerd) may connect
    try:
        server = _Server(path, driver)
    finally:
        os.umask(old)
    made = os.stat(path).st_ino

    stopping = []

    def stop(_signum: int, _frame: Any) -> None:
        stopping.append(True)  # the request being served finishes first

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    server.timeout = 0.2  # how soon a signal is noticed between requests
    try:
        if ready is not None:
            ready()
        while not stopping:
            server.handle_request()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        server.server_close()
        with suppress(OSError):
            if os.lstat(path).st_ino == made:  # ours still, not a newer plugin's
                os.unlink(path)
