"""Deface one NIfTI file: register, mask, check, write (only when every check passes)."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from ..atomic import atomic_write_bytes
from ..errors import OutputError
from . import render
from .brain import brain_mask, brain_mask_upright, tilt_degrees
from .facecheck import face_check
from .gate import assess
from .mask import face_in_image, voxel_map
from .rawnifti import compress, encode, read_raw
from .register import Grid, register, tissue_threshold
from .template import load_template

MIN_SLICES = 8  # fewer stored slices along any axis: too thin to locate a face
MIN_EXTENT_MM = 60.0  # field of view thinner than this along any axis: too small
BRAIN_MARGIN_MM = 3.0  # this head's brain, dilated this much, is never removed (docs/defacing.md)
SEARCH_MM = 25.0  # cut-to-brain distances are measured up to this far
MARGIN_VOXELS = 2.0  # ... and never less than this many voxels (thick slices)
_SLAB_VOXELS = 4_000_000  # voxels of one slab's search box in protect_brain (memory bound)
NEAR_MM = 8.0  # protect_brain looks this far first (exact below it), the whole SEARCH_MM only if needed
MAX_TILT_DEG = 12.0  # a head turned more than this in its voxel axes is segmented on an upright copy

log = logging.getLogger(__name__)


@dataclass
class DefaceResult:
    """Outcome of :func:`deface_file`.

    Attributes
    ----------
    passed : bool
        True when the defaced image was written.
    reason : str
        One line: ``"ok"``, ``"no face in view: written unchanged"``, or why the image was
        not written and what to do next.
    metrics : dict
        Numbers: brain_dice, cut_to_brain_mm, face_surface_before/after, face_voxels,
        face_volume_ml, scale_min/max, metric, seconds, ...
    qc_images : dict
        Name -> PNG bytes (before_front, after_front, before_side, after_side, slices, overlay).
    faces_before : int or None
        1 when the geometric face check finds a face surface in the input, else 0 (None: not run).
    faces_after : int or None
        Same after defacing; a face fails the image.
    """

    passed: bool
    reason: str
    metrics: dict = field(default_factory=dict)
    qc_images: dict = field(default_factory=dict)
    faces_before: int | None = None
    faces_after: int | None = None


def _mask_image(mask: np.ndarray, bbox: tuple[slice, ...], shape: tuple[int, int, int], affine: np.ndarray) -> bytes:
    full = np.zeros(shape, np.uint8)
    full[bbox] = mask
    img = nib.Nifti1Image(full, affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return img.to_bytes()


def verify_faces(before: np.ndarray, after: np.ndarray, affine: np.ndarray, template: str | None = None):
    """The geometric face check on an image before and after some defacing of it.

    Registers the template to ``before`` to know where its face is. Returns the two
    :class:`~bids_deid.deface.facecheck.FaceCheck` results, or None when no head is found.
    """
    tpl = load_template(template)
    reg = register(before, affine, tpl)
    threshold = tissue_threshold(reg.image_grid) if reg.image_grid is not None else None
    if reg.start in ("none", "failed") or threshold is None:
        return None
    return tuple(face_check(tpl, reg.matrix, affine, [before, after], threshold))


def _head_corners(template, matrix: np.ndarray) -> np.ndarray:
    """The template head's box corners, carried into image world (shape (8, 3))."""
    from .mask import template_head

    idx = np.argwhere(template_head(template))
    lo, hi = idx.min(0), idx.max(0)
    corners = np.array([[a, b, c, 1.0] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])]).T
    return (np.linalg.inv(matrix) @ template.affine @ corners)[:3].T


def _too_small(raw) -> str | None:
    """Why an image is too thin or too small to locate a face in, or None."""
    zooms = np.sqrt((raw.affine[:3, :3] ** 2).sum(0))
    extent = np.array(raw.shape3d) * zooms
    if min(raw.shape3d) < MIN_SLICES or float(extent.min()) < MIN_EXTENT_MM:
        dims = "x".join(str(n) for n in raw.shape3d)
        return (
            f"image too thin or small to locate a face ({dims} voxels, {extent.min():.0f} mm across the thinnest axis)"
            ": withheld; check it by eye and share it only if it shows no face"
        )
    return None


def _timed(fn, *args):
    t = time.perf_counter()
    return fn(*args), time.perf_counter() - t


def _ball(radius: float) -> np.ndarray:
    """Every voxel offset within ``radius`` voxels (Euclidean) of the centre."""
    r = int(np.floor(radius))
    g = np.mgrid[-r : r + 1, -r : r + 1, -r : r + 1]
    return (g**2).sum(0) <= radius * radius + 1e-9


