"""Defacing real people's heads: judged against truth masks made by other means, never by the defacer.

The shared heads (``../shared/data/heads``, see its SOURCES.md) are five real individual heads
with brain masks (deepbet at its trained 256^3 size) and face masks, and two heads already
defaced by their publishers (negative controls). The defacer protects the brain with the
same family of network (at 192^3), so the slow tests also judge it against a brain estimate
owing nothing to a network: the template brain carried by a B-spline registration
(:func:`deface_perturb.independent_brain`).

Default run: two cheap 2 mm heads and one control. ``-m slow``: every head, every control and
perturbed copies (tilts, oblique affines, stored orientations, thick slices, intensity scales
and dtypes) of every head.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import SHARED
from deface_perturb import RealCopy, independent_brain, load_real, perturb_real, rot
from scipy import ndimage as ndi

from bids_deid.deface import deface_file, load_template
from bids_deid.deface.rawnifti import read_raw
from bids_deid.deface.register import register

HEADS = SHARED / "heads"
needs_heads = pytest.mark.skipif(not HEADS.is_dir(), reason="../shared/data/heads is not present")

REAL = ("philips_sag3d_t1", "decub_hfs_t1_2dsag", "ixi014_t1_2mm", "t2w_tse_2mm", "allinbench_t1_2mm_oblique")
CONTROLS = ("arc_m2265_t2w_defaced", "studyforrest_t1_defaced")
FACE_LEFT_MAX = 0.05  # share of the truth face's tissue that may be left
ERODE_MM = 2.0  # a brain mask's edge is not brain: erode it this much before counting

PERTURB = {
    "tilt_x+25": dict(pose=rot("x", 25)),
    "tilt_x-25": dict(pose=rot("x", -25)),
    "oblique_x15_z10": dict(pose=rot("x", 15) @ rot("z", 10)),
    "roll_y15": dict(pose=rot("y", 15)),
    "LIA": dict(axcode="LIA"),
    "SLP_f32_x0.01": dict(axcode="SLP", scale=0.01, dtype=np.float32),
    "LPS_tilt-15": dict(axcode="LPS", pose=rot("x", -15)),
    "ASL_int16_x7": dict(axcode="ASL", dtype=np.int16, scale=7.0),
    "thick": "thick",  # 4-6 mm slices (see _thick)
}


def _thick(head: RealCopy) -> dict:
    """Thick slices like a 2D acquisition: the stored axis with the largest voxels coarsened to
    about 5 mm; an image already that thick gets 2 mm in-plane voxels instead."""
    zooms = np.sqrt((head.img.affine[:3, :3] ** 2).sum(0))
    axis = int(np.argmax(zooms))
    block = [1, 1, 1]
    if zooms[axis] < 3.0:
        block[axis] = max(2, int(round(5.0 / zooms[axis])))
    else:
        for a in range(3):
            if a != axis:
                block[a] = max(1, int(round(2.0 / zooms[a])))
    return dict(block=tuple(block))


def eroded(mask: np.ndarray, affine: np.ndarray, mm: float = ERODE_MM) -> np.ndarray:
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(0))
    return ndi.distance_transform_edt(mask, sampling=zooms) > mm


def judge(src: Path, dst: Path, res, head: RealCopy, *, independent: bool = False) -> dict:
    """Everything a correct defacing of a real head must satisfy, judged from the files."""
    assert res.passed, res.reason
    a, b = read_raw(src), read_raw(dst)
    assert a.prefix == b.prefix and a.suffix == b.suffix  # header + extensions verbatim
    assert a.shape == b.shape and a.dtype == b.dtype
    A, B = a.stored_array()[..., 0], b.stored_array()[..., 0]
    changed = A != B
    assert np.all(B[changed] == 0), "every change is a change to raw zero"
    signal = A != 0
    out = {"changed": int(changed.sum())}
    if head.brain is not None:
        lost = int((changed & signal & eroded(head.brain, a.affine)).sum())
        assert lost == 0, f"{lost} brain voxels removed (truth brain eroded {ERODE_MM} mm)"
    if head.face is not None:
        tissue = head.face & signal
        left = float((tissue & (B != 0)).sum()) / max(1, int(tissue.sum()))
        assert left <= FACE_LEFT_MAX, f"{left:.1%} of the face left"
        out["face_left"] = left
    if independent:
        tpl = load_template(None)
        data = a.first_volume()
        reg = register(data, a.affine, tpl)
        other = independent_brain(data, a.affine, tpl, reg.matrix)
        lost = int((changed & signal & eroded(other, a.affine)).sum())
        assert lost == 0, f"{lost} voxels of the independent brain estimate removed"
    return out


def _run(head: RealCopy, tmp_path: Path, src: Path | None = None):
    if src is None:
        src = tmp_path / f"{head.label}.nii.gz"
        nib.save(head.img, str(src))
    dst = tmp_path / f"{head.label}_defaced.nii.gz"
    return src, dst, deface_file(src, dst, defacemask_path=tmp_path / f"{head.label}_mask.nii.gz", qc=False)


def _real(name: str) -> RealCopy:
    return load_real(HEADS / f"{name}.nii.gz", HEADS / "truth")


@needs_heads
@pytest.mark.parametrize("name", ["ixi014_t1_2mm", "t2w_tse_2mm"])
def test_real_head(name, tmp_path):
    head = _real(name)
    src, dst, res = _run(head, tmp_path, HEADS / f"{name}.nii.gz")
    judge(src, dst, res, head)
    assert res.faces_before == 1 and res.faces_after == 0
    assert res.metrics["cut_to_brain_mm"] >= 3.0
    assert res.reason == "ok"


@needs_heads
def test_control_already_defaced(tmp_path):
    """A head defaced by its publisher: no face found in it, written, its brain untouched."""
    from bids_deid.deface.skullstrip import brain_mask

    name = "arc_m2265_t2w_defaced"
    src = HEADS / "controls" / f"{name}.nii.gz"
    src, dst, res = _run(load_real(src), tmp_path, src)
    assert res.passed, res.reason
    assert res.faces_before == 0 and res.faces_after == 0
    a, b = read_raw(src), read_raw(dst)
    changed = a.stored_array()[..., 0] != b.stored_array()[..., 0]
    brain = brain_mask(a.first_volume(), a.affine)  # the network at its trained size, not the App's
    assert int((changed & eroded(brain, a.affine)).sum()) == 0


@needs_heads
@pytest.mark.slow
@pytest.mark.parametrize("name", REAL)
def test_every_real_head(name, tmp_path):
    head = _real(name)
    src, dst, res = _run(head, tmp_path, HEADS / f"{name}.nii.gz")
    judge(src, dst, res, head, independent=True)
    assert res.faces_before == 1 and res.faces_after == 0


@needs_heads
@pytest.mark.slow
@pytest.mark.parametrize("name", CONTROLS)
def test_every_control(name, tmp_path):
    src = HEADS / "controls" / f"{name}.nii.gz"
    src, dst, res = _run(load_real(src), tmp_path, src)
    assert res.passed, res.reason
    assert res.faces_before == 0 and res.faces_after == 0
    judge(src, dst, res, RealCopy(nib.load(str(src)), None, None, name), independent=True)


@needs_heads
@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(PERTURB))
@pytest.mark.parametrize("name", REAL)
def test_perturbed_real_heads(name, case, tmp_path):
    real = _real(name)
    kw = _thick(real) if PERTURB[case] == "thick" else PERTURB[case]
    head = perturb_real(real, label=f"{name}_{case}", **kw)
    src, dst, res = _run(head, tmp_path)
    judge(src, dst, res, head)
    assert res.faces_after == 0
