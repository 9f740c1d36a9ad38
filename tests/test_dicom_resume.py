"""bids-deid-dicom killed with -9 and run again: mapping and audit equal those of an uninterrupted run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from killer import killer_script
from test_scrub_dicom import _canary_dataset, _write

from bids_deid.dicom_cli import main
from bids_deid.pseudonym import generate_key

_KILLER = killer_script("bids_deid.dicom_cli")


@pytest.fixture()
def seven(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(7):  # seven patients, one file each
        ds = _canary_dataset(i)
        ds.PatientID = f"CANARY-PID-{i}"
        _write(ds, src / f"CANARY-{i}.dcm")
    return src, generate_key(tmp_path / "k.key")


def _audit(private):
    lines = [json.loads(ln) for ln in (private / "audit.jsonl").read_text().splitlines()]
    return sorted((a["src"], a["dst"], json.dumps(a["changes"], sort_keys=True)) for a in lines)


@pytest.mark.parametrize("k", [3, 5])
def test_killed_dicom_run_resumes_to_complete_mapping_and_audit(tmp_path, seven, k, capsys):
    src, key = seven
    assert main([str(src), str(tmp_path / "ref"), "--key-file", str(key)]) == 0
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", _KILLER, str(src), str(out), "--key-file", str(key)],
                          env={**os.environ, "KILL_AFTER": str(k)}, capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert 0 < len(list(out.rglob("*.dcm"))) < 7
    assert main([str(src), str(out), "--key-file", str(key)]) == 0
    ref, got = tmp_path / "ref-private", tmp_path / "out-private"
    assert (got / "mapping.tsv").read_text() == (ref / "mapping.tsv").read_text()
    assert len((got / "mapping.tsv").read_text().splitlines()) == 8
    assert _audit(got) == _audit(ref)
    assert all(json.loads(c) for _s, _d, c in _audit(got))  # no empty change list
    # a plain rerun keeps them too
    assert main([str(src), str(out), "--key-file", str(key)]) == 0
    assert _audit(got) == _audit(ref) and (got / "mapping.tsv").read_text() == (ref / "mapping.tsv").read_text()
    assert not (got / "work" / "recheck").exists()
