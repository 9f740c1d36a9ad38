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
