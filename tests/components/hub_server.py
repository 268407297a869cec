"""A tiny stand-in for the Hugging Face Hub's download API, served on 127.0.0.1.

It implements exactly the endpoints huggingface_hub 2.4 calls for ``snapshot_download`` /
``hf_hub_download`` / ``resolve_revision`` / ``list_repo_files``:

* ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}``: model info with
  ``sha`` and ``siblings``;
* ``GET /api/models/{repo}/tree/{rev}[/{path}]?recursive=``: the file listing (one page);
* ``HEAD|GET /{repo}/resolve/{rev}/{path}``: the file, with ``X-Repo-Commit``, ``ETag``
  (git blob sha1) and ``Content-Length``; LFS-tracked files (``*.safetensors``, ``*.bin``)
  answer with a 302 to ``/_lfs/{sha256}`` carrying ``X-Linked-Etag`` / ``X-Linked-Size``,
  as the real Hub redirects to its CDN.

And for uploads (``create_repo``, ``create_branch``, ``create_commit`` / ``upload_folder``):

* ``POST /api/repos/create``: a new repo whose ``main`` holds ``.gitattributes`` (as the Hub's);
  409 when it exists;
* ``POST /api/models/{repo}/branch/{branch}``: a branch from ``startingPoint`` (default ``main``);
* ``POST /api/validate-yaml``: checks that a model card's front matter is closed;
* ``POST /api/models/{repo}/preupload/{rev}``: every file is uploaded "regular" (inline,
  base64), so no LFS or Xet negotiation happens; ``oid`` lets the client skip unchanged files;
* ``POST /api/models/{repo}/commit/{rev}``: the ndjson commit, applied all at once or not at
  all; ``HubServer.fail_commits`` makes the next N commit calls fail with a 500, or with the
  connection dropped unanswered when ``fail_mode = "drop"`` (a network error mid-push).

It never sends Xet headers, so the client takes the plain HTTP path. Repos are held in
memory as a list of commits; ``FixtureRepo.commit`` moves a branch, which is how the
revision-pinning test changes a repo between two calls. Every request is logged in
``HubServer.requests`` so tests can assert what was (not) downloaded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["FixtureRepo", "HubServer", "folder_files"]

_LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".ckpt", ".pt")


def _git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def folder_files(folder: str | Path, prefix: str = "") -> dict[str, bytes]:
    """Every file under ``folder`` as {repo path: bytes}, with ``prefix`` prepended to paths."""
    folder = Path(folder)
    out: dict[str, bytes] = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            out[prefix + p.relative_to(folder).as_posix()] = p.read_bytes()
    return out


@dataclass
class FixtureRepo:
    """An in-memory model repo: commits (sha -> files) and branches (name -> sha)."""

    repo_id: str
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    private_token: str | None = None  # when set, requests must carry "Bearer <token>"
    messages: dict[str, str] = field(default_factory=dict)  # commit sha -> commit message

    def commit(self, files: dict[str, bytes], branch: str = "main") -> str:
        """Record a commit holding exactly ``files``, point ``branch`` at it, return its sha."""
        h = hashlib.sha1(f"{self.repo_id}:{len(self.commits)}".encode())
        for path in sorted(files):
            h.update(path.encode() + b"\0" + hashlib.sha1(files[path]).digest())
        sha = h.hexdigest()
        self.commits[sha] = dict(files)
        self.branches[branch] = sha
        return sha

    def resolve(self, revision: str) -> str | None:
        if revision in self.commits:
            return revision
        return self.branches.get(revision)


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass  # keep pytest output clean; requests are recorded in HubServer.requests

    # -- plumbing -----------------------------------------------------------------------
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              error_code: str | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if error_code:
            self.send_header("X-Error-Code", error_code)
            self.send_header("X-Error-Message", error_code)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, payload: object) -> None:
        body = json.dumps(payload).encode()
        self._send(200, body, {"Content-Type": "application/json"})

    def _repo(self, repo_id: str) -> FixtureRepo | None:
        hub = self.server.hub
        repo = hub.repos.get(repo_id)
        if repo is None:
            self._send(404, b"repo not found", error_code="RepoNotFound")
            return None
        if repo.private_token and self.headers.get("Authorization") != f"Bearer {repo.private_token}":
            self._send(401, b"unauthorized", error_code="RepoNotFound")
            return None
        return repo

    def _rev(self, repo: FixtureRepo, revision: str) -> str | None:
        sha = repo.resolve(revision)
        if sha is None:
            self._send(404, b"revision not found", error_code="RevisionNotFound")
        return sha

    # -- routes -------------------------------------------------------------------------
    def do_HEAD(self) -> None:  # noqa: N802 - stdlib naming
        self._route()

    def do_GET(self) -> None:  # noqa: N802
        self._route()

    def do_POST(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        self.server.hub.record("POST", url.path, self.headers.get("Authorization"))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.hub.lock:
            if parts == ["api", "repos", "create"]:
                return self._create_repo(json.loads(body or b"{}"))
            if parts == ["api", "validate-yaml"]:
                return self._validate_yaml(json.loads(body or b"{}"))
            if parts[:2] == ["api", "models"] and len(parts) >= 6:
                repo = self._repo(parts[2] + "/" + parts[3])
                if repo is None:
                    return None
                action, revision = parts[4], "/".join(parts[5:])
                if action == "preupload":
                    return self._preupload(repo, revision, json.loads(body or b"{}"))
                if action == "commit":
                    return self._commit(repo, revision, body)
                if action == "branch":
                    return self._branch(repo, revision, json.loads(body or b"{}"))
        self._send(404, b"no such endpoint", error_code="EntryNotFound")

    def _route(self) -> None:
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        self.server.hub.record(self.command, url.path, self.headers.get("Authorization"))
        with self.server.hub.lock:
            if parts[:2] == ["api", "models"] and len(parts) >= 4:
                return self._api(parts[2] + "/" + parts[3], parts[4:], parse_qs(url.query))
            if parts[0] == "_lfs" and len(parts) == 2:
                return self._lfs(parts[1])
            if len(parts) >= 5 and parts[2] == "resolve":
                return self._resolve(parts[0] + "/" + parts[1], parts[3], "/".join(parts[4:]))
        self._send(404, b"no such endpoint", error_code="EntryNotFound")

    def _api(self, repo_id: str, rest: list[str], query: dict[str, list[str]]) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        if not rest or rest[0] == "revision":
            sha = self._rev(repo, rest[1] if len(rest) > 1 else "main")
            if sha is None:
                return
            files = repo.commits[sha]
            self._json({"id": repo_id, "sha": sha, "private": bool(repo.private_token),
                        "siblings": [{"rfilename": p} for p in sorted(files)]})
            hook = self.server.hub.after_info
            if hook is not None:
                hook(repo)  # e.g. push a new commit right after the client learned the sha
            return
        if rest[0] == "tree" and len(rest) >= 2:
            sha = self._rev(repo, rest[1])
            if sha is None:
                return
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            return self._json(_tree(repo.commits[sha], "/".join(rest[2:]), recursive))
        self._send(404, b"no such api route", error_code="EntryNotFound")

    def _resolve(self, repo_id: str, revision: str, path: str) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        sha = self._rev(repo, revision)
        if sha is None:
            return
        data = repo.commits[sha].get(path)
        if data is None:
            self._send(404, b"entry not found", error_code="EntryNotFound")
            return
        headers = {"X-Repo-Commit": sha}
        if path.endswith(_LFS_SUFFIXES):
            digest = hashlib.sha256(data).hexdigest()
            self.server.hub.blobs[digest] = data
            self.server.hub.blob_paths[digest] = path
            host, port = self.server.server_address[:2]
            headers.update({
                # A different host name, as the Hub redirects LFS files to its CDN: the client
                # stops at this 302 for metadata and fetches the bytes from the CDN URL.
                "Location": f"http://localhost:{port}/_lfs/{digest}",
                "X-Linked-Etag": f'"{digest}"',
                "X-Linked-Size": str(len(data)),
                "ETag": f'"{_git_blob_sha(data)}"',
            })
            self._send(302, b"", headers)
            return
        headers.update({"ETag": f'"{_git_blob_sha(data)}"', "Content-Length": str(len(data))})
        self._send(200, data, headers)

    def _lfs(self, digest: str) -> None:
        data = self.server.hub.blobs.get(digest)
        if data is None:
            self._send(404, b"blob not found")
            return
        self._send(200, data, {"ETag": f'"{digest}"', "Content-Length": str(len(data))})


    def _error(self, status: int, message: bytes, code: str, **extra: object) -> None:
        """An error the way the Hub's API answers: JSON body, X-Error-Code header."""
        body = json.dumps({"error": message.decode(), **extra}).encode()
        self._send(status, body, {"Content-Type": "application/json"}, error_code=code)

    # -- uploads ------------------------------------------------------------------------------
    def _create_repo(self, payload: dict) -> None:
        hub = self.server.hub
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        if repo_id in hub.repos:
            # The Hub's 409 still names the repo's url, which create_repo(exist_ok=True) returns.
            self._error(409, b"You already created this model repo", "RepoExists", url=f"{hub.url}/{repo_id}")
            return
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ") or None
        if private and token is None:
            self._error(401, b"a private repo needs a token", "Unauthorized")
            return
        hub.add_repo(repo_id, {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"},
                     private_token=token if private else None)
        self._json({"url": f"{hub.url}/{repo_id}", "name": repo_id})

    def _validate_yaml(self, payload: dict) -> None:
        content = str(payload.get("content", ""))
        if content.startswith("---") and "\n---" not in content[3:]:
            self._error(400, b"the YAML front matter is not closed", "BadRequest")
            return
        self._json({"errors": [], "warnings": []})

    def _branch(self, repo: FixtureRepo, branch: str, payload: dict) -> None:
        if branch in repo.branches:
            self._error(409, b"branch already exists", "BranchExists")
            return
        sha = self._rev(repo, payload.get("startingPoint") or "main")
        if sha is not None:
            repo.branches[branch] = sha
            self._json({})

    def _preupload(self, repo: FixtureRepo, revision: str, payload: dict) -> None:
        sha = repo.resolve(revision)
        current = repo.commits.get(sha, {}) if sha else {}
        files = []
        for item in payload.get("files", []):
            old = current.get(item["path"])
            entry = {"path": item["path"], "uploadMode": "regular", "shouldIgnore": False}
            if old is not None:
                entry["oid"] = _git_blob_sha(old)
            files.append(entry)
        self._json({"files": files, "commitOid": sha})

    def _commit(self, repo: FixtureRepo, revision: str, body: bytes) -> None:
        hub = self.server.hub
        if hub.fail_commits > 0:
            hub.fail_commits -= 1
            if hub.fail_mode == "drop":  # the connection breaks: no answer at all
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self._error(500, b"internal error while committing", "InternalError")
            return
        if revision not in repo.branches:
            self._error(404, b"branch not found", "RevisionNotFound")
            return
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = lines[0]["value"] if lines and lines[0].get("key") == "header" else {}
        parent = header.get("parentCommit")
        if parent is not None and parent != repo.branches[revision]:
            self._error(412, b"parent commit is not the head of the branch", "PreconditionFailed")
            return
        files = dict(repo.commits[repo.branches[revision]])
        for item in lines[1:]:
            key, value = item.get("key"), item.get("value", {})
            if key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {p: d for p, d in files.items() if not p.startswith(prefix)}
            else:  # lfsFile & co: this server only hands out "regular" uploads
                self._error(400, f"unsupported commit operation {key!r}".encode(), "BadRequest")
                return
        sha = repo.commit(files, branch=revision)
        repo.messages[sha] = str(header.get("summary", ""))
        self._json({"commitUrl": f"{hub.url}/{repo.repo_id}/commit/{sha}", "commitOid": sha,
                    "pullRequestUrl": None})


def _tree(files: dict[str, bytes], under: str, recursive: bool) -> list[dict]:
    prefix = under.rstrip("/") + "/" if under else ""
    entries: dict[str, dict] = {}
    for path, data in sorted(files.items()):
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix):].split("/")
        # Directories on the way to the file (all of them when recursive, else the first).
        for depth in range(1, len(rest) if recursive else min(2, len(rest))):
            d = prefix + "/".join(rest[:depth])
            entries.setdefault(d, {"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest()})
        if len(rest) > 1 and not recursive:
            continue
        entry = {"type": "file", "path": path, "size": len(data), "oid": _git_blob_sha(data)}
        if path.endswith(_LFS_SUFFIXES):
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        entries[path] = entry
    return list(entries.values())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hub: "HubServer"


class HubServer:
    """Serve :class:`FixtureRepo` objects on ``http://127.0.0.1:<free port>``; a context manager."""

    def __init__(self) -> None:
        self.repos: dict[str, FixtureRepo] = {}
        self.blobs: dict[str, bytes] = {}
        self.blob_paths: dict[str, str] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Authorization)
        # Called (under the lock) after each model-info answer: lets a test move a branch
        # between the revision look-up and the file downloads.
        self.after_info: Callable[[FixtureRepo], None] | None = None
        self.fail_commits = 0  # the next N commit calls fail and change nothing:
        self.fail_mode = "500"  # ... with a 500 answer, or "drop": the connection closes unanswered
        self.lock = threading.RLock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.hub = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add_repo(self, repo_id: str, files: dict[str, bytes] | None = None, **kwargs: object) -> FixtureRepo:
        """Create ``repo_id`` (``org/name``), optionally with a first commit on ``main``."""
        repo = FixtureRepo(repo_id, **kwargs)  # type: ignore[arg-type]
        self.repos[repo_id] = repo
        if files is not None:
            repo.commit(files)
        return repo

    def record(self, method: str, path: str, auth: str | None) -> None:
        with self.lock:
            self.requests.append((method, unquote(path), auth))

    def downloaded(self) -> list[str]:
        """Repo paths whose bytes were fetched (GET on ``/resolve/`` or on an LFS redirect)."""
        out = []
        for method, path, _ in self.requests:
            parts = path.strip("/").split("/")
            if method != "GET":
                continue
            if len(parts) >= 5 and parts[2] == "resolve":
                out.append("/".join(parts[4:]))
            elif len(parts) == 2 and parts[0] == "_lfs":
                out.append(self.blob_paths.get(parts[1], parts[1]))
        return out

    def start(self) -> "HubServer":
        self._thread = threading.Thread(target=self._server.serve_forever, name="fixture-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
