"""The fixed binary header layouts of NIfTI-1, NIfTI-2 and Analyze 7.5, as numpy dtypes (little endian).

Field names, types and order as the standards define them (``nifti1.h`` of the NIfTI DFWG,
``nifti2.h``, and the Mayo Analyze 7.5 ``dbh.h``), spelled as nibabel spells them so that the
two agree field for field (a test holds them against nibabel's). Kept here so that reading a
header's few fields does not import nibabel (a fifth of a second at start-up).
"""

from __future__ import annotations

import numpy as np

NIFTI1 = np.dtype([
    ("sizeof_hdr", "<i4"), ("data_type", "S10"), ("db_name", "S18"), ("extents", "<i4"),
    ("session_error", "<i2"), ("regular", "S1"), ("dim_info", "u1"), ("dim", "<i2", (8,)),
    ("intent_p1", "<f4"), ("intent_p2", "<f4"), ("intent_p3", "<f4"), ("intent_code", "<i2"),
    ("datatype", "<i2"), ("bitpix", "<i2"), ("slice_start", "<i2"), ("pixdim", "<f4", (8,)),
    ("vox_offset", "<f4"), ("scl_slope", "<f4"), ("scl_inter", "<f4"), ("slice_end", "<i2"),
    ("slice_code", "u1"), ("xyzt_units", "u1"), ("cal_max", "<f4"), ("cal_min", "<f4"),
    ("slice_duration", "<f4"), ("toffset", "<f4"), ("glmax", "<i4"), ("glmin", "<i4"),
    ("descrip", "S80"), ("aux_file", "S24"), ("qform_code", "<i2"), ("sform_code", "<i2"),
    ("quatern_b", "<f4"), ("quatern_c", "<f4"), ("quatern_d", "<f4"), ("qoffset_x", "<f4"),
    ("qoffset_y", "<f4"), ("qoffset_z", "<f4"), ("srow_x", "<f4", (4,)), ("srow_y", "<f4", (4,)),
    ("srow_z", "<f4", (4,)), ("intent_name", "S16"), ("magic", "S4"),
])  # fmt: skip

NIFTI2 = np.dtype([
    ("sizeof_hdr", "<i4"), ("magic", "S4"), ("eol_check", "i1", (4,)), ("datatype", "<i2"),
    ("bitpix", "<i2"), ("dim", "<i8", (8,)), ("intent_p1", "<f8"), ("intent_p2", "<f8"),
    ("intent_p3", "<f8"), ("pixdim", "<f8", (8,)), ("vox_offset", "<i8"), ("scl_slope", "<f8"),
    ("scl_inter", "<f8"), ("cal_max", "<f8"), ("cal_min", "<f8"), ("slice_duration", "<f8"),
    ("toffset", "<f8"), ("slice_start", "<i8"), ("slice_end", "<i8"), ("descrip", "S80"),
    ("aux_file", "S24"), ("qform_code", "<i4"), ("sform_code", "<i4"), ("quatern_b", "<f8"),
    ("quatern_c", "<f8"), ("quatern_d", "<f8"), ("qoffset_x", "<f8"), ("qoffset_y", "<f8"),
    ("qoffset_z", "<f8"), ("srow_x", "<f8", (4,)), ("srow_y", "<f8", (4,)), ("srow_z", "<f8", (4,)),
    ("slice_code", "<i4"), ("xyzt_units", "<i4"), ("intent_code", "<i4"), ("intent_name", "S16"),
    ("dim_info", "u1"), ("unused_str", "S15"),
])  # fmt: skip

