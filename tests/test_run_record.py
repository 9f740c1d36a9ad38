"""A run that cannot be fooled: recorded settings, complete subjects, one settings file for every job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tree_bytes

from bids_deid.cli import main
from bids_deid.pseudonym import generate_key
from bids_deid.settings import load, read

NONE = ("--deface-method", "none")


def _cli(ds: Path, out: Path, level: str, key: Path, *extra: str) -> int:
    return main([str(ds), str(out), level, "--key-file", str(key), *extra])


def _one_err_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1, err
    return err[0]


def test_rerun_with_other_deface_method_refused(tmp_path, canary_ds, key_file, capsys):
    """participant --deface-method none, then participant with defacing into the same OUT: refused.

    Before the run record, the second run skipped the existing (face-bearing) T1w files and
    the group level published them as defaced.
    """
    out = tmp_path / "out"
    assert _cli(canary_ds, out, "participant", key_file, *NONE) == 0
    before = tree_bytes(out)
    capsys.readouterr()
    assert _cli(canary_ds, out, "participant", key_file) == 1
    line = _one_err_line(capsys)
    assert "was made with other settings" in line and "--deface-method: none -> template" in line
    assert "run-settings.json" in line
    assert tree_bytes(out) == before  # nothing written by the refused run
    # the group level takes the recorded settings: not defaced, and says so
    assert _cli(canary_ds, out, "group", key_file) == 0
    assert "--affirmConsent" in capsys.readouterr().out
    # an explicit clashing option at group level is refused too
    assert _cli(canary_ds, out, "group", key_file, "--deface-method", "template") == 1
    line = _one_err_line(capsys)
    assert "differ from the recorded settings" in line and "--deface-method" in line


def test_rerun_with_other_profile_or_flag_refused(tmp_path, canary_ds, key_file, capsys):
    out = tmp_path / "out"
    assert _cli(canary_ds, out, "participant", key_file, *NONE, "--participant-label", "canary01") == 0
    capsys.readouterr()
    for extra, needle in ((("--sourcedata", "none"), "--sourcedata: dicom -> none"),
                          (("--clean-pixels",), "--clean-pixels: False -> True"),
                          (("--profile", "dicom-retain-longitudinal"), "--profile: basic")):
        assert _cli(canary_ds, out, "participant", key_file, *NONE, "--participant-label", "canary02",
                    *extra) == 1, extra
        assert needle in _one_err_line(capsys)
    # the same settings go on (another participant of the same run)
    assert _cli(canary_ds, out, "participant", key_file, *NONE, "--participant-label", "canary02") == 0


def test_every_file_record_names_its_settings(tmp_path, canary_ds, key_file):
    out, private = tmp_path / "out", tmp_path / "out-private"
    assert _cli(canary_ds, out, "participant", key_file, *NONE) == 0
    rec = json.loads((private / "run-settings.json").read_text())
    assert oct((private / "run-settings.json").stat().st_mode & 0o777) == "0o600"
    assert rec["deface_method"] == "none" and rec["profile"] == "basic" and len(rec["profile_sha256"]) == 64
    assert rec["key_fingerprint"] and rec["tool_version"]
    assert key_file.read_text().strip() not in (private / "run-settings.json").read_text()
    states = sorted((private / "state").glob("sub-*.json"))
    assert len(states) == 2
    for p in states:
        st = json.loads(p.read_text())
        assert st["complete"] is True and st["settings"] == rec["settings_id"]
        assert st["records"] and all(r["settings"] == rec["settings_id"] for r in st["records"].values())


_KILLER = """
import os, signal, sys
import bids_deid.formats.nifti as pl
from bids_deid.cli import main
real, n = pl.scrub, [0]
def dies(*a, **k):
    n[0] += 1
    if n[0] == int(os.environ["DIE_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*a, **k)
pl.scrub = dies
sys.exit(main(sys.argv[1:]))
"""


def test_group_refuses_after_kill_9_and_names_the_subject(tmp_path, canary_ds, key_file, capsys):
    out = tmp_path / "out"
    argv = [str(canary_ds), str(out), "participant", "--key-file", str(key_file), *NONE]
    proc = subprocess.run([sys.executable, "-c", _KILLER, *argv], env={**os.environ, "DIE_AT": "4"},
                          capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert _cli(canary_ds, out, "group", key_file) == 1
    line = _one_err_line(capsys)
    assert "group refused" in line and "is incomplete" in line and "sub-" in line
    assert not (out / "dataset_description.json").exists()
    # the rerun of the participant level completes it; then the group level runs
    assert _cli(canary_ds, out, "participant", key_file, *NONE) == 0
    assert _cli(canary_ds, out, "group", key_file) == 0


@pytest.mark.parametrize("which", ["empty", "other run"])
def test_group_with_another_private_dir_refused(tmp_path, canary_ds, key_file, capsys, which):
    out = tmp_path / "out"
    assert _cli(canary_ds, out, "participant", key_file, *NONE) == 0
    other = tmp_path / "other-private"
    if which == "empty":
        other.mkdir()
    else:  # a complete run of one participant into another output, with its own private dir
        assert _cli(canary_ds, tmp_path / "out2", "participant", key_file, *NONE, "--participant-label", "canary01",
                    "--private-dir", str(other)) == 0
    capsys.readouterr()
    assert _cli(canary_ds, out, "group", key_file, "--private-dir", str(other)) == 1
    line = _one_err_line(capsys)
    assert "private" in line, line  # says the private dir does not belong to this output
    assert not (out / "dataset_description.json").exists()


def test_settings_file_roundtrip_json_and_toml(tmp_path, canary_ds, key_file):
    out = tmp_path / "out"
    assert _cli(canary_ds, out, "participant", key_file, *NONE, "--clean-pixels", "--license", "CC0") == 0
    path = tmp_path / "out-private" / "run-settings.json"
    s = load(path, analysis_level="group")
    assert s.deface_method == "none" and s.clean_pixels and s.license == "CC0"
    assert s.key == key_file.read_text().strip().encode()
    rec = read(path)
    toml = tmp_path / "s.toml"
    toml.write_text("\n".join(f"{k} = {json.dumps(v)}" for k, v in rec.items() if v is not None) + "\n")
    assert load(toml, analysis_level="group") == s
    # a settings file never holds the key; a changed key is refused
    other = generate_key(tmp_path / "other.key")
    rec["key_file"] = str(other)
    path2 = tmp_path / "s2.json"
    path2.write_text(json.dumps(rec))
    with pytest.raises(Exception, match="not the one these settings were recorded with"):
        load(path2, analysis_level="group")


def test_slurm_tasks_and_local_run_give_identical_outputs(tmp_path, canary_ds, key_file):
    """The array script's own per-task commands (run with SLURM's task ids) vs a local run, same flags.

    ``--clean-pixels`` used to be lost on the way into the SLURM scripts.
    """
    flags = [*NONE, "--clean-pixels", "--license", "CC0"]
    local, slurm = tmp_path / "local", tmp_path / "slurm"
    assert _cli(canary_ds, local, "participant", key_file, *flags) == 0
    assert _cli(canary_ds, local, "group", key_file, *flags) == 0
    script = tmp_path / "jobs" / "deid.sbatch"
    assert _cli(canary_ds, slurm, "participant", key_file, *flags, "--slurm-script", str(script)) == 0
    n = len(script.with_name("deid-participants.txt").read_text().split())
    assert n == 2
    env = {k: v for k, v in os.environ.items() if k != "BIDS_DEID_KEY"}
    for task in range(n):
        proc = subprocess.run(["bash", str(script)], env={**env, "SLURM_ARRAY_TASK_ID": str(task)},
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(["bash", str(script.with_name("deid-group.sbatch"))], env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    a = json.loads((tmp_path / "local-private" / "run-settings.json").read_text())
    b = json.loads((tmp_path / "slurm-private" / "run-settings.json").read_text())
    assert b["clean_pixels"] is True and a["settings_id"] == b["settings_id"]
    ta, tb = tree_bytes(local), tree_bytes(slurm)
    assert sorted(ta) == sorted(tb)
    assert [r for r in ta if ta[r] != tb[r]] == []
