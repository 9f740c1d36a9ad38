"""Geometric face check: is there tissue where this head's face surface should be?

The template knows where a face is: for every line of sight from the front (the
template's anterior direction, +y of its world), through the template's face region, the
template's skin point and how deep the face region reaches behind it. The registration
carries those lines into the image. Along each line that lies in the image's field of
view, the check looks for the image's most anterior tissue: a face is there when that
surface lies no more than :data:`BEHIND_SKIN_MM` behind the template's skin (or anywhere
in front of it). After correct defacing the first tissue on each line is the cut surface,
deep behind the skin; on an intact face it is the skin itself.

The result is the share of in-view lines that still meet a face surface
(:attr:`FaceCheck.surface`). Thresholds: ``docs/defacing.md``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .template import Template

log = logging.getLogger(__name__)

SPACING = 2.0  # mm between samples along and across the lines of sight
FRONT_PAD_MM = 24.0  # lines start this far in front of the template's skin
BEHIND_SKIN_MM = 10.0  # a surface no deeper than this behind the template skin is a face surface
MIN_DEPTH_MM = 16.0  # lines whose face region reaches less deep than this behind the skin are not used
MIN_RUN = 2  # consecutive tissue samples that make a surface (a speck of noise in the air does not)
FACE_PRESENT = 0.30  # share of in-view lines meeting a face surface above which a face is found
MIN_LINES = 40  # fewer in-view lines than this: no face in view to judge


@dataclass
class FaceCheck:
    """Outcome of :func:`check`.

    Attributes
    ----------
    surface : float
        Share of the in-view lines of sight that meet a face surface (0..1).
    lines : int
        Lines of sight of the template face in the image's field of view.
    window : int
        All lines of sight of the template face.
    offset_mm : float
        Median distance (mm) of the image's surface from the template skin on the lines that
        meet a face (positive: image surface in front); NaN when none does.
    """

    surface: float
    lines: int
    window: int
    offset_mm: float

    @property
    def in_view(self) -> float:
        """Share of the template face's lines of sight inside the field of view."""
        return self.lines / self.window if self.window else 0.0

    @property
    def judged(self) -> bool:
        """Enough of the face in view to judge it."""
        return self.lines >= MIN_LINES

    @property
    def face(self) -> bool:
        """A face surface is found (only when judged)."""
        return self.judged and self.surface > FACE_PRESENT


@dataclass
class _Window:
    points: np.ndarray  # (n_lines, n_steps, 3) template world coordinates, front first
    skin: np.ndarray  # (n_lines,) step index of the template skin


def _window(template: Template) -> _Window:
    """The template's lines of sight through its face (cached on the template)."""
    if "face_window" in template._cache:
        return template._cache["face_window"]
    from .mask import template_threshold

    face_idx = np.argwhere(template.face)
    lo_w, hi_w = _bounds(template.affine, face_idx)
    lo_w[1] -= 4.0
    hi_w[1] += FRONT_PAD_MM
    xs = np.arange(lo_w[0], hi_w[0] + 1e-6, SPACING)
    ys = np.arange(hi_w[1], lo_w[1] - 1e-6, -SPACING)  # front to back
    zs = np.arange(lo_w[2], hi_w[2] + 1e-6, SPACING)
    gx, gz, gy = np.meshgrid(xs, zs, ys, indexing="ij")  # (x, z, y): lines over (x, z), steps along y
    pts = np.stack([gx, gy, gz], axis=-1).reshape(len(xs) * len(zs), len(ys), 3)
    inv = np.linalg.inv(template.affine)
    vox = pts @ inv[:3, :3].T + inv[:3, 3]
    coords = vox.reshape(-1, 3).T
    head = ndi.map_coordinates(template.head, coords, order=1, cval=0.0).reshape(pts.shape[:2])
    face = ndi.map_coordinates(template.face.astype(np.float32), coords, order=0, cval=0.0).reshape(pts.shape[:2])
    tissue = head > template_threshold(template)
    has = tissue.any(axis=1)
    skin = np.argmax(tissue, axis=1)
    # depth of the face region behind the skin, in samples
    steps = np.arange(len(ys))[None, :]
    behind = (steps >= skin[:, None]) & (face > 0.5)
    # first step at or after the skin that is not face
    not_face = (steps >= skin[:, None]) & ~(face > 0.5)
    end = np.where(not_face.any(axis=1), np.argmax(not_face, axis=1), len(ys))
    depth = (end - skin) * SPACING
    keep = has & (face[np.arange(len(skin)), skin] > 0.5) & (depth >= MIN_DEPTH_MM) & behind.any(axis=1)
    win = _Window(np.ascontiguousarray(pts[keep]), skin[keep])
    template._cache["face_window"] = win
    return win


