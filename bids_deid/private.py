"""The private side of a run: mapping, audit log, identifiers met, state, reports.

Nothing here is ever copied to the public output. Folders are 0700, files 0600.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from .atomic import TMP_PREFIX, atomic_write_bytes
from .errors import KeyFileError, OutputError

DIR_MODE = 0o700
FILE_MODE = 0o600


def ensure_dir(path: Path) -> Path:
    """``path`` and every folder created on the way to it: mode 0700 (existing ancestors are left alone)."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode=DIR_MODE)
        os.chmod(d, DIR_MODE)  # whatever the umask
    os.chmod(path, DIR_MODE)
    return path


def die_with_parent(parent_pid: int) -> None:
    """Worker initializer: the kernel kills this process when its parent dies (Linux), so a killed
    run leaves no worker writing into the output; elsewhere, a worker whose parent is already gone exits."""
    import signal

    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def write_private(path: Path, data: bytes | str) -> None:
    """Atomic 0600 write of a private file, creating 0700 folders."""
    ensure_dir(path.parent)
    atomic_write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data, perm=FILE_MODE)


def write_json(path: Path, obj) -> None:
    write_private(path, json.dumps(obj, indent=1, ensure_ascii=False, sort_keys=True) + "\n")


def read_json(path: Path, default=None):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
    except (OSError, json.JSONDecodeError) as exc:
        raise OutputError(f"private file {path.name} is unreadable; remove it or use a fresh private dir") from exc


def check_key(private_dir: Path, fingerprint: str) -> None:
    """Record the key fingerprint on first use; refuse a different key later."""
    path = private_dir / "key-fingerprint"
    if not path.exists():
        create_once(path, (fingerprint + "\n").encode())
    old = path.read_text().strip()
    if old != fingerprint:
        raise KeyFileError(
            "this output was made with a different key; use the same --key-file, or a new output and private dir"
        )


def create_once(path: Path, data: bytes) -> None:
    """Create ``path`` with ``data`` unless it exists; race-safe between parallel jobs.

    A complete temp file is hard-linked into place: the link fails if another job got
    there first (its file then wins, and the caller compares against it). Where hard links
    are not supported, an exclusive create is used instead.
    """
    ensure_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:  # no hard links here (some network file systems)
            try:
                out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            except FileExistsError:
                return
            with os.fdopen(out, "wb") as fh:
                fh.write(data)
    finally:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)




def claim_job_dir(work_dir: Path, prefix: str) -> tuple[Path, int]:
    """A fresh 0700 scratch folder for one job, locked while the job runs; returns (folder, lock fd).

    Folders of the same ``prefix`` left by killed jobs (their lock no longer held) are removed
    first; those of jobs still running (on this machine) are left alone.
    """
    import fcntl
    import shutil

    if not Path(work_dir).exists():
        ensure_dir(Path(work_dir))
    for old in Path(work_dir).glob(prefix + "*"):
        lock = old / ".lock"
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:  # no lock: a job that died before taking it, or an older version
            shutil.rmtree(old, ignore_errors=True)
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # held: that job is running
        shutil.rmtree(old, ignore_errors=True)
        os.close(fd)
    job = Path(tempfile.mkdtemp(prefix=prefix, dir=work_dir))  # 0700
    fd = os.open(job / ".lock", os.O_RDWR | os.O_CREAT, FILE_MODE)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return job, fd
