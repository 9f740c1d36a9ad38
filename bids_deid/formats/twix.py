"""Siemens twix (``meas_*.dat``) header scrubbing, in place and length-preserving.

A twix file is one ASCII protocol header (several named buffers: Config, Dicom, Meas,
MeasYaps, Phoenix, Spice) followed by binary measurement data blocks. Software VB
files hold one measurement and start with the header length; VD/VE/XA files start
with a "multi-RAID" table (first uint32 = 0, second = number of measurements, then
64 ``MrParcRaidFileEntry`` records of 152 bytes: measId, fileId, offset, length,
patient name[64], protocol name[64]) and each measurement has its own header.

Scrubbing overwrites identifying values with filler of the *same length* so that
every offset stays valid and the measurement data is byte-identical. The file is
stream-copied first, then the header regions of the copy are patched by offset.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import struct
from pathlib import Path

from ..errors import InputError
from .base import Context, Outcome, ScrubLog, write_outcome

log = logging.getLogger(__name__)

RAID_ENTRY_SIZE = 152
RAID_MAX_ENTRIES = 64
RAID_TABLE_SIZE = 8 + RAID_MAX_ENTRIES * RAID_ENTRY_SIZE
MAX_HEADER_BYTES = 64 << 20  # a protocol header larger than this is not a twix header
COPY_CHUNK = 8 << 20

# Parameter names (after the optional type prefix t/s/l/fl/ul/a..) holding identity,
# mapped to the identifier kind reported to the leak audit.
_FIELDS: dict[str, str] = {
    "patientname": "PatientName",
    "patientsname": "PatientName",
    "patientid": "PatientID",
    "patientbirthday": "PatientBirthDate",
    "patientbirthdate": "PatientBirthDate",
    "patientsex": "PatientSex",
    "patientage": "PatientAge",
    "patientheight": "PatientSize",
    "patientweight": "PatientWeight",
    "usedpatientweight": "PatientWeight",
    "patientquadruple": "PatientID",
    "patientloid": "PatientID",
    "patient": "PatientID",
    "institutionname": "InstitutionName",
    "institutionaddress": "InstitutionAddress",
    "stationname": "StationName",
    "deviceserialnumber": "DeviceSerialNumber",
    "referringphysician": "ReferringPhysicianName",
    "referringphysiciansname": "ReferringPhysicianName",
    "perfphysiciansname": "PerformingPhysicianName",
    "performingphysiciansname": "PerformingPhysicianName",
    "operatorsname": "OperatorsName",
    "studydescription": "StudyDescription",
    "accessionnumber": "AccessionNumber",
    "studydate": "StudyDate",
    "studytime": "StudyTime",
    "frameofreference": "FrameOfReferenceUID",
    "exammemoryuid": "StudyDate",
    "studyloid": "StudyInstanceUID",
    "study": "StudyInstanceUID",
    "seriesloid": "SeriesInstanceUID",
    "referenceimage0": "ReferenceImageUID",
    "referenceimage1": "ReferenceImageUID",
    "referenceimage2": "ReferenceImageUID",
}
# kinds whose value is replaced by the pseudonymous subject label (padded with 'x')
_SUBJECT_KINDS = {"PatientName", "PatientID"}
_PREFIX = re.compile(r"^(?:ul|fl|d|l|t|s|a|ui|b)(?=[A-Z])")
# kinds whose values are worth reporting to the leak audit (others are numbers/UIDs)
_REPORT_KINDS = {
    "PatientName", "PatientID", "PatientBirthDate", "InstitutionName", "InstitutionAddress",
    "StationName", "DeviceSerialNumber", "ReferringPhysicianName", "PerformingPhysicianName",
    "OperatorsName", "StudyDescription", "AccessionNumber", "StudyDate",
}  # fmt: skip

_XPROT = re.compile(rb'<Param(?:String|Long|Double|Bool|Array|Map)?\."([A-Za-z0-9_]+)">\s*\{([^{}]*)\}')
_YAPS = re.compile(rb"^[ \t]*([A-Za-z0-9_.\[\]]+)[ \t]*=[ \t]*([^\n\r]*)$", re.M)
_QUOTED = re.compile(rb'"([^"\n\r]*)"')
_ATTR = re.compile(rb'<[A-Za-z]+>\s*(?:"[^"\n]*"|[^\s<>{}"]+)')
_DOTTED_UID = re.compile(rb"(?<![\d.])\d+(?:\.\d+){5,}(?![\d.])")
_DATE_RUN = re.compile(rb"(?<!\d)(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d*")


def _kind_of(name: str) -> str | None:
    base = name.rsplit(".", 1)[-1]
    base = re.sub(r"\[\d+\]$", "", base)
    key = _PREFIX.sub("", base).lower()
    return _FIELDS.get(key) or _FIELDS.get(base.lower())


def _fill(value: bytes, kind: str, subject: str) -> bytes:
    """Same-length filler for one value."""
    if kind in _SUBJECT_KINDS and subject:
        return (subject.encode("ascii", "replace") + b"x" * len(value))[: len(value)]
    return b"x" * len(value)


def _zero_digits(value: bytes) -> bytes:
    return re.sub(rb"\d", b"0", value)


def _is_filler(value: bytes) -> bool:
    return not value.strip(b"x0 .\x00")


# ---------------------------------------------------------------- header layout
def _read_buffers(fh, start: int, size: int) -> tuple[int, list[tuple[str, int, int]]]:
    """Parse one measurement header at ``start``; return (header length, [(name, data offset, length)])."""
    fh.seek(start)
    raw = fh.read(8)
    if len(raw) < 8:
        raise InputError("twix file is truncated in its protocol header")
    hdr_len, n_buf = struct.unpack("<II", raw)
    if not (8 <= hdr_len <= min(MAX_HEADER_BYTES, size - start)) or not (1 <= n_buf <= 64):
        raise InputError("unknown twix header version (implausible protocol header)")
    fh.seek(start)
    head = fh.read(hdr_len)
    pos, buffers = 8, []
    for _ in range(n_buf):
        end = head.find(b"\0", pos, pos + 64)
        if end < 0:
            raise InputError("unknown twix header version (unreadable buffer name)")
        name = head[pos:end]
        if not name or not re.fullmatch(rb"[A-Za-z0-9_]+", name):
            raise InputError("unknown twix header version (unreadable buffer name)")
        if end + 5 > hdr_len:
            raise InputError("twix file is truncated in its protocol header")
        (blen,) = struct.unpack("<I", head[end + 1 : end + 5])
        data_off = end + 5
        if data_off + blen > hdr_len:
            raise InputError("twix protocol header buffer runs past the header end")
        buffers.append((name.decode(), start + data_off, blen))
        pos = data_off + blen
    return hdr_len, buffers


def twix_layout(path: Path) -> tuple[str, list[tuple[int, int]], list[tuple[str, int, int]]]:
    """Describe a twix file's header regions.

    Returns
    -------
    version : str
        ``"VB"`` or ``"VD"`` (VD/VE/XA multi-RAID).
    raid_names : list of (offset, 64)
        Patient-name fields of the multi-RAID table (empty for VB).
    buffers : list of (name, offset, length)
        The ASCII header buffers of every measurement.

    Raises
    ------
    InputError
        For files that are not twix or of an unknown header version.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            first = fh.read(8)
            if len(first) < 8:
                raise InputError("file too short to be twix")
            a, b = struct.unpack("<II", first)
            if a == 0:
                if not (1 <= b <= RAID_MAX_ENTRIES) or size < RAID_TABLE_SIZE:
                    raise InputError("unknown twix header version (bad multi-RAID table)")
                fh.seek(8)
                table = fh.read(RAID_ENTRY_SIZE * b)
                names, buffers = [], []
                for i in range(b):
                    e = table[i * RAID_ENTRY_SIZE : (i + 1) * RAID_ENTRY_SIZE]
                    _mid, _fid, off, length = struct.unpack("<IIQQ", e[:24])
                    if off < RAID_TABLE_SIZE or off + 8 > size or length == 0:
                        raise InputError("unknown twix header version (bad multi-RAID entry)")
                    names.append((8 + i * RAID_ENTRY_SIZE + 24, 64))
                    buffers += _read_buffers(fh, off, size)[1]
                return "VD", names, buffers
            _hl, buffers = _read_buffers(fh, 0, size)
            return "VB", [], buffers
    except OSError as exc:
        raise InputError(f"cannot read twix file: {exc.strerror or exc}") from exc


