"""The one reader of a DICOM file's first top-level elements, without pydicom.

Discovery (``convert/raw.py`` through :mod:`bids_deid.convert.fasthdr`) and the BIDS App's
sourcedata checks (:func:`bids_deid.scrub.dicom_lean.peek`) need a few header values of
every file; pydicom spends about 1.5 ms per file building a dataset. :func:`read_header`
walks the usual case only — a Part 10 file (preamble and ``DICM``), little-endian implicit or
explicit VR — up to a given tag, strictly: anything it does not read exactly (no preamble,
big endian, deflate, an unknown VR, elements out of order, a stray delimiter, a value past
the bytes given) raises :class:`NotPlain`, and the caller asks pydicom. Values are returned
as byte ranges; each caller converts them as pydicom would for its own use.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..scrub.dicom_dict import dictionary_vr
from .integrity import LONG_VRS, PIXEL_DATA, UNDEFINED, VRS
from .syntax import EXPLICIT_LE, IMPLICIT_LE

_TAG = struct.Struct("<HH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
MAX_DEPTH = 16


class NotPlain(Exception):
    """The file is outside what this reader handles exactly: pydicom must read it."""


@dataclass
class Header:
    """What :func:`read_header` read.

    ``meta``: file meta values (raw bytes); ``transfer_syntax``: its UID; ``implicit``;
    ``elements``: wanted top-level tag -> (VR as read, None when implicit, value start, value
    end) in ``data``; ``complete``: the walk reached ``stop_after`` (or Pixel Data, or the end
    of the file) inside the bytes given; ``stopped``: it met the element that ends it.
    """

    data: bytes
    meta: dict[int, bytes]
    transfer_syntax: str
    implicit: bool
    elements: dict[int, tuple[str | None, int, int]] = field(default_factory=dict)
    complete: bool = False
    stopped: bool = False  # the walk met an element after ``stop_after`` (or Pixel Data)


def _meta(data: bytes) -> tuple[dict[int, bytes], int]:
    if len(data) < 140 or data[128:132] != b"DICM":
        raise NotPlain("no DICM preamble")
    pos, meta = 132, {}
    while pos + 8 <= len(data) and data[pos:pos + 2] == b"\x02\x00":
        vr = data[pos + 4:pos + 6]
        if vr.decode("latin-1") not in VRS:
            raise NotPlain("file meta not in explicit VR")
        if vr.decode("latin-1") in LONG_VRS:
            if pos + 12 > len(data):
                raise NotPlain("truncated file meta")
            length, hdr = _U32.unpack_from(data, pos + 8)[0], 12
        else:
            length, hdr = _U16.unpack_from(data, pos + 6)[0], 8
        if length == UNDEFINED or pos + hdr + length > len(data):
            raise NotPlain("odd file meta")
        meta[_TAG.unpack_from(data, pos)[0] << 16 | _TAG.unpack_from(data, pos)[1]] = data[pos + hdr:pos + hdr + length]
        pos += hdr + length
    return meta, pos


def skip_sequence(data: bytes, pos: int, implicit: bool, depth: int = 0) -> int:
    """Position after an undefined-length sequence whose items start at ``pos``."""
    if depth > MAX_DEPTH:
        raise NotPlain("sequences nested too deep")
    n = len(data)
    while pos + 8 <= n:
        group, elem = _TAG.unpack_from(data, pos)
        tag, length = group << 16 | elem, _U32.unpack_from(data, pos + 4)[0]
        pos += 8
        if tag == _SEQ_END:
            return pos
        if tag != _ITEM:
            raise NotPlain("malformed sequence")
        if length != UNDEFINED:
            pos += length
            continue
        while True:  # an undefined-length item: its elements up to the item delimiter
            if pos + 8 > n:
                raise NotPlain("truncated item")
            group, elem = _TAG.unpack_from(data, pos)
            tag = group << 16 | elem
            if tag == _ITEM_END:
                pos += 8
                break
            if group == 0xFFFE:
                raise NotPlain("stray delimiter")
            length, hdr = _length(data, pos, implicit)
            pos = skip_sequence(data, pos + hdr, implicit, depth + 1) if length == UNDEFINED else pos + hdr + length
    raise NotPlain("truncated sequence")


def _length(data: bytes, pos: int, implicit: bool) -> tuple[int, int]:
    if implicit:
        return _U32.unpack_from(data, pos + 4)[0], 8
    vr = data[pos + 4:pos + 6].decode("latin-1")
    if vr not in VRS:
        raise NotPlain("unknown VR")
    if vr in LONG_VRS:
        if pos + 12 > len(data):
            raise NotPlain("truncated element")
        return _U32.unpack_from(data, pos + 8)[0], 12
    return _U16.unpack_from(data, pos + 6)[0], 8


def read_header(data: bytes, wanted: frozenset[int] | set[int], stop_after: int,
                syntaxes=(IMPLICIT_LE, EXPLICIT_LE)) -> Header:
    """Walk the top-level elements of the Part 10 bytes ``data`` up to tag ``stop_after``.

    Records the elements whose tag is in ``wanted``; the walk stops before the first element
    after ``stop_after``, at Pixel Data, or at the end of ``data`` (``complete`` is then True
    only when no element was cut). Raises :class:`NotPlain` for a file whose transfer syntax
    is not in ``syntaxes`` (a tuple of UIDs, or a predicate on the UID) or that it does not
    read exactly (see the module doc).
    """
    try:
        meta, pos = _meta(data)
        ts = meta.get(0x00020010, b"").decode("latin-1").rstrip("\0 ")
        if not (syntaxes(ts) if callable(syntaxes) else ts in syntaxes):
            raise NotPlain("transfer syntax")
        implicit = ts == IMPLICIT_LE
        if implicit and pos + 6 <= len(data) and data[pos + 4:pos + 6].decode("latin-1") in VRS:
            raise NotPlain("implicit transfer syntax but explicit-looking data")
        out = Header(data, meta, ts, implicit)
        elements, n, last = out.elements, len(data), -1
        while pos + 8 <= n:
            group, elem = _TAG.unpack_from(data, pos)
            tag = group << 16 | elem
            if tag <= last or group == 0xFFFE:
                raise NotPlain("elements out of order or a stray delimiter")
            last = tag
            if tag > stop_after or tag == PIXEL_DATA:
                out.complete = out.stopped = True
                return out
            length, hdr = _length(data, pos, implicit)
            vpos = pos + hdr
            if length == UNDEFINED:
                if not implicit and data[pos + 4:pos + 6] not in (b"SQ", b"UN"):
                    raise NotPlain("undefined length outside a sequence")
                pos = skip_sequence(data, vpos, implicit or data[pos + 4:pos + 6] == b"UN")
                continue
            end = vpos + length
            if end > n:
                return out  # cut by the bytes given (complete stays False)
            if tag in wanted:
                elements[tag] = (None if implicit else data[pos + 4:pos + 6].decode("latin-1"), vpos, end)
            pos = end
        out.complete = pos == n
        return out
    except (struct.error, UnicodeDecodeError, IndexError) as exc:
        raise NotPlain("malformed element") from exc


def implicit_vr(tag: int) -> str | None:
    """The VR an implicit-VR element of ``tag`` has (the dictionary's; None when unknown)."""
    return dictionary_vr(tag)
