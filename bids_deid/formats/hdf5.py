"""SNIRF and NWB (HDF5): copied object by object into a new file (so no freed bytes of the
old metadata survive), with the identifying metadata left out or replaced.

SNIRF: in every ``/nirs*/metaDataTags`` only the units and the measurement time are
kept; ``SubjectID`` becomes the new label and ``MeasurementDate`` is shifted.
NWB: ``/general`` keeps ``subject/species``, ``subject/sex`` and the new
``subject/subject_id`` only (devices, electrodes and extracellular/optical metadata are
kept); ``identifier``, ``session_description`` are replaced, times are shifted.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path

import numpy as np

from .base import Context, Outcome, ScrubLog

NAME = "hdf5"
_SNIRF_KEEP = {"LengthUnit", "TimeUnit", "FrequencyUnit", "MeasurementTime", "SubjectID", "MeasurementDate"}
_NWB_GENERAL_KEEP = {"devices", "extracellular_ephys", "intracellular_ephys", "optogenetics", "optophysiology"}
_NWB_DROP_ROOT = {"file_create_date"}
#: attributes that describe the file's structure (random UUIDs, schema names), not a person
_STRUCTURAL_ATTRS = {"object_id", "namespace", "neurodata_type", "help", "nwb_version"}
_NWB_REPLACED = {"identifier", "session_description", "session_start_time", "timestamps_reference_time"}


def sniff(path: Path) -> bool:
    if not path.name.lower().endswith((".snirf", ".nwb")) or not path.is_file():
        return False
    with open(path, "rb") as fh:
        return fh.read(8) == b"\x89HDF\r\n\x1a\n"


def companions(path: Path) -> list[Path]:
    return []


def _text(v) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray) and v.size == 1:
        return _text(v.ravel()[0])
    return str(v)


def _shift_iso(value: str, offset: int | None) -> str | None:
    m = re.match(r"(\d{4})-(\d{2})-(\d{2})(.*)$", value)
    if not m or offset is None:
        return None
    try:
        day = dt.date(int(m[1]), int(m[2]), int(m[3])) + dt.timedelta(days=offset)
    except ValueError:
        return None
    return day.isoformat() + m[4]


def _walk_strings(obj, log: ScrubLog, where: str) -> None:
    import h5py

    if isinstance(obj, h5py.Dataset):
        if obj.dtype.kind in "SOU":
            vals = np.atleast_1d(obj[()])
            for v in vals.ravel()[:1000]:
                log.met(where, _text(v))
        return
    for k, v in obj.attrs.items():
        if k in _STRUCTURAL_ATTRS:
            continue
        if isinstance(v, bytes | str):
            log.met(f"{where}@{k}", _text(v))
    for k in obj:
        _walk_strings(obj[k], log, f"{where}/{k}")


def _scalar_string(dst, name: str, value: str) -> None:
    import h5py

    if name in dst:
        del dst[name]
    dst.create_dataset(name, data=value, dtype=h5py.string_dtype())


def scrub_snirf(src, dst, ctx: Context, log: ScrubLog) -> None:
    for k, v in src.attrs.items():
        dst.attrs[k] = v
    for name in src:
        if not name.startswith("nirs") or "metaDataTags" not in src[name]:
            src.copy(src[name], dst, name=name)
            continue
        g = dst.create_group(name)
        for k, v in src[name].attrs.items():
            g.attrs[k] = v
        for child in src[name]:
            if child != "metaDataTags":
                src.copy(src[name][child], g, name=child)
        tags_in, tags = src[name]["metaDataTags"], g.create_group("metaDataTags")
        for tag in tags_in:
            if tag not in _SNIRF_KEEP:
                _walk_strings(tags_in[tag], log, f"snirf:{tag}")
                log.change(f"metaDataTags/{tag}", "remove", "SNIRF metadata tag that may identify")
            elif tag == "SubjectID":
                log.met("snirf:SubjectID", _text(tags_in[tag][()]))
                _scalar_string(tags, "SubjectID", ctx.subject or "n/a")
                log.change("metaDataTags/SubjectID", "replace", "new subject label")
            elif tag == "MeasurementDate":
                old = _text(tags_in[tag][()])
                log.met("snirf:MeasurementDate", old)
                _scalar_string(tags, "MeasurementDate", _shift_iso(old, ctx.offset_days) or "unknown")
                log.change("metaDataTags/MeasurementDate", "shift_date", "SNIRF measurement date")
            else:
                src.copy(tags_in[tag], tags, name=tag)


def scrub_nwb(src, dst, ctx: Context, log: ScrubLog) -> None:
    import h5py

    for k, v in src.attrs.items():
        dst.attrs[k] = v
    for name in src:
        if name in _NWB_DROP_ROOT:
            log.change(name, "remove", "NWB file creation dates")
            continue
        if name == "general":
            g = dst.create_group("general")
            for k, v in src["general"].attrs.items():
                g.attrs[k] = v
            for sub in src["general"]:
                if sub in _NWB_GENERAL_KEEP:
                    src.copy(src["general"][sub], g, name=sub)
                elif sub == "subject":
                    s_src = src["general/subject"]
                    s_dst = g.create_group("subject")
                    for k, v in s_src.attrs.items():
                        s_dst.attrs[k] = v
                    for k in ("species", "sex"):
                        if k in s_src:
                            src.copy(s_src[k], s_dst, name=k)
                    _walk_strings(s_src, log, "nwb:subject")
                    s_dst.create_dataset("subject_id", data=ctx.subject or "n/a", dtype=h5py.string_dtype())
                    log.change("general/subject", "replace", "NWB subject: species and sex kept, new subject_id")
                else:
                    _walk_strings(src["general"][sub], log, f"nwb:general/{sub}")
                    log.change(f"general/{sub}", "remove", "NWB metadata that may identify")
            continue
        if name in _NWB_REPLACED:
            continue  # written new below (copying, then overwriting, would leave the old bytes in the file)
        src.copy(src[name], dst, name=name)
    for name in ("identifier", "session_description"):
        if name in src:
            log.met(f"nwb:{name}", _text(src[name][()]))
            _scalar_string(dst, name, "de-identified" if name == "session_description" else
                           f"sub-{ctx.subject or 'x'}:{ctx.rel_out.rsplit('/', 1)[-1]}")
            log.change(name, "replace", "NWB free text")
    for name in ("session_start_time", "timestamps_reference_time"):
        if name in src:
            old = _text(src[name][()])
            log.met(f"nwb:{name}", old[:10])
            _scalar_string(dst, name, _shift_iso(old, ctx.offset_days) or "1900-01-01T00:00:00+00:00")
            log.change(name, "shift_date", "NWB session time")


def scrub(src: Path, profile, ctx: Context) -> Outcome:
    import h5py

    log = ScrubLog()
    buf = io.BytesIO()
    try:
        with h5py.File(src, "r") as fin, h5py.File(buf, "w") as fout:
            if src.name.lower().endswith(".snirf"):
                scrub_snirf(fin, fout, ctx, log)
            else:
                scrub_nwb(fin, fout, ctx, log)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        return Outcome.withhold(f"HDF5 file that does not read as {src.suffix[1:].upper()}: {exc.__class__.__name__}")
    return Outcome(writes={ctx.rel_out: buf.getvalue()}, log=log)
