"""MINC 1 (netCDF classic) and MINC 2 (HDF5): scrubbed copy, or conversion to NIfTI.

Scrubbing rebuilds the file from an allowlist instead of deleting from a copy (freed
space in HDF5/netCDF keeps the deleted bytes): the image, its min/max slices and the
dimension variables are copied with their technical attributes only. Patient, study,
acquisition and institution variables/groups, the global ``history`` and ``ident``
attributes and any other attribute are left behind.
"""

from __future__ import annotations

import io
import logging
import tempfile
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_bytes
from ..errors import InputError
from .base import Context, Outcome, ScrubLog, scrub_to
from .niftiout import clean_nifti, write_nifti_gz
from .sidecar import dump_json, scrub_sidecar

log = logging.getLogger(__name__)

_IMAGE_VARS = ("image", "image-min", "image-max")
_DIM_VARS = ("xspace", "yspace", "zspace", "time", "vector_dimension", "xfrequency", "yfrequency", "zfrequency",
             "tfrequency")
_KEEP_ATTRS = {
    "length", "start", "step", "direction_cosines", "units", "spacing", "alignment", "spacetype", "dimorder",
    "varid", "vartype", "version", "valid_range", "complete", "signtype", "image-min", "image-max", "width",
    "widths", "offsets", "minc_version", "_FillValue",
}
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

# MINC standard attributes of the ``acquisition`` and ``study`` variables (MINC 1) / groups
# under ``minc-2.0/info`` (MINC 2) that have a BIDS sidecar field: (variable, attribute) ->
# (field, scale to BIDS units). MINC stores times in seconds, frequencies in Hz and the field
# in tesla. Identifying ones (institution, station, serial number) are mapped too, so that
# the profile's sidecar rules are what removes (or keeps) them.
SIDECAR_FIELDS: dict[tuple[str, str], tuple[str, float | None]] = {
    ("acquisition", "repetition_time"): ("RepetitionTime", 1.0),
    ("acquisition", "echo_time"): ("EchoTime", 1.0),
    ("acquisition", "inversion_time"): ("InversionTime", 1.0),
    ("acquisition", "flip_angle"): ("FlipAngle", 1.0),
    ("acquisition", "slice_thickness"): ("SliceThickness", 1.0),
    ("acquisition", "imaging_frequency"): ("ImagingFrequency", 1e-6),
    ("acquisition", "scanning_sequence"): ("ScanningSequence", None),
    ("acquisition", "protocol_name"): ("ProtocolName", None),
    ("acquisition", "series_description"): ("SeriesDescription", None),
    ("acquisition", "receive_coil"): ("ReceiveCoilName", None),
    ("study", "manufacturer"): ("Manufacturer", None),
    ("study", "model"): ("ManufacturersModelName", None),
    ("study", "field_value"): ("MagneticFieldStrength", 1.0),
    ("study", "software_version"): ("SoftwareVersions", None),
    ("study", "serial_no"): ("DeviceSerialNumber", None),
    ("study", "institution"): ("InstitutionName", None),
    ("study", "station_id"): ("StationName", None),
}


