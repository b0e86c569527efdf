"""Atomic file output (every file karmma writes goes through a temporary name and a rename),
and the SHA-256 that names a file's content.

A crash, a full disk or a read-only folder during a write leaves the previous
version of the file intact and no temporary file behind::

    atomic_write_text(path, text)
    with atomic_path(path) as tmp:      # for writers that want a file name
        torch.save(state, tmp)          # (h5py, safetensors, savefig, cv2.imwrite, ...)

The temporary file sits next to the target (same file system, so the rename
is atomic) and is named ``.<name>.<pid>.tmp``; ``.tmp`` keeps suffix-sniffing
writers (savefig, imwrite) from choosing a format by it, so pass the format
explicitly to those.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path


def temporary_name(path: Path) -> Path:
    """``dir/.name.<pid>.tmp``: hidden, per process, never matched by readers' globs."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def atomic_path(path: str | Path, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed to ``path``, on any
    error it is removed and the error propagates (``path`` keeps its old content)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        if fsync and tmp.is_file():
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, value) -> Path:
    """Write ``value`` as JSON (indented one space per level) to ``path`` atomically; returns ``path``."""
    return atomic_write_text(path, json.dumps(value, indent=1) + "\n")


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", newline: str | None = None) -> Iterator:
    """``open`` for writing (``"w"`` or ``"wb"``), renamed into place when the block ends without error."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp:
        kwargs = {} if "b" in mode else {"encoding": "utf-8", "newline": newline}
        with open(tmp, mode, **kwargs) as f:
            yield f


def atomic_savefig(fig, path: str | Path, **kwargs) -> Path:
    """``fig.savefig`` through a temporary file (format taken from ``path``'s suffix)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", **kwargs)
    return path


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, computed once per (path, size, modification time) in this process."""
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
