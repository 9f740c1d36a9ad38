"""The generated SLURM array + group job on a real (one-node) SLURM, against a serial run.

Skipped unless ``BIDS_DEID_SLURM_TEST=1`` and a SLURM controller answers; start one with
``sudo scripts/slurm-test.sh`` (which also runs this test).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import canary_hits

from bids_deid.cli import main as cli_main
from bids_deid.demo import build_demo_dataset
from bids_deid.pseudonym import generate_key

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(os.environ.get("BIDS_DEID_SLURM_TEST") != "1",
                       reason="set BIDS_DEID_SLURM_TEST=1 with a running SLURM (scripts/slurm-test.sh)"),
]


def _slurm_up() -> str | None:
    for exe in ("sbatch", "squeue", "sinfo"):
        if shutil.which(exe) is None:
            return f"{exe} is not installed"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo failed: {exc}"
    if out.returncode or not any(s.strip().startswith(("idle", "mixed", "alloc")) for s in out.stdout.splitlines()):
        return f"no usable SLURM node ({(out.stderr or out.stdout).strip()[:200]})"
    return None


def _wait(job_ids: list[str], guard_s: float = 3600) -> None:
    """Wait until SLURM no longer lists the jobs (guard against a hang, not a timing test)."""
    end = time.monotonic() + guard_s
    while time.monotonic() < end:
        out = subprocess.run(["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i %T"],
                             capture_output=True, text=True).stdout
        if not out.strip():
            return
        time.sleep(2)
    subprocess.run(["scancel", *job_ids])
    pytest.fail(f"SLURM jobs {job_ids} still queued or running after the guard time")


def _public_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _prepare(tmp_path: Path, out: Path, private: Path) -> tuple[Path, Path, Path]:
    """The demo dataset, a key and the generated SLURM scripts: (dataset, key, submit script)."""
    why = _slurm_up()
    if why:
        pytest.skip(why)
    from bids_deid.deface import demo_head

    data = build_demo_dataset(tmp_path / "input", head=demo_head())
    key = generate_key(tmp_path / "study.key")
    script = tmp_path / "jobs" / "deid.sbatch"
    assert cli_main([str(data), str(out), "participant", "--key-file", str(key), "--private-dir", str(private),
                     "--slurm-script", str(script), "--slurm-mem", "1500M", "--slurm-time", "00:30:00",
                     "--slurm-max-parallel", "2"]) == 0
    assert key.read_text().strip() not in script.read_text()
    return data, key, script.with_name("deid-submit.sh")


def _submit(submit: Path) -> list[str]:
    """Run the submit script as a user would; the array and group job ids."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    sub = subprocess.run(["bash", str(submit)], capture_output=True, text=True, env=env)
    assert sub.returncode == 0, sub.stderr
    ids = [line.split(":")[1].split()[0] for line in sub.stdout.splitlines() if ":" in line]
    assert len(ids) == 2, sub.stdout
    return ids


def test_slurm_array_matches_serial_run(tmp_path: Path, capsys) -> None:
    out, private = tmp_path / "slurm-out", tmp_path / "slurm-private"
    data, key, submit = _prepare(tmp_path, out, private)
    _wait(_submit(submit))

    logs = sorted((tmp_path / "jobs" / "deid-logs").glob("*.log"))
    text = {p.name: p.read_text() for p in logs}
    group_logs = [t for n, t in text.items() if n.startswith("bids-deid-group_")]
    assert len(group_logs) == 1, f"group job did not run; logs: {text}"
    assert "validator: 0 errors" in group_logs[0], group_logs[0]
    assert "leak audit: 0 hits" in group_logs[0], group_logs[0]
    assert sum(n.startswith("bids-deid_") for n in text) == 2  # one log per array task
    assert not canary_hits(out)

    serial, serial_private = tmp_path / "serial-out", tmp_path / "serial-private"
    for level in ("participant", "group"):
        assert cli_main([str(data), str(serial), level, "--key-file", str(key),
                         "--private-dir", str(serial_private)]) == 0
    a, b = _public_files(out), _public_files(serial)
    assert sorted(a) == sorted(b)
    different = [rel for rel in a if a[rel] != b[rel]]
    assert not different, f"files differ between the SLURM and the serial run: {different}"
    assert (serial_private / "mapping.tsv").read_bytes() == (private / "mapping.tsv").read_bytes()


def test_failed_task_cancels_the_group_job(tmp_path: Path) -> None:
    """A participant task that fails must not leave the group job pending for ever."""
    out, private = tmp_path / "out", tmp_path / "private"
    data, _key, submit = _prepare(tmp_path, out, private)
    shutil.rmtree(sorted(data.glob("sub-*"))[0])  # that array task fails: its participant no longer exists
    _wait(_submit(submit), guard_s=600)  # without --kill-on-invalid-dep the group job would stay pending here
    logs = {p.name: p.read_text() for p in (tmp_path / "jobs" / "deid-logs").glob("*.log")}
    assert not [n for n in logs if n.startswith("bids-deid-group_")], logs
    assert not (private / "leak-audit.json").exists()
