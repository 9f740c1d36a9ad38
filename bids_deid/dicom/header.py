"""A DICOM file's first top-level elements, without pydicom: the one reader stopped early.

Discovery (``convert/raw.py`` through :mod:`bids_deid.convert.fasthdr`) and the BIDS App's
sourcedata checks (:func:`bids_deid.scrub.dicom_lean.peek`) need a few header values of
every file; pydicom spends about 1.5 ms per file building a dataset. :func:`read_header`
walks the usual case only — a Part 10 file (preamble and ``DICM``), little-endian implicit or
explicit VR — up to a given tag with :class:`bids_deid.dicom.reader.Reader`, strictly: anything it does not read exactly (no preamble,
big endian, deflate, an unknown VR, elements out of order, a stray delimiter, a value past
the bytes given) raises :class:`NotPlain`, and the caller asks pydicom. Values are returned
as byte ranges; each caller converts them as pydicom would for its own use.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..scrub.dicom_dict import dictionary_vr
from .reader import VRS, Defect, Reader, file_meta
from .syntax import EXPLICIT_LE, IMPLICIT_LE, transfer_syntax


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
