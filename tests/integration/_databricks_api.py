"""A local stand-in for the Databricks workspace REST API calls the volume sink makes.

Serves, on a free loopback port: host metadata, the OAuth M2M discovery and token endpoints,
the Files API (``PUT /api/2.0/fs/files/<path>``, ``HEAD /api/2.0/fs/directories/<path>``),
the Workspace API (``mkdirs``, ``import``) and the Jobs API (``list``, ``create``, ``reset``).
Uploaded bytes, jobs and every request are kept in memory for the tests to inspect.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

CLIENT_ID = "lakeport-sp"
CLIENT_SECRET = "s3cret"
TOKEN = "dapi-lakeport-test"
WORKSPACE_ID = "1234567890"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WorkspaceState:
    """What the fake workspace holds: volumes, files, workspace files and jobs."""

    volumes: set[str] = field(default_factory=set)  # "/Volumes/c/s/v"
    files: dict[str, bytes] = field(default_factory=dict)
    workspace_files: dict[str, bytes] = field(default_factory=dict)
    workspace_dirs: set[str] = field(default_factory=set)
    jobs: dict[int, dict[str, Any]] = field(default_factory=dict)  # job_id -> settings
    requests: list[Recorded] = field(default_factory=list)
    tokens: set[str] = field(default_factory=lambda: {TOKEN})
    forbidden: str | None = None  # answer 403 to API paths starting with this (missing grants)
    next_job_id: int = 1000

    def calls(self, method: str, prefix: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.startswith(prefix)]


def _volume_of(path: str) -> str:
    parts = path.split("/")
    return "/".join(parts[:5])  # "", "Volumes", catalog, schema, volume


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # -- plumbing --------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is not None:
            return self.rfile.read(int(length))
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return b""

    def _reply(self, status: int, body: dict[str, Any] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, code: str, message: str) -> None:
        self._reply(status, {"error_code": code, "message": message})

    def _handle(self) -> None:
        state = self.server.state
        split = urlsplit(self.path)
        path = split.path
        body = self._read_body()
        state.requests.append(
            Recorded(self.command, path, parse_qs(split.query), dict(self.headers), body)
        )
        base = f"http://127.0.0.1:{self.server.server_port}"
        if path == "/.well-known/databricks-config":
            return self._reply(200, {"oidc_endpoint": f"{base}/oidc",
                                     "workspace_id": WORKSPACE_ID})
        if path == "/oidc/.well-known/oauth-authorization-server":
            return self._reply(200, {"authorization_endpoint": f"{base}/oidc/v1/authorize",
                                     "token_endpoint": f"{base}/oidc/v1/token"})
        if path == "/oidc/v1/token":
            return self._token(body)
        if self.headers.get("Authorization", "").removeprefix("Bearer ") not in state.tokens:
            return self._error(401, "UNAUTHENTICATED", "Invalid access token.")
        if state.forbidden is not None and path.startswith(state.forbidden):
            return self._error(403, "PERMISSION_DENIED", "User does not have READ VOLUME.")
        if path.startswith("/api/2.0/fs/"):
            return self._files(path, split.query, body)
        if path.startswith("/api/2.0/workspace/"):
            return self._workspace(path, body)
        if path.startswith("/api/2.2/jobs/"):
            return self._jobs(path, split.query, body)
        return self._error(404, "ENDPOINT_NOT_FOUND", f"no API at {path}")

    # -- endpoints -------------------------------------------------------------------------
    def _token(self, body: bytes) -> None:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            client_id, _, client_secret = base64.b64decode(auth[6:]).decode().partition(":")
        if (client_id, client_secret) != (CLIENT_ID, CLIENT_SECRET):
            return self._reply(401, {"error": "invalid_client",
                                     "error_description": "Client authentication failed"})
        token = f"oauth-{len(self.server.state.tokens)}"
        self.server.state.tokens.add(token)
        self._reply(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    def _files(self, path: str, query: str, body: bytes) -> None:
        state = self.server.state
        if path.startswith("/api/2.0/fs/directories/") and self.command == "HEAD":
            directory = unquote(path.removeprefix("/api/2.0/fs/directories"))
            known = directory.rstrip("/") in state.volumes or any(
                f.startswith(directory.rstrip("/") + "/") for f in state.files
            )
            return self._reply(200) if known else self._error(404, "NOT_FOUND", "not found")
        if path.startswith("/api/2.0/fs/files/") and self.command == "PUT":
            file_path = unquote(path.removeprefix("/api/2.0/fs/files"))
            if _volume_of(file_path) not in state.volumes:
                return self._error(404, "NOT_FOUND", f"volume of {file_path} not found")
            overwrite = parse_qs(query).get("overwrite", ["true"])[0] == "true"
            if file_path in state.files and not overwrite:
                return self._error(409, "ALREADY_EXISTS", f"{file_path} exists")
            state.files[file_path] = body
            return self._reply(204)
        return self._error(404, "ENDPOINT_NOT_FOUND", f"no Files API at {self.command} {path}")

    def _workspace(self, path: str, body: bytes) -> None:
        state = self.server.state
        request = json.loads(body or b"{}")
        if path == "/api/2.0/workspace/mkdirs" and self.command == "POST":
            state.workspace_dirs.add(request["path"])
            return self._reply(200, {})
        if path == "/api/2.0/workspace/import" and self.command == "POST":
            state.workspace_files[request["path"]] = base64.b64decode(request["content"])
            return self._reply(200, {})
        return self._error(404, "ENDPOINT_NOT_FOUND", f"no Workspace API at {path}")

    def _jobs(self, path: str, query: str, body: bytes) -> None:
        state = self.server.state
        if path == "/api/2.2/jobs/list" and self.command == "GET":
            name = parse_qs(query).get("name", [None])[0]
            jobs = [
                {"job_id": job_id, "settings": {"name": settings.get("name")}}
                for job_id, settings in state.jobs.items()
                if name is None or settings.get("name", "").lower() == name.lower()
            ]
            return self._reply(200, {"jobs": jobs, "has_more": False} if jobs else {})
        request = json.loads(body or b"{}")
        if path == "/api/2.2/jobs/create" and self.command == "POST":
            job_id = state.next_job_id
            state.next_job_id += 1
            state.jobs[job_id] = request
            return self._reply(200, {"job_id": job_id})
        if path == "/api/2.2/jobs/reset" and self.command == "POST":
            job_id = int(request["job_id"])
            if job_id not in state.jobs:
                return self._error(400, "INVALID_PARAMETER_VALUE", f"Job {job_id} does not exist.")
            state.jobs[job_id] = request["new_settings"]
            return self._reply(200, {})
        return self._error(404, "ENDPOINT_NOT_FOUND", f"no Jobs API at {path}")

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: WorkspaceState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class FakeWorkspace:
    """``with FakeWorkspace() as ws: ws.host, ws.state``: a workspace API on a free port."""

    def __init__(self) -> None:
        self.state = WorkspaceState()
        self._server = _Server(self.state)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> FakeWorkspace:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
