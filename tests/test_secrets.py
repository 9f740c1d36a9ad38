"""The key stays private: never inside the input or the output, never in a child's environment."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from conftest import tree_digest

from bids_deid.audit_cli import main as audit_main
from bids_deid.cli import main
from bids_deid.dicom_cli import main as dicom_main

NONE = ("--deface-method", "none")


def _err(capsys) -> str:
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def _planted(key_file, where):
    where.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(key_file, where)
    where.chmod(0o600)
    return where


@pytest.mark.parametrize("level", ["participant", "group"])
def test_bids_deid_key_inside_input_refused_and_never_copied(tmp_path, canary_ds, key_file, capsys, level):
    inside = _planted(key_file, canary_ds / "code" / "study.key")
    out = tmp_path / "out"
    if level == "group":
        assert main([str(canary_ds), str(out), "participant", "--key-file", str(key_file), *NONE]) == 0
        capsys.readouterr()
    before = tree_digest(canary_ds)
    rc = main([str(canary_ds), str(out), level, "--key-file", str(inside), *NONE])
    assert rc == 1 and "inside the input" in _err(capsys)
    assert tree_digest(canary_ds) == before
    secret = key_file.read_bytes().strip()
    assert not [p for p in out.rglob("*") if p.is_file() and secret in p.read_bytes()]


def test_bids_deid_dicom_key_inside_output_or_input_refused(tmp_path, canary_ds, key_file, capsys):
    src = canary_ds / "sourcedata"
    out = tmp_path / "dcm-out"
    for inside, what in ((_planted(key_file, out / "k"), "public output"),
                         (_planted(key_file, src / "k.key"), "input")):
        before = tree_digest(src)
        assert dicom_main([str(src), str(out), "--key-file", str(inside)]) == 1
        line = _err(capsys)
        assert f"inside the {what}" in line, line
        assert tree_digest(src) == before
        inside.unlink()
    assert not [p for p in out.rglob("*") if p.suffix == ".dcm"]


def test_audit_key_inside_audited_output_refused(tmp_path, canary_ds, key_file, capsys):
    out = tmp_path / "out"
    assert main([str(canary_ds), str(out), "participant", "--key-file", str(key_file), *NONE]) == 0
    assert main([str(canary_ds), str(out), "group", "--key-file", str(key_file)]) == 0
    capsys.readouterr()
    inside = _planted(key_file, out / "code" / "k.key")
    assert audit_main([str(out), "--key-file", str(inside)]) == 1
    assert "inside the audited output" in _err(capsys)
    inside.unlink()
    (out / "code").rmdir()
    assert audit_main([str(out), "--key-file", str(key_file)]) == 0


def test_child_processes_do_not_inherit_the_key(tmp_path, canary_ds, key_file, monkeypatch, capsys):
    """The real validator runs; every child process started by the run is started without $BIDS_DEID_KEY."""
    import os

    secret = key_file.read_text().strip()
    monkeypatch.setenv("BIDS_DEID_KEY", secret)
    seen: list[tuple[str, bool]] = []
    real_run, real_popen = subprocess.run, subprocess.Popen.__init__

    def run(cmd, *a, **k):
        env = k.get("env") or os.environ
        seen.append((str(cmd[0]), "BIDS_DEID_KEY" in env or secret in " ".join(env.values())))
        return real_run(cmd, *a, **k)

    def popen(self, cmd, *a, **k):
        env = k.get("env") or os.environ
        seen.append((str(cmd[0]), "BIDS_DEID_KEY" in env or secret in " ".join(env.values())))
        return real_popen(self, cmd, *a, **k)

    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(subprocess.Popen, "__init__", popen)
    out = tmp_path / "out"
    assert main([str(canary_ds), str(out), "participant", *NONE]) == 0  # the input is validated
    monkeypatch.setenv("BIDS_DEID_KEY", secret)
    assert main([str(canary_ds), str(out), "group"]) == 0  # the output is validated
    validators = [s for s in seen if "bids-validator" in s[0]]
    assert len(validators) >= 2, seen
    assert not [s for s in seen if s[1]], seen
