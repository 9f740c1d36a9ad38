"""The one reader of DICOM Part 10 files: a strict walk that yields element records.

Every part of bids-deid that reads DICOM bytes without pydicom reads them here: the integrity
check (:mod:`bids_deid.dicom.integrity`: the whole walk), the header reader
(:mod:`bids_deid.dicom.header`: the walk stopped after a tag) and the engine's byte path
(:mod:`bids_deid.scrub.dicom_lean`: the walk, then the profile's decisions, then the writer).

A record is the tuple ``(tag, vr, start, value start, end, undefined)`` of one element of the
level walked: ``vr`` is the VR as read (None in implicit VR), ``start``/``end`` its whole byte range (for an undefined-length value, delimiter
included) and ``undefined`` whether its length was undefined. Nested sequences, items and
encapsulated pixel fragments are walked completely (each must end where it says), but only the
level asked for is recorded; :meth:`Reader.items` lists the items of one sequence value.

The walk reads explicit and implicit VR, little and big endian, deflated datasets (inflated
with a size ceiling, :func:`inflate`), with and without the 128-byte preamble. Anything it
cannot read exactly raises :class:`Defect`, whose message names where and what (never a value).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ..scrub.dicom_dict import dictionary_vr
from .syntax import transfer_syntax

# VRs with a 4-byte length in explicit VR encoding (PS3.5 7.1.2)
LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"})
VRS = frozenset(("AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR "
                 "US UT UV").split())
# the two VR bytes as read -> (VR, 4-byte length)
VR_BYTES = {v.encode(): (v, v in LONG_VRS) for v in VRS}
UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
CHARSET = 0x00080005
PIXEL_DATA, FLOAT_PIXEL_DATA, DOUBLE_PIXEL_DATA = 0x7FE00010, 0x7FE00008, 0x7FE00009
PIXEL_TAGS = (PIXEL_DATA, FLOAT_PIXEL_DATA, DOUBLE_PIXEL_DATA)
MAX_DEPTH = 64  # nested sequences deeper than this are refused (hostile files)
INFLATE_MAX = 4 << 30  # a deflated dataset may not unpack beyond 4 GiB (deflate bombs)
_U16, _U32 = struct.Struct("<H"), struct.Struct("<I")


class Defect(Exception):
    """The bytes are not a whole DICOM structure (the message says where and what, never a value)."""


class Reader:
    """The walk over one dataset's bytes ``data`` in one encoding.

    After :meth:`elements` at the top level, ``pixel`` is ``(tag, defined length or -1,
    fragments)`` of the first pixel data element met, ``in_order`` says whether the recorded
    tags rose strictly, and ``cut`` whether the walk stopped at an element running past the
    bytes given (only with ``prefix=True``).
    """

    __slots__ = ("data", "implicit", "little", "hdr", "u16", "u32", "pixel", "in_order", "cut")

    def __init__(self, data, implicit: bool, little: bool = True):
        self.data, self.implicit, self.little = data, implicit, little
        e = "<" if little else ">"
        self.u16, self.u32 = struct.Struct(e + "H"), struct.Struct(e + "I")
        self.hdr = struct.Struct(e + "HHI")
        self.pixel: tuple[int, int, int] | None = None
        self.in_order = True
        self.cut = False

    def elements(self, pos: int, end: int, out: list | None = None, depth: int = 0, in_item: bool = False,
                 stop_after: int | None = None, prefix: bool = False) -> int:
        """Walk the elements of ``data[pos:end]``, appending their records to ``out``.

        Returns where the walk stopped: after the item delimiter of an undefined-length item
        (``in_item``), before the first element past ``stop_after`` or at Pixel Data (with
        ``stop_after``), before an element cut by the end of the bytes (``prefix``: ``cut``
        is then set), else at ``end``.
        """
        if depth > MAX_DEPTH:
            raise Defect(f"sequences nested deeper than {MAX_DEPTH}")
        data, implicit, hdr = self.data, self.implicit, self.hdr
        vr_bytes, long_vrs = VR_BYTES, self.u32
        last = -1
        while pos < end:
            if pos + 8 > end:
                if prefix:
                    self.cut = True
                    return pos
                raise Defect(f"truncated element header at byte {pos}")
            group, elem, length = hdr.unpack_from(data, pos)
            tag = group << 16 | elem
            if group == 0xFFFE:
                if tag == ITEM_END and in_item:
                    if length != 0:
                        raise Defect(f"item delimiter with a length at byte {pos}")
                    return pos + 8
                raise Defect(f"stray item or delimiter tag at byte {pos}")
            if tag <= last:
                self.in_order = False
            last = tag
            if stop_after is not None and (tag > stop_after or tag == PIXEL_DATA):
                return pos
            if implicit:
                vr, vpos = None, pos + 8
            else:
                info = vr_bytes.get(data[pos + 4:pos + 6])
                if info is None:
                    raise Defect(f"unknown VR at byte {pos}")
                vr = info[0]
                if info[1]:
                    if pos + 12 > end:
                        if prefix:
                            self.cut = True
                            return pos
                        raise Defect(f"truncated element header at byte {pos}")
                    length, vpos = long_vrs.unpack_from(data, pos + 8)[0], pos + 12
                else:
                    length, vpos = self.u16.unpack_from(data, pos + 6)[0], pos + 8
            if length == UNDEFINED:
                if tag == PIXEL_DATA and depth == 0:
                    stop = self.fragments(vpos, end)
                    if out is not None:
                        out.append((tag, vr, pos, vpos, stop, True))
                    pos = stop
                    continue
                seq = vr == "SQ" or vr is None and dictionary_vr(tag) == "SQ"
                if not seq and vr not in (None, "UN"):
                    raise Defect(f"undefined length outside a sequence at byte {pos}")
                if vr == "UN" and not implicit:  # PS3.5 6.2.2: its items are implicit VR LE
                    stop = Reader(data, True, True).items(vpos, end, depth + 1, undefined=True)
                else:
                    stop = self.items(vpos, end, depth + 1, undefined=True)
                if out is not None:
                    out.append((tag, vr, pos, vpos, stop, True))
                pos = stop
                continue
            stop = vpos + length
            if stop > end:
                if prefix and depth == 0:
                    self.cut = True
                    return pos
                raise Defect(f"element ({group:04X},{elem:04X}) runs past the end of the "
                             f"{'item' if depth else 'file'} ({length} bytes declared, {end - vpos} there)")
            if length and (vr == "SQ" or vr is None and dictionary_vr(tag) == "SQ"):
                self.items(vpos, stop, depth + 1, undefined=False)
            if depth == 0 and self.pixel is None and tag in PIXEL_TAGS:
                self.pixel = (tag, length, 0)
            if out is not None:
                out.append((tag, vr, pos, vpos, stop, False))
            pos = stop
        if in_item:
            raise Defect("undefined-length item without its delimiter (truncated)")
        return pos

    def items(self, pos: int, end: int, depth: int, undefined: bool, out: list | None = None) -> int:
        """Walk the items of a sequence value starting at ``pos``; appends ``(body start, body
        end, undefined)`` of each to ``out``; returns the end of the value."""
        data = self.data
        while pos + 8 <= end:
            group, elem, length = self.hdr.unpack_from(data, pos)
            tag = group << 16 | elem
            if tag == SEQ_END:
                if not undefined:
                    raise Defect(f"sequence delimiter in a defined-length sequence at byte {pos}")
                return pos + 8
            if tag != ITEM:
                raise Defect(f"sequence holds a non-item element at byte {pos}")
            if length == UNDEFINED:
                stop = self.elements(pos + 8, end, None, depth, in_item=True)
                if out is not None:
                    out.append((pos + 8, stop - 8, True))
            else:
                stop = pos + 8 + length
                if stop > end:
                    raise Defect(f"sequence item runs past its end at byte {pos}")
                self.elements(pos + 8, stop, None, depth, in_item=False)
                if out is not None:
                    out.append((pos + 8, stop, False))
            pos = stop
        if undefined:
            raise Defect("sequence without its delimiter (truncated)")
        if pos != end:
            raise Defect("sequence ends inside an item header")
        return pos

    def fragments(self, pos: int, end: int) -> int:
        """Walk encapsulated pixel data whose items start at ``pos``; returns their end and
        sets ``pixel`` (the first item, the offset table, is not counted as a fragment)."""
        data, n = self.data, 0
        while pos + 8 <= end:
            group, elem, length = self.hdr.unpack_from(data, pos)
            tag = group << 16 | elem
            if tag == SEQ_END:
                self.pixel = (PIXEL_DATA, -1, max(0, n - 1))
                return pos + 8
            if tag != ITEM or length == UNDEFINED:
                raise Defect(f"encapsulated pixel data holds a non-item element at byte {pos}")
            if pos + 8 + length > end:
                raise Defect(f"pixel data fragment {n} runs past the end of the file "
                             f"({length} bytes declared, {end - pos - 8} there)")
            pos += 8 + length
            n += 1
        raise Defect(f"encapsulated pixel data without its delimiter (truncated after {max(0, n - 1)} fragment(s))")


def sequence_items(data, vpos: int, end: int, undefined: bool, implicit: bool = False,
                   little: bool = True) -> list[tuple[int, int, bool]]:
    """``(body start, body end, undefined)`` of each item of the sequence value at ``data[vpos:end]``."""
    out: list = []
    Reader(data, implicit, little).items(vpos, end, 1, undefined, out)
    return out


def count_fragments(data, pos: int, end: int) -> int:
    """Fragments (offset table not counted) of encapsulated pixel data whose items start at ``pos``."""
    walk = Reader(data, False, True)
    walk.fragments(pos, end)
    return walk.pixel[2]


# ------------------------------------------------------------------ file meta and encoding
def file_meta(data, strict: bool = True) -> tuple[int, dict[int, tuple[int, int]]]:
    """Where the dataset starts, and the file meta elements ``tag -> (value start, end)``, for a
    file with the 128-byte preamble and ``DICM``, with ``DICM`` only, or with neither."""
    pos, records = file_meta_records(data, strict)
    return pos, {tag: (vpos, end) for tag, _vr, vpos, end in records}


def file_meta_records(data, strict: bool = True) -> tuple[int, list[tuple[int, str, int, int]]]:
    """:func:`file_meta` with the VR: where the dataset starts, and ``(tag, VR, value start,
    end)`` of each file meta element in file order."""
    pos = 0
    n = len(data)
    if n >= 132 and data[128:132] == b"DICM":
        pos = 132
    elif data[:4] == b"DICM":
        pos = 4
    records: list[tuple[int, str, int, int]] = []
    if pos == 0 and not (n >= 4 and data[0:2] == b"\x02\x00"):
        return 0, records
    while pos + 8 <= n and data[pos:pos + 2] == b"\x02\x00":
        info = VR_BYTES.get(data[pos + 4:pos + 6])
        if info is None:
            raise Defect("file meta not in explicit VR")
        if info[1]:
            if pos + 12 > n:
                raise Defect("truncated file meta")
            length, vpos = _U32.unpack_from(data, pos + 8)[0], pos + 12
        else:
            length, vpos = _U16.unpack_from(data, pos + 6)[0], pos + 8
        if length == UNDEFINED or vpos + length > n:
            raise Defect("truncated file meta")
        records.append((0x00020000 | _U16.unpack_from(data, pos + 2)[0], info[0], vpos, vpos + length))
        pos = vpos + length
    if strict and pos + 8 > n and pos < n:
        raise Defect(f"truncated element header at byte {pos}")
    return pos, records


def guess_encoding(data, pos: int) -> tuple[bool, bool]:
    """(implicit, little endian) of a dataset without a transfer syntax (as pydicom guesses)."""
    if pos + 6 <= len(data):
        vr = data[pos + 4:pos + 6]
        explicit = vr.isalpha() and vr in VR_BYTES
        little = data[pos] != 0 or data[pos + 1] == 0  # group 0008 reads 08 00 little endian
        return not explicit, little
    return True, True


def inflate(raw) -> bytes:
    """A deflated dataset (raw deflate, PS3.5 A.5) unpacked, refusing more than :data:`INFLATE_MAX`."""
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = d.decompress(bytes(raw), INFLATE_MAX)
    except zlib.error as exc:
        raise Defect("deflated dataset does not inflate (corrupt or truncated)") from exc
    if d.unconsumed_tail:
        raise Defect(f"deflated dataset unpacks beyond {INFLATE_MAX >> 30} GiB")
    if not d.eof:
        raise Defect("deflated dataset is truncated")
    return out


@dataclass
class Part10:
    """A file opened for the walk: its file meta (raw values), the transfer syntax UID ('' when
    there is none), the dataset bytes ``body`` from ``start`` (inflated when deflated), and the
    encoding the walk reads them in (``known`` False: a transfer syntax the engine refuses)."""

    meta: dict[int, bytes]
    transfer_syntax: str
    body: object
    start: int
    implicit: bool
    little: bool
    known: bool = True
    explicit_looking: bool = False  # the first element contradicts an implicit transfer syntax

    def reader(self) -> Reader:
        return Reader(self.body, self.implicit, self.little)


def open_part10(data, strict: bool = True) -> Part10:
    """Read the file meta of ``data`` and settle the dataset's encoding (see :class:`Part10`).

    As pydicom, a dataset whose first element contradicts the transfer syntax's VR encoding is
    read in the encoding it has (``explicit_looking`` records it for implicit syntaxes).
    """
    pos, spans = file_meta(data, strict)
    meta = {tag: bytes(data[a:b]) for tag, (a, b) in spans.items()}
    ts_raw = meta.get(0x00020010)
    body, start = data, pos
    if ts_raw is None:
        implicit, little = guess_encoding(data, pos)
        return Part10(meta, "", body, start, implicit, little)
    ts_uid = ts_raw.decode("latin-1").strip(" \0")
    ts = transfer_syntax(ts_uid)
    if ts is None:
        return Part10(meta, ts_uid, body, start, True, True, known=False)
    implicit, little = ts.implicit, ts.little
    if ts.deflated:
        body, start = inflate(data[pos:]), 0
    looks = False
    if start + 6 <= len(body) and body[start + 4:start + 6] != b"\0\0":
        read_implicit = body[start + 4:start + 6] not in VR_BYTES
        looks = implicit and not read_implicit
        implicit = read_implicit
    return Part10(meta, ts_uid, body, start, implicit, little, explicit_looking=looks)
