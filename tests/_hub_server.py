"""A tiny stand-in for the Hugging Face Hub on 127.0.0.1, for tests.

It serves the routes huggingface_hub uses to download files (HEAD/GET
``/{repo}/resolve/{revision}/{path}``, with the X-Repo-Commit / ETag / X-Linked-Etag
headers and X-Error-Code on 404s) and to push them (``/api/repos/create``,
``/api/validate-yaml``, ``/api/models/{repo}/branch/{name}``, ``/api/models/{repo}/preupload/{rev}``,
``/api/models/{repo}/commit/{rev}``
with every file uploaded "regular", i.e. inline). Files of a commit are kept in memory;
every request is logged in `requests` so a test can prove nothing reached the network.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


class FakeHub:
    def __init__(self):
        self.repos: dict[str, dict] = {}  # repo_id -> {"branches": {name: commit}, "commits": {commit: {path: bytes}}}
        self.requests: list[tuple[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def commit(self, repo_id: str, files: dict[str, bytes], branch: str = "main") -> str:
        """Add a commit with `files` on top of `branch`; returns its 40-hex id."""
        repo = self.repos.setdefault(repo_id, {"branches": {}, "commits": {}})
        parent = repo["branches"].get(branch)
        tree = {**(repo["commits"][parent] if parent else {}), **files}
        digests = sorted((k, hashlib.sha256(v).hexdigest()) for k, v in tree.items())
        oid = hashlib.sha1(repr((parent, digests)).encode()).hexdigest()
        repo["commits"][oid] = tree
        repo["branches"][branch] = oid
        return oid

    def publish_folder(self, repo_id: str, folder) -> str:
        """Commit every file of a local folder straight into the store (no push API); returns
        the commit id. For tests about loading, which should not depend on pushing."""
        from pathlib import Path

        return self.commit(repo_id, {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()})

    def resolve(self, repo_id: str, revision: str) -> tuple[str | None, str | None]:
        """(error code, commit id) of a revision (branch name or commit id)."""
        repo = self.repos.get(repo_id)
        if repo is None:
            return "RepoNotFound", None
        commit = repo["branches"].get(revision) or (revision if revision in repo["commits"] else None)
        return (None, commit) if commit else ("RevisionNotFound", None)


def _handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _json(self, obj, status: int = 200):
            self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json"})

        def _error(self, code: str, head: bool = False):
            self._send(404, json.dumps({"error": code}).encode(), {"X-Error-Code": code}, head=head)

        def _file(self, head: bool):
            hub.requests.append((self.command, self.path))
            parts = urlparse(self.path).path.strip("/").split("/")
            if len(parts) < 5 or parts[2] != "resolve":
                return self._error("RepoNotFound", head)
            repo_id, revision, path = "/".join(parts[:2]), unquote(parts[3]), "/".join(parts[4:])
            error, commit = hub.resolve(repo_id, revision)
            if error:
                return self._error(error, head)
            data = hub.repos[repo_id]["commits"][commit].get(path)
            if data is None:
                return self._error("EntryNotFound", head)
            headers = {"X-Repo-Commit": commit}
            if path.endswith(".safetensors"):  # LFS file: its etag is the sha256 of the content
                headers["X-Linked-Etag"] = f'"{hashlib.sha256(data).hexdigest()}"'
                headers["ETag"] = headers["X-Linked-Etag"]
            else:  # regular git file: etag is the git blob sha1
                blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
                headers["ETag"] = f'"{blob}"'
            self._send(200, data, headers, head=head)

        def do_HEAD(self):
            self._file(head=True)

        def do_GET(self):
            self._file(head=False)

        def do_POST(self):
            hub.requests.append((self.command, self.path))
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = urlparse(self.path).path
            if path == "/api/repos/create":
                req = json.loads(body)
                repo_id = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
                hub.repos.setdefault(repo_id, {"branches": {}, "commits": {}})
                return self._json({"url": f"{hub.endpoint}/{repo_id}"})
            if path == "/api/validate-yaml":
                return self._json({})
            parts = path.strip("/").split("/")  # api models org name (preupload|commit) rev
            if len(parts) == 6 and parts[0] == "api" and parts[4] == "preupload":
                files = json.loads(body)["files"]
                return self._json({"files": [
                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
                ]})
            if len(parts) == 6 and parts[0] == "api" and parts[4] == "branch":
                repo = hub.repos[f"{parts[2]}/{parts[3]}"]
                branch = unquote(parts[5])
                if branch in repo["branches"]:
                    return self._send(409, b'{"error": "Reference already exists"}')
                if repo["branches"].get("main"):
                    repo["branches"][branch] = repo["branches"]["main"]
                return self._json({})
            if len(parts) == 6 and parts[0] == "api" and parts[4] == "commit":
                repo_id, branch = f"{parts[2]}/{parts[3]}", unquote(parts[5])
                files = {}
                for line in body.splitlines():
                    item = json.loads(line)
                    if item["key"] == "file":
                        files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                oid = hub.commit(repo_id, files, branch)
                return self._json({"commitUrl": f"{hub.endpoint}/{repo_id}/commit/{oid}", "commitOid": oid})
            self._send(404, b"{}", {"X-Error-Code": "RepoNotFound"})

    return Handler
