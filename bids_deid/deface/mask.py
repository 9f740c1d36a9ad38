"""Carry template masks into an image's own voxel grid and judge the registration.

The masks are resampled once, at the end, straight into the image's stored grid (linear
interpolation of the 0/1 mask, threshold 0.5), and only inside the bounding box the face
region can reach, so a 1 mm 256^3 image costs a fraction of a second.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .register import Grid, Registration, head_mask
from .template import Template

log = logging.getLogger(__name__)

# Quality gate thresholds (see docs/benchmarks-deface.md for how they were set)
MAX_METRIC = -0.45  # Mattes MI at 4 mm must be lower (better) than this
MIN_HEAD_DICE = 0.86  # warped template head vs image head, inside the field of view
MIN_BRAIN_IN_HEAD = 0.95  # share of the warped brain (in view) that lies on image head signal
SCALE_RANGE = (0.7, 1.45)  # singular values of the linear part (image to template)


@dataclass
class Quality:
    """Numbers the quality gate looks at, and its verdict.

    Attributes
    ----------
    passed : bool
    reason : str
    metrics : dict
    """

    passed: bool
    reason: str
    metrics: dict


def voxel_map(template: Template, matrix: np.ndarray, out_affine: np.ndarray) -> np.ndarray:
    """4x4 map from output voxel indices to template voxel indices.

    Parameters
    ----------
    template : Template
    matrix : ndarray
        Image world to template world.
    out_affine : ndarray
        Output grid voxel to world.

    Returns
    -------
    ndarray
    """
    return np.linalg.inv(template.affine) @ matrix @ out_affine


def warp_mask(
    mask: np.ndarray,
    vox: np.ndarray,
    shape: tuple[int, int, int],
    bbox: tuple[slice, slice, slice] | None = None,
) -> np.ndarray:
    """Resample a template mask into an output grid (linear, threshold 0.5).

    Parameters
    ----------
    mask : ndarray of bool
        Mask on the template grid.
    vox : ndarray
        Output voxel to template voxel 4x4 map (:func:`voxel_map`).
    shape : tuple of int
        Output grid shape.
    bbox : tuple of slice, optional
        Only this box of the output grid is computed; the result has the box's shape.

    Returns
    -------
    ndarray of bool
    """
    if bbox is None:
        bbox = tuple(slice(0, s) for s in shape)
    start = np.array([b.start for b in bbox], float)
    out_shape = tuple(b.stop - b.start for b in bbox)
    if min(out_shape) <= 0:
        return np.zeros(out_shape, bool)
    offset = vox[:3, :3] @ start + vox[:3, 3]
    warped = ndi.affine_transform(
        mask.astype(np.float32), vox[:3, :3], offset, output_shape=out_shape, order=1, mode="constant", cval=0.0
    )
    return warped >= 0.5


def mask_bbox(
    mask: np.ndarray, vox: np.ndarray, shape: tuple[int, int, int], pad: int = 2
) -> tuple[slice, slice, slice]:
    """Box of the output grid that the True voxels of a template mask can reach.

    Parameters
    ----------
    mask : ndarray of bool
        Template-grid mask.
    vox : ndarray
        Output voxel to template voxel map.
    shape : tuple of int
        Output grid shape.
    pad : int
        Margin in output voxels.

    Returns
    -------
    tuple of slice
        Possibly empty slices when the mask falls outside the grid.
    """
    idx = np.argwhere(mask)
    if idx.size == 0:
        return tuple(slice(0, 0) for _ in shape)
    lo, hi = idx.min(0) - 1, idx.max(0) + 1
    corners = np.array([[a, b, c, 1.0] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])]).T
    out = (np.linalg.inv(vox) @ corners)[:3]
    first = np.floor(out.min(1)).astype(int) - pad
    last = np.ceil(out.max(1)).astype(int) + pad + 1
    return tuple(slice(int(max(0, f)), int(min(s, max(0, la)))) for f, la, s in zip(first, last, shape, strict=True))


def face_in_image(template: Template, matrix: np.ndarray, affine: np.ndarray, shape: tuple[int, int, int]):
    """Face voxels to zero, in the image's stored grid.

    The template face mask minus the template brain mask dilated by a few mm
    (:attr:`Template.face_protected`), warped once into the image grid, inside the box it
    can reach.

    Parameters
    ----------
    template : Template
    matrix : ndarray
        Image world to template world.
    affine : ndarray
        Image voxel to world.
    shape : tuple of int
        Image grid (3D).

    Returns
    -------
    mask : ndarray of bool
        Face mask inside ``bbox``.
    bbox : tuple of slice
    """
    vox = voxel_map(template, matrix, affine)
    face_t = template.face_protected
    bbox = mask_bbox(face_t, vox, shape)
    # images finer than the template: evaluate the mask at the centres of small blocks of
    # voxels (about one template voxel each) and repeat; the edge moves by < 1 template voxel
    tpl_zoom = float(np.sqrt((template.affine[:3, :3] ** 2).sum(0)).min())
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(0))
    stride = [max(1, int(round(tpl_zoom / z))) for z in zooms]
    if all(st == 1 for st in stride):
        return warp_mask(face_t, vox, shape, bbox), bbox
    size = [b.stop - b.start for b in bbox]
    coarse_shape = tuple(-(-n // st) for n, st in zip(size, stride, strict=True))
    block = np.eye(4)
    block[:3, :3] = np.diag(stride)
    block[:3, 3] = [b.start + (st - 1) / 2.0 for b, st in zip(bbox, stride, strict=True)]
    coarse = warp_mask(face_t, vox @ block, coarse_shape)
    for axis, st in enumerate(stride):
        if st > 1:
            coarse = np.repeat(coarse, st, axis=axis)
    return np.ascontiguousarray(coarse[: size[0], : size[1], : size[2]]), bbox


def brain_overlap(template: Template, matrix: np.ndarray, grid: Grid) -> int:
    """Voxels of a coarse grid that both the warped face mask and the warped brain mask cover.

    A sanity check of the masks (0 when the template's face mask keeps clear of its brain).
    """
    vox = voxel_map(template, matrix, grid.affine)
    face = warp_mask(template.face_protected, vox, grid.data.shape)
    if not face.any():
        return 0
    return int((face & warp_mask(template.brain, vox, grid.data.shape)).sum())


def assess(template: Template, reg: Registration, face_voxels: int, image_voxel_ml: float) -> Quality:
    """Judge a registration; on failure the image must not be written.

    Parameters
    ----------
    template : Template
    reg : Registration
    face_voxels : int
        Face voxels found in the image grid.
    image_voxel_ml : float
        Volume of one image voxel in ml.

    Returns
    -------
    Quality
    """
    grid: Grid = reg.image_grid
    metrics: dict = {"metric": round(reg.metric, 4), "start": reg.start}
    lin = reg.matrix[:3, :3]
    sv = np.linalg.svd(lin, compute_uv=False)
    det = float(abs(np.linalg.det(lin)))
    metrics["scale_min"] = round(float(sv.min()), 3)
    metrics["scale_max"] = round(float(sv.max()), 3)
    face_ml = face_voxels * image_voxel_ml
    expected = float(template.face_protected.sum()) * template.voxel_ml / max(det, 1e-6)
    metrics["face_voxels"] = int(face_voxels)
    metrics["face_volume_ml"] = round(face_ml, 1)
    metrics["face_expected_ml"] = round(expected, 1)
    metrics["face_in_view"] = round(face_ml / expected, 3) if expected > 0 else 0.0
    if grid is None or reg.start in ("none", "failed"):
        return Quality(False, "registration failed: no head found in the image", metrics)

    vox = voxel_map(template, reg.matrix, grid.affine)
    tpl_head = template._cache.get("headmask")
    if tpl_head is None:
        tpl_head = template.head > 0.5 * _template_threshold(template)
        tpl_head = ndi.binary_fill_holes(ndi.binary_opening(tpl_head, iterations=1))
        template._cache["headmask"] = tpl_head
    whead = warp_mask(tpl_head, vox, grid.data.shape) & grid.fov
    wbrain = warp_mask(template.brain, vox, grid.data.shape) & grid.fov
    ihead = ndi.binary_fill_holes(head_mask(grid))
    inter = float((whead & ihead).sum())
    dice = 2 * inter / max(1.0, float(whead.sum() + ihead.sum()))
    brain_in_head = float((wbrain & ihead).sum()) / max(1.0, float(wbrain.sum()))
    metrics["head_dice"] = round(dice, 3)
    metrics["brain_in_head"] = round(brain_in_head, 3)
    metrics["brain_in_view_ml"] = round(float(wbrain.sum()) * grid.spacing**3 / 1000.0, 1)

    problems = []
    if reg.metric > MAX_METRIC:
        problems.append(f"weak registration (metric {reg.metric:.2f} > {MAX_METRIC})")
    if not (SCALE_RANGE[0] <= sv.min() and sv.max() <= SCALE_RANGE[1]):
        problems.append(f"implausible scaling {sv.min():.2f}-{sv.max():.2f}")
    if dice < MIN_HEAD_DICE:
        problems.append(f"template head does not match the image head (Dice {dice:.2f})")
    if brain_in_head < MIN_BRAIN_IN_HEAD:
        problems.append(f"brain mask falls off the head ({brain_in_head:.0%} on signal)")
    if metrics["face_in_view"] > 1.3:
        problems.append("face mask larger than expected")
    if problems:
        return Quality(False, "; ".join(problems), metrics)
    return Quality(True, "ok", metrics)


def _template_threshold(template: Template) -> float:
    from .register import otsu

    vals = template.head[template.head > 0]
    hi = np.percentile(vals, 99.5)
    return otsu(np.clip(vals, 0, hi))
