"""Raw scanner folders through the App: shared DICOM/twix plus a synthetic canary study."""

from __future__ import annotations

import shutil

import pytest
from conftest import SHARED, canary_hits, needs_shared, tree_digest

from bids_deid.cli import main
from bids_deid.demo import _write_dicom


@pytest.fixture
def raw_dir(tmp_path):
    raw = tmp_path / "raw"
    for name in ("mr_siemens_epi_nih", "mr_ge_irspgr_refaced_deident", "ct_small_pydicom"):
        shutil.copytree(SHARED / "dicom" / name, raw / name)
    shutil.copy(SHARED / "twix" / "gre.dat", raw / "gre.dat")
    # a canary patient, with identifying folder and file names
    _write_dicom(raw / "CANARY_SMITH_JANE" / "MRN-CANARY-1.dcm", "canary01")
    return raw


@needs_shared
def test_raw_to_valid_bids_without_leaks(tmp_path, raw_dir, key_file, capsys):
    before = tree_digest(raw_dir)
    out = tmp_path / "out"
    common = [str(raw_dir), str(out)]
    opts = ["--key-file", str(key_file), "--deface-method", "none"]
    assert main(common + ["participant", *opts]) == 0
    assert main(common + ["group", *opts]) == 0, capsys.readouterr()
    text = capsys.readouterr().out
    assert "validator: 0 errors" in text and "leak audit: 0 hits" in text
    names = [p.name for p in out.rglob("*")]
    assert any(n.endswith("_T1w.nii.gz") for n in names)
    assert any(n.endswith("_bold.nii.gz") for n in names)
    assert any(n.endswith(".dat") for n in names)  # twix to sourcedata/twix
    assert any(n.endswith(".dcm") for n in names)  # de-identified DICOM to sourcedata/dicom
    assert canary_hits(out) == []
    assert tree_digest(raw_dir) == before
    mapping = (tmp_path / "out-private" / "mapping.tsv").read_text()
    assert "MRN-CANARY" in mapping  # the private side links back to the PatientID


@needs_shared
def test_raw_dry_run_lists_series(tmp_path, raw_dir, key_file, capsys):
    assert main([str(raw_dir), str(tmp_path / "o"), "participant", "--key-file", str(key_file), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "_T1w.nii.gz" in text and "_bold.nii.gz" in text
    assert not (tmp_path / "o").exists()
