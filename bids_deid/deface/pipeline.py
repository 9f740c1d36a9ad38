"""Deface one NIfTI file: register, mask, check, write (only when every check passes)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from ..atomic import atomic_write_bytes
from ..errors import OutputError
from . import facecheck, render
from .mask import assess, brain_overlap, face_in_image, voxel_map, warp_mask
from .rawnifti import compress, encode, read_raw
from .register import Grid, register
from .template import load_template

log = logging.getLogger(__name__)


@dataclass
class DefaceResult:
    """Outcome of :func:`deface_file`.

    Attributes
    ----------
    passed : bool
        True when the defaced image was written.
    reason : str
        One line: ``"ok"`` or why the image was not written.
    metrics : dict
        Numbers: metric, face_voxels, face_volume_ml, brain_overlap_voxels, head_dice,
        brain_in_head, seconds, ...
    qc_images : dict
        Name -> PNG bytes (before_front, after_front, before_side, after_side, slices, overlay).
    faces_before : int or None
        Faces the detector found on the frontal rendering before defacing (None: no detector).
    faces_after : int or None
        Same after defacing; any face fails the image.
    """

    passed: bool
    reason: str
    metrics: dict = field(default_factory=dict)
    qc_images: dict = field(default_factory=dict)
    faces_before: int | None = None
    faces_after: int | None = None


def check_faces(before: np.ndarray, after: np.ndarray, affine: np.ndarray):
    """Render both volumes and run the face detector on the frontal views.

    Returns (views, before_grid, faces_before, faces_after); counts are None without a detector.
    """
    before_grid = render.render_grid(before, affine)
    views = render.head_views(before_grid, render.render_grid(after, affine))
    return views, before_grid, facecheck.count_faces(views["before_front"]), facecheck.count_faces(views["after_front"])


def face_left_reason(faces_after: int, what: str, reason: str) -> str:
    """The gate's reason when the detector still sees a face after ``what``."""
    return f"face detector still finds {faces_after} face(s) after {what}" + ("" if reason == "ok" else f"; {reason}")


def _mask_image(mask: np.ndarray, bbox: tuple[slice, ...], shape: tuple[int, int, int], affine: np.ndarray) -> bytes:
    full = np.zeros(shape, np.uint8)
    full[bbox] = mask
    img = nib.Nifti1Image(full, affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return img.to_bytes()


def deface_file(
    src: Path,
    dst: Path,
    *,
    template: str | None = None,
    defacemask_path: Path | None = None,
    qc: bool = True,
) -> DefaceResult:
    """Remove the face from a NIfTI image without resampling it.

    Parameters
    ----------
    src : Path
        A single-file NIfTI (``.nii``/``.nii.gz``), header already scrubbed.
    dst : Path
        Output path; written atomically and only when every check passes. Same header
        bytes, shape, affine and dtype as ``src``; voxel bytes identical except face voxels
        (raw zero). Gzipped with mtime 0 when the name ends in ``.gz``.
    template : str, optional
        Template spec for :func:`~bids_deid.deface.template.load_template`.
    defacemask_path : Path, optional
        Where to write the face mask (uint8, image grid) when the image passes.
    qc : bool
        Produce the QC PNGs (the automated face check runs either way).

    Returns
    -------
    DefaceResult

    Raises
    ------
    InputError
        When ``src`` is not a readable single-file NIfTI or the template cannot be loaded.
    OutputError
        When ``dst`` is ``src``.
    """
    t0 = time.perf_counter()
    src, dst = Path(src), Path(dst)
    if dst.exists() and dst.resolve() == src.resolve():
        raise OutputError(f"refusing to overwrite the input {src.name}")
    tpl = load_template(template)
    raw = read_raw(src)
    data = raw.first_volume()
    reg = register(data, raw.affine, tpl)
    face, bbox = face_in_image(tpl, reg.matrix, raw.affine, raw.shape3d)
    overlap = brain_overlap(tpl, reg.matrix, reg.image_grid) if reg.image_grid is not None else 0
    voxel_ml = float(abs(np.linalg.det(raw.affine[:3, :3]))) / 1000.0
    quality = assess(tpl, reg, int(face.sum()), voxel_ml)
    metrics = dict(quality.metrics)
    metrics["brain_overlap_voxels"] = overlap
    metrics["registration_seconds"] = round(reg.seconds, 2)
    passed, reason = quality.passed, quality.reason
    if overlap > 0:
        passed, reason = False, f"face mask touches the brain ({overlap} voxels)"
    raw.zero_voxels(face, bbox)

    # renderings: the face check always runs, the PNGs only with qc=True
    after = data.copy()
    after[bbox][face] = 0.0
    views, before_grid, faces_before, faces_after = check_faces(data, after, raw.affine)
    del after
    vox = voxel_map(tpl, reg.matrix, before_grid.affine)
    if faces_after:
        passed, reason = False, face_left_reason(faces_after, "defacing", reason)
    qc_images: dict[str, bytes] = {}
    if qc:
        face_r = warp_mask(tpl.face_protected, vox, before_grid.data.shape)
        tpl_r = _warp_values(tpl.head, vox, before_grid)
        qc_images = render.qc_images(views, before_grid, face_r, tpl_r)

    if passed:
        atomic_write_bytes(dst, encode(raw, dst))
        if defacemask_path is not None:
            blob = _mask_image(face, bbox, raw.shape3d, raw.affine)
            if str(defacemask_path).endswith(".gz"):
                blob = compress(blob)
            atomic_write_bytes(defacemask_path, blob)
    metrics["seconds"] = round(time.perf_counter() - t0, 2)
    log.info("%s: %s (%s)", src.name, "defaced" if passed else "NOT written", reason)
    return DefaceResult(passed, reason, metrics, qc_images, faces_before, faces_after)


def _warp_values(values: np.ndarray, vox: np.ndarray, grid: Grid) -> np.ndarray:
    from scipy import ndimage as ndi

    return ndi.affine_transform(
        values.astype(np.float32), vox[:3, :3], vox[:3, 3], output_shape=grid.data.shape, order=1, cval=0.0
    )
