"""Register the template head to an image with SimpleITK (rigid, then affine).

Both images are first resampled (for registration only) onto axis-aligned RAS grids at
2 mm, so any stored orientation, oblique or even sheared affine is handled by the
resampling and SimpleITK only ever sees identity directions. World coordinates (RAS mm)
are used as SimpleITK physical coordinates throughout; the result is a 4x4 matrix that
maps image world coordinates to template world coordinates.

Initialisation: head centres of mass (and, for a field of view cut below the face, the
centre of the part of the template head that the image can hold), times a few start
rotations about the left-right axis, each scored by a short rigid run; the best start
goes through multi-resolution rigid then affine Mattes mutual information, which works
across contrasts (T1w, T2w, FLAIR, PDw).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from .template import Template

log = logging.getLogger(__name__)

REG_SPACING = 2.0  # mm, finest registration grid (coarsest level is 4 mm)
START_PITCHES = (0.0, -22.0, 22.0)  # degrees about the left-right axis
SEED = 20240611
_ITK_LOCK = threading.Lock()


@dataclass
class Grid:
    """An image resampled onto an axis-aligned RAS grid (identity directions).

    Attributes
    ----------
    data : ndarray of float32
    affine : ndarray
        Grid voxel to world matrix (diagonal spacing plus origin).
    fov : ndarray of bool
        True where the grid point lies inside the source image's field of view.
    """

    data: np.ndarray
    affine: np.ndarray
    fov: np.ndarray

    @property
    def spacing(self) -> float:
        """Isotropic spacing in mm."""
        return float(self.affine[0, 0])

    def world(self, mask: np.ndarray) -> np.ndarray:
        """World coordinates of the True voxels of ``mask``, shape (n, 3)."""
        ijk = np.argwhere(mask).astype(float)
        return ijk * self.spacing + self.affine[:3, 3]


@dataclass
class Registration:
    """Result of :func:`register`.

    Attributes
    ----------
    matrix : ndarray
        4x4, image world (RAS mm) to template world.
    metric : float
        Final Mattes mutual information (negative; lower is better) at 2 mm.
    start : str
        Which start won.
    starts : dict
        Start label to its short-run metric.
    seconds : float
    image_grid : Grid
        The 2 mm RAS grid of the image (reused by the quality checks).
    """

    matrix: np.ndarray
    metric: float
    start: str
    starts: dict = field(default_factory=dict)
    seconds: float = 0.0
    image_grid: Grid | None = None


def block_mean(data: np.ndarray, affine: np.ndarray, target: float) -> tuple[np.ndarray, np.ndarray]:
    """Average blocks of voxels so each axis gets close to ``target`` mm (never finer than stored).

    Parameters
    ----------
    data : ndarray
        3D array.
    affine : ndarray
        Its voxel to world matrix.
    target : float
        Wanted voxel size in mm.

    Returns
    -------
    data, affine
        Block-averaged float32 array and its affine.
    """
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(0))
    factors = [max(1, int(np.floor(target / z + 1e-6))) for z in zooms]
    if all(f == 1 for f in factors):
        return data.astype(np.float32, copy=False), affine
    shp = [s // f for s, f in zip(data.shape, factors, strict=True)]
    cut = data[: shp[0] * factors[0], : shp[1] * factors[1], : shp[2] * factors[2]]
    out = cut.reshape(shp[0], factors[0], shp[1], factors[1], shp[2], factors[2]).mean(axis=(1, 3, 5), dtype=np.float32)
    scale = np.eye(4)
    scale[:3, :3] = np.diag(factors)
    scale[:3, 3] = (np.array(factors) - 1) / 2.0
    return out.astype(np.float32, copy=False), affine @ scale


def to_ras_grid(data: np.ndarray, affine: np.ndarray, spacing: float, order: int = 1, with_fov: bool = True) -> Grid:
    """Resample a 3D array onto an axis-aligned RAS grid covering its world bounding box.

    Parameters
    ----------
    data : ndarray
    affine : ndarray
        Voxel to world matrix of ``data`` (any orientation, oblique or sheared).
    spacing : float
        Output isotropic spacing in mm.
    order : int
        Interpolation order.
    with_fov : bool
        Compute the field-of-view mask (else it is all True).

    Returns
    -------
    Grid
    """
    small, small_aff = block_mean(data, affine, spacing)
    n = np.array(data.shape[:3]) - 1
    corners = np.array([[i, j, k, 1.0] for i in (0, n[0]) for j in (0, n[1]) for k in (0, n[2])]).T
    world = (affine @ corners)[:3]
    lo, hi = world.min(1), world.max(1)
    shape = tuple(int(np.ceil((h - lo_) / spacing)) + 1 for lo_, h in zip(lo, hi, strict=True))
    grid_aff = np.eye(4)
    grid_aff[:3, :3] *= spacing
    grid_aff[:3, 3] = lo
    vox = np.linalg.inv(small_aff) @ grid_aff
    out = ndi.affine_transform(
        small, vox[:3, :3], vox[:3, 3], output_shape=shape, order=order, mode="constant", cval=0.0
    )
    if not with_fov:
        return Grid(out.astype(np.float32, copy=False), grid_aff, np.ones(shape, bool))
    # field of view in the source (stored) voxel space, using the full-resolution grid
    full = np.linalg.inv(affine) @ grid_aff
    idx = np.indices(shape, dtype=np.float32).reshape(3, -1)
    src = full[:3, :3].astype(np.float32) @ idx + full[:3, 3:].astype(np.float32)
    fov = np.all((src > -0.5) & (src < (np.array(data.shape[:3])[:, None] - 0.5)), axis=0).reshape(shape)
    return Grid(out.astype(np.float32, copy=False), grid_aff, fov)


def otsu(values: np.ndarray, bins: int = 128) -> float:
    """Otsu threshold of ``values``.

    Parameters
    ----------
    values : ndarray
    bins : int

    Returns
    -------
    float
    """
    values = values[np.isfinite(values)]
    hist, edges = np.histogram(values, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist).astype(float)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centers[int(np.argmax(between))])


def tissue_threshold(grid: Grid) -> float | None:
    """Head tissue threshold of a grid: half the Otsu level of its clipped intensities (None: blank image)."""
    inside = grid.data[grid.fov]
    if inside.size == 0 or not np.any(inside > 0):
        return None
    hi = np.percentile(inside[inside > 0], 99.5)
    return 0.5 * otsu(np.clip(inside, 0, hi))


def head_mask(grid: Grid) -> np.ndarray:
    """Head (non-background) mask of a grid: Otsu on the clipped intensities, largest component.

    Parameters
    ----------
    grid : Grid

    Returns
    -------
    ndarray of bool
    """
    data = grid.data
    thr = tissue_threshold(grid)
    if thr is None:
        return np.zeros(data.shape, bool)
    mask = (data > thr) & grid.fov
    mask = ndi.binary_opening(mask, iterations=1)
    labels, n = ndi.label(mask)
    if n > 1:
        sizes = ndi.sum(mask, labels, range(1, n + 1))
        mask = labels == (1 + int(np.argmax(sizes)))
    return mask


def _sitk(grid: Grid, data: np.ndarray | None = None) -> sitk.Image:
    arr = grid.data if data is None else data
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))
    img.SetSpacing([grid.spacing] * 3)
    img.SetOrigin([float(v) for v in grid.affine[:3, 3]])
    return img


def _matrix(tx: sitk.Transform) -> np.ndarray:
    """4x4 matrix of a SimpleITK Euler3D or affine transform."""
    a = np.array(tx.GetMatrix()).reshape(3, 3)
    c = np.array(tx.GetCenter())
    t = np.array(tx.GetTranslation())
    out = np.eye(4)
    out[:3, :3] = a
    out[:3, 3] = c + t - a @ c
    return out


def _method(
    fixed_mask: sitk.Image, iterations: int, sampling: float, max_step_mm: float
) -> sitk.ImageRegistrationMethod:
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(sampling, SEED)
    reg.SetMetricFixedMask(fixed_mask)
    # gradients on the fly: no whole-image gradient filter per run (it dominated short runs)
    reg.MetricUseFixedImageGradientFilterOff()
    reg.MetricUseMovingImageGradientFilterOff()
    reg.SetInterpolator(sitk.sitkLinear)
    # the first step moves no point more than max_step_mm; later steps shrink on reversals
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0,
        minStep=1e-4,
        numberOfIterations=iterations,
        relaxationFactor=0.6,
        gradientMagnitudeTolerance=1e-6,
        estimateLearningRate=reg.Once,
        maximumStepSizeInPhysicalUnits=max_step_mm,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    return reg


def _run(reg: sitk.ImageRegistrationMethod, tx: sitk.Transform, fixed: sitk.Image, moving: sitk.Image) -> float | None:
    reg.SetInitialTransform(tx, inPlace=True)
    try:
        reg.Execute(fixed, moving)
    except RuntimeError as exc:  # e.g. too few samples in the overlap
        log.debug("registration run failed: %s", exc)
        return None
    return float(reg.GetMetricValue())


def _coarse(img: sitk.Image) -> sitk.Image:
    return sitk.Shrink(sitk.SmoothingRecursiveGaussian(img, 2.0), [2, 2, 2])


def _clip(grid: Grid, mask: np.ndarray) -> np.ndarray:
    vals = grid.data[mask]
    hi = np.percentile(vals, 99.5) if vals.size else 1.0
    return np.clip(grid.data, 0, hi).astype(np.float32)


def template_grid(template: Template) -> tuple[Grid, np.ndarray]:
    """The template's 2 mm RAS grid and head mask (cached on the template)."""
    if "grid" not in template._cache:
        grid = to_ras_grid(template.head, template.affine, REG_SPACING)
        template._cache["grid"] = (grid, head_mask(grid))
    return template._cache["grid"]


