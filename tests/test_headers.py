"""The NIfTI/Analyze header layouts and header-only geometry agree with nibabel's."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from bids_deid.formats.headers import ANALYZE, NIFTI1, NIFTI2, nifti_geometry, read_nifti_header


def test_layouts_are_nibabels():
    assert NIFTI1 == nib.nifti1.header_dtype and NIFTI1.itemsize == 348
    assert NIFTI2 == nib.nifti2.header_dtype and NIFTI2.itemsize == 540
    assert ANALYZE == nib.analyze.AnalyzeHeader.template_dtype and ANALYZE.itemsize == 348


def _random_affine(rng) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    aff = np.eye(4)
    aff[:3, :3] = q * rng.uniform(0.5, 3.0, 3)
    aff[:3, 3] = rng.uniform(-100, 100, 3)
    return aff


@pytest.mark.parametrize("klass", [nib.Nifti1Image, nib.Nifti2Image])
@pytest.mark.parametrize("form", ["sform", "qform", "none"])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_geometry_from_the_header_alone(tmp_path, klass, form, suffix):
    rng = np.random.default_rng(abs(hash((klass.__name__, form, suffix))) % 2**32)
    for i, shape in enumerate([(7, 5, 3), (4, 6, 2, 9), (3, 3, 3, 2, 2), (8, 1)]):
        img = klass(np.zeros(shape, np.int16), _random_affine(rng))
        if form != "sform":
            img.header.set_sform(None, code=0)
        if form == "none":
            img.header.set_qform(None, code=0)
        path = tmp_path / f"{i}{suffix}"
        nib.save(img, path)
        back = nib.load(path)
        affine, shape3, n_vols = nifti_geometry(path)
        assert np.allclose(affine, back.affine, atol=1e-5)
        assert shape3 == tuple(back.shape[:3]) + (1,) * (3 - len(back.shape[:3]))
        assert n_vols == (int(np.prod(back.shape[3:])) if len(back.shape) > 3 else 1)


def test_big_endian_and_not_nifti(tmp_path):
    hdr = nib.Nifti1Header(endianness=">")
    nib.save(nib.Nifti1Image(np.zeros((3, 4, 5), ">i2"), np.diag([2.0, 3.0, 4.0, 1.0]), hdr), tmp_path / "be.nii")
    assert nib.load(tmp_path / "be.nii").header.endianness == ">"
    assert read_nifti_header(tmp_path / "be.nii") is not None
    assert nifti_geometry(tmp_path / "be.nii")[1] == (3, 4, 5)
    (tmp_path / "x.nii").write_bytes(b"not a header" * 50)
    assert nifti_geometry(tmp_path / "x.nii") is None
    assert nifti_geometry(tmp_path / "missing.nii") is None
