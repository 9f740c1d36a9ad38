"""Carry template masks into an image's own voxel grid and judge the registration.

The masks are resampled once, at the end, straight into the image's stored grid (linear
interpolation of the 0/1 mask, threshold 0.5), and only inside the bounding box the face
region can reach, so a 1 mm 256^3 image costs a fraction of a second.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage as ndi

from .template import Template

log = logging.getLogger(__name__)


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


def template_head(template: Template) -> np.ndarray:
    """The template's head mask (tissue, holes filled; cached)."""
    tpl_head = template._cache.get("headmask")
    if tpl_head is None:
        tpl_head = template.head > template_threshold(template)
        tpl_head = ndi.binary_fill_holes(ndi.binary_opening(tpl_head, iterations=1))
        template._cache["headmask"] = tpl_head
    return tpl_head


def template_threshold(template: Template) -> float:
    """Half the Otsu level of the template head (the same rule as the image's tissue threshold)."""
    if "threshold" not in template._cache:
        from .register import otsu

        vals = template.head[template.head > 0]
        hi = np.percentile(vals, 99.5)
        template._cache["threshold"] = 0.5 * otsu(np.clip(vals, 0, hi))
    return template._cache["threshold"]
