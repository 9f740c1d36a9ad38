"""Perturbed heads with KNOWN transforms, for judging the defacer independently of its registration.

An image is the template head moved by a rigid world transform ``W`` (subject pose) and
stored on a new voxel grid (orientation code, oblique rotation, voxel sizes, dtype,
intensity mapping, field of view). Ground truth masks (a face core drawn here, and the
template brain) are carried by the same known transform.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi


def rot(axis: str, deg: float) -> np.ndarray:
    """4x4 rotation about a world axis."""
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    m = np.eye(4)
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def shift(v) -> np.ndarray:
    """4x4 translation."""
    m = np.eye(4)
    m[:3, 3] = v
    return m


AXCODES = {
    "RAS": ((0, 1), (1, 1), (2, 1)),
    "LAS": ((0, -1), (1, 1), (2, 1)),
    "LPS": ((0, -1), (1, -1), (2, 1)),
    "PSR": ((1, -1), (2, 1), (0, 1)),
    "ASL": ((1, 1), (2, 1), (0, -1)),
    "SLP": ((2, 1), (0, -1), (1, -1)),
}


@dataclass
class Perturbed:
    """A perturbed head and its ground truth."""

    img: nib.Nifti1Image
    face_truth: np.ndarray  # bool, image grid: face core that must be zeroed
    brain_truth: np.ndarray  # bool, image grid: brain that must stay untouched
    label: str


def face_core(template) -> np.ndarray:
    """Face core drawn on the template (independent of the shipped face mask).

    Tissue in front of y = 108 mm and between z = -100 and -40 mm within 40 mm of the
    mid-line: nose, lips, mouth, chin and the lower orbits of the template's world space.
    """
    ijk = np.indices(template.head.shape).reshape(3, -1)
    xyz = (template.affine[:3, :3] @ ijk + template.affine[:3, 3:]).reshape((3,) + template.head.shape)
    tissue = template.head > 40
    mid = float(np.median(xyz[0][template.brain]))
    return tissue & (xyz[1] > 108) & (xyz[2] > -100) & (xyz[2] < -40) & (np.abs(xyz[0] - mid) < 40)


def make(
    template,
    *,
    label: str = "",
    pose: np.ndarray | None = None,
    axcode: str = "RAS",
    oblique: np.ndarray | None = None,
    zooms=(1.6, 1.6, 1.6),
    dtype=np.int16,
    contrast: str = "t1",
    scale: float = 1.0,
    cut_below_z: float | None = None,
) -> Perturbed:
    """Build a perturbed head.

    Parameters
    ----------
    template : Template
    pose : 4x4, subject motion in world space (template world -> image world)
    axcode : stored orientation of the voxel axes
    oblique : 4x4 rotation applied to the stored grid axes
    zooms : voxel sizes (mm) of the stored axes
    dtype : stored dtype
    contrast : "t1" or "t2" (intensities inverted inside the head)
    scale : intensity scale factor
    cut_below_z : drop stored slices whose centre lies below this template-world z (a FOV
        cut as a scanner makes it: the grid is cropped, not zero-filled)
    """
    pose = np.eye(4) if pose is None else pose
    oblique = np.eye(4) if oblique is None else oblique
    perm = np.zeros((3, 3))
    for out_axis, (world_axis, sign) in enumerate(AXCODES[axcode]):
        perm[world_axis, out_axis] = sign
    lin = oblique[:3, :3] @ perm @ np.diag(zooms)
    # head bounding box (template world) -> image world -> stored voxel frame
    head = template.head > 5
    idx = np.argwhere(head)
    lo, hi = idx.min(0) - 3, idx.max(0) + 3
    corners = np.array([[a, b, c, 1.0] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])]).T
    world = pose @ template.affine @ corners
    frame = np.linalg.inv(lin) @ world[:3]
    vlo, vhi = np.floor(frame.min(1)), np.ceil(frame.max(1))
    shape = tuple(int(v) for v in (vhi - vlo + 1))
    affine = np.eye(4)
    affine[:3, :3] = lin
    affine[:3, 3] = lin @ vlo
    # voxel of the image -> voxel of the template
    vox = np.linalg.inv(template.affine) @ np.linalg.inv(pose) @ affine
    data = ndi.affine_transform(template.head, vox[:3, :3], vox[:3, 3], output_shape=shape, order=1, cval=0.0)
    if contrast == "t2":
        tissue = data > 25
        data = np.where(tissue, np.clip(170.0 - data, 5, None), data * 0.3)
    data = data * scale
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        data = np.clip(np.round(data), info.min, info.max)
    data = data.astype(dtype)
    face = (
        ndi.affine_transform(
            face_core(template).astype(np.float32), vox[:3, :3], vox[:3, 3], output_shape=shape, order=0
        )
        > 0.5
    )
    brain = (
        ndi.affine_transform(template.brain.astype(np.float32), vox[:3, :3], vox[:3, 3], output_shape=shape, order=0)
        > 0.5
    )
    if cut_below_z is not None:
        # field of view cut like a scanner's: drop whole stored slices (along the stored axis
        # closest to the subject's inferior-superior axis) whose centre lies below the cut
        to_tpl = np.linalg.inv(pose) @ affine  # stored voxel -> template world
        axis = int(np.argmax(np.abs(to_tpl[2, :3]) / np.linalg.norm(to_tpl[:3, :3], axis=0)))
        centre = (np.array(shape, float) - 1) / 2
        n = shape[axis]
        pts = np.tile(np.r_[centre, 1.0][:, None], (1, n))
        pts[axis] = np.arange(n)
        keep = (to_tpl @ pts)[2] >= cut_below_z
        first, last = int(np.argmax(keep)), int(n - np.argmax(keep[::-1]))
        sl = [slice(None)] * 3
        sl[axis] = slice(first, last)
        data, face, brain = data[tuple(sl)], face[tuple(sl)], brain[tuple(sl)]
        start = np.zeros(4)
        start[axis] = first
        start[3] = 1.0
        affine = affine.copy()
        affine[:3, 3] = (affine @ start)[:3]
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header["descrip"] = b"perturbed test head"
    return Perturbed(img, face, brain, label or axcode)


def independent_brain(data: np.ndarray, affine: np.ndarray, template, matrix: np.ndarray) -> np.ndarray:
    """A brain estimate of a head that owes nothing to a brain-extraction network.

    The template brain, carried by the given affine registration (image world to template
    world) and then by a B-spline refinement (SimpleITK, Mattes mutual information, 2 mm,
    a 30 mm control-point mesh, 4 mm) fitted here to this head, on the head's stored grid. The
    defacer protects the brain with a network; this judges it with a different method.
    """
    import SimpleITK as sitk

    from bids_deid.deface.register import REG_SPACING, head_mask, to_ras_grid

    grid = to_ras_grid(data, affine, REG_SPACING)
    head = head_mask(grid)
    # template resampled onto the image's 2 mm RAS grid through the affine registration
    vox = np.linalg.inv(template.affine) @ matrix @ grid.affine
    moved = ndi.affine_transform(template.head, vox[:3, :3], vox[:3, 3], output_shape=grid.data.shape, order=1)
    brain = ndi.affine_transform(
        template.brain.astype(np.float32), vox[:3, :3], vox[:3, 3], output_shape=grid.data.shape, order=1
    )

    def img(a):
        out = sitk.GetImageFromArray(np.ascontiguousarray(a.astype(np.float32).transpose(2, 1, 0)))
        out.SetSpacing([REG_SPACING] * 3)
        return out

    hi = np.percentile(grid.data[head], 99.5) if head.any() else 1.0
    fixed, moving = img(np.clip(grid.data, 0, hi)), img(moved)
    mesh = [max(1, int(round(n * REG_SPACING / 30.0))) for n in grid.data.shape]
    tx = sitk.BSplineTransformInitializer(fixed, mesh)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.05, 7)
    reg.SetMetricFixedMask(sitk.Cast(img(ndi.binary_dilation(head, iterations=2)), sitk.sitkUInt8))
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=25)
    reg.SetShrinkFactorsPerLevel([2])
    reg.SetSmoothingSigmasPerLevel([1.5])
    reg.SetInitialTransform(tx, inPlace=True)
    reg.Execute(fixed, moving)
    warped = sitk.Resample(img(brain), fixed, tx, sitk.sitkLinear, 0.0)
    wb = sitk.GetArrayFromImage(warped).transpose(2, 1, 0) > 0.5
    # back onto the stored grid (nearest grid point)
    ijk = np.indices(data.shape).reshape(3, -1).astype(np.float32)
    to_grid = np.linalg.inv(grid.affine) @ affine
    g = np.rint(to_grid[:3, :3].astype(np.float32) @ ijk + to_grid[:3, 3:].astype(np.float32)).astype(np.intp)
    ok = np.all((g >= 0) & (g < np.array(wb.shape)[:, None]), axis=0)
    out = np.zeros(ijk.shape[1], bool)
    out[ok] = wb[g[0, ok], g[1, ok], g[2, ok]]
    return out.reshape(data.shape)


@dataclass
class RealCopy:
    """A real head (or a perturbed copy of it) with its truth masks on the same stored grid."""

    img: nib.Nifti1Image
    brain: np.ndarray | None  # bool: brain that must stay untouched (None: no truth)
    face: np.ndarray | None  # bool: face region that must be removed
    label: str


def load_real(path, truth_dir=None) -> RealCopy:
    """A shared real head and its ``<name>_brain`` / ``<name>_face`` truth masks (when present)."""
    from pathlib import Path

    path = Path(path)
    name = path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.stem
    img = nib.load(str(path))
    masks = []
    for kind in ("brain", "face"):
        t = None if truth_dir is None else Path(truth_dir) / f"{name}_{kind}.nii.gz"
        masks.append(np.asarray(nib.load(str(t)).dataobj) > 0 if t is not None and t.is_file() else None)
    return RealCopy(img, masks[0], masks[1], name)


def perturb_real(
    head: RealCopy,
    *,
    pose: np.ndarray | None = None,
    axcode: str | None = None,
    block: tuple[int, int, int] = (1, 1, 1),
    scale: float = 1.0,
    dtype=None,
    label: str = "",
) -> RealCopy:
    """A perturbed copy of a real head, its truth masks carried exactly.

    Parameters
    ----------
    pose : 4x4, a rigid motion of the subject in world space about the head's centre (a
        header change only: the voxels are untouched, the affine becomes oblique)
    axcode : store the voxels in another orientation (a permutation and flips of the
        array, with the affine changed to match: exact)
    block : average blocks of voxels (coarser voxels, e.g. (1, 1, 3) for thick slices);
        the brain truth of a block is "any voxel brain", the face truth "most voxels face"
    scale, dtype : intensity scale and stored dtype
    """
    data = np.asarray(head.img.dataobj, dtype=np.float32)
    affine = head.img.affine.copy()
    brain = None if head.brain is None else head.brain.copy()
    face = None if head.face is None else head.face.copy()
    if any(b > 1 for b in block):
        shp = [s // b for s, b in zip(data.shape, block, strict=True)]

        def blocks(a):
            cut = a[: shp[0] * block[0], : shp[1] * block[1], : shp[2] * block[2]]
            return cut.reshape(shp[0], block[0], shp[1], block[1], shp[2], block[2]).astype(np.float32).mean((1, 3, 5))

        data = blocks(data)
        brain = None if brain is None else blocks(brain) > 0
        face = None if face is None else blocks(face) > 0.5
        sc = np.eye(4)
        sc[:3, :3] = np.diag(block)
        sc[:3, 3] = (np.array(block) - 1) / 2.0
        affine = affine @ sc
    if axcode is not None:
        stored_shape = data.shape
        cur = nib.io_orientation(affine)
        want = nib.orientations.axcodes2ornt(tuple(axcode))
        tr = nib.orientations.ornt_transform(cur, want)
        data = nib.apply_orientation(data, tr)
        brain = None if brain is None else nib.apply_orientation(brain, tr)
        face = None if face is None else nib.apply_orientation(face, tr)
        affine = affine @ nib.orientations.inv_ornt_aff(tr, stored_shape)
    if pose is not None:
        centre = affine @ np.r_[(np.array(data.shape[:3]) - 1) / 2.0, 1.0]
        affine = shift(centre[:3]) @ pose @ shift(-centre[:3]) @ affine
    data = data * scale
    dtype = np.dtype(dtype or head.img.get_data_dtype())
    if dtype is not None and np.issubdtype(dtype, np.integer) and data.max() > np.iinfo(dtype).max:
        dtype = np.dtype(np.float32)  # a scaled integer file (slope in the header): keep the values
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        data = np.clip(np.round(data), info.min, info.max)
    img = nib.Nifti1Image(np.ascontiguousarray(data.astype(dtype)), affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return RealCopy(img, brain, face, label or head.label)