ANALYZE = np.dtype([
    ("sizeof_hdr", "<i4"), ("data_type", "S10"), ("db_name", "S18"), ("extents", "<i4"),
    ("session_error", "<i2"), ("regular", "S1"), ("hkey_un0", "S1"), ("dim", "<i2", (8,)),
    ("vox_units", "S4"), ("cal_units", "S8"), ("unused1", "<i2"), ("datatype", "<i2"),
    ("bitpix", "<i2"), ("dim_un0", "<i2"), ("pixdim", "<f4", (8,)), ("vox_offset", "<f4"),
    ("funused1", "<f4"), ("funused2", "<f4"), ("funused3", "<f4"), ("cal_max", "<f4"),
    ("cal_min", "<f4"), ("compressed", "<i4"), ("verified", "<i4"), ("glmax", "<i4"), ("glmin", "<i4"),
    ("descrip", "S80"), ("aux_file", "S24"), ("orient", "S1"), ("originator", "S10"),
    ("generated", "S10"), ("scannum", "S10"), ("patient_id", "S10"), ("exp_date", "S10"),
    ("exp_time", "S10"), ("hist_un0", "S3"), ("views", "<i4"), ("vols_added", "<i4"),
    ("start_field", "<i4"), ("field_skip", "<i4"), ("omax", "<i4"), ("omin", "<i4"), ("smax", "<i4"),
    ("smin", "<i4"),
])  # fmt: skip



def read_nifti_header(path) -> np.ndarray | None:
    """The header record of a single-file NIfTI-1/2 (``.nii`` or ``.nii.gz``) in native byte
    order, or None when the file does not start with one."""
    import gzip

    try:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rb") as fh:
            raw = fh.read(NIFTI2.itemsize)
    except (OSError, EOFError):
        return None
    for dtype, size in ((NIFTI1, 348), (NIFTI2, 540)):
        for order in ("<", ">"):
            if len(raw) >= size and int(np.frombuffer(raw[:4], dtype=f"{order}i4")[0]) == size:
                return np.frombuffer(raw[:size], dtype=dtype.newbyteorder(order))[0]
    return None


def nifti_geometry(path) -> tuple[np.ndarray, tuple[int, ...], int] | None:
    """(voxel-to-world affine, 3D shape, number of volumes) of a single-file NIfTI, read from its
    header alone, the affine chosen as nibabel chooses it (sform when its code is set, else
    qform, else the voxel sizes about the grid centre); None when unreadable."""
    h = read_nifti_header(path)
    if h is None:
        return None
    dim = [int(d) for d in h["dim"]]
    ndim = max(1, min(dim[0], 7))
    full = [max(d, 1) for d in dim[1 : ndim + 1]] + [1] * (3 - min(ndim, 3))
    shape = tuple(full[:3])
    n_vols = int(np.prod(full[3:], dtype=np.int64)) if len(full) > 3 else 1
    pixdim = [float(x) for x in h["pixdim"]]
    if int(h["sform_code"]) != 0:
        aff = np.eye(4)
        aff[0], aff[1], aff[2] = h["srow_x"], h["srow_y"], h["srow_z"]
    elif int(h["qform_code"]) != 0:
        b, c, d = (float(h[k]) for k in ("quatern_b", "quatern_c", "quatern_d"))
        a = 1.0 - (b * b + c * c + d * d)
        a = np.sqrt(a) if a > 1e-7 else 0.0
        rot = np.array([[a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
                        [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
                        [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - b * b - c * c]])
        qfac = -1.0 if pixdim[0] < 0 else 1.0
        zooms = np.array([pixdim[1], pixdim[2], pixdim[3] * qfac])
        aff = np.eye(4)
        aff[:3, :3] = rot * zooms
        aff[:3, 3] = [float(h["qoffset_x"]), float(h["qoffset_y"]), float(h["qoffset_z"])]
    else:
        zooms = np.array([abs(z) if z else 1.0 for z in pixdim[1:4]])
        aff = np.diag([-zooms[0], zooms[1], zooms[2], 1.0])
        aff[:3, 3] = -(np.array(shape) - 1) / 2.0 * np.array([-zooms[0], zooms[1], zooms[2]])
    return aff, shape, n_vols
