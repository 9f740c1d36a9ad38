"""A DICOM file's first top-level elements, without pydicom: the one reader stopped early.

Discovery (``convert/raw.py`` through :mod:`bids_deid.convert.fasthdr`) and the BIDS App's
sourcedata checks (:func:`peek`, :func:`source_header`) need a few header values of
every file; pydicom spends about 1.5 ms per file building a dataset. :func:`read_header`
walks the usual case only — a Part 10 file (preamble and ``DICM``), little-endian implicit or
explicit VR — up to a given tag with :class:`bids_deid.dicom.reader.Reader`, strictly: anything it does not read exactly (no preamble,
big endian, deflate, an unknown VR, elements out of order, a stray delimiter, a value past
the bytes given) raises :class:`NotPlain`, and the caller asks pydicom. Values are returned
as byte ranges; each caller converts them as pydicom would for its own use.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, field

from ..scrub.dicom_core import CHARSET, READ_WHOLE_MAX, Fallback
from ..scrub.dicom_dict import dictionary_vr
from ..scrub.dicom_values import CHARSET_VRS, CHARSETS, PLAIN, items_of
from .reader import VRS, Defect, Reader, file_meta
from .syntax import EXPLICIT_LE, IMPLICIT_LE, transfer_syntax

_PEEK_SYNTAXES = re.compile(r"1\.2\.840\.10008\.1\.2(\.1|\.4\.\d+|\.5)?\Z")


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
        if len(data) < 140 or data[128:132] != b"DICM":
            raise NotPlain("no DICM preamble")
        pos, spans = file_meta(data, strict=False)
        meta = {tag: bytes(data[x:y]) for tag, (x, y) in spans.items()}
        ts = meta.get(0x00020010, b"").decode("latin-1").rstrip("\0 ")
        if not (syntaxes(ts) if callable(syntaxes) else ts in syntaxes):
            raise NotPlain("transfer syntax")
        syntax = transfer_syntax(ts)
        if syntax is None or not syntax.little or syntax.deflated:
            raise NotPlain("transfer syntax")
        implicit = syntax.implicit
        if implicit and pos + 6 <= len(data) and data[pos + 4:pos + 6].isalpha() and \
                data[pos + 4:pos + 6].decode("latin-1") in VRS:
            raise NotPlain("implicit transfer syntax but explicit-looking data")
        out = Header(data, meta, ts, implicit)
        walk = Reader(data, implicit, True)
        records: list = []
        stop = walk.elements(pos, len(data), records, stop_after=stop_after, prefix=True)
        if not walk.in_order:
            raise NotPlain("elements out of order")
        for tag, vr, _start, vpos, end, undefined in records:
            if undefined and not implicit and vr not in ("SQ", "UN"):
                raise NotPlain("undefined length outside a sequence")
            if tag in wanted and not undefined:
                out.elements[tag] = (vr, vpos, end)
        if walk.cut:
            return out  # an element cut by the bytes given (complete stays False)
        out.stopped = stop < len(data)
        out.complete = True
        return out
    except Defect as exc:
        raise NotPlain(str(exc)) from None
    except (struct.error, UnicodeDecodeError, IndexError) as exc:
        raise NotPlain("malformed element") from exc


def implicit_vr(tag: int) -> str | None:
    """The VR an implicit-VR element of ``tag`` has (the dictionary's; None when unknown)."""
    return dictionary_vr(tag)


# ------------------------------------------------------------------ reading a few values
def peek(path, tags: frozenset[int]) -> dict[int, list[str]] | None:
    """The values of the top-level elements ``tags`` of a DICOM file, read without pydicom.

    Returns ``{tag: [values]}`` for the tags present (string values as pydicom gives them, not
    stripped), or None when the file is not one this reader handles exactly (no preamble, big
    endian, deflated, other character sets, malformed): the caller then asks pydicom.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(READ_WHOLE_MAX)
        return _peek(head, tags)
    except (Fallback, OSError, UnicodeDecodeError, IndexError, ValueError, struct.error):
        return None


def _peek_syntax(ts: str) -> bool:
    """Implicit or explicit VR little endian, native or encapsulated pixels (not deflated)."""
    return bool(_PEEK_SYNTAXES.match(ts))


def _peek(data: bytes, tags: frozenset[int]) -> dict[int, list[str]]:
    try:
        head = read_header(data, tags | {CHARSET}, max(tags), _peek_syntax)
    except NotPlain as exc:
        raise Fallback(str(exc)) from None
    if not head.complete:
        raise Fallback("truncated element")
    codec = "latin-1"
    cs = head.elements.get(CHARSET)
    if cs is not None:
        name = data[cs[1]:cs[2]].strip(b" \0")
        if name not in CHARSETS:
            raise Fallback("character set")
        codec = CHARSETS[name]
    out: dict[int, list[str]] = {}
    for tag, (vr, a, b) in head.elements.items():
        if tag not in tags:
            continue
        if vr is None:
            vr = dictionary_vr(tag)
        if vr is None or vr not in PLAIN and vr not in CHARSET_VRS and vr != "UI":
            raise Fallback("value of an unusual VR")
        out[tag] = items_of(vr, data[a:b], codec)
    return out


# What the BIDS-App looks at before the engine, for each DICOM under sourcedata/ (whole-slide
# check, burned-in risk, face in the pixels): SOPClassUID, Modality, BurnedInAnnotation,
# ScanningSequence, SequenceName, ImageType.
SOURCE_TAGS = frozenset({0x00080016, 0x00080060, 0x00280301, 0x00180020, 0x00180024, 0x00080008})
_SOURCE_CACHE: dict = {}


def source_header(path) -> dict[int, list[str]] | None:
    """:func:`peek` of :data:`SOURCE_TAGS`, remembered for the last few files (the App asks
    twice per file); None when pydicom must read the file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (os.fspath(path), st.st_mtime_ns, st.st_size)
    if key not in _SOURCE_CACHE:
        if len(_SOURCE_CACHE) >= 8:
            _SOURCE_CACHE.clear()
        _SOURCE_CACHE[key] = peek(path, SOURCE_TAGS)
    return _SOURCE_CACHE[key]
