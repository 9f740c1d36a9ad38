"""QC renderings: depth-shaded head surfaces, mask outlines and registration overlays.

Everything is numpy on a RAS grid (about 2 mm), PNG encoding included. The frontal
rendering is lit from the front, above and slightly to the side so that the face reads as
a face to a person checking the QC page.

The "before" renderings show the face: QC output is private material (mode 0600).
"""

from __future__ import annotations

import logging
import struct
import zlib

import numpy as np
from scipy import ndimage as ndi

from .register import Grid, otsu, to_ras_grid

log = logging.getLogger(__name__)

LIGHT = np.array([0.35, 0.55, 1.0])  # (horizontal, vertical-up, towards viewer) in view coordinates
RENDER_MAX_VOXELS = 128  # largest grid side of the rendering volume


def render_grid(data: np.ndarray, affine: np.ndarray) -> Grid:
    """Resample an image onto an isotropic RAS grid sized for rendering.

    Parameters
    ----------
    data : ndarray
    affine : ndarray

    Returns
    -------
    Grid
    """
    n = np.array(data.shape[:3]) - 1
    corners = np.array([[i, j, k, 1.0] for i in (0, n[0]) for j in (0, n[1]) for k in (0, n[2])]).T
    world = (affine @ corners)[:3]
    extent = float((world.max(1) - world.min(1)).max())
    spacing = max(1.0, extent / RENDER_MAX_VOXELS)
    return to_ras_grid(data, affine, spacing, with_fov=False)


def surface_threshold(vol: np.ndarray) -> float:
    """Head surface threshold of a rendering volume (half the Otsu level)."""
    vals = vol[vol > 0]
    if vals.size == 0:
        return 1.0
    hi = np.percentile(vals, 99.5)
    return 0.5 * otsu(np.clip(vals, 0, hi))


def _shade(occ: np.ndarray) -> np.ndarray:
    """Depth-shade an occupancy volume seen along its last axis (index 0 nearest the viewer).

    ``occ`` axes: (rows top to bottom, columns left to right, depth front to back).
    """
    hit = occ.any(axis=2)
    depth = np.argmax(occ, axis=2).astype(np.float32)
    far = float(occ.shape[2])
    depth[~hit] = far
    height = -ndi.gaussian_filter(depth, 1.0)  # larger = nearer
    gy, gx = np.gradient(height)
    # surface normal in (column, row-up, towards viewer) coordinates
    nx, ny, nz = -gx, gy, np.ones_like(gx)
    norm = np.sqrt(nx * nx + ny * ny + nz * nz)
    light = LIGHT / np.linalg.norm(LIGHT)
    lambert = np.clip((nx * light[0] + ny * light[1] + nz * light[2]) / norm, 0, 1)
    near = depth[hit].min() if hit.any() else 0.0
    span = max(1.0, float(np.percentile(depth[hit], 95)) - near) if hit.any() else 1.0
    cue = np.clip(1.0 - 0.6 * (depth - near) / span, 0.25, 1.0)
    img = 0.12 + 0.88 * lambert**1.3 * cue
    img[~hit] = 0.0
    return img


def surface_views(vol: np.ndarray, thr: float) -> dict[str, np.ndarray]:
    """Front and right-side depth-shaded views of a RAS volume.

    Parameters
    ----------
    vol : ndarray
        RAS-ordered volume (x right, y anterior, z superior).
    thr : float
        Surface threshold.

    Returns
    -------
    dict
        ``front`` and ``side`` float images in [0, 1], rows top (superior) to bottom.
    """
    occ = ndi.gaussian_filter(vol.astype(np.float32), 0.8) > thr
    # front: viewer at +y looking back; subject's right on the viewer's left
    front = occ[::-1, ::-1, ::-1].transpose(2, 0, 1)  # (z top-down, x right-to-left, y front-first)
    # side: viewer at +x (subject's right) looking left; anterior on the viewer's right
    side = occ[::-1, :, ::-1].transpose(2, 1, 0)  # (z top-down, y low->high, x right-first)
    return {"front": _shade(np.ascontiguousarray(front)), "side": _shade(np.ascontiguousarray(side))}


def to_uint8(img: np.ndarray, height: int = 256) -> np.ndarray:
    """Scale a [0, 1] image to uint8 at a given height (bilinear)."""
    zoom = height / img.shape[0]
    out = ndi.zoom(img, zoom, order=1)
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


