"""Read and write single-file NIfTI (.nii / .nii.gz) at the byte level.

Defacing must not resample, reorient or retype an image: the output keeps the input's
header and extension bytes verbatim and only the stored values of face voxels change
(to raw zero). This module splits a file into (header bytes, voxel bytes, trailing bytes)
and puts it back together.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import InputError

log = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class RawNifti:
    """A single-file NIfTI split into its byte parts.

    Attributes
    ----------
    prefix : bytes
        Header and extensions, everything before ``vox_offset`` (kept verbatim).
    voxels : bytearray
        The stored voxel bytes (modified in place by :meth:`zero_voxels`).
    suffix : bytes
        Bytes after the voxel block, if any (kept verbatim).
    header : nibabel header
        Parsed header (read only use).
    shape : tuple of int
    dtype : numpy.dtype
        Stored dtype, with the file's byte order.
    affine : ndarray
        Voxel to world (RAS mm) matrix chosen as nibabel does (sform, else qform).
    """

    prefix: bytes
    voxels: bytearray
    suffix: bytes
    header: nib.Nifti1Header
    shape: tuple[int, ...]
    dtype: np.dtype
    affine: np.ndarray

    @property
    def shape3d(self) -> tuple[int, int, int]:
        """The first three dimensions (the spatial grid)."""
        s = tuple(self.shape) + (1, 1, 1)
        return (int(s[0]), int(s[1]), int(s[2]))

    @property
    def n_volumes(self) -> int:
        """Number of 3D volumes stored (product of dimensions beyond the third)."""
        return int(np.prod(self.shape[3:])) if len(self.shape) > 3 else 1

    def stored_array(self) -> np.ndarray:
        """The stored values as an array view, Fortran order, shape ``shape3d + (n_volumes,)``."""
        arr = np.frombuffer(self.voxels, dtype=self.dtype)
        return arr.reshape(self.shape3d + (self.n_volumes,), order="F")

    def first_volume(self) -> np.ndarray:
        """First 3D volume as float32, scaled by slope/intercept when they are set."""
        vol = self.stored_array()[..., 0]
        if np.iscomplexobj(vol):
            vol = np.abs(vol)
        out = vol.astype(np.float32)
        slope, inter = self.header.get_slope_inter()
        if slope is not None and np.isfinite(slope) and slope != 0 and slope != 1:
            out *= np.float32(slope)
        if inter is not None and np.isfinite(inter) and inter != 0:
            out += np.float32(inter)
        return np.nan_to_num(out, copy=False)

    def zero_voxels(self, mask: np.ndarray, bbox: tuple[slice, slice, slice] | None = None) -> int:
        """Set the stored bytes of masked voxels to zero in every volume.

        Parameters
        ----------
        mask : ndarray of bool
            3D mask; if ``bbox`` is given it covers only that box of the grid.
        bbox : tuple of slice, optional
            Where ``mask`` sits in the grid.

        Returns
        -------
        int
            Number of voxels (per volume) set to zero.
        """
        nx, ny, nz = self.shape3d
        if bbox is None:
            bbox = (slice(0, nx), slice(0, ny), slice(0, nz))
        if self.dtype.kind in "iufc":
            # numeric types: stored 0 is all-zero bytes (IEEE +0.0 for floats)
            arr = self.stored_array()
            for v in range(self.n_volumes):
                arr[bbox + (v,)][mask] = 0
            return int(np.count_nonzero(mask))
        itemsize = self.dtype.itemsize
        raw = np.frombuffer(self.voxels, dtype=np.uint8).reshape((-1, itemsize))
        ii, jj, kk = np.nonzero(mask)
        ii = ii + bbox[0].start
        jj = jj + bbox[1].start
        kk = kk + bbox[2].start
        flat = ii.astype(np.int64) + nx * (jj.astype(np.int64) + ny * kk.astype(np.int64))
        per_volume = nx * ny * nz
        for v in range(self.n_volumes):
            raw[flat + v * per_volume] = 0
        return int(flat.size)

    def to_bytes(self) -> bytes:
        """The uncompressed file bytes: original prefix, voxel bytes, original suffix."""
        return b"".join((self.prefix, bytes(self.voxels), self.suffix))


def _decompress(blob: bytes) -> bytes:
    try:
        from isal import igzip

        return igzip.decompress(blob)
    except ImportError:  # pragma: no cover - isal is a core dependency
        import gzip

        return gzip.decompress(blob)


def compress(data: bytes, level: int = 2) -> bytes:
    """Gzip ``data`` with mtime 0 (reproducible bytes), using isal when available.

    Parameters
    ----------
    data : bytes
    level : int
        isal level 0-3 (mapped to zlib 1-9 when isal is missing).

    Returns
    -------
    bytes
    """
    try:
        from isal import igzip

        return igzip.compress(data, compresslevel=min(max(level, 0), 3), mtime=0)
    except ImportError:  # pragma: no cover
        import gzip

        return gzip.compress(data, compresslevel=max(1, level * 3), mtime=0)


def read_raw(path: Path) -> RawNifti:
    """Read a single-file NIfTI-1/2 (optionally gzipped) into its byte parts.

    Parameters
    ----------
    path : Path

    Returns
    -------
    RawNifti

    Raises
    ------
    InputError
        If the file is not a single-file NIfTI we can split.
    """
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    if blob[:2] == GZIP_MAGIC:
        try:
            blob = _decompress(blob)
        except Exception as exc:  # noqa: BLE001 - any gzip failure is a bad input
            raise InputError(f"{path.name}: corrupt gzip stream") from exc
    if len(blob) < 352:
        raise InputError(f"{path.name}: too short to be a NIfTI file")
    size_le = int.from_bytes(blob[:4], "little")
    size_be = int.from_bytes(blob[:4], "big")
    if 348 in (size_le, size_be):
        hdr_klass = nib.Nifti1Header
    elif 540 in (size_le, size_be):
        hdr_klass = nib.Nifti2Header
    else:
        raise InputError(f"{path.name}: not a NIfTI-1/2 file")
    try:
        header = hdr_klass.from_fileobj(io.BytesIO(blob), check=False)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path.name}: unreadable NIfTI header ({exc})") from exc
    magic = bytes(header["magic"]).rstrip(b"\x00")
    if magic not in (b"n+1", b"n+2"):
        raise InputError(f"{path.name}: only single-file NIfTI (.nii/.nii.gz) can be defaced")
    shape = tuple(int(s) for s in header.get_data_shape())
    dtype = header.get_data_dtype()
    offset = int(header.get_data_offset())
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if len(shape) < 3 or offset + nbytes > len(blob):
        raise InputError(f"{path.name}: voxel data shorter than the header says")
    affine = header.get_best_affine()
    return RawNifti(
        prefix=blob[:offset],
        voxels=bytearray(blob[offset : offset + nbytes]),
        suffix=blob[offset + nbytes :],
        header=header,
        shape=shape,
        dtype=dtype,
        affine=np.asarray(affine, dtype=float),
    )


def encode(raw: RawNifti, dst: Path) -> bytes:
    """File bytes for ``dst``: gzip (mtime 0) when its name ends in ``.gz``.

    Parameters
    ----------
    raw : RawNifti
    dst : Path

    Returns
    -------
    bytes
    """
    data = raw.to_bytes()
    return compress(data) if str(dst).endswith(".gz") else data
