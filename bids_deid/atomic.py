"""Atomic file writes: temp file in the destination folder, fsync, rename.

A killed run leaves at most a ``.bids-deid-tmp-*`` file, never a half-written
output under its final name; :func:`cleanup_temps` removes those leftovers.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

TMP_PREFIX = ".bids-deid-tmp-"


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", perm: int = 0o644, fsync: bool = True) -> Iterator[IO]:
    """Open a temp file beside ``path``; on clean exit rename it onto ``path``.

    On any exception the temp file is removed and ``path`` is left untouched.
    ``fsync=False`` skips the per-file fsync (for writers of many small files): the rename
    still guarantees that a killed process never leaves a half file under ``path``, but after
    a power loss a just-renamed file may be empty, so such callers sync once at the end
    (see :func:`sync_tree`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    try:
        os.fchmod(fd, perm)
        binary = "b" in mode
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": ""})) as fh:
            fh.tmp_path = tmp  # lets a writer verify its bytes before the rename
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def sync_tree(root: str | os.PathLike) -> None:
    """Flush to disk everything written under ``root`` (one ``syncfs`` of its file system).

    Falls back to ``os.sync()`` where ``syncfs`` is not available.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(root, os.O_RDONLY)
        try:
            if libc.syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    except (OSError, AttributeError):
        pass
    os.sync()


def atomic_write_bytes(path: str | os.PathLike, data: bytes, perm: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb", perm) as fh:
        fh.write(data)


def write_content(path: str | os.PathLike, data, perm: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically: bytes, a source file copied as it is (streamed), or a
    callable that streams into the open temp file (see :data:`bids_deid.formats.base.Stream`)."""
    if isinstance(data, bytes | bytearray):
        atomic_write_bytes(path, bytes(data), perm)
        return
    import shutil

    with atomic_open(path, "wb", perm) as fh:
        if isinstance(data, str | os.PathLike):
            with open(data, "rb") as src:
                shutil.copyfileobj(src, fh, 8 << 20)
        else:
            data(fh)


def atomic_write_text(path: str | os.PathLike, text: str, perm: int = 0o644) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"), perm)


def publish(src: str | os.PathLike, dst: str | os.PathLike, perm: int = 0o644) -> None:
    """Copy a finished scratch file to ``dst`` atomically (``src`` may be on another file system)."""
    import shutil

    with open(src, "rb") as fh, atomic_open(dst, "wb", perm) as out:
        shutil.copyfileobj(fh, out, 1 << 22)


def cleanup_temps(root: str | os.PathLike) -> int:
    """Remove temp files an interrupted run left under ``root``; return how many."""
    n = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if name.startswith(TMP_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(dirpath, name))
                    n += 1
    return n
