"""Time series whose volumes a scanner wrote as series of their own (Siemens XA ``MFSPLIT``) become one 4D run."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pydicom
from conftest import SHARED, needs_shared
from pydicom.uid import generate_uid

from bids_deid.cli import main


@needs_shared
def test_mfsplit_volumes_join_into_one_4d_bold_identical_to_dcm2niix(tmp_path, key_file):
    """The GE NIH EPI (10 volumes of 15 slices), each volume given its own series number and MFSPLIT."""
    src = SHARED / "dicom" / "mr_ge_epi_nih"
    raw = tmp_path / "raw"
    raw.mkdir()
    uid = generate_uid()
    for f in sorted(src.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        volume = (int(ds.InstanceNumber) - 1) // 15
        ds.SeriesInstanceUID, ds.SeriesNumber = uid, 100 + volume
        ds.ImageType = [*ds.ImageType, "MFSPLIT"]
        ds.SeriesDescription = "fMRI_rest"
        ds.save_as(raw / f.name)
    out, private = tmp_path / "out", tmp_path / "private"
    opts = ["--key-file", str(key_file), "--private-dir", str(private), "--deface-method", "none",
            "--sourcedata", "none", "-w", str(tmp_path / "w")]
    assert main([str(raw), str(out), "participant", *opts]) == 0
    (bold,) = out.rglob("sub-*/func/*_bold.nii.gz")
    assert "run-" not in bold.name
    got = np.asanyarray(nib.load(bold).dataobj)
    ref = np.asanyarray(nib.load(SHARED / "dcm_qa" / "nih" / "Ref" / "DCM2NIIX_regression_test_4.nii").dataobj)
    assert got.shape == ref.shape == (64, 64, 15, 10)
    assert np.array_equal(got, ref)
    assert np.allclose(nib.load(bold).affine, nib.load(SHARED / "dcm_qa" / "nih" / "Ref" /
                                                        "DCM2NIIX_regression_test_4.nii").affine, atol=1e-4)
    side = json.loads(bold.with_name(bold.name.replace(".nii.gz", ".json")).read_text())
    assert side["RepetitionTime"] == 5 and side["PhaseEncodingDirection"] == "j-"
    main([str(raw), str(out), "group", *opts])
    report = json.loads((private / "validator-output.json").read_text())
    assert [i for i in report["issues"]["issues"] if i["severity"] == "error"] == []
