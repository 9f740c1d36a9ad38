"""Atomic file writes: temp file in the destination folder, fsync, rename.

A killed run leaves at most a ``.bids-deid-tmp-*`` file, never a half-written
output under its final name; :func:`cleanup_temps` removes those leftovers.
"""

from __future__ import annotations

import contextlib
import itertools
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


_PART_COUNT = itertools.count()
_MADE_DIRS: set[str] = set()


def atomic_write_parts(path: str | os.PathLike, parts: list, perm: int = 0o644, fsync: bool = True) -> None:
    """Write the chunks ``parts`` (bytes-like) to ``path`` atomically with one ``writev``.

    The same contract as :func:`atomic_open` (temp ``.bids-deid-tmp-*`` file beside ``path``,
    mode ``perm``, renamed onto ``path``, removed on failure) with fewer system calls, for
    writers of many files held in memory (the DICOM engine): the temp name is the process id
    and a counter (a name left by an earlier process is skipped), and folders already made are
    remembered.
    """
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    if folder not in _MADE_DIRS:
        os.makedirs(folder, exist_ok=True)
        _MADE_DIRS.add(folder)
    while True:
        tmp = os.path.join(folder, f"{TMP_PREFIX}{os.getpid()}-{next(_PART_COUNT)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, perm)
            break
        except FileExistsError:  # a leftover of an earlier process with the same pid
            continue
        except BaseException:
            _MADE_DIRS.discard(folder)
            raise
    try:
        os.fchmod(fd, perm)  # exact mode whatever the umask
        total = sum(map(len, parts))
        done = os.writev(fd, parts)
        if done < total:  # short write: finish the rest
            rest = memoryview(b"".join(bytes(b) for b in parts))[done:]
            while rest:
                rest = rest[os.write(fd, rest):]
        if fsync:
            os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        _MADE_DIRS.discard(folder)
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