def _bounds(affine: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    world = idx @ affine[:3, :3].T + affine[:3, 3]
    return world.min(0), world.max(0)


def sample_points(template: Template, matrix: np.ndarray, affine: np.ndarray, shape: tuple[int, int, int]):
    """Image voxel coordinates of the template's lines of sight, and which of them lie in the field of view.

    Parameters
    ----------
    template : Template
    matrix : ndarray
        Image world to template world.
    affine : ndarray
        Image voxel to world.
    shape : tuple of int

    Returns
    -------
    coords : ndarray, shape (3, n_lines * n_steps)
    inside : ndarray of bool, shape (n_lines, n_steps)
    skin : ndarray of int, shape (n_lines,)
    """
    win = _window(template)
    to_vox = np.linalg.inv(affine) @ np.linalg.inv(matrix)
    vox = win.points @ to_vox[:3, :3].T + to_vox[:3, 3]
    lim = np.array(shape, float) - 0.5
    inside = np.all((vox > -0.5) & (vox < lim), axis=-1)
    return vox.reshape(-1, 3).T, inside, win.skin


def check(values: np.ndarray, inside: np.ndarray, skin: np.ndarray, threshold: float) -> FaceCheck:
    """Judge sampled intensities along the lines of sight.

    Parameters
    ----------
    values : ndarray, shape (n_lines, n_steps)
        Image intensities at the sample points (nearest voxel).
    inside : ndarray of bool, same shape
        Sample point inside the field of view.
    skin : ndarray of int
        Template skin step of each line.
    threshold : float
        Tissue threshold of the image (half its Otsu level).

    Returns
    -------
    FaceCheck
    """
    n_lines, n_steps = values.shape
    behind = int(round(BEHIND_SKIN_MM / SPACING))
    rows = np.arange(n_lines)
    deep = np.minimum(skin + behind, n_steps - 1)
    # a line is in view when the template skin and the depth behind it both are
    in_view = inside[rows, skin] & inside[rows, deep]
    tissue = (values > threshold) & inside
    run = tissue.copy()
    for k in range(1, MIN_RUN):
        run[:, :-k] &= tissue[:, k:]
        run[:, -k:] = False
    has = run.any(axis=1)
    first = np.argmax(run, axis=1)
    meets = in_view & has & (first <= deep)
    lines = int(in_view.sum())
    surface = float(meets.sum()) / lines if lines else 0.0
    offset = float(np.median((skin[meets] - first[meets]) * SPACING)) if meets.any() else float("nan")
    return FaceCheck(round(surface, 3), lines, int(n_lines), round(offset, 1) if meets.any() else offset)


def face_check(
    template: Template,
    matrix: np.ndarray,
    affine: np.ndarray,
    volumes: list[np.ndarray],
    threshold: float,
) -> list[FaceCheck]:
    """Run the face check on several volumes of the same grid (e.g. before and after defacing).

    Parameters
    ----------
    template : Template
    matrix : ndarray
        Image world to template world (the registration).
    affine : ndarray
        Image voxel to world.
    volumes : list of ndarray
        3D arrays on the image grid.
    threshold : float
        Tissue threshold (the same for every volume, so that a cut is judged by the input's scale).

    Returns
    -------
    list of FaceCheck
    """
    if not volumes:
        return []
    coords, inside, skin = sample_points(template, matrix, affine, volumes[0].shape)
    ijk = np.clip(np.rint(coords).astype(np.intp), 0, np.array(volumes[0].shape)[:, None] - 1)
    out = []
    for vol in volumes:
        vals = vol[ijk[0], ijk[1], ijk[2]].reshape(inside.shape)
        out.append(check(vals, inside, skin, threshold))
    return out