def protect_brain(
    face: np.ndarray, bbox: tuple[slice, ...], brain: np.ndarray, affine: np.ndarray, margin_mm: float
) -> tuple[np.ndarray, float]:
    """Take this head's brain, dilated by ``margin_mm``, out of the face mask.

    Parameters
    ----------
    face : ndarray of bool
        Face mask inside ``bbox``.
    bbox : tuple of slice
        Box of the image grid the face mask covers.
    brain : ndarray of bool
        Brain mask on the whole image grid.
    affine : ndarray
        Image voxel to world (for the voxel sizes).
    margin_mm : float

    Returns
    -------
    face : ndarray of bool
        The face mask with every voxel within ``margin_mm`` of the brain, or within
        :data:`MARGIN_VOXELS` voxels of it (for slices thicker than the margin), removed.
    distance : float
        Smallest distance (mm) from a face-mask voxel to the brain (capped at the search
        distance :data:`SEARCH_MM`; ``inf`` for an empty face mask).
    """
    if not face.any():
        return face, float("inf")
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(0))
    # First within a narrow box around the face (distances there are exact below its padding:
    # any brain voxel outside it is farther away); the full search box, which costs ~20 bytes a
    # voxel of memory, only when the cut ends farther from the brain than that padding.
    for pad_mm in (max(NEAR_MM, 2 * margin_mm + 2.0), SEARCH_MM):
        kept, closest = _protect_within(face, bbox, brain, zooms, margin_mm, pad_mm)
        if closest is not None:
            return kept, round(min(closest, SEARCH_MM), 1)
    return kept, SEARCH_MM


