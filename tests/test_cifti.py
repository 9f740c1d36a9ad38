"""CIFTI-2 files (fMRIPrep/HCP derivatives) stay CIFTI: the XML extension is kept with its structure,
its provenance metadata and label-bearing map names are not."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import cifti2 as ci

from bids_deid.formats.base import ScrubLog
from bids_deid.formats.nifti import scrub_nifti_file
from bids_deid.profiles import load_profile


def _dscalar(path: Path) -> np.ndarray:
    verts = np.arange(20)
    bm = ci.BrainModelAxis.from_mask(np.isin(np.arange(30), verts), name="CortexLeft")
    maps = ci.ScalarAxis(["thickness", "sub-ab12cd_myelin"],
                         meta=[{"Provenance": "/home/canary/wb_command -cifti-create", "Description": "mm"}, {}])
    data = np.random.default_rng(5).normal(size=(2, len(bm))).astype(np.float32)
    hdr = ci.Cifti2Header.from_axes((maps, bm))
    hdr.matrix.metadata = ci.Cifti2MetaData({"ProgramProvenance": "canary user 2019-03-14", "Description": "ok"})
    nib.save(ci.Cifti2Image(data, hdr), path)
    return data


def test_dscalar_stays_cifti_without_provenance(tmp_path: Path) -> None:
    src, dst = tmp_path / "in.dscalar.nii", tmp_path / "out.dscalar.nii"
    data = _dscalar(src)
    log = ScrubLog()
    scrub_nifti_file(src, dst, load_profile("basic"), log)
    img = nib.load(dst)
    assert isinstance(img, ci.Cifti2Image)  # still CIFTI
    assert np.array_equal(np.asanyarray(img.dataobj), data)
    maps, bm = img.header.get_axis(0), img.header.get_axis(1)
    assert list(maps.name) == ["thickness", "map 2"]
    assert bm.name[0] == "CIFTI_STRUCTURE_CORTEX_LEFT" and len(bm) == 20
    raw = dst.read_bytes()
    for needle in (b"canary", b"2019-03-14", b"ab12cd", b"/home"):
        assert needle not in raw
    assert {"cifti:Provenance", "cifti:ProgramProvenance", "cifti:MapName"} <= {k for k, _ in log.identifiers}


def test_broken_cifti_extension_is_dropped(tmp_path: Path) -> None:
    src, dst = tmp_path / "in.dscalar.nii", tmp_path / "out.nii"
    _dscalar(src)
    img = nib.load(src)
    n2 = nib.Nifti2Image(np.asanyarray(img.dataobj), np.eye(4))
    n2.header.extensions.append(nib.nifti1.Nifti1Extension(32, b"<!DOCTYPE x [<!ENTITY a 'b'>]><CIFTI/>"))
    nib.save(n2, src)
    scrub_nifti_file(src, dst, load_profile("basic"), ScrubLog())
    assert len(nib.load(dst).header.extensions) == 0
