"""A fast, strict reader for the few top-level DICOM header fields raw staging needs.

Discovery reads every file of a raw folder; pydicom's general reader spends ~1.5 ms per
file building a dataset. The engine's one header reader (:func:`bids_deid.dicom.header.read_header`)
walks the byte stream of the common case only — a Part 10 file (preamble + ``DICM``),
little-endian implicit or explicit VR — up to the last wanted tag; this module turns its
values into the plain values discovery uses (a character set of ASCII, Latin-1 or UTF-8,
uncompressed pixel data) and checks that the pixel data ends where Rows x Columns x ... says.
Anything else (big endian, deflate, compressed pixels, another character set, an odd
element, a header longer than the first read) returns None, and the caller falls back
to pydicom. It never guesses: fallback is always safe.
"""

from __future__ import annotations

import os
import struct
from functools import lru_cache

from ..dicom.header import NotPlain, read_header
from ..scrub.dicom_dict import dictionary_vr, tag_for_keyword

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
_CHARSETS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}
_SPECIFIC = {"PN", "LO", "SH", "LT", "ST", "UT", "UC"}  # VRs decoded with SpecificCharacterSet
_SINGLE = {"LT", "ST", "UT", "UR"}  # never split on backslash
_TEXT = _SPECIFIC | {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI", "UR"}
_CHARSET_TAG = 0x00080005
_PIXEL_TAG = b"\xe0\x7f\x10\x00"
_FIRST_READ = 65536


class _Unsure(Exception):
    """The file is outside what this reader handles: use pydicom."""


@lru_cache(maxsize=8)
def _wanted(keywords: tuple[str, ...]) -> dict[int, tuple[str, str]]:
    out = {}
    for kw in keywords:
        tag = tag_for_keyword(kw)
        if tag is None:
            raise ValueError(f"unknown DICOM keyword {kw}")
        out[int(tag)] = (kw, dictionary_vr(tag))
    return out


def _decode(raw: bytes, vr: str, encoding: str):
    if vr == "US":
        if len(raw) % 2:
            raise _Unsure
        vals = list(struct.unpack(f"<{len(raw) // 2}H", raw))
        return None if not vals else vals[0] if len(vals) == 1 else [str(v) for v in vals]
    if vr not in _TEXT:
        raise _Unsure
    text = raw.decode(encoding if vr in _SPECIFIC else "latin-1")
    text = text.rstrip("\x00 ") if vr != "UI" else text.rstrip("\x00").rstrip()
    parts = [text] if vr in _SINGLE else text.split("\\")
    if vr in ("DS", "IS"):
        parts = [p.strip() for p in parts]
    elif vr not in _SINGLE:
        parts = [p.rstrip() for p in parts]
    if len(parts) > 1:
        return parts
    value = parts[0]
    if value == "":
        return None
    if vr == "DS":
        try:
            return float(value)
        except ValueError as exc:
            raise _Unsure from exc
    if vr == "IS":
        try:
            return int(value)
        except ValueError as exc:
            raise _Unsure from exc
    return value


def fast_header(path: str, keywords: tuple[str, ...], stop_after: int = 0x00280100) -> dict | None:
    """Header fields of a plain Part 10 file, or None when pydicom must read it.

    Parameters
    ----------
    path : str
        The file.
    keywords : tuple of str
        DICOM keywords of top-level elements to return (all at or before ``stop_after``).
    stop_after : int
        Reading stops at the first element with a larger tag (default: BitsAllocated).

    Returns
    -------
    dict or None
        ``{"fields": {keyword: plain value}, "sop_class": str, "ae_title": str | None,
        "pixels_complete": bool | None}``; ``fields`` holds only non-empty values, multi-valued
        as lists of strings, DS as float and IS/US as int (the shapes
        ``bids_deid.convert.discovery._plain`` gives pydicom values).
    """
    wanted = _wanted(tuple(keywords))
    try:
        with open(path, "rb") as fh:
            buf = fh.read(_FIRST_READ)
            size = os.fstat(fh.fileno()).st_size
            head = read_header(buf, _tags(tuple(wanted)), stop_after)
            if not head.complete or not head.stopped and len(buf) < size:
                return None  # an element cut by the first read, or a header longer than it
            explicit = not head.implicit
            raws = {tag: (vr or (wanted[tag][1] if tag in wanted else "CS"), buf[a:b])
                    for tag, (vr, a, b) in head.elements.items()}
            charset = raws.get(_CHARSET_TAG, ("CS", b""))[1].decode("latin-1").strip("\x00 ")
            if charset not in _CHARSETS:
                return None
            encoding = _CHARSETS[charset]
            fields = {}
            for tag, (vr, raw) in raws.items():
                if tag not in wanted:
                    continue
                kw, dict_vr = wanted[tag]
                if vr != dict_vr and not (vr in ("UN",) or "or" in dict_vr):
                    return None  # a VR we do not expect: let pydicom decide
                value = _decode(raw, dict_vr if vr == "UN" else vr, encoding)
                if value is not None and str(value) != "":
                    fields[kw] = value
            pixels = _pixels_complete(fh, size, fields, explicit)
    except (_Unsure, NotPlain, OSError, UnicodeDecodeError, struct.error):
        return None
    meta = head.meta
    ae = meta.get(0x00020016, b"").decode("latin-1").strip("\x00 ") or None
    sop_class = meta.get(0x00020002, b"").decode("latin-1").rstrip("\x00 ")
    return {"fields": fields, "sop_class": sop_class, "ae_title": ae, "pixels_complete": pixels}


@lru_cache(maxsize=8)
def _tags(tags: tuple[int, ...]) -> frozenset[int]:
    return frozenset((*tags, _CHARSET_TAG))


def _pixels_complete(fh, size: int, fields: dict, explicit: bool) -> bool | None:
    """True when the file ends with a Pixel Data element exactly as long as the image needs.

    None when the image size is unknown (no Rows/Columns); False when the tail does not
    look like that (truncated, trailing padding, ...: pydicom decides).
    """
    try:
        rows, cols = int(fields["Rows"]), int(fields["Columns"])
    except (KeyError, TypeError, ValueError):
        return None
    try:
        frames = int(fields.get("NumberOfFrames") or 1)
        need = rows * cols * int(fields.get("SamplesPerPixel") or 1) * int(fields["BitsAllocated"]) // 8 * frames
    except (KeyError, TypeError, ValueError):
        return False
    need += need & 1
    hdr = 12 if explicit else 8
    start = size - need - hdr
    if start < 0:
        return False
    fh.seek(start)
    head = fh.read(hdr)
    if head[:4] != _PIXEL_TAG:
        return False
    if explicit:
        return head[4:6] in (b"OW", b"OB") and struct.unpack_from("<I", head, 8)[0] == need
    return struct.unpack_from("<I", head, 4)[0] == need