def minc_version(path: Path) -> int | None:
    """1 (netCDF classic), 2 (HDF5) or None when ``path`` is not a MINC file."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    if head[:3] == b"CDF" and head[3:4] in (b"\x01", b"\x02"):
        return 1
    if head == _HDF5_MAGIC:
        try:
            import h5py

            with h5py.File(path, "r") as f:
                return 2 if "minc-2.0" in f else None
        except Exception:  # noqa: BLE001
            return None
    return None


def _note_dropped(where: str, attrs, slog: ScrubLog) -> None:
    for k, v in attrs.items():
        if k not in _KEEP_ATTRS:
            if isinstance(v, bytes | np.bytes_):
                slog.met(f"MINC {where}:{k}", bytes(v).decode("latin-1", "replace"))
            slog.change(f"{where}:{k}", "remove", "MINC attribute not on the technical allowlist")


def _scrub_minc2(src: Path, dst_fh, slog: ScrubLog) -> None:
    import h5py

    with h5py.File(src, "r") as fin, h5py.File(dst_fh, "w") as fout:
        root_in = fin["minc-2.0"]
        root_out = fout.create_group("minc-2.0")
        _copy_attrs(root_in.attrs, root_out.attrs, "minc-2.0", slog)
        for name, obj in root_in.items():
            if name not in ("dimensions", "image"):
                slog.change(f"minc-2.0/{name}", "remove", "patient/study/acquisition information")
                if isinstance(obj, h5py.Group):
                    obj.visititems(lambda n, o, base=name: _note_dropped(f"{base}/{n}", o.attrs, slog))
        dims = root_out.create_group("dimensions")
        for name, ds in root_in.get("dimensions", {}).items():
            if name in _DIM_VARS:
                _copy_dataset(ds, dims, name, slog)
        img_root = root_out.create_group("image")
        for idx, grp in root_in.get("image", {}).items():
            g = img_root.create_group(idx)
            for name, ds in grp.items():
                if name in _IMAGE_VARS:
                    _copy_dataset(ds, g, name, slog)


def _copy_attrs(a_in, a_out, where: str, slog: ScrubLog) -> None:
    for k in a_in:
        if k in _KEEP_ATTRS:
            a_out.create(k, a_in[k], dtype=a_in.get_id(k).dtype)
    _note_dropped(where, a_in, slog)


def _copy_dataset(ds, group, name: str, slog: ScrubLog) -> None:
    data = ds[()]
    out = group.create_dataset(name, data=data, dtype=ds.dtype, chunks=ds.chunks if ds.shape else None,
                               compression=ds.compression if ds.shape else None)
    _copy_attrs(ds.attrs, out.attrs, name, slog)


def _scrub_minc1(src: Path, dst_fh, slog: ScrubLog) -> None:
    from scipy.io import netcdf_file

    with netcdf_file(src, "r", mmap=False) as fin:
        buf = io.BytesIO()
        fout = netcdf_file(buf, "w", version=fin.version_byte)
        for k, v in fin._attributes.items():
            if k in _KEEP_ATTRS:
                setattr(fout, k, v)
        _note_dropped("global", fin._attributes, slog)
        keep = [n for n in fin.variables if n in _IMAGE_VARS or n in _DIM_VARS]
        for n in fin.variables:
            if n not in keep:
                slog.change(n, "remove", "patient/study/acquisition information")
                _note_dropped(n, fin.variables[n]._attributes, slog)
        used = {d for n in keep for d in fin.variables[n].dimensions}
        for d in fin.dimensions:
            if d in used:
                fout.createDimension(d, fin.dimensions[d])
        for n in keep:
            v = fin.variables[n]
            out = fout.createVariable(n, v.data.dtype if v.data is not None else v.typecode(), v.dimensions)
            if v.shape:
                out[:] = v[:]
            elif v.data is not None and v.data.size and out.data is not None:
                out.data[()] = np.asarray(v.data).reshape(())
            for k, a in v._attributes.items():
                if k in _KEEP_ATTRS:
                    setattr(out, k, a)
            _note_dropped(n, v._attributes, slog)
        fout.flush()
        dst_fh.write(buf.getvalue())
        fout.close()


# ------------------------------------------------------------------ the format module interface
NAME = "minc"
SUFFIXES = (".mnc",)
COMPANION_SUFFIXES: tuple[str, ...] = ()


def sniff(path: Path) -> bool:
    return path.suffix.lower() == ".mnc" and minc_version(path) is not None


def companions(path: Path) -> list[Path]:
    return []


def scrub(src: Path, profile, ctx: Context) -> Outcome:
    """The scrubbed MINC file (same version as the input) under ``ctx.rel_out``.

    Fixed rules for the copy: only the attributes readers need for the image stay (the
    acquisition and scanner attributes reach a conversion's sidecar, where the profile
    decides; see :func:`minc_sidecar`). The file is rebuilt when written; raises InputError for a file that
    is not MINC 1/2 (and the writer for one that does not read).
    """
    src = Path(src)
    slog = ScrubLog()
    version = minc_version(src)
    if version is None:
        raise InputError(f"{src.name} is not a MINC 1 or MINC 2 file")

    def rebuild(fh) -> None:
        try:
            (_scrub_minc2 if version == 2 else _scrub_minc1)(src, fh, slog)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{src.name}: MINC file not readable ({type(exc).__name__})") from exc

    return Outcome(writes={ctx.rel_out: rebuild}, log=slog)


def scrub_minc(src: Path, dst: Path, slog: ScrubLog | None = None) -> Path:
    """Write a scrubbed MINC file (same version as the input) to ``dst``, atomically; ``dst``.

    :func:`scrub` and :func:`~bids_deid.formats.base.write_outcome` in one call (``src`` is never
    modified); the audit entries and identifiers met go to ``slog``.
    """
    scrub_to(scrub, src, dst, slog)
    return Path(dst)


def _attr_value(value, scale: float | None):
    """One MINC attribute as a sidecar value: text stripped of padding, a number scaled."""
    if isinstance(value, bytes | np.bytes_):
        text = bytes(value).split(b"\0", 1)[0].decode("latin-1").strip()
        if scale is None:
            return text or None
        try:
            value = float(text)
        except ValueError:
            return None
    arr = np.atleast_1d(np.asarray(value))
    if scale is None or arr.size != 1 or arr.dtype.kind not in "iuf":
        return None
    number = float(arr[0]) * scale
    return round(number, 9) if np.isfinite(number) else None


def minc_attributes(src: Path) -> dict[tuple[str, str], object]:
    """The raw ``(variable, attribute) -> value`` pairs of the MINC ``acquisition``, ``study`` and ``patient`` information."""
    src = Path(src)
    version = minc_version(src)
    found: dict[tuple[str, str], object] = {}
    try:
        if version == 2:
            import h5py

            with h5py.File(src, "r") as f:
                info = f["minc-2.0"].get("info", {})
                for var in ("acquisition", "study", "patient"):
                    if var in info:
                        found.update({(var, k): info[var].attrs[k] for k in info[var].attrs})
        elif version == 1:
            from scipy.io import netcdf_file

            with netcdf_file(src, "r", mmap=False) as f:
                for var in ("acquisition", "study", "patient"):
                    if var in f.variables:
                        found.update({(var, k): v for k, v in f.variables[var]._attributes.items()})
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{src.name}: MINC file not readable ({type(exc).__name__})") from exc
    return found


def minc_sidecar(src: Path, profile=None, offset_days: int | None = None, slog: ScrubLog | None = None) -> dict:
    """The BIDS sidecar of a MINC image: its acquisition and scanner attributes under their BIDS
    names (:data:`SIDECAR_FIELDS`), then the profile's sidecar rules.

    As for a dcm2niix sidecar, the non-identifying acquisition fields the schema does not define
    (``ImagingFrequency``...) are kept unless the profile removes them, and the free-text
    protocol and series names are kept only with every patient/study text value cut out.
    """
    from dataclasses import replace

    from ..profiles import load_profile
    from .sidecar_keep import FREE_TEXT, clean_text, keep_rules

    slog = slog if slog is not None else ScrubLog()
    profile = profile or load_profile("basic")
    attrs = minc_attributes(src)
    idents = [_attr_value(v, None) for (var, _k), v in attrs.items() if var in ("patient", "study")]
    idents = [t for t in idents if t]
    side: dict = {}
    for key, value in attrs.items():
        if key in SIDECAR_FIELDS:
            field, scale = SIDECAR_FIELDS[key]
            v = _attr_value(value, scale)
            if field in FREE_TEXT and v is not None:
                v = clean_text(v, idents) or None
            if v is not None and v != "":
                side[field] = v
    keeping = replace(profile, sidecar_rules=keep_rules() + tuple(profile.sidecar_rules))
    return scrub_sidecar(side, keeping, offset_days, slog)


def minc_to_nifti(src: Path, dst: Path, slog: ScrubLog | None = None) -> Path:
    """Convert a MINC 1/2 file to a clean ``.nii.gz`` (scaled values as float32, nibabel's affine)."""
    import nibabel as nib
    src, dst = Path(src), Path(dst)
    slog = slog or ScrubLog()
    with tempfile.TemporaryDirectory(prefix="bids-deid-minc-") as tmp:
        clean = scrub_minc(src, Path(tmp) / "image.mnc", slog)
        try:
            img = nib.load(str(clean))
            data = np.asarray(img.get_fdata(dtype=np.float32))
            affine = img.affine
            zooms = img.header.get_zooms()
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{src.name}: MINC image not readable ({type(exc).__name__})") from exc
    write_nifti_gz(clean_nifti(data, affine, zooms), dst)
    return dst


def to_nifti(src: Path, dst: Path, profile=None, offset_days: int | None = None,
             slog: ScrubLog | None = None) -> tuple[Path, Path | None]:
    """The registry's conversion entry: a clean ``.nii.gz`` and, when the file records any
    acquisition or scanner attribute, its sidecar (scrubbed by the profile)."""
    slog = slog if slog is not None else ScrubLog()
    side = minc_sidecar(src, profile, offset_days, slog)
    image = minc_to_nifti(src, dst, slog)
    if not side:
        return image, None
    json_path = Path(dst).with_name(Path(dst).name[: -len(".nii.gz")] + ".json")
    atomic_write_bytes(json_path, dump_json(side))
    return image, json_path
