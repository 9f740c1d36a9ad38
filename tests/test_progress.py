"""The progress bar: drawn on a terminal (a real pseudo-terminal here), silent in pipes and logs."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios

import pytest
from conftest import SHARED, needs_shared

from bids_deid.progress import Bar, wanted

BAR = re.compile(r"sub-[a-z0-9]+: (\d+)/(\d+) files")


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "BIDS_DEID_PROGRESS"}
    env["COLUMNS"] = "160"
    return env


def _in_pty(argv: list[str], timeout: float = 240) -> tuple[int, str]:
    """Run ``argv`` with stdout and stderr on a pseudo-terminal; return its exit code and what it drew."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # a 160x40 terminal
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=_env(), close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=timeout), b"".join(chunks).decode("utf-8", "replace")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "bids_deid.cli", *map(str, args)]


def test_bar_on_a_terminal_not_in_a_pipe(tmp_path, canary_ds, key_file):
    opts = ["--key-file", key_file, "--deface-method", "none", "--participant-label", "canary01"]
    rc, screen = _in_pty(_cli(canary_ds, tmp_path / "a", "participant", *opts))
    assert rc == 0, screen
    done = [(int(a), int(b)) for a, b in BAR.findall(screen)]
    assert done, screen
    total = done[0][1]
    assert total > 3 and (total, total) in done  # counts up to every file of the subject
    assert re.search(r"files \|[^|]*\| \[\d\d:\d\d\], (header|sidecar|table|copy|DICOM)", screen)  # the stage
    # not a terminal: no bar, only the result lines
    proc = subprocess.run(_cli(canary_ds, tmp_path / "b", "participant", *opts), capture_output=True, text=True,
                          env=_env(), timeout=240)
    assert proc.returncode == 0
    assert not BAR.search(proc.stderr) and not BAR.search(proc.stdout)
    assert "\r" not in proc.stderr


@pytest.mark.slow
def test_parallel_run_shows_participants_done(tmp_path, canary_ds, key_file):
    rc, screen = _in_pty(_cli(canary_ds, tmp_path / "o", "participant", "--key-file", key_file,
                              "--deface-method", "none", "--n-cpus", "2"))
    assert rc == 0, screen
    assert "participants: 2/2 participants" in screen
    assert not BAR.search(screen)  # workers draw nothing: their lines would interleave


@pytest.mark.slow
@needs_shared
def test_bar_for_raw_input(tmp_path, key_file):
    raw = tmp_path / "raw"
    shutil.copytree(SHARED / "dicom" / "mr_siemens_epi_nih", raw / "epi")
    rc, screen = _in_pty(_cli(raw, tmp_path / "o", "participant", "--key-file", key_file, "--deface-method", "none"))
    assert rc == 0, screen
    assert "raw input: reading headers, converting series (dcm2niix)" in screen
    assert BAR.search(screen), screen


def test_bar_helper_stage_and_quiet():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert wanted(True, Tty()) and not wanted(True, io.StringIO()) and not wanted(False, Tty())
    err = io.StringIO()
    old, sys.stderr = sys.stderr, err
    try:
        with Bar("sub-x", 2, show=False) as bar:
            assert list(bar.each([1, 2], lambda i: f"stage {i}")) == [1, 2]
    finally:
        sys.stderr = old
    assert err.getvalue() == ""  # hidden bars write nothing
