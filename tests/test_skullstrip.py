"""Skull stripping (``--deface-method skullstrip``) with the embedded brain networks (always available)."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bids_deid.deface import demo_head
from bids_deid.deface import skullstrip as ss
from bids_deid.deface.pipeline import verify_faces
from bids_deid.deface.rawnifti import read_raw
from bids_deid.errors import OutputError


def _raw_bytes(path: Path) -> bytes:
    blob = path.read_bytes()
    return gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob


@pytest.fixture(scope="module")
def stripped(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("skullstrip")
    src = tmp / "sub-01_T1w.nii.gz"
    nib.save(demo_head(), src)
    dst = tmp / "out" / "sub-01_T1w.nii.gz"
    dst.parent.mkdir()
    res = ss.skullstrip_file(src, dst, qc=True)
    return src, dst, res


def test_available_here():
    assert ss.available() is None


def test_written_with_same_header_bytes(stripped):
    src, dst, res = stripped
    assert res.passed, res.reason
    assert res.reason == "ok"
    assert dst.is_file()
    a, b = read_raw(src), read_raw(dst)
    assert a.prefix == b.prefix and a.suffix == b.suffix
    assert len(_raw_bytes(src)) == len(_raw_bytes(dst))
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_array_equal(a.affine, b.affine)
    # only this package's output files in the folder (no temp left behind)
    assert [p.name for p in dst.parent.iterdir()] == [dst.name]


def test_outside_mask_zero_inside_unchanged(stripped):
    src, dst, res = stripped
    a, b = read_raw(src), read_raw(dst)
    before, after = a.stored_array()[..., 0], b.stored_array()[..., 0]
    mask = ss.brain_mask(a.first_volume(), a.affine)  # deterministic on CPU
    assert int(mask.sum()) == res.metrics["brain_voxels"]
    assert not np.any(after[~mask])
    np.testing.assert_array_equal(after[mask], before[mask])
    # something was really removed, and it was not nothing but background
    assert res.metrics["removed_voxels"] == int((~mask).sum())
    assert np.count_nonzero(before[~mask]) > 100_000


def test_brain_volume_plausible(stripped):
    _, _, res = stripped
    assert ss.MIN_BRAIN_ML <= res.metrics["brain_volume_ml"] <= ss.MAX_BRAIN_ML
    # the demo head is an adult template: brain mask between 1.1 and 1.9 litres
    assert 1100 <= res.metrics["brain_volume_ml"] <= 1900


def test_no_face_after(stripped):
    src, dst, res = stripped
    assert res.faces_before == 1  # the face check does see the face before
    assert res.faces_after == 0
    # the same check, run afresh on the two files
    a, b = read_raw(src).first_volume(), read_raw(dst).first_volume()
    before, after = verify_faces(a, b, read_raw(src).affine)
    assert before.face and not after.face
    assert {"before_front", "after_front", "before_side", "after_side", "slices"} <= set(res.qc_images)
    assert all(png[:8] == b"\x89PNG\r\n\x1a\n" for png in res.qc_images.values())


def test_implausible_mask_not_written(tmp_path, monkeypatch):
    src = tmp_path / "in.nii"
    nib.save(demo_head(), src)
    small = np.zeros(demo_head().shape, bool)
    small[40:60, 60:80, 60:80] = True  # 8000 voxels x 4.1 ul = 33 ml
    monkeypatch.setattr(ss, "brain_mask", lambda data, affine: small)
    res = ss.skullstrip_file(src, tmp_path / "out.nii", qc=False)
    assert not res.passed
    assert "plausible" in res.reason
    assert not (tmp_path / "out.nii").exists()
    assert res.qc_images == {}


def test_model_failure_not_written(tmp_path, monkeypatch):
    src = tmp_path / "in.nii.gz"
    nib.save(demo_head(), src)

    def boom(data, affine):
        raise AssertionError("Not enough foreground to calculate bounding box")

    monkeypatch.setattr(ss, "brain_mask", boom)
    res = ss.skullstrip_file(src, tmp_path / "out.nii.gz", qc=False)
    assert not res.passed
    assert "brain extraction failed" in res.reason
    assert not (tmp_path / "out.nii.gz").exists()


def test_refuses_to_overwrite_input(tmp_path):
    src = tmp_path / "in.nii.gz"
    nib.save(demo_head(), src)
    before = src.read_bytes()
    with pytest.raises(OutputError):
        ss.skullstrip_file(src, src)
    assert src.read_bytes() == before