def png_bytes(img: np.ndarray) -> bytes:
    """Encode a uint8 grayscale or RGB image as PNG bytes (zlib, no imaging library)."""
    arr = np.ascontiguousarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        color, channels = 0, 1
    elif arr.ndim == 3 and arr.shape[2] == 3:
        color, channels = 2, 3
    else:
        raise ValueError(f"cannot encode an image of shape {arr.shape}")
    h, w = arr.shape[:2]
    rows = arr.reshape(h, w * channels)
    raw = np.hstack([np.zeros((h, 1), np.uint8), rows]).tobytes()  # filter type 0 on every row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    head = struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def _panel(img: np.ndarray, marks: list[tuple[np.ndarray, tuple[int, int, int]]], vmax: float) -> np.ndarray:
    """One RGB slice panel (rows top to bottom) with each mark's voxels painted in its colour."""
    gray = np.clip(img / max(vmax, 1e-6) * 255.0, 0, 255).astype(np.uint8)
    rgb = np.repeat(gray[::-1, :, None], 3, axis=2)  # slice arrays come bottom-up
    for mark, color in marks:
        rgb[mark[::-1, :]] = color
    scale = max(1, int(round(200 / max(rgb.shape[:2]))))
    return np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)


def _outline(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndi.binary_erosion(mask)


def _slices_figure(
    vol: np.ndarray, marks: list[tuple[np.ndarray, tuple[int, int, int]]], views: tuple[str, ...]
) -> bytes:
    """Side-by-side slices (mid-sagittal, axial through the first mark's region, coronal) as PNG."""
    cx, cy = vol.shape[0] // 2, vol.shape[1] // 2
    zs = np.nonzero(marks[0][0].any(axis=(0, 1)))[0]
    cz = int(np.median(zs)) if zs.size else vol.shape[2] // 2
    cut = {
        "mid-sagittal": lambda a: a[cx, :, :].T,
        "axial": lambda a: a[:, :, cz].T,
        "coronal": lambda a: a[:, cy, :].T,
    }
    vmax = float(np.percentile(vol[vol > 0], 99.5)) if np.any(vol > 0) else 1.0
    panels = [_panel(cut[name](vol), [(cut[name](m), c) for m, c in marks], vmax) for name in views]
    height = max(p.shape[0] for p in panels)
    padded = [np.pad(p, ((0, height - p.shape[0]), (0, 4), (0, 0))) for p in panels]
    return png_bytes(np.concatenate(padded, axis=1))


def edges(mask_or_img: np.ndarray, thr: float) -> np.ndarray:
    """Edges of a thresholded volume (inner boundary voxels)."""
    inside = mask_or_img > thr
    return inside & ~ndi.binary_erosion(inside)


def qc_images(
    views: dict[str, np.ndarray],
    before: Grid,
    face_render: np.ndarray,
    template_render: np.ndarray | None,
    brain_render: np.ndarray | None = None,
) -> dict[str, bytes]:
    """All QC images of one defaced image.

    Parameters
    ----------
    views : dict
        uint8 surface renderings ``before_front``, ``after_front``, ``before_side``, ``after_side``.
    before : Grid
        Rendering grid of the image before defacing.
    face_render : ndarray of bool
        Face mask on the rendering grid.
    template_render : ndarray, optional
        Template head warped onto the rendering grid (for the overlay).
    brain_render : ndarray of bool, optional
        This head's own (protected) brain on the rendering grid, outlined in yellow.

    Returns
    -------
    dict
        name -> PNG bytes (the four views, ``slices`` with the face mask outline in red and
        the protected brain's in yellow, ``overlay`` with the template head's edges in green).
    """
    pngs = {name: png_bytes(img) for name, img in views.items()}
    marks = [(_outline(face_render), (255, 40, 40))]
    if brain_render is not None:
        marks.append((_outline(brain_render), (255, 220, 0)))
    pngs["slices"] = _slices_figure(before.data, marks, ("mid-sagittal", "axial"))
    if template_render is not None and np.any(template_render > 0):
        t_edges = edges(template_render, surface_threshold(template_render))
        pngs["overlay"] = _slices_figure(before.data, [(t_edges, (40, 255, 80))], ("mid-sagittal", "axial", "coronal"))
    return pngs


def head_views(before: Grid, after: Grid) -> dict[str, np.ndarray]:
    """Front and side renderings before and after, with the same surface threshold.

    Parameters
    ----------
    before, after : Grid

    Returns
    -------
    dict
        ``before_front``, ``before_side``, ``after_front``, ``after_side`` as uint8 images.
    """
    thr = surface_threshold(before.data)
    views: dict[str, np.ndarray] = {}
    for label, grid in (("before", before), ("after", after)):
        for side, img in surface_views(grid.data, thr).items():
            views[f"{label}_{side}"] = to_uint8(img)
    return views
