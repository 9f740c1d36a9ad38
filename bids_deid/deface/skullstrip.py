"""Skull stripping as a defacing method: keep the brain, zero every other voxel.

The brain mask comes from deepbet (a CNN whose weights ship inside its wheel; it runs on
CPU, or on a GPU when torch sees one). Like template defacing, nothing is resampled: the
output keeps the input's header bytes, shape, dtype and affine, and only the stored values
of voxels outside the brain mask change (to raw zero). The image is written only when the
brain volume is plausible and the automated face check finds no face afterwards.

deepbet and torch are an optional extra: ``pip install 'bids-deid[skullstrip]'``.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np

from ..atomic import atomic_write_bytes
from ..errors import BidsDeidError, OutputError
from . import render
from .pipeline import DefaceResult, check_faces, face_left_reason
from .rawnifti import encode, read_raw

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'bids-deid[skullstrip]'"
MIN_BRAIN_ML = 800.0  # smallest plausible brain mask (intracranial) volume
MAX_BRAIN_ML = 2200.0  # largest plausible brain mask volume

_LOCK = threading.Lock()  # deepbet's BrainExtraction keeps per-call state (its bounding box)


@functools.lru_cache(maxsize=1)
def available() -> str | None:
    """Whether skull stripping can run here.

    Returns
    -------
    str or None
        ``None`` when deepbet and torch import, else a one-line reason with the install hint.
    """
    try:
        import deepbet  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        return f"skull stripping needs deepbet and torch ({exc.name or exc} missing): {INSTALL_HINT}"
    except Exception as exc:  # noqa: BLE001 - a broken torch install must not crash the caller
        return f"skull stripping unavailable ({type(exc).__name__}: {exc}): {INSTALL_HINT}"
    return None


@functools.lru_cache(maxsize=1)
def _extractor():
    """The deepbet model pair (bounding box + segmentation), loaded once per process."""
    from deepbet import BrainExtraction

    with warnings.catch_warnings():  # torch warns that TorchScript loading is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        return BrainExtraction()


def brain_mask(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Brain mask of a 3D head image, on the image's own voxel grid.

    Parameters
    ----------
    data : ndarray
        3D intensities (any orientation; deepbet reorients internally and back).
    affine : ndarray
        Voxel to world matrix of ``data``.

    Returns
    -------
    ndarray of bool
        Same shape as ``data``.
    """
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), np.asarray(affine, dtype=float))
    with _LOCK:
        _, mask_img, _ = _extractor().run(img)
    mask = np.asarray(mask_img.dataobj) > 0
    if mask.shape != data.shape:  # pragma: no cover - deepbet contract
        raise RuntimeError(f"brain mask shape {mask.shape} differs from the image {data.shape}")
    return mask


def skullstrip_file(src: Path, dst: Path, *, qc: bool = True) -> DefaceResult:
    """Zero every voxel outside the brain of a NIfTI image, without resampling it.

    Parameters
    ----------
    src : Path
        A single-file NIfTI (``.nii``/``.nii.gz``), header already scrubbed.
    dst : Path
        Output path; written atomically and only when every check passes. Same header
        bytes, shape, affine and dtype as ``src``; voxel bytes identical inside the brain
        mask, raw zero outside (in every volume). Gzipped with mtime 0 when the name ends in ``.gz``.
    qc : bool
        Produce the QC PNGs (the automated face check runs either way).

    Returns
    -------
    DefaceResult
        ``metrics`` holds brain_voxels, brain_volume_ml, removed_voxels, model_seconds, seconds.
        ``qc_images``: before/after front and side renderings and ``slices`` with the brain
        mask outline in red.

    Raises
    ------
    InputError
        When ``src`` is not a readable single-file NIfTI.
    OutputError
        When ``dst`` is ``src``.
    BidsDeidError
        When deepbet or torch is not installed (see :func:`available`).
    """
    t0 = time.perf_counter()
    src, dst = Path(src), Path(dst)
    if dst.exists() and dst.resolve() == src.resolve():
        raise OutputError(f"refusing to overwrite the input {src.name}")
    why = available()
    if why is not None:
        raise BidsDeidError(why)
    raw = read_raw(src)
    data = raw.first_volume()
    voxel_ml = float(abs(np.linalg.det(raw.affine[:3, :3]))) / 1000.0
    metrics: dict = {}
    t1 = time.perf_counter()
    try:
        mask = brain_mask(data, raw.affine)
    except Exception as exc:  # noqa: BLE001 - any model failure means: not written
        mask = np.zeros(raw.shape3d, bool)
        passed, reason = False, f"brain extraction failed ({type(exc).__name__}: {exc})"
    else:
        passed, reason = True, "ok"
    metrics["model_seconds"] = round(time.perf_counter() - t1, 2)
    n_brain = int(np.count_nonzero(mask))
    volume_ml = n_brain * voxel_ml
    metrics["brain_voxels"] = n_brain
    metrics["brain_volume_ml"] = round(volume_ml, 1)
    if passed and not MIN_BRAIN_ML <= volume_ml <= MAX_BRAIN_ML:
        passed = False
        reason = f"brain mask volume {volume_ml:.0f} ml outside the plausible {MIN_BRAIN_ML:.0f}-{MAX_BRAIN_ML:.0f} ml"
    metrics["removed_voxels"] = raw.zero_voxels(~mask)

    # renderings: the face check always runs, the PNGs only with qc=True
    after = np.where(mask, data, np.float32(0.0))
    views, before_grid, faces_before, faces_after = check_faces(data, after, raw.affine)
    del after
    if faces_after:
        passed, reason = False, face_left_reason(faces_after, "skull stripping", reason)
    qc_images: dict[str, bytes] = {}
    if qc:
        mask_r = render.render_grid(mask.astype(np.float32), raw.affine).data > 0.5
        qc_images = render.qc_images(views, before_grid, mask_r, None)

    if passed:
        atomic_write_bytes(dst, encode(raw, dst))
    metrics["seconds"] = round(time.perf_counter() - t0, 2)
    log.info("%s: %s (%s)", src.name, "skull-stripped" if passed else "NOT written", reason)
    return DefaceResult(passed, reason, metrics, qc_images, faces_before, faces_after)