def is_twix(path: Path) -> bool:
    """True when ``path`` parses as a VB or VD/VE/XA twix file."""
    try:
        twix_layout(Path(path))
    except Exception:  # noqa: BLE001 - any failure means "not twix"
        return False
    return True


# ---------------------------------------------------------------- finding values
def _patches_in_buffer(buf: bytes, base: int, bufname: str, subject: str):
    """Yield (offset, new bytes, kind, field, original value) for identifying values in one buffer."""
    done: set[int] = set()

    def emit(start: int, value: bytes, new: bytes, kind: str, field: str):
        if start in done or value == new:
            return None
        done.add(start)
        return (base + start, new, kind, field, value)

    for m in _XPROT.finditer(buf):
        name = m.group(1).decode()
        kind = _kind_of(name)
        if kind is None:
            continue
        body_start = m.start(2)
        body = m.group(2)
        # attribute pairs such as <Visible> "true" or <Precision> 6 are not values
        attr = [(a.start(), a.end()) for a in _ATTR.finditer(body)]

        def in_attr(i: int, attr=attr) -> bool:
            return any(s <= i < e for s, e in attr)

        quoted = [q for q in _QUOTED.finditer(body) if not in_attr(q.start())]
        if quoted:
            for q in quoted:
                v = q.group(1)
                if v:
                    p = emit(body_start + q.start(1), v, _fill(v, kind, subject), kind, name)
                    if p:
                        yield p
        elif b'"' not in body:
            for num in re.finditer(rb"[-+]?\d[\d.eE+-]*", body):
                if in_attr(num.start()):
                    continue
                v = num.group(0)
                p = emit(body_start + num.start(), v, _zero_digits(v), kind, name)
                if p:
                    yield p
    for m in _YAPS.finditer(buf):
        name = m.group(1).decode()
        kind = _kind_of(name)
        if kind is None:
            continue
        val = m.group(2)
        vstart = m.start(2)
        q = _QUOTED.search(val)
        if q:
            v = q.group(1)
            if v:
                p = emit(vstart + q.start(1), v, _fill(v, kind, subject), kind, name)
                if p:
                    yield p
        else:
            v = val.rstrip()
            if v and not v.startswith(b"#"):
                p = emit(vstart, v, _zero_digits(v) if re.fullmatch(rb"[-+\d.eEx]+", v) else b"x" * len(v), kind, name)
                if p:
                    yield p
    # belt and braces: dotted UIDs (Siemens embed serial numbers and date-times in
    # them) and date-like digit runs inside quoted strings, wherever they are.
    for m in _DOTTED_UID.finditer(buf):
        v = m.group(0)
        parts = v.split(b".")
        keep = b".".join(parts[:4]) + b"."
        new = keep + _zero_digits(v[len(keep) :])
        if new != v:
            p = emit(m.start(), v, new, "UID", f"{bufname}:uid")
            if p:
                yield p
    for q in _QUOTED.finditer(buf):
        for d in _DATE_RUN.finditer(q.group(1)):
            start = q.start(1) + d.start()
            v = d.group(0)
            p = emit(start, v, b"0" * len(v), "Date", f"{bufname}:date")
            if p:
                yield p