def _protect_within(face, bbox, brain, zooms, margin_mm: float, pad_mm: float):
    """(face less the protected brain, closest kept distance in mm or None when not below ``pad_mm``).

    The face box is taken in slabs along its first axis, each with the brain within ``pad`` voxels
    around it: distances below ``pad_mm`` are exact per slab, as for the whole box, and the
    distance transform (~40 bytes a voxel while it runs) never holds more than one slab.
    """
    pad = np.maximum(np.ceil(pad_mm / zooms), np.ceil(MARGIN_VOXELS) + 1).astype(int)
    kept = np.zeros_like(face)
    closest, any_brain = float("inf"), False
    widths = [b.stop - b.start for b in bbox]
    plane = (widths[1] + 2 * pad[1]) * (widths[2] + 2 * pad[2])
    step = max(1, int(_SLAB_VOXELS // max(plane, 1)) - 2 * int(pad[0]))
    for lo in range(bbox[0].start, bbox[0].stop, step):
        part = (slice(lo, min(lo + step, bbox[0].stop)), bbox[1], bbox[2])
        outer = tuple(
            slice(max(0, b.start - p), min(n, b.stop + p)) for b, p, n in zip(part, pad, brain.shape, strict=True)
        )
        sub = brain[outer]
        fpart = face[lo - bbox[0].start : part[0].stop - bbox[0].start]
        if not sub.any():
            kept[lo - bbox[0].start : part[0].stop - bbox[0].start] = fpart
            continue
        any_brain = True
        inner = tuple(slice(b.start - o.start, b.stop - o.start) for b, o in zip(part, outer, strict=True))
        dist = ndi.distance_transform_edt(~sub, sampling=zooms)[inner]
        # thick slices: a margin of a few mm is less than a voxel across them, so the brain's
        # next MARGIN_VOXELS voxels in every direction are kept too (a dilation by the ball of
        # that radius in voxels: the same set as "voxel distance <= MARGIN_VOXELS", much cheaper)
        near = ndi.binary_dilation(sub, structure=_ball(MARGIN_VOXELS))[inner]
        k = fpart & (dist > margin_mm) & ~near
        kept[lo - bbox[0].start : part[0].stop - bbox[0].start] = k
        if k.any():
            closest = min(closest, float(dist[k].min()))
        del dist, near
    if not any_brain:
        return face, None
    return kept, (closest if closest < pad_mm or pad_mm >= SEARCH_MM else None)


def deface_file(
    src: Path,
    dst: Path,
    *,
    template: str | None = None,
    defacemask_path: Path | None = None,
    qc: bool = True,
) -> DefaceResult:
    """Remove the face from a NIfTI image without resampling it, never touching its brain.

    Steps: register the template (affine); carry its face mask into the image grid; estimate
    this head's own brain (:mod:`.brain`) and take it, dilated by :data:`BRAIN_MARGIN_MM`,
    out of the face mask; check the registration against the head's own brain and the
    face surface (:mod:`.facecheck`) before and after; write.

    Parameters
    ----------
    src : Path
        A single-file NIfTI (``.nii``/``.nii.gz``), header already scrubbed.
    dst : Path
        Output path; written atomically and only when every check passes. Same header
        bytes, shape, affine and dtype as ``src``; voxel bytes identical except face voxels
        (raw zero). Gzipped with mtime 0 when the name ends in ``.gz``. An image with no
        face in its field of view is written unchanged (and the reason says so).
    template : str, optional
        Template spec for :func:`~bids_deid.deface.template.load_template`.
    defacemask_path : Path, optional
        Where to write the face mask (uint8, image grid) when the image passes.
    qc : bool
        Produce the QC PNGs (the automated checks run either way).

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
    small = _too_small(raw)
    if small:
        log.info("%s: NOT written (%s)", src.name, small)
        return DefaceResult(False, small, {"seconds": round(time.perf_counter() - t0, 2)})
    data = raw.first_volume()
    # The brain network (onnxruntime, which leaves the interpreter free) runs on the stored grid
    # while the template is registered: the two are independent unless the head turns out to be
    # tilted, when the network runs again on an upright copy (the first mask is then unused).
    with ThreadPoolExecutor(max_workers=1) as pool:
        stored_brain = pool.submit(_timed, brain_mask, data, raw.affine)
        reg = register(data, raw.affine, tpl)
        brain_stored, brain_s = stored_brain.result()
    metrics: dict = {"registration_seconds": round(reg.seconds, 2)}
    grid = reg.image_grid
    threshold = tissue_threshold(grid) if grid is not None else None
    if reg.start in ("none", "failed") or threshold is None:
        reason = "no head found in the image (registration failed): withheld; check the image, or try --deface-method skullstrip"
        metrics["seconds"] = round(time.perf_counter() - t0, 2)
        log.info("%s: NOT written (%s)", src.name, reason)
        return DefaceResult(False, reason, metrics)

    face, bbox = face_in_image(tpl, reg.matrix, raw.affine, raw.shape3d)
    tilt = tilt_degrees(raw.affine, reg.matrix)
    metrics["head_tilt_deg"] = round(tilt, 1)
    if tilt > MAX_TILT_DEG:
        t1 = time.perf_counter()
        own = brain_mask_upright(data, raw.affine, reg.matrix, _head_corners(tpl, reg.matrix))
        brain_s = time.perf_counter() - t1
    else:
        own = brain_stored
    del brain_stored
    metrics["brain_seconds"] = round(brain_s, 2)
    face, cut_mm = protect_brain(face, bbox, own, raw.affine, BRAIN_MARGIN_MM)
    metrics["cut_to_brain_mm"] = cut_mm
    removed = face & (raw.stored_array()[bbox][..., 0] != 0)
    after = data.copy()
    after[bbox][face] = 0.0
    before_chk, after_chk = face_check(tpl, reg.matrix, raw.affine, [data, after], threshold)
    voxel_ml = float(abs(np.linalg.det(raw.affine[:3, :3]))) / 1000.0
    quality = assess(tpl, reg, own, raw.affine, before_chk, after_chk, int(removed.sum()), voxel_ml)
    metrics.update(quality.metrics)
    passed, reason = quality.passed, quality.reason
    if passed and not removed.any():
        reason = "no face in view: written unchanged"
    raw.zero_voxels(face, bbox)

    qc_images: dict[str, bytes] = {}
    if qc:
        before_grid = render.render_grid(data, raw.affine)
        views = render.head_views(before_grid, render.render_grid(after, raw.affine))
        vox = voxel_map(tpl, reg.matrix, before_grid.affine)
        face_full = np.zeros(raw.shape3d, np.float32)
        face_full[bbox] = face
        face_r = render.render_grid(face_full, raw.affine).data > 0.5
        brain_r = render.render_grid(own.astype(np.float32), raw.affine).data > 0.5
        tpl_r = _warp_values(tpl.head, vox, before_grid)
        qc_images = render.qc_images(views, before_grid, face_r, tpl_r, brain_r)
    del after

    if passed:
        atomic_write_bytes(dst, encode(raw, dst))
        if defacemask_path is not None:
            blob = _mask_image(face, bbox, raw.shape3d, raw.affine)
            if str(defacemask_path).endswith(".gz"):
                blob = compress(blob)
            atomic_write_bytes(defacemask_path, blob)
    metrics["seconds"] = round(time.perf_counter() - t0, 2)
    log.info("%s: %s (%s)", src.name, "written" if passed else "NOT written", reason)
    return DefaceResult(passed, reason, metrics, qc_images, int(before_chk.face), int(after_chk.face))


def _warp_values(values: np.ndarray, vox: np.ndarray, grid: Grid) -> np.ndarray:
    from scipy import ndimage as ndi

    return ndi.affine_transform(
        values.astype(np.float32), vox[:3, :3], vox[:3, 3], output_shape=grid.data.shape, order=1, cval=0.0
    )
