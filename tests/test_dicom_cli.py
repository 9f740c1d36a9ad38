"""Tests of the ``bids-deid-dicom`` console script."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from test_scrub_dicom import _canary_dataset, _leaks, _write

from bids_deid.dicom_cli import main
from bids_deid.pseudonym import generate_key


@pytest.fixture()
def tree(tmp_path):
    src = tmp_path / "in" / "CANARY-patient-folder"
    src.mkdir(parents=True)
    for i in range(3):
        _write(_canary_dataset(i), src / f"CANARY-{i}.dcm")
    (src / "notes.txt").write_text("CANARY not dicom")
    (src / "broken.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 20)
    key = generate_key(tmp_path / "key.txt")
    return tmp_path, src.parent, key


def test_cli_run_resume_and_private(tree, capsys):
    tmp, in_dir, key = tree
    before = {p: p.read_bytes() for p in in_dir.rglob("*") if p.is_file()}
    out = tmp / "out"
    rc = main([str(in_dir), str(out), "--key-file", str(key), "--n-cpus", "2"])
    cap = capsys.readouterr()
    assert rc == 1  # the broken file is an error
    assert "3 written" in cap.out and "1 withheld" in cap.out  # the broken file: an input defect
    assert "bids-deid: withheld:" in cap.err and "Traceback" not in cap.err
    files = sorted(out.rglob("*"))
    dcms = [p for p in files if p.suffix == ".dcm"]
    assert len(dcms) == 3
    assert not any("CANARY" in str(p.relative_to(out)) for p in files)
    assert not any(p.suffix == ".txt" for p in files)
    for p in dcms:
        assert _leaks(p) == []
    private = tmp / "out-private"
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    mapping = (private / "mapping.tsv").read_text()
    assert "CANARY-PID\tsub-" in mapping
    audit = [json.loads(ln) for ln in (private / "audit.jsonl").read_text().splitlines()]
    assert len(audit) == 5
    assert "CANARY-PID" not in json.dumps([a["changes"] for a in audit])
    assert {p: p.read_bytes() for p in in_dir.rglob("*") if p.is_file()} == before
    # resume: nothing rewritten, mapping kept
    rc = main([str(in_dir), str(out), "--key-file", str(key)])
    cap = capsys.readouterr()
    assert "0 written, 3 already done" in cap.out
    assert "CANARY-PID\tsub-" in (private / "mapping.tsv").read_text()


def test_cli_errors(tree, capsys, monkeypatch):
    tmp, in_dir, key = tree
    monkeypatch.delenv("BIDS_DEID_KEY", raising=False)
    assert main([str(in_dir), str(tmp / "o")]) != 0
    assert "no pseudonymization key" in capsys.readouterr().err
    assert main([str(in_dir), str(in_dir / "inside"), "--key-file", str(key)]) != 0
    assert "inside the input" in capsys.readouterr().err
    assert main([str(tmp / "missing"), str(tmp / "o"), "--key-file", str(key)]) != 0
    assert "does not exist" in capsys.readouterr().err
    assert main([str(in_dir), str(tmp / "o"), "--key-file", str(key), "--profile", "nope"]) != 0
    assert "unknown profile" in capsys.readouterr().err


def test_cli_key_from_env(tree, capsys, monkeypatch):
    tmp, in_dir, key = tree
    monkeypatch.setenv("BIDS_DEID_KEY", key.read_text().strip())
    main([str(in_dir), str(tmp / "o2"), "--profile", "dicom-retain-longitudinal"])
    assert "3 written" in capsys.readouterr().out
    assert Path(tmp / "o2-private" / "mapping.tsv").exists()