def kept_kinds(profile) -> frozenset[str]:
    """The identity kinds (DICOM keywords) whose twix values the profile keeps.

    A twix header holds the same attributes as the DICOM the scanner writes beside it, so the
    profile's DICOM decision for the attribute decides (``keep`` rules and options such as
    ``retain_patient_characteristics`` or ``retain_device_identity``); anything the DICOM
    profile would change, empty, shift or remove is overwritten. No profile: nothing is kept.
    """
    if profile is None:
        return frozenset()
    from pydicom.datadict import tag_for_keyword

    from ..scrub.dicom_core import decide_tag
    from ..scrub.dicom_table import compile_plan

    plan = compile_plan(profile)
    kept = set()
    for kind in set(_FIELDS.values()):
        tag = tag_for_keyword(kind)
        if tag is not None and decide_tag(plan, tag, None) is None:
            kept.add(kind)
    return frozenset(kept)


def _collect(path: Path, subject: str, keep: frozenset[str] = frozenset()):
    version, raid_names, buffers = twix_layout(path)
    patches: list[tuple[int, bytes, str, str, bytes]] = []
    with open(path, "rb") as fh:
        for off, length in raid_names:
            fh.seek(off)
            raw = fh.read(length)
            v = raw.split(b"\0", 1)[0]
            if v and "PatientName" not in keep:
                patches.append((off, _fill(v, "PatientName", subject), "PatientName", "raid:patName", v))
        for name, off, length in buffers:
            fh.seek(off)
            buf = fh.read(length)
            patches.extend(p for p in _patches_in_buffer(buf, off, name, subject) if p[2] not in keep)
    # overlapping patches (a UID inside a named field): keep the first at each offset,
    # drop any patch starting inside an earlier one
    patches.sort(key=lambda p: p[0])
    merged: list[tuple[int, bytes, str, str, bytes]] = []
    end = -1
    for p in patches:
        if p[0] < end:
            continue
        merged.append(p)
        end = p[0] + len(p[1])
    return version, merged


