"""Skull stripping as a defacing method: keep the brain, zero every other voxel.

The brain mask comes from the embedded brain-extraction networks (:mod:`.brain`, deepbet's
weights as ONNX, run with onnxruntime on CPU) at their trained 256^3 resolution. Like
template defacing, nothing is resampled: the output keeps the input's header bytes, shape,
dtype and affine, and only the stored values of voxels outside the brain mask change (to
raw zero). The image is written only when the brain volume is plausible and the geometric
face check finds no face surface afterwards.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_bytes
from ..errors import OutputError
from . import render
from .brain import brain_mask as _brain_mask
from .pipeline import DefaceResult, verify_faces
from .rawnifti import encode, read_raw

log = logging.getLogger(__name__)

MIN_BRAIN_ML = 800.0  # smallest plausible brain mask (intracranial) volume
MAX_BRAIN_ML = 2200.0  # largest plausible brain mask volume
FINE = 256  # the fine network at the size it was trained at: the mask is the whole output here


def available() -> str | None:
    """Whether skull stripping can run here (always: its networks ship with bids-deid).

    Returns
    -------
    None
    """
    return None


def brain_mask(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Brain mask of a 3D head image, on the image's own voxel grid (256^3 network input)."""
    return _brain_mask(data, affine, fine=FINE)


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
    """
    t0 = time.perf_counter()
    src, dst = Path(src), Path(dst)
    if dst.exists() and dst.resolve() == src.resolve():
        raise OutputError(f"refusing to overwrite the input {src.name}")
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
    checks = verify_faces(data, after, raw.affine)
    faces_before = faces_after = None
    if checks is not None:
        faces_before, faces_after = int(checks[0].face), int(checks[1].face)
        metrics["face_surface_before"], metrics["face_surface_after"] = checks[0].surface, checks[1].surface
    if faces_after:
        passed = False
        reason = f"a face surface is still found after skull stripping ({checks[1].surface:.0%} of its lines of sight)"
    qc_images: dict[str, bytes] = {}
    if qc:
        before_grid = render.render_grid(data, raw.affine)
        views = render.head_views(before_grid, render.render_grid(after, raw.affine))
        mask_r = render.render_grid(mask.astype(np.float32), raw.affine).data > 0.5
        qc_images = render.qc_images(views, before_grid, mask_r, None)
    del after

    if passed:
        atomic_write_bytes(dst, encode(raw, dst))
    metrics["seconds"] = round(time.perf_counter() - t0, 2)
    log.info("%s: %s (%s)", src.name, "skull-stripped" if passed else "NOT written", reason)
    return DefaceResult(passed, reason, metrics, qc_images, faces_before, faces_after)
