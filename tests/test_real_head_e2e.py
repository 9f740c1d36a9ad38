"""The main job on a real person's scanner files: raw DICOM of a real head through both levels of
the App with its default settings (dcm2niix, defacing, validator, leak audit), judged with the
truth masks of ``../shared/data/heads/truth`` and with the identifiers read from the input's own
headers by pydicom (not by bids-deid).

Default run: the 2D sagittal Siemens head (35 files). ``-m slow``: the 1 mm Philips 3D head too.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from conftest import SHARED, canary_hits
from scipy import ndimage as ndi

from bids_deid.cli import main

HEADS = SHARED / "heads"
pytestmark = [pytest.mark.shared,
              pytest.mark.skipif(not (HEADS / "dicom").is_dir(), reason="../shared/data/heads/dicom is not present")]


def _identifiers(folder: Path) -> tuple[bytes, ...]:
    """Values of the input headers that name the person, the place or the visit."""
    found: set[str] = set()
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        for kw in ("PatientName", "ReferringPhysicianName", "OperatorsName", "PerformingPhysicianName"):
            v = str(ds.get(kw, "") or "").strip()  # a name, and each part of it long enough to be one
            found |= {part for part in [v, *v.replace("^", " ").split()] if len(part) >= 4}
        for kw in ("PatientID", "InstitutionName", "InstitutionAddress", "StationName", "DeviceSerialNumber",
                   "AccessionNumber", "StudyID", "InstitutionalDepartmentName"):
            v = str(ds.get(kw, "") or "").strip()  # whole values (the scanner model "Prisma" is not the
            if len(v) >= 4:                         # "Prisma Health ..." hospital)
                found.add(v)
        for kw in ("StudyDate", "AcquisitionDate", "PatientBirthDate"):
            v = str(ds.get(kw, "") or "")
            if len(v) == 8:
                found |= {v, f"{v[:4]}-{v[4:6]}-{v[6:]}"}
    return tuple(sorted(x.encode() for x in found))


@pytest.mark.parametrize("name", [
    "decub_hfs_t1_2dsag",
    pytest.param("philips_sag3d_t1", marks=pytest.mark.slow),
])
def test_raw_dicom_of_a_real_head(tmp_path: Path, name: str) -> None:
    src = HEADS / "dicom" / name
    raw = tmp_path / "raw" / "subject1"
    shutil.copytree(src, raw)
    key, out, priv = tmp_path / "key", tmp_path / "out", tmp_path / "private"
    assert main(["--generate-key", str(key)]) == 0
    common = ["--input-type", "raw", "--key-file", str(key), "--private-dir", str(priv)]
    assert main([str(tmp_path / "raw"), str(out), "participant", *common]) == 0
    rc = main([str(tmp_path / "raw"), str(out), "group", *common])
    validator = json.loads((priv / "validator-output.json").read_text())
    audit = json.loads((priv / "leak-audit.json").read_text())
    assert audit["hits"] == [], audit["hits"]
    assert rc == 0, validator.get("issues", validator)

    t1 = sorted(out.glob("sub-*/anat/*_T1w.nii.gz"))
    assert len(t1) == 1, sorted(p.relative_to(out).as_posix() for p in out.rglob("*.nii.gz"))
    got, ref = nib.load(t1[0]), nib.load(HEADS / f"{name}.nii.gz")  # ref: dcm2niix of the same series
    assert got.shape == ref.shape and np.allclose(got.affine, ref.affine, atol=1e-3)
    a, b = np.asanyarray(got.dataobj), np.asanyarray(ref.dataobj)
    brain = np.asanyarray(nib.load(HEADS / "truth" / f"{name}_brain.nii.gz").dataobj) > 0
    face = np.asanyarray(nib.load(HEADS / "truth" / f"{name}_face.nii.gz").dataobj) > 0
    zooms = np.asarray(ref.header.get_zooms()[:3], float)
    ball = ndi.generate_binary_structure(3, 1)
    core = brain
    for _ in range(int(np.ceil(2.0 / zooms.min()))):  # about 2 mm inwards along the finest axis
        core = ndi.binary_erosion(core, ball)
    removed = core & (b != 0) & (a == 0)
    assert int(removed.sum()) == 0, f"{int(removed.sum())} brain voxels removed"
    tissue = face & (b > np.percentile(b[b > 0], 20))
    left = float(((a != 0) & tissue).sum()) / max(int(tissue.sum()), 1)
    assert left <= 0.05, f"{left:.1%} of the face left"
    outside = ~face & (a != 0)
    assert np.array_equal(a[outside], b[outside])  # nothing else changed

    assert canary_hits(out, _identifiers(src)) == []
    kept = sorted((out / "sourcedata").rglob("*.dcm")) if (out / "sourcedata").is_dir() else []
    for f in kept[:3]:  # de-identified DICOM kept beside the BIDS tree parses and names no one
        ds = pydicom.dcmread(f)
        assert str(ds.get("PatientName", "")) != str(pydicom.dcmread(next(src.iterdir())).PatientName)
