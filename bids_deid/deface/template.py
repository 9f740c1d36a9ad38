"""Defacing templates: the embedded ICBM 2009 extended head, TemplateFlow or a user file.

A template is a full head (face included) with a face mask and a brain mask on its grid.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from ..errors import InputError

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "template"
DEFAULT_NAME = "icbm152_2009_ext_head"
PROTECT_MM = 4.0  # the brain mask is dilated this much before it is taken out of the face mask


@dataclass(eq=False)
class Template:
    """A full-head template with face and brain masks on the same grid.

    Attributes
    ----------
    name : str
        Short label (file stem or TemplateFlow ID).
    head : ndarray of float32
        Head intensities.
    face : ndarray of bool
        Region to remove.
    brain : ndarray of bool
        Brain region (never removed).
    affine : ndarray
        Voxel to world matrix shared by the three arrays.
    """

    name: str
    head: np.ndarray
    face: np.ndarray
    brain: np.ndarray
    affine: np.ndarray
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def voxel_ml(self) -> float:
        """Volume of one voxel in ml."""
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    @property
    def protected_brain(self) -> np.ndarray:
        """Brain mask dilated by :data:`PROTECT_MM` (cached; computed around the face only)."""
        if "protect" not in self._cache:
            zooms = np.sqrt((self.affine[:3, :3] ** 2).sum(0))
            out = np.zeros(self.brain.shape, bool)
            idx = np.argwhere(self.face)
            if idx.size:
                margin = (np.ceil(PROTECT_MM / zooms) + 1).astype(int)
                lo = np.maximum(idx.min(0) - margin, 0)
                hi = np.minimum(idx.max(0) + margin + 1, self.brain.shape)
                box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
                sub = self.brain[box]
                if sub.any():
                    out[box] = ndi.distance_transform_edt(~sub, sampling=zooms) <= PROTECT_MM
            self._cache["protect"] = out
        return self._cache["protect"]

    @property
    def face_protected(self) -> np.ndarray:
        """Face mask minus the dilated brain mask (cached)."""
        if "face" not in self._cache:
            self._cache["face"] = self.face & ~self.protected_brain
        return self._cache["face"]


def _load_mask(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    img = nib.load(str(path))
    arr = np.asarray(img.dataobj)
    if arr.shape[:3] != tuple(shape[:3]):
        raise InputError(f"template mask {path.name} does not match the template grid")
    return arr.reshape(arr.shape[:3]) > 0.5


def _from_files(name: str, head_path: Path, face_path: Path, brain_path: Path) -> Template:
    for p in (head_path, face_path, brain_path):
        if not p.is_file():
            raise InputError(f"template file missing: {p.name}")
    img = nib.load(str(head_path))
    head = np.asarray(img.dataobj, dtype=np.float32)
    head = head.reshape(head.shape[:3])
    face = _load_mask(face_path, head.shape)
    brain = _load_mask(brain_path, head.shape)
    if not face.any() or not brain.any():
        raise InputError(f"template {name}: empty face or brain mask")
    return Template(name=name, head=head, face=face, brain=brain, affine=img.affine.astype(float))


def _strip_nii(path: Path) -> str:
    name = path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    raise InputError(f"template must be a .nii or .nii.gz file: {path.name}")


def _templateflow(spec: str) -> Template:
    home = os.environ.get("TEMPLATEFLOW_HOME") or str(Path.home() / ".cache" / "templateflow")
    folder = Path(home) / spec
    if not folder.is_dir():
        raise InputError(f"TemplateFlow template {spec} not found under TEMPLATEFLOW_HOME (offline use only)")
    # prefer the T1w head at the coarsest resolution on disk; masks: desc-brain_mask and a face mask
    heads = sorted(folder.glob(f"{spec}_res-*_T1w.nii.gz")) or sorted(folder.glob(f"{spec}_T1w.nii.gz"))
    for head in reversed(heads):
        stem = _strip_nii(head)[: -len("_T1w")]
        brain = head.with_name(f"{stem}_desc-brain_mask.nii.gz")
        face = head.with_name(f"{stem}_desc-face_mask.nii.gz")
        if not face.is_file():
            face = head.with_name(f"{_strip_nii(head)}_facemask.nii.gz")
        if brain.is_file() and face.is_file():
            return _from_files(spec, head, face, brain)
    raise InputError(f"TemplateFlow template {spec}: no T1w head with brain and face masks on disk")


@functools.lru_cache(maxsize=4)
def _cached(spec: str | None) -> Template:
    if spec is None or spec in ("", "default", DEFAULT_NAME):
        base = DATA_DIR / DEFAULT_NAME
        return _from_files(
            DEFAULT_NAME,
            Path(f"{base}.nii.gz"),
            Path(f"{base}_facemask.nii.gz"),
            Path(f"{base}_brainmask.nii.gz"),
        )
    path = Path(spec)
    if spec.endswith((".nii", ".nii.gz")):
        stem = _strip_nii(path)
        return _from_files(
            stem, path, path.with_name(f"{stem}_facemask.nii.gz"), path.with_name(f"{stem}_brainmask.nii.gz")
        )
    if spec.startswith("tpl-") or spec.replace("_", "").isalnum():
        tid = spec if spec.startswith("tpl-") else f"tpl-{spec}"
        return _templateflow(tid)
    raise InputError(f"unknown template: {spec}")


def load_template(spec: str | None = None) -> Template:
    """Load a defacing template.

    Parameters
    ----------
    spec : str or None
        ``None`` (or ``"default"``) for the embedded ICBM 2009 extended head; a path to a
        ``.nii``/``.nii.gz`` head with ``<name>_facemask.nii.gz`` and
        ``<name>_brainmask.nii.gz`` beside it; or a TemplateFlow ID (``tpl-XXX`` or
        ``XXX``) whose files are already under ``$TEMPLATEFLOW_HOME`` (never downloaded).

    Returns
    -------
    Template

    Raises
    ------
    InputError
        If the template or one of its masks cannot be found or read.
    """
    return _cached(None if spec is None else str(spec))


def demo_head() -> nib.Nifti1Image:
    """A realistic full-head T1w-like image with a face, for demos and tests.

    The embedded template's voxels stored in LPS order (x and y flipped), rotated 12
    degrees about the left-right axis and 5 degrees about the vertical axis and shifted,
    so a defacer really has to register it.

    Returns
    -------
    nibabel.Nifti1Image
        uint8 image, 1.6 mm voxels, oblique affine.
    """
    base = DATA_DIR / f"{DEFAULT_NAME}.nii.gz"
    img = nib.load(str(base))
    data = np.asarray(img.dataobj).astype(np.uint8)
    data = np.ascontiguousarray(data[::-1, ::-1, :])
    nx, ny, _ = data.shape
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[0, 3] = nx - 1
    flip[1, 3] = ny - 1
    affine = img.affine @ flip
    pitch, yaw = np.deg2rad(12.0), np.deg2rad(5.0)
    rx = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    move = np.eye(4)
    move[:3, :3] = rz @ rx
    move[:3, 3] = [4.0, -7.0, 10.0]
    affine = move @ affine
    out = nib.Nifti1Image(data, affine)
    out.header.set_xyzt_units("mm")
    out.set_qform(affine, code=1)
    out.set_sform(affine, code=1)
    return out
