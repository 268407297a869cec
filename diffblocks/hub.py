"""Hugging Face Hub access, pinned to one commit.

A branch or tag can move while a pipeline is being loaded: the UNet is fetched, someone
pushes, the VAE is fetched from the new commit, and the pipeline silently mixes two
versions. Everything here therefore resolves a revision to a commit sha *once* and then
downloads only at that sha.

``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` are read when a function is called (huggingface_hub
reads them once at import), so tests and long-lived processes can change them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "HubError",
    "hub_endpoint",
    "is_commit_sha",
    "is_offline",
    "list_repo_files_pinned",
    "resolve_commit",
    "snapshot_download_pinned",
    "upload_files",
]

_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_TRUE = {"1", "true", "yes", "on"}


class HubError(OSError):
    """A Hub look-up or download failed; the message names the repo, the revision and a fix."""


def is_commit_sha(revision: str | None) -> bool:
    """True when ``revision`` is a full 40-character commit sha (immutable, nothing to resolve)."""
    return bool(revision) and _COMMIT_RE.fullmatch(str(revision)) is not None


def hub_endpoint() -> str | None:
    """The endpoint from ``HF_ENDPOINT`` as set *now*, or None for huggingface_hub's default."""
    value = os.environ.get("HF_ENDPOINT")
    return value.rstrip("/") if value else None


def is_offline(local_files_only: bool = False) -> bool:
    """True when no network call may be made: ``local_files_only`` or ``HF_HUB_OFFLINE`` (now or at import)."""
    from huggingface_hub import constants

    env = (os.environ.get("HF_HUB_OFFLINE") or "").strip().lower() in _TRUE
    return local_files_only or env or constants.is_offline_mode()


def _api(token: str | bool | None):
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub_endpoint(), token=token)


def _describe(repo_id: str, revision: str | None) -> str:
    return f"'{repo_id}' at revision '{revision or 'main'}'"


def resolve_commit(
    repo_id: str,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    repo_type: str = "model",
) -> str:
    """Resolve ``revision`` (branch, tag or sha; default ``main``) of ``repo_id`` to a commit sha.

    Online, this asks the Hub once and records the answer in the cache's ``refs/`` folder;
    offline (``local_files_only`` or ``HF_HUB_OFFLINE``), it reads that record.
    """
    from huggingface_hub.errors import HfHubHTTPError, RevisionResolutionError

    if is_commit_sha(revision):
        return str(revision)
    try:
        resolved = _api(token).resolve_revision(
            repo_id,
            revision=revision,
            repo_type=repo_type,
            cache_dir=str(cache_dir) if cache_dir is not None else None,
            local_files_only=is_offline(local_files_only),
        )
    except RevisionResolutionError as err:
        raise HubError(
            f"cannot resolve {_describe(repo_id, revision)} to a commit: {err} "
            "Download it once with network access, or pass a local folder."
        ) from err
    except HfHubHTTPError as err:
        raise HubError(f"the Hub refused {_describe(repo_id, revision)}: {err}") from err
    return resolved.resolved


def list_repo_files_pinned(
    repo_id: str,
    commit: str,
    *,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    repo_type: str = "model",
) -> list[str] | None:
    """Every file path of ``repo_id`` at ``commit``; from the cache when listed before.

    Returns None offline when the listing was never cached (the caller then falls back to
    broad patterns and whatever the snapshot holds).
    """
    from huggingface_hub import get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError, HfHubHTTPError
    from huggingface_hub.hf_api import RepoFile

    if not is_commit_sha(commit):
        raise ValueError(f"list_repo_files_pinned needs a commit sha, got '{commit}'")
    try:
        cached = get_cached_repo_tree(
            repo_id, repo_type=repo_type, revision=commit, cache_dir=str(cache_dir) if cache_dir else None
        )
        return [f.path for f in cached]
    except CachedRepoTreeNotFoundError:
        pass
    if is_offline(local_files_only):
        return None
    try:
        tree = _api(token).list_repo_tree(repo_id, recursive=True, revision=commit, repo_type=repo_type)
        return [f.path for f in tree if isinstance(f, RepoFile)]
    except HfHubHTTPError as err:
        raise HubError(f"cannot list the files of {_describe(repo_id, commit)}: {err}") from err


