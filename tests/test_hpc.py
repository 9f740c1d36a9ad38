"""SLURM script writer (``--slurm-script``) and parallel-job safety of the private dir."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

from bids_deid.cli import main as cli_main
from bids_deid.demo import build_demo_dataset
from bids_deid.errors import KeyFileError
from bids_deid.hpc import array_spec
from bids_deid.private import check_key


@pytest.fixture
def small_ds(tmp_path: Path) -> Path:
    return build_demo_dataset(tmp_path / "in", dicom=False)


def _write(tmp_path: Path, ds: Path, key: Path, *extra: str) -> tuple[int, Path]:
    script = tmp_path / "jobs" / "deid.sbatch"
    rc = cli_main([str(ds), str(tmp_path / "out"), "participant", "--key-file", str(key),
                   "--slurm-script", str(script), *extra])
    return rc, script


def test_array_script_one_participant_per_task(tmp_path, small_ds, key_file, capsys):
    rc, script = _write(tmp_path, small_ds, key_file, "--slurm-max-parallel", "1", "--slurm-mem", "3G",
                        "--slurm-time", "01:00:00", "--n-cpus", "2", "--deface-method", "none")
    assert rc == 0
    text = script.read_text()
    assert "#SBATCH --array=0-1%1" in text
    assert "#SBATCH --mem=3G" in text and "#SBATCH --time=01:00:00" in text and "--cpus-per-task=2" in text
    assert "--n-cpus 2" in text
    # the options that change outputs travel in one settings file that both levels load
    settings = json.loads(script.with_name("deid-settings.json").read_text())
    assert settings["deface_method"] == "none"
    assert f"--settings {script.with_name('deid-settings.json')}" in text
    assert oct(script.with_name("deid-settings.json").stat().st_mode & 0o777) == "0o600"
    plist = script.with_name("deid-participants.txt")
    assert plist.read_text().split() == ["canary01", "canary02"]
    assert oct(plist.stat().st_mode & 0o777) == "0o600"
    # No output is written: only the scripts.
    assert not (tmp_path / "out").exists()
    group = script.with_name("deid-group.sbatch").read_text()
    assert " group " in group and "--array" not in group
    submit = script.with_name("deid-submit.sh").read_text()
    assert "--dependency=afterok:" in submit and "--parsable" in submit
    # a failed task must cancel the group job, not leave it pending forever
    assert "--kill-on-invalid-dep=yes" in submit


def test_key_passed_by_path_never_inlined(tmp_path, small_ds, key_file):
    rc, script = _write(tmp_path, small_ds, key_file)
    assert rc == 0
    secret = key_file.read_text().strip()
    for p in script.parent.iterdir():
        if p.is_file():
            assert secret not in p.read_text()
    rec = json.loads(script.with_name("deid-settings.json").read_text())
    assert rec["key_file"] == str(key_file.absolute())  # by path, with its fingerprint
    assert secret not in json.dumps(rec)


def test_task_index_selects_participant_line(tmp_path, small_ds, key_file):
    """Run the array script's own shell logic with a stand-in bids-deid that echoes its args."""
    rc, script = _write(tmp_path, small_ds, key_file)
    assert rc == 0
    fake = tmp_path / "fakebin"
    fake.mkdir()
    text = script.read_text()
    cmd_line = next(line for line in text.splitlines() if " participant --participant-label" in line)
    exe = cmd_line.split()[0]
    stub = fake / "stub.sh"
    stub.write_text('#!/bin/sh\necho "ARGS $*"\n')
    stub.chmod(0o755)
    patched = script.with_name("patched.sh")
    patched.write_text(text.replace(exe, str(stub), 1))
    for task, want in ((0, "canary01"), (1, "canary02")):
        out = subprocess.run(["bash", str(patched)], capture_output=True, text=True,
                             env={**os.environ, "SLURM_ARRAY_TASK_ID": str(task)})
        assert out.returncode == 0, out.stderr
        assert f"--participant-label {want} " in out.stdout
        assert f"task-{task}" in out.stdout  # its own work dir
    bad = subprocess.run(["bash", str(patched)], capture_output=True, text=True,
                         env={**os.environ, "SLURM_ARRAY_TASK_ID": "5"})
    assert bad.returncode != 0


def test_container_command_binds_paths(tmp_path, small_ds, key_file):
    sif = tmp_path / "bids-deid.sif"
    sif.write_bytes(b"")
    rc, script = _write(tmp_path, small_ds, key_file, "--slurm-container", str(sif))
    assert rc == 0
    text = script.read_text()
    assert "apptainer run --cleanenv" in text and str(sif) in text
    words = text.split()
    binds = [Path(words[i + 1]) for i, w in enumerate(words) if w == "-B"]
    for needed in (small_ds, key_file, tmp_path / "out", tmp_path / "out-private"):
        assert any(b == needed or b in needed.parents for b in binds), (needed, binds)


def test_participant_selection_and_errors(tmp_path, small_ds, key_file, capsys):
    rc, script = _write(tmp_path, small_ds, key_file, "--participant-label", "sub-canary02")
    assert rc == 0
    assert script.with_name("deid-participants.txt").read_text() == "canary02\n"
    assert "--array=0%1" in script.read_text()
    capsys.readouterr()
    rc, _ = _write(tmp_path, small_ds, key_file, "--participant-label", "nobody")
    assert rc != 0 and "nobody" in capsys.readouterr().err
    # No key file: refused (the key must never travel in the script or the environment).
    rc = cli_main([str(small_ds), str(tmp_path / "out"), "participant", "--slurm-script", str(tmp_path / "x.sh")])
    err = capsys.readouterr().err
    assert rc != 0 and err.startswith("bids-deid: error:") and "--key-file" in err
    # Scripts (they list original labels) never inside the public output.
    rc = cli_main([str(small_ds), str(tmp_path / "out"), "participant", "--key-file", str(key_file),
                   "--slurm-script", str(tmp_path / "out" / "x.sbatch")])
    assert rc != 0 and "public output" in capsys.readouterr().err


def test_array_spec():
    assert array_spec(1, 8) == "0%1"
    assert array_spec(20, 8) == "0-19%8"
    assert array_spec(3, 8) == "0-2%3"


def test_check_key_race_between_jobs(tmp_path):
    """Many jobs creating key-fingerprint at once: one value wins, the same key never fails."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(16)

    def job():
        barrier.wait()
        try:
            check_key(tmp_path / "priv", "abc123")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=job) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    path = tmp_path / "priv" / "key-fingerprint"
    assert path.read_text() == "abc123\n"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in path.parent.iterdir()] == ["key-fingerprint"]  # no temp left behind
    with pytest.raises(KeyFileError):
        check_key(tmp_path / "priv", "other")