def _identifiers(patches) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for _off, _new, kind, _field, value in patches:
        if kind not in _REPORT_KINDS or _is_filler(value):
            continue
        text = value.decode("latin-1").strip()
        if len(text) >= 2 and (kind, text) not in found:
            found.append((kind, text))
    return found


def read_twix_identifiers(path: Path, profile=None) -> list[tuple[str, str]]:
    """Identifying (kind, value) pairs in a twix header, without changing anything (the values
    the profile keeps, see :func:`kept_kinds`, are not listed).

    Raises
    ------
    InputError
        For unknown header versions or corrupt files.
    """
    _version, patches = _collect(Path(path), "", kept_kinds(profile))
    return _identifiers(patches)


# ------------------------------------------------------------------ the format module interface
NAME = "twix"
SUFFIXES = (".dat",)
COMPANION_SUFFIXES: tuple[str, ...] = ()


def sniff(path: Path) -> bool:
    return path.suffix.lower() == ".dat" and is_twix(path)


def companions(path: Path) -> list[Path]:
    return []


def scrub(src: Path, profile, ctx: Context) -> Outcome:
    """The twix file under ``ctx.rel_out``, copied with its identifying header values overwritten in place.

    Patient name and ID become the pseudonymous ``sub-<ctx.subject>`` (padded or cut to the
    same length), other values ``x`` (text) or ``0`` (digits), except those the profile's
    DICOM rules keep for the same attribute (:func:`kept_kinds`). The audit rows (field, kind, offset, length; no
    values) and the original values met are in the log. Raises InputError for unknown
    header versions or corrupt files (one line).
    """
    return _outcome(Path(src), ctx.rel_out, f"sub-{ctx.subject}" if ctx.subject else "", kept_kinds(profile))


def _outcome(src: Path, rel: str, replacement_subject: str, keep: frozenset[str] = frozenset()) -> Outcome:
    version, patches = _collect(src, replacement_subject, keep)
    slog = ScrubLog()
    slog.changes += [{"field": f, "kind": k, "offset": off, "length": len(new)} for off, new, k, f, _v in patches]
    slog.identifiers += _identifiers(patches)

    def patched(fout) -> None:
        with open(src, "rb") as fin:
            shutil.copyfileobj(fin, fout, COPY_CHUNK)
        for off, new, _kind, _field, _value in patches:
            fout.seek(off)
            fout.write(new)
        fout.seek(0, os.SEEK_END)

    log.debug("twix %s: %d header values overwritten", version, len(patches))
    return Outcome(writes={rel: patched}, log=slog)


def scrub_twix(src: Path, dst: Path, replacement_subject: str) -> tuple[list[dict], list[tuple[str, str]]]:
    """Copy ``src`` to ``dst`` (atomically) with identifying header values overwritten in place.

    ``replacement_subject`` is written (padded/truncated to the same length) into patient
    name and ID fields. Returns the audit rows and the original identifying values found
    (see :func:`scrub`); raises InputError for unknown header versions or corrupt files.
    """
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise InputError("refusing to scrub a twix file onto itself")
    res = _outcome(src, dst.name, replacement_subject)
    write_outcome(dst.parent, res, skip_existing=False)
    return res.log.changes, res.log.identifiers
