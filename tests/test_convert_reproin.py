"""``--heuristic reproin``: a session named on the console by the ReproIn convention, on real DICOM."""

from __future__ import annotations

import json

import pytest
from conftest import SHARED, needs_shared
from pydicom.uid import generate_uid
from test_convert_fieldmaps import rewrite

from bids_deid.cli import main
from bids_deid.convert.reproin import parse


@pytest.mark.parametrize(("name", "datatype", "suffix", "entities", "skip"), [
    ("anat-T1w_acq-mprage", "anat", "T1w", {"acq": "mprage"}, ""),
    ("func-bold_task-rest_run-1", "func", "bold", {"task": "rest", "run": "1"}, ""),
    ("fmap-epi_dir-PA", "fmap", "epi", {"dir": "PA"}, ""),
    ("dwi_dir-AP__old protocol", "dwi", None, {"dir": "AP"}, ""),
    ("func-bold_task-rest_run+", "func", "bold", {"task": "rest"}, ""),
    ("func-bold_task-rest_MoCo", "func", "bold", {"task": "rest"}, "motion-corrected (MoCo) series"),
    ("anat-scout_ses-pre", "anat", "scout", {"ses": "pre"}, "localizer/scout (ReproIn name)"),
    ("func-bold_task-rest_run-01_SBRef", "func", "bold", {"task": "rest", "run": "1"}, ""),
])
def test_parse(name, datatype, suffix, entities, skip):
    p = parse(name)
    assert (p["datatype"], p["suffix"], p["entities"], p["skip"]) == (datatype, suffix, entities, skip)


@pytest.mark.parametrize("name", ["t1_mprage_sag", "anatomy", "fMRI_rest", "", None, "localizer"])
def test_not_reproin(name):
    assert parse(name) is None


@needs_shared
def test_reproin_session_converts_to_the_expected_tree(tmp_path, key_file):
    raw, study = tmp_path / "raw", generate_uid()
    nih = SHARED / "dcm_qa" / "nih" / "In" / "20180918Si"
    plan = [
        (SHARED / "heads" / "dicom" / "decub_hfs_t1_2dsag", 2, "anat-T1w_acq-flash_ses-pre"),
        (SHARED / "dicom" / "mr_small_pydicom", 1, "anat-scout_ses-pre"),
        (nih / "mr_0003", 3, "func-bold_task-rest_run-1_ses-pre"),
        (nih / "mr_0004", 4, "fmap-epi_ses-pre"),  # dir from the phase encoding (PA)
        (nih / "mr_0005", 5, "func-bold_task-rest_run-2_ses-pre__second try"),
        (nih / "mr_0006", 6, "func-bold_task-NBack_ses-pre"),
        (SHARED / "dicom" / "mr_ge_irspgr_refaced_deident", 7, "Sag IR-SPGR"),  # not ReproIn: the rules name it
    ]
    for src, number, desc in plan:
        rewrite(src, raw / f"s{number}", study=study, series_number=number, description=desc, patient="REPROIN1",
                only_every=4 if number == 7 else 1)
    out, private = tmp_path / "out", tmp_path / "private"
    opts = ["--key-file", str(key_file), "--private-dir", str(private), "--deface-method", "none",
            "--sourcedata", "none", "--heuristic", "reproin", "-w", str(tmp_path / "w")]
    assert main([str(raw), str(out), "participant", *opts]) == 0
    (sub,) = [p.name for p in out.glob("sub-*")]
    got = sorted(p.relative_to(out / sub).as_posix().replace(sub, "SUB") for p in (out / sub).rglob("*")
                 if p.is_file())
    expected = sorted(
        [f"ses-pre/{d}/SUB_ses-pre_{n}.{e}" for d, n in (
            ("anat", "acq-flash_T1w"), ("anat", "T1w"), ("func", "task-rest_run-1_bold"),
            ("func", "task-rest_run-2_bold"), ("func", "task-NBack_bold"), ("fmap", "dir-PA_epi"))
         for e in ("nii.gz", "json")] + ["ses-pre/SUB_ses-pre_scans.tsv"])
    assert got == expected
    main([str(raw), str(out), "group", *opts])
    report = json.loads((private / "validator-output.json").read_text())
    assert [i for i in report["issues"]["issues"] if i["severity"] == "error"] == []
