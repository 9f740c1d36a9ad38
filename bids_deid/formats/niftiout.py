"""Write a freshly built NIfTI-1 image (no text, no extensions) atomically as ``.nii.gz``.

Used by the format converters (Analyze, MINC, PAR/REC): the output header is built
by nibabel from the voxel array and the affine only, so nothing of the source
header's free text can travel into it.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..atomic import atomic_open

if TYPE_CHECKING:
    import nibabel as nib


def clean_nifti(data: np.ndarray, affine: np.ndarray, zooms: tuple[float, ...] | None = None,
                slope: float | None = None, inter: float | None = None) -> nib.Nifti1Image:
    """A NIfTI-1 image with only geometry, data type and scaling set.

    Parameters
    ----------
    data : ndarray
        Voxel values (stored with their own dtype).
    affine : ndarray
        4x4 voxel-to-world (RAS+ mm) matrix; used as both qform and sform.
    zooms : tuple of float, optional
        Voxel sizes (and TR for 4D); default from the affine.
    slope, inter : float, optional
        Scaling stored in the header (``scl_slope``/``scl_inter``).

    Returns
    -------
    nibabel.Nifti1Image
    """
    import nibabel as nib
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.asarray(data).dtype)
    img = nib.Nifti1Image(np.asarray(data), np.asarray(affine, dtype=float), hdr)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    if zooms is not None:
        z = list(img.header.get_zooms())
        for i, v in enumerate(zooms[: len(z)]):
            z[i] = float(v)
        img.header.set_zooms(tuple(z))
    img.header.set_xyzt_units("mm", "sec")
    if slope is not None:
        img.header["scl_slope"] = slope
        img.header["scl_inter"] = inter or 0.0
    return img


def write_nifti_gz(img: nib.Nifti1Image, dst: Path) -> Path:
    """Write ``img`` to ``dst`` (``.nii.gz``; gzip mtime 0, no name in the gzip header), atomically."""
    dst = Path(dst)
    raw = img.to_bytes()
    with atomic_open(dst, "wb") as fh, gzip.GzipFile(filename="", fileobj=fh, mode="wb", mtime=0, compresslevel=6) as gz:
        gz.write(raw)
    return dst
