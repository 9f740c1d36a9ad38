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


@needs_shared
@pytest.mark.parametrize("by", ["patient-id", "pseudonym"])
def test_participant_label_selects_by_patient_id_or_pseudonym(tmp_path, raw_dir, key_file, by):
    from bids_deid.pseudonym import Pseudonymizer, load_key

    label = Pseudonymizer(load_key(key_file)).subject("FRUIT")  # PatientID of the GE T1w series
    out = tmp_path / "out"
    sel = "FRUIT" if by == "patient-id" else f"sub-{label}"
    argv = [str(raw_dir), str(out), "participant", "--participant-label", sel, "--key-file", str(key_file),
            "--deface-method", "none"]
    assert main(argv) == 0
    assert sorted(p.name for p in out.glob("sub-*")) == [f"sub-{label}"]
    assert list((out / f"sub-{label}" / "anat").glob("*_T1w.nii.gz"))
    assert not list(out.rglob("*_bold.nii.gz"))  # the other patients were not converted
    assert "FRUIT" not in " ".join(p.name for p in out.rglob("*"))
    mapping = "".join(p.read_text() for p in (tmp_path / "out-private" / "mapping").glob("*.tsv"))
    assert mapping.startswith(f"FRUIT\tsub-{label}\t") and mapping.count("\n") == 1
