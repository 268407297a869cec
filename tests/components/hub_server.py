"""A tiny stand-in for the Hugging Face Hub's download API, served on 127.0.0.1.

It implements exactly the endpoints huggingface_hub 2.4 calls for ``snapshot_download`` /
``hf_hub_download`` / ``resolve_revision``:

* ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}``: model info with
  ``sha`` and ``siblings``;
* ``GET /api/models/{repo}/tree/{rev}[/{path}]?recursive=``: the file listing (one page);
* ``HEAD|GET /{repo}/resolve/{rev}/{path}``: the file, with ``X-Repo-Commit``, ``ETag``
  (git blob sha1) and ``Content-Length``; LFS-tracked files (``*.safetensors``, ``*.bin``)
  answer with a 302 to ``/_lfs/{sha256}`` carrying ``X-Linked-Etag`` / ``X-Linked-Size``,
  as the real Hub redirects to its CDN.

It never sends Xet headers, so the client takes the plain HTTP path. Repos are held in
memory as a list of commits; ``FixtureRepo.commit`` moves a branch, which is how the
revision-pinning test changes a repo between two calls. Every request is logged in
``HubServer.requests`` so tests can assert what was (not) downloaded.
"""

from __future__ import annotations

import hashlib
import json
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
