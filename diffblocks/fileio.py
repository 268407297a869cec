"""Reading and writing files so that a hostile path cannot hang us and a failed save loses nothing.

* Reads are bounded and refuse anything that is not a regular file (a FIFO, ``/dev/zero``, a
  directory): a size taken from ``stat`` is not trusted, the read itself stops at the bound.
* Writes go to a temporary sibling, are flushed to disk, then renamed over the target, so a
  reader sees either the old file or the new one, never half of one.
* A whole folder (a pipeline or model save) is written into a temporary sibling folder and
  swapped in at the end; until then the old folder stays complete and loadable.

Every failure is a :class:`FileReadError` / :class:`FileWriteError` naming the path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_READ_LIMIT",
    "FileReadError",
    "FileWriteError",
    "atomic_folder",
    "atomic_write_bytes",
    "atomic_write_text",
    "read_bytes_bounded",
    "read_json_object",
    "read_text_bounded",
]

#: Default cap on a config / graph / index file: far above any real one.
DEFAULT_READ_LIMIT = 64 * 1024 * 1024


class FileReadError(OSError):
    """A file that cannot be read safely: missing, not a regular file, too large, or not text."""


class FileWriteError(OSError):
    """A save that failed; the previous file or folder is left as it was."""


def read_bytes_bounded(path: str | os.PathLike[str], limit: int = DEFAULT_READ_LIMIT, *, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # O_NONBLOCK: a FIFO must not block the open
    except FileNotFoundError:
        raise FileReadError(f"{what} '{p}' does not exist") from None
    except OSError as err:
        raise FileReadError(f"{what} '{p}' cannot be opened: {err.strerror or err}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FileReadError(f"{what} '{p}' is not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise FileReadError(f"{what} '{p}' is larger than {limit:,} bytes")
    return data


def read_text_bounded(path: str | os.PathLike[str], limit: int = DEFAULT_READ_LIMIT, *, what: str = "file") -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes."""
    data = read_bytes_bounded(path, limit, what=what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FileReadError(f"{what} '{path}' is not UTF-8 text (byte {err.start})") from None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_json_object(
    path: str | os.PathLike[str], *, what: str = "file", error: type[Exception] = ValueError, limit: int = DEFAULT_READ_LIMIT
) -> dict[str, Any]:
    """A JSON object read from a bounded regular file; every failure (unreadable, too deep, not
    JSON, not an object) is one ``error`` naming the file."""
    import json

    try:
        data = json.loads(read_text_bounded(path, limit, what=what))
    except FileReadError as err:
        raise error(str(err)) from None
    except RecursionError:
        raise error(f"{path}: nested too deeply") from None
    except json.JSONDecodeError as err:
        raise error(f"{path}: invalid JSON ({err})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: must hold a JSON object, got {type(data).__name__}")
    return data


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary sibling and a rename."""
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as err:
        raise FileWriteError(f"cannot write '{target}': {err.strerror or err}") from None
    try:
        # mkstemp makes the file 0600; give it the mode a plain open() would (or the old file's).
        os.fchmod(fd, stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise FileWriteError(f"cannot write '{target}': {err.strerror or err}") from None
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` as UTF-8; text that cannot be encoded fails before the file is touched."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise FileWriteError(f"cannot write '{path}': the text is not valid Unicode ({err.reason} at {err.start})") from None
    return atomic_write_bytes(path, data)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary sibling folder; on success it replaces ``path`` as a whole.

    On any error the temporary folder is removed and ``path`` is untouched. The swap is two
    renames (old aside, new in place); the old folder is deleted only after the new one is in.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        yield work
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    aside = None
    if target.exists():
        aside = target.with_name(f".{target.name}.{os.getpid()}.old")
        os.replace(target, aside)
    try:
        os.replace(work, target)
    except OSError as err:
        if aside is not None:
            os.replace(aside, target)
        shutil.rmtree(work, ignore_errors=True)
        raise FileWriteError(f"cannot write '{target}': {err.strerror or err}") from None
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
