"""No leftovers: private modes whatever the umask and -w, scratch cleaned on start, workers die with the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from killer import killer_script

from bids_deid.cli import main

_KILLER = killer_script("bids_deid.cli", umask=0)


def _modes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix() or ".": oct(p.stat().st_mode & 0o777) for p in [root, *root.rglob("*")]}


@pytest.fixture(scope="module")
def head_ds(tmp_path_factory):
    from bids_deid.deface import demo_head
    from bids_deid.demo import build_demo_dataset
    from bids_deid.pseudonym import generate_key

    root = tmp_path_factory.mktemp("left")
    return build_demo_dataset(root / "in", head=demo_head()), generate_key(root / "k.key")


def test_scratch_on_shared_w_is_private_and_cleaned(tmp_path, head_ds):
    """A kill while the scrubbed, not yet defaced T1w waits in a world-writable -w under umask 000."""
    ds, key = head_ds
    shared = tmp_path / "scratch"
    shared.mkdir()
    shared.chmod(0o777)
    out = tmp_path / "out"
    argv = [str(ds), str(out), "participant", "--key-file", str(key), "--participant-label", "canary01",
            "--skip-bids-validation", "-w", str(shared)]
    proc = subprocess.run([sys.executable, "-c", _KILLER, *argv], env={**os.environ, "KILL_AFTER": "2"},
                          capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr[-500:]
    left = [p for p in shared.rglob("*_T1w.nii.gz")]
    assert left, "the kill did not happen while the scrubbed T1w was in scratch"
    for p in left:  # readable by no one else: the file 0600, every folder of ours on the way 0700
        assert oct(p.stat().st_mode & 0o777) == "0o600", p
        for d in p.relative_to(shared).parents:
            if str(d) != ".":
                assert oct((shared / d).stat().st_mode & 0o777) == "0o700", d
    assert oct(shared.stat().st_mode & 0o777) == "0o777"  # the user's own scratch folder is left as it was
    private = tmp_path / "out-private"
    assert {m for m in _modes(private).values()} <= {"0o700", "0o600"}, _modes(private)
    # the next run of that subject removes the leftovers first and finishes
    assert main(argv) == 0
    assert not list(shared.rglob("*_T1w.nii.gz"))
    assert {m for m in _modes(private).values()} <= {"0o700", "0o600"}, _modes(private)


def _children(pid: int) -> set[int]:
    kids: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids |= {int(x) for x in (task / "children").read_text().split()}
        except OSError:
            pass
    return kids


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc (Linux)")
def test_workers_die_with_the_main_process(tmp_path, head_ds):
    """kill -9 of an --n-cpus 2 run while both workers deface: neither goes on to write its T1w."""
    ds, key = head_ds
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "bids_deid.cli", str(ds), str(out), "participant", "--key-file",
                             str(key), "--n-cpus", "2", "--skip-bids-validation"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = tmp_path / "out-private" / "work"
    guard = time.monotonic() + 600  # a guard against a hang, not a timing assertion
    while time.monotonic() < guard and len(list(work.glob("sub-*/defaced"))) < 2:
        assert proc.poll() is None, "the run ended before both workers were defacing"
        time.sleep(0.05)
    workers = _children(proc.pid)
    assert len(workers) >= 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    while time.monotonic() < guard and any(_alive(w) for w in workers):
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers)
    assert not list(out.rglob("*_T1w.nii.gz")), "a worker went on writing after its parent died"


def test_dead_raw_job_dirs_removed_running_ones_kept(tmp_path):
    """Raw-input job folders: a killed job's (lock free) goes at the next start; a running job's stays."""
    import fcntl

    from bids_deid.private import claim_job_dir

    work = tmp_path / "work"
    dead, _fd = claim_job_dir(work, "raw-")
    os.close(_fd)  # its job died: the lock is free
    (dead / "staging").mkdir()
    (dead / "staging" / "T1w.nii.gz").write_bytes(b"not yet defaced")
    older = work / "raw-older"  # an older version's folder, without a lock file
    older.mkdir()
    running, fd = claim_job_dir(work, "raw-")
    assert not dead.exists() and not older.exists()
    assert oct(running.stat().st_mode & 0o777) == "0o700"
    other, fd2 = claim_job_dir(work, "raw-")  # a second job while the first runs
    assert running.exists() and other.exists() and other != running
    with pytest.raises(BlockingIOError):  # the running job still holds its lock
        probe = os.open(running / ".lock", os.O_RDWR)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(probe)
    os.close(fd)
    os.close(fd2)
