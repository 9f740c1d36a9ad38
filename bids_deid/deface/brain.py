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
FINE_SHAPE = (256, 256, 256)
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


def brain_mask(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Brain mask of a 3D head image on the image's own stored grid.

    Parameters
    ----------
    data : ndarray
        3D intensities in stored order.
    affine : ndarray
        Voxel to world matrix of ``data``.

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
    crop = _resize(x[box], FINE_SHAPE)
    with _LOCK:
        prob = _run("brain.onnx", _normalise(crop, low, high))
    inside = _resize(prob, tuple(b.stop - b.start for b in box)) > THRESHOLD
    if inside.any():
        inside = ndi.binary_fill_holes(_largest(inside))
    mask[box] = inside
    back = nib.orientations.ornt_transform([[0, 1], [1, 1], [2, 1]], ornt)
    return np.ascontiguousarray(nib.apply_orientation(mask, back))
