"""Siemens CSA headers: parse, rebuild, and sanitize by an allowlist of technical fields.

The Siemens "CSA Image Header Info" (``(0029,xx10)`` under creator ``SIEMENS CSA HEADER``) is a
little-endian binary list of named fields. Two layouts exist (format facts as described for the
SPM DICOM reader):

* CSA2 starts with ``b"SV10"`` and 4 unused bytes, then ``n_tags`` (uint32) and a uint32 (77).
* CSA1 has no signature: ``n_tags`` (uint32) and a uint32 (77) come first.

Each field is a 64-byte NUL-terminated name, ``vm`` (int32), ``vr`` (4 bytes), ``syngodt``
(int32), ``nitems`` (int32) and one more int32 (77 when there are items, 205 when not), followed
by ``nitems`` items. An item is four int32 values and then the value bytes, padded to a 4-byte
boundary. In CSA2 the second int32 is the value length; in CSA1 the first int32 minus the
``nitems`` of the first field is.

:func:`sanitize_image_header` never copies the input: it parses it, keeps only fields named in
an allowlist whose items are all plain numbers, and writes a new CSA2 header from those values
(so no free text, no unknown field, no padding byte of the input survives). dcm2niix reads only
CSA2 headers, so a CSA1 input is rebuilt as CSA2.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources
from struct import Struct

log = logging.getLogger(__name__)

SIGNATURE = b"SV10"
_UNUSED = b"\x04\x03\x02\x01"  # bytes 4-8 of the CSA2 headers written by scanners
_U32 = Struct("<I")
_FIELD = Struct("<64si4siii")  # name, vm, vr, syngodt, nitems, marker
_ITEM = Struct("<4i")
_MARK_ITEMS, _MARK_EMPTY = 77, 205
MAX_FIELDS = 1024  # scanners write ~100; more is not a CSA header
MAX_ITEMS = 4096  # per field (MosaicRefAcqTimes holds one per slice)


def _fields() -> frozenset[str]:
    """The field names of ``bids_deid/data/siemens_csa_image_fields.tsv`` (hand-kept; its header
    says where each comes from)."""
    text = (resources.files("bids_deid") / "data" / "siemens_csa_image_fields.tsv").read_text(encoding="utf-8")
    rows = [ln.split("\t", 1)[0] for ln in text.splitlines() if ln and not ln.startswith("#")]
    return frozenset(rows[1:])  # after the column names


# Fields of the CSA image header that dcm2niix reads to demosaic, place the slices and fill
# slice timing / phase encoding polarity / diffusion values. All hold numbers only.
MOSAIC_IMAGE_FIELDS = _fields()
# VRs a kept field may declare (numbers as text); a field declaring anything else is dropped.
NUMERIC_VRS = frozenset({"IS", "DS", "FD", "FL", "US", "UL", "SS", "SL"})
_NUMBER = re.compile(rb"[ ]*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[ ]*\x00*")


class CsaError(ValueError):
    """The bytes are not a CSA header this parser understands."""


@dataclass(frozen=True)
class CsaField:
    """One CSA field: its name, declared VM / VR / syngo data type and its item values (raw bytes)."""

    name: str
    vm: int
    vr: str
    syngodt: int
    items: tuple[bytes, ...]


def _need(data: bytes, pos: int, n: int) -> None:
    if pos + n > len(data):
        raise CsaError("truncated CSA header")


def parse(data: bytes, names: frozenset[str] | None = None) -> tuple[int, list[CsaField]]:
    """Parse a CSA1 or CSA2 header.

    Parameters
    ----------
    data : bytes
        The element value.
    names : frozenset of str, optional
        Return only the fields of these names (the others are still checked for layout).

    Returns
    -------
    version, fields
        ``2`` for CSA2 (``SV10``), ``1`` for CSA1; the fields in header order.

    Raises
    ------
    CsaError
        When the bytes are truncated or do not follow the layout.
    """
    data = bytes(data)
    csa2 = data[:4] == SIGNATURE
    pos = 8 if csa2 else 0
    _need(data, pos, 8)
    n_fields = _U32.unpack_from(data, pos)[0]
    pos += 8
    if not 0 < n_fields <= MAX_FIELDS:
        raise CsaError(f"implausible CSA field count {n_fields}")
    fields: list[CsaField] = []
    first_nitems: int | None = None
    for _ in range(n_fields):
        _need(data, pos, _FIELD.size)
        raw_name, vm, raw_vr, syngodt, nitems, _mark = _FIELD.unpack_from(data, pos)
        pos += _FIELD.size
        if not 0 <= nitems <= MAX_ITEMS:
            raise CsaError(f"implausible CSA item count {nitems}")
        if first_nitems is None:
            first_nitems = nitems
        name = raw_name.split(b"\0", 1)[0].decode("latin-1")
        want = names is None or name in names
        items = []
        for _ in range(nitems):
            _need(data, pos, _ITEM.size)
            head = _ITEM.unpack_from(data, pos)
            pos += _ITEM.size
            length = head[1] if csa2 else head[0] - first_nitems
            if length < 0:
                raise CsaError("negative CSA item length")
            _need(data, pos, length)
            if want:
                items.append(data[pos:pos + length])
            pos += (length + 3) // 4 * 4
        if want:
            vr = raw_vr.split(b"\0", 1)[0].decode("latin-1")
            fields.append(CsaField(name, vm, vr, syngodt, tuple(items)))
    return (2 if csa2 else 1), fields


def build(fields: list[CsaField]) -> bytes:
    """Write ``fields`` as a CSA2 header (the layout scanners write, see module doc).

    Empty items are written as scanners do (length 0, marker 205); values are padded with NULs to
    a 4-byte boundary. ``parse(build(f))[1] == f`` for any list of fields.
    """
    if not fields:
        raise CsaError("a CSA header needs at least one field")
    out = bytearray(SIGNATURE + _UNUSED)
    out += _U32.pack(len(fields)) + _U32.pack(_MARK_ITEMS)
    for f in fields:
        name = f.name.encode("latin-1")
        vr = f.vr.encode("latin-1")
        if len(name) > 63 or len(vr) > 3:
            raise CsaError(f"CSA field name or VR too long: {f.name!r}")
        mark = _MARK_ITEMS if f.items else _MARK_EMPTY
        out += _FIELD.pack(name, f.vm, vr, f.syngodt, len(f.items), mark)
        for value in f.items:
            n = len(value)
            out += _ITEM.pack(n, n, _MARK_ITEMS if n else _MARK_EMPTY, n)
            out += value + b"\0" * ((4 - n % 4) % 4)
    out += b"\0" * 4  # scanners end the header with four zero bytes
    return bytes(out)


def is_number(value: bytes) -> bool:
    """True when an item holds one plain number (spaces and trailing NULs allowed) or nothing."""
    return not value or _NUMBER.fullmatch(value) is not None


def sanitize_fields(fields: list[CsaField], allowed: frozenset[str] = MOSAIC_IMAGE_FIELDS) -> list[CsaField]:
    """The fields of ``fields`` named in ``allowed`` whose VR is numeric and every item a plain number."""
    kept = []
    for f in fields:
        if f.name not in allowed or f.vr not in NUMERIC_VRS:
            continue
        if not all(is_number(v) for v in f.items):
            log.debug("CSA field %s holds a non-numeric item: dropped", f.name)
            continue
        kept.append(f)
    return kept


def sanitize_image_header(data: bytes, allowed: frozenset[str] = MOSAIC_IMAGE_FIELDS) -> bytes | None:
    """A new CSA2 header holding only the allowlisted, numeric fields of ``data``.

    Parameters
    ----------
    data : bytes
        A CSA image header (CSA1 or CSA2).
    allowed : frozenset of str
        Field names that may be kept (default :data:`MOSAIC_IMAGE_FIELDS`).

    Returns
    -------
    bytes or None
        The rebuilt header, or None when ``data`` cannot be parsed or no field is left (the
        caller then removes the element).
    """
    try:
        _version, fields = parse(data, allowed)
    except CsaError as exc:
        log.debug("CSA header not parsed (%s): removed", exc)
        return None
    kept = sanitize_fields(fields, allowed)
    if not kept:
        return None
    return build(kept)
