"""The quality gate: write a defaced image only when its face region really sits on its face.

A real head differs from the template (neck cut, long neck, big ventricles, lesions, a
frame), so the gate does not ask how template-like the image is. It asks whether the
registration put the template's brain on this head's own brain, and its face on this
head's face, and whether a face surface is still there after defacing. Every threshold was
set on real heads and perturbed copies of them, and checked on others: see
``docs/defacing.md``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .facecheck import FaceCheck
from .mask import voxel_map, warp_mask
from .register import Registration, to_ras_grid
from .template import Template

log = logging.getLogger(__name__)

SCALE_RANGE = (0.75, 1.35)  # singular values of the linear part (image to template)
MIN_BRAIN_DICE = 0.82  # the template brain carried into the image vs this head's own brain (in view)
SURE_BRAIN_DICE = 0.87  # below this, a face must also be found where the template puts it (when in view)
MIN_BRAIN_ML = 150.0  # less own brain in view than this: the image is not a head the gate can judge
MAX_FACE_AFTER = 0.05  # share of the face's lines of sight that may still meet a face surface after defacing

SKULLSTRIP = "try --deface-method skullstrip"


@dataclass
class Quality:
    """Numbers the quality gate looks at, and its verdict.

    Attributes
    ----------
    passed : bool
    reason : str
    metrics : dict
    """

    passed: bool
    reason: str
    metrics: dict


def brain_agreement(template: Template, reg: Registration, own: np.ndarray, affine: np.ndarray) -> tuple[float, float]:
    """Dice of the carried template brain and this head's own brain on the 2 mm grid, in view.

    Returns
    -------
    dice : float
    own_ml : float
        Volume of the own brain in view (ml).
    """
    grid = reg.image_grid
    own_g = to_ras_grid(own.astype(np.float32), affine, grid.spacing, with_fov=False).data > 0.5
    vox = voxel_map(template, reg.matrix, grid.affine)
    tpl_b = warp_mask(template.brain, vox, grid.data.shape) & grid.fov
    own_g &= grid.fov
    inter = float((tpl_b & own_g).sum())
    dice = 2.0 * inter / max(1.0, float(tpl_b.sum() + own_g.sum()))
    return dice, float(own_g.sum()) * grid.spacing**3 / 1000.0


def assess(
    template: Template,
    reg: Registration,
    own: np.ndarray,
    affine: np.ndarray,
    before: FaceCheck,
    after: FaceCheck,
    removed_voxels: int,
    voxel_ml: float,
) -> Quality:
    """Judge a defacing; on failure the image must not be written.

    Parameters
    ----------
    template : Template
    reg : Registration
    own : ndarray of bool
        This head's own brain mask (image grid).
    affine : ndarray
        Image voxel to world.
    before, after : FaceCheck
        The face check on the input and on the defaced volume.
    removed_voxels : int
        Voxels with signal that defacing sets to zero.
    voxel_ml : float

    Returns
    -------
    Quality
    """
    lin = reg.matrix[:3, :3]
    sv = np.linalg.svd(lin, compute_uv=False)
    dice, own_ml = brain_agreement(template, reg, own, affine)
    metrics: dict = {
        "metric": round(reg.metric, 4),
        "start": reg.start,
        "scale_min": round(float(sv.min()), 3),
        "scale_max": round(float(sv.max()), 3),
        "brain_dice": round(dice, 3),
        "brain_in_view_ml": round(own_ml, 1),
        "face_voxels": int(removed_voxels),
        "face_volume_ml": round(removed_voxels * voxel_ml, 1),
        "face_lines_in_view": round(before.in_view, 3),
        "face_surface_before": before.surface,
        "face_surface_after": after.surface,
        "skin_offset_mm": before.offset_mm,
    }
    problems = []
    if not (SCALE_RANGE[0] <= sv.min() and sv.max() <= SCALE_RANGE[1]):
        problems.append(
            f"implausible scaling {sv.min():.2f}-{sv.max():.2f} (check the voxel sizes in the header; {SKULLSTRIP})"
        )
    if own_ml < MIN_BRAIN_ML:
        problems.append(f"no brain found in view ({own_ml:.0f} ml): check the image is a head MRI; {SKULLSTRIP}")
    elif dice < MIN_BRAIN_DICE:
        problems.append(
            f"template misplaced: its brain overlaps this head's brain with Dice {dice:.2f} < {MIN_BRAIN_DICE}"
            f" (check the orientation in the header, or {SKULLSTRIP})"
        )
    elif before.judged and not before.face and dice < SURE_BRAIN_DICE:
        problems.append(
            f"face region misplaced: no face surface where the template puts it ({before.surface:.0%} of its lines"
            f" of sight) and a loose brain fit (Dice {dice:.2f}); check the orientation in the header, or {SKULLSTRIP}"
        )
    if after.judged and after.surface > MAX_FACE_AFTER:
        problems.append(
            f"a face surface is still found after defacing ({after.surface:.0%} of the face's lines of sight)"
            f": check the QC page, or {SKULLSTRIP}"
        )
    if problems:
        return Quality(False, "withheld: " + "; ".join(problems), metrics)
    return Quality(True, "ok", metrics)
