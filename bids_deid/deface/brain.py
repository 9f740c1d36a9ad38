"""This head's own brain, estimated from its voxels: what the defacer must never remove.

Two small convolutional networks (deepbet 1.0.2, MIT license; exported to ONNX by
``tools/export_brain_model.py``, see ``bids_deid/data/brain/PROVENANCE.md``) run with
onnxruntime on CPU: the first finds the brain's box on a coarse 128^3 copy of the image,
the second segments the brain inside that box at 256^3. The volume is read in the
closest-to-RAS voxel order (a permutation and flips of the stored axes, no resampling) and
resized with nearest-neighbour lookups, as the networks were trained; the mask comes back
on the image's own stored grid.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from ..errors import BidsDeidError

log = logging.getLogger(__name__)

MODEL_DIR = Path(__file__).resolve().parent.parent / "data" / "brain"
COARSE_SHAPE = (128, 128, 128)
FINE_SHAPE = (192, 192, 192)  # the networks were trained at 256^3; 192^3 costs 45 % of the CPU (docs/defacing.md)
BOX_MARGIN = 0.1  # the coarse box grows by this share of its size on each side (as deepbet does)
THRESHOLD = 0.5

_LOCK = threading.Lock()


def threads() -> int:
    """onnxruntime threads per call: ``BIDS_DEID_THREADS`` or 2 (the pipeline runs one image per worker)."""
    try:
        return max(1, int(os.environ.get("BIDS_DEID_THREADS", "2")))
    except ValueError:
        return 2


@functools.lru_cache(maxsize=2)
def _session(name: str):
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise BidsDeidError(f"brain protection needs onnxruntime ({exc}): pip install onnxruntime") from exc
    path = MODEL_DIR / name
    if not path.is_file():  # pragma: no cover - package data
        raise BidsDeidError(f"brain model {name} missing from the installation")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    # the arena would keep the 256^3 activations' peak for the life of the process
    opts.enable_cpu_mem_arena = False
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _nearest(n_in: int, n_out: int) -> np.ndarray:
    """Source indices of a nearest-neighbour resize from ``n_in`` to ``n_out`` samples (pixel centres)."""
    idx = np.floor((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.intp)
    return np.minimum(idx, n_in - 1)


def _resize(x: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    i, j, k = (_nearest(n, m) for n, m in zip(x.shape, shape, strict=True))
    return x[np.ix_(i, j, k)]


def _normalise(x: np.ndarray, low: float, high: float) -> np.ndarray:
    y = np.clip((x - low) / max(high - low, 1e-6), 0.0, 1.0)
    y = (y - y.mean()) / max(float(y.std()), 1e-6)
    return (0.226 * y + 0.449).astype(np.float32)


def _run(name: str, x: np.ndarray) -> np.ndarray:
    sess = _session(name)
    out = sess.run(None, {sess.get_inputs()[0].name: x[None, None]})[0]
    return out[0, 1]


def _largest(mask: np.ndarray) -> np.ndarray:
    labels, n = ndi.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _box(coarse: np.ndarray, shape: tuple[int, ...]) -> tuple[slice, slice, slice] | None:
    """Box of the coarse brain, scaled to ``shape`` and grown by :data:`BOX_MARGIN`."""
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        profile = np.nonzero(coarse.mean(axis=other) > 0.02)[0]
        if profile.size == 0:
            return None
        scale = shape[axis] / coarse.shape[axis]
        centre = scale * (profile.min() + profile.max() + 1) / 2.0
        size = scale * (profile.max() + 1 - profile.min()) * (1 + 2 * BOX_MARGIN)
        centre, size = round(centre), round(size)
        box.append(slice(max(0, int(centre - size / 2)), min(shape[axis], int(centre + size / 2))))
    return tuple(box)


def brain_mask(data: np.ndarray, affine: np.ndarray, fine: int | None = None) -> np.ndarray:
    """Brain mask of a 3D head image on the image's own stored grid.

    Parameters
    ----------
    data : ndarray
        3D intensities in stored order.
    affine : ndarray
        Voxel to world matrix of ``data``.
    fine : int, optional
        Side of the fine network's input cube (default :data:`FINE_SHAPE`; 256 as trained).

    Returns
    -------
    ndarray of bool
        Same shape as ``data``; all False when no brain is found.
    """
    ornt = nib.io_orientation(affine)
    x = nib.apply_orientation(np.nan_to_num(np.asarray(data, dtype=np.float32)), ornt)
    small = _resize(x, COARSE_SHAPE)
    low, high = (float(v) for v in np.quantile(small, [0.005, 0.995]))
    with _LOCK:
        coarse = _run("bbox.onnx", _normalise(small, low, high)) > 0.5
    coarse = _largest(coarse)
    box = _box(coarse, x.shape) if coarse.any() else None
    mask = np.zeros(x.shape, bool)
    if box is None or min(b.stop - b.start for b in box) < 2:
        return nib.apply_orientation(mask, nib.orientations.ornt_transform([[0, 1], [1, 1], [2, 1]], ornt))
    crop = _resize(x[box], FINE_SHAPE if fine is None else (fine,) * 3)
    with _LOCK:
        prob = _run("brain.onnx", _normalise(crop, low, high))
    inside = _resize(prob, tuple(b.stop - b.start for b in box)) > THRESHOLD
    if inside.any():
        inside = ndi.binary_fill_holes(_largest(inside))
    mask[box] = inside
    back = nib.orientations.ornt_transform([[0, 1], [1, 1], [2, 1]], ornt)
    return np.ascontiguousarray(nib.apply_orientation(mask, back))


def tilt_degrees(affine: np.ndarray, to_template: np.ndarray) -> float:
    """How far the head is turned in its stored voxel axes, in degrees.

    The networks see the voxels in the closest-to-RAS order, so they see an upright head
    when the template's axes, carried into the image, run close to the voxel axes.

    Parameters
    ----------
    affine : ndarray
        Image voxel to world.
    to_template : ndarray
        Image world to template world (the registration).
    """
    ornt = nib.io_orientation(affine)
    canon = affine @ nib.orientations.inv_ornt_aff(ornt, (1, 1, 1))
    lin = to_template[:3, :3] @ canon[:3, :3]  # canonical voxel axes, seen in the template
    u, _, vt = np.linalg.svd(lin)
    rot = u @ vt
    return float(np.degrees(np.arccos(np.clip((np.trace(rot) - 1.0) / 2.0, -1.0, 1.0))))


def brain_mask_upright(
    data: np.ndarray, affine: np.ndarray, to_template: np.ndarray, region: np.ndarray, spacing: float = 1.2
) -> np.ndarray:
    """Brain mask of a head turned in its voxel axes: the networks run on an upright copy.

    The copy (linear interpolation, ``spacing`` mm, axes along the template's, for the
    networks only: the image itself is never resampled) is segmented and the mask carried
    back to the stored grid (nearest copy voxel).

    Parameters
    ----------
    data : ndarray
    affine : ndarray
        Image voxel to world.
    to_template : ndarray
        Image world to template world (the registration).
    region : ndarray, shape (n, 3)
        Image world points whose box (in the upright frame) the copy covers: the template
        head's corners carried by the registration (a copy of the whole field of view would
        hold so much background that the networks' coarse box grows).
    spacing : float

    Returns
    -------
    ndarray of bool
        On the stored grid.
    """
    u, _, vt = np.linalg.svd(to_template[:3, :3])
    rot = u @ vt  # image world -> template-aligned directions
    n = np.array(data.shape[:3]) - 1
    corners = np.array([[i, j, k, 1.0] for i in (0, n[0]) for j in (0, n[1]) for k in (0, n[2])]).T
    world = (affine @ corners)[:3]
    turned = rot @ world
    box = rot @ np.asarray(region, float).T
    lo = np.maximum(turned.min(1), box.min(1) - 10.0)
    hi = np.minimum(turned.max(1), box.max(1) + 10.0)
    shape = tuple(int(np.ceil((h - lo_) / spacing)) + 1 for lo_, h in zip(lo, hi, strict=True))
    grid = np.eye(4)
    grid[:3, :3] = rot.T * spacing  # copy voxel -> image world
    grid[:3, 3] = rot.T @ lo
    vox = np.linalg.inv(affine) @ grid
    copy = ndi.affine_transform(
        np.asarray(data, np.float32), vox[:3, :3], vox[:3, 3], output_shape=shape, order=1, cval=0.0
    )
    mask = brain_mask(copy, grid)
    back = np.linalg.inv(grid) @ affine
    out = np.zeros(data.shape[:3], bool)
    ii, jj = np.meshgrid(np.arange(data.shape[0]), np.arange(data.shape[1]), indexing="ij")
    base = (back[:3, :3] @ np.stack([ii.ravel(), jj.ravel(), np.zeros(ii.size)]) + back[:3, 3:]).astype(np.float32)
    step = back[:3, 2].astype(np.float32)[:, None]
    limit = np.array(shape)[:, None]
    for k in range(data.shape[2]):  # slice by slice: small temporaries on large images
        g = np.rint(base + k * step).astype(np.intp)
        ok = np.all((g >= 0) & (g < limit), axis=0)
        sl = np.zeros(g.shape[1], bool)
        sl[ok] = mask[g[0, ok], g[1, ok], g[2, ok]]
        out[:, :, k] = sl.reshape(data.shape[:2])
    return out