def snapshot_download_pinned(
    repo_id: str,
    *,
    revision: str | None = None,
    allow_patterns: Sequence[str] | str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    repo_type: str = "model",
) -> Path:
    """Download the files of ``repo_id`` matching ``allow_patterns``, all at one commit.

    The revision is resolved to a commit sha once, then every listing and file request
    names that sha, so a push to the branch during the download cannot mix two commits.
    Returns the local snapshot folder (``.../snapshots/<sha>``). Offline, returns the cached
    snapshot, or raises :class:`HubError` when the requested files were never downloaded.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    commit = resolve_commit(
        repo_id,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        token=token,
        repo_type=repo_type,
    )
    patterns = [allow_patterns] if isinstance(allow_patterns, str) else allow_patterns
    try:
        path = snapshot_download(
            repo_id,
            repo_type=repo_type,
            revision=commit,
            allow_patterns=list(patterns) if patterns is not None else None,
            cache_dir=str(cache_dir) if cache_dir is not None else None,
            local_files_only=is_offline(local_files_only),
            token=token,
            endpoint=hub_endpoint(),
        )
    except LocalEntryNotFoundError as err:
        raise HubError(
            f"{_describe(repo_id, revision)} (commit {commit}) is not in the local cache and the Hub may "
            f"not be contacted (offline mode or local_files_only): {err}"
        ) from err
    except HfHubHTTPError as err:
        raise HubError(f"download of {_describe(repo_id, revision)} (commit {commit}) failed: {err}") from err
    return Path(path)


def upload_files(
    repo_id: str,
    files: Mapping[str, bytes | str | Path],
    *,
    commit_message: str,
    private: bool | None = None,
    token: str | bool | None = None,
    branch: str | None = None,
) -> str:
    """Upload ``files`` ({path in repo: bytes or local file}) to ``repo_id`` as ONE commit.

    The repo is created when missing (``private`` applies then), and ``branch`` too (from
    ``main``). The Hub applies a commit whole or not at all, so a failure leaves the branch
    where it was. Returns the new commit sha.
    """
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.errors import HfHubHTTPError

    try:  # the HTTP client huggingface_hub 2.x uses: a dropped connection raises its errors
        from httpx2 import HTTPError as TransportError
    except ImportError:  # pragma: no cover - older huggingface_hub
        TransportError = OSError  # type: ignore[assignment,misc]
    if not files:
        raise ValueError(f"nothing to upload to '{repo_id}'")
    if is_offline():
        raise HubError(f"cannot push to '{repo_id}': offline mode is on (HF_HUB_OFFLINE); nothing was uploaded")
    target = branch or "main"
    api = _api(token)
    step = "create the repo"
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, token=token)
        if target != "main":
            step = f"create the branch '{target}'"
            api.create_branch(repo_id, branch=target, exist_ok=True, token=token)
        step = "commit"
        operations = [
            CommitOperationAdd(path_in_repo=path, path_or_fileobj=data if isinstance(data, bytes) else str(data))
            for path, data in sorted(files.items())
        ]
        info = api.create_commit(repo_id, operations, commit_message=commit_message, revision=target, token=token)
    except HfHubHTTPError as err:
        raise HubError(
            f"push to '{repo_id}' (branch '{target}') failed at '{step}'; nothing was committed: {err}"
        ) from err
    except (TransportError, OSError) as err:
        # No answer: the Hub applied the commit whole or not at all, but we cannot tell which.
        raise HubError(
            f"push to '{repo_id}' (branch '{target}') lost the connection at '{step}' ({err}); the Hub applies "
            "a commit whole or not at all, so no half-made commit exists: look at the branch before pushing again"
        ) from err
    return str(info.oid)