def register(data: np.ndarray, affine: np.ndarray, template: Template) -> Registration:
    """Register ``template`` to a 3D image, on one thread (see :func:`_register`)."""
    # ITK adds up the metric of several threads in an order that varies from run to run: the
    # same head registered twice landed up to 0.0005 apart in the matrix, and a rerun of a 0.7 mm
    # head published 130 voxels differently. One thread gives the same bytes every time; the
    # brain network runs on the other core meanwhile (deface_file).
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    with _ITK_LOCK:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
        try:
            return _register(data, affine, template)
        finally:
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


def _register(data: np.ndarray, affine: np.ndarray, template: Template) -> Registration:
    """Register ``template`` to a 3D image.

    Parameters
    ----------
    data : ndarray
        Image intensities (first volume, float).
    affine : ndarray
        Voxel to world matrix of ``data``.
    template : Template

    Returns
    -------
    Registration
    """
    t0 = time.perf_counter()
    tgrid, thead = template_grid(template)
    igrid = to_ras_grid(data, affine, REG_SPACING)
    ihead = head_mask(igrid)
    if ihead.sum() < 100:
        return Registration(np.eye(4), 0.0, "none", {}, time.perf_counter() - t0, igrid)
    fixed = _sitk(igrid, _clip(igrid, ihead))
    moving = _sitk(tgrid, _clip(tgrid, thead))
    fmask = _sitk(igrid, ndi.binary_dilation(ihead, iterations=3).astype(np.uint8))
    fixed4, moving4 = _coarse(fixed), _coarse(moving)
    fmask4 = sitk.Resample(fmask, fixed4, sitk.Transform(), sitk.sitkNearestNeighbor)

    c_img = igrid.world(ihead).mean(0)
    tw = tgrid.world(thead)
    iw = igrid.world(ihead)
    centres = {"com": tw.mean(0)}
    # field of view cut: keep the template's head from its top down to the image's head extent
    extent = iw[:, 2].max() - iw[:, 2].min()
    keep = tw[:, 2] >= tw[:, 2].max() - extent
    cut = tw[keep].mean(0)
    if np.linalg.norm(cut - centres["com"]) > 8.0:
        centres["top"] = cut

    starts: dict[str, float] = {}
    best = None
    for cname, c_tpl in centres.items():
        for pitch in START_PITCHES:
            tx = sitk.Euler3DTransform()
            tx.SetCenter([float(v) for v in c_img])
            tx.SetRotation(float(np.deg2rad(pitch)), 0.0, 0.0)
            tx.SetTranslation([float(v) for v in (c_tpl - c_img)])
            value = _run(_method(fmask4, 20, 0.3, 6.0), tx, fixed4, moving4)
            if value is None:
                continue
            label = f"{cname}{pitch:+.0f}"
            starts[label] = value
            if best is None or value < best[0]:
                best = (value, label, tx)
    if best is None:
        return Registration(np.eye(4), 0.0, "failed", starts, time.perf_counter() - t0, igrid)

    _, label, rigid = best
    _run(_method(fmask4, 40, 0.3, 3.0), rigid, fixed4, moving4)
    aff = sitk.AffineTransform(3)
    aff.SetCenter(rigid.GetCenter())
    aff.SetMatrix(rigid.GetMatrix())
    aff.SetTranslation(rigid.GetTranslation())
    final: sitk.Transform = aff
    if _run(_method(fmask4, 60, 0.3, 2.0), aff, fixed4, moving4) is None:
        final = rigid
    elif _run(_method(fmask, 12, 0.04, 1.0), aff, fixed, moving) is None:
        final = rigid
    ev = sitk.ImageRegistrationMethod()
    ev.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    ev.SetMetricSamplingStrategy(ev.RANDOM)
    ev.SetMetricSamplingPercentage(0.3, SEED)
    ev.SetMetricFixedMask(fmask4)
    ev.SetInterpolator(sitk.sitkLinear)
    ev.SetInitialTransform(final)
    try:
        metric = float(ev.MetricEvaluate(fixed4, moving4))
    except RuntimeError:
        metric = 0.0
    return Registration(_matrix(final), metric, label, starts, time.perf_counter() - t0, igrid)
