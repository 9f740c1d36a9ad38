"""Is a DICOM file whole? A strict walk of its Part 10 structure, without pydicom.

An output DICOM is written only when the file it comes from (and, for the pydicom paths, the
bytes about to be written) parse completely: every element's value lies inside the file,
every sequence and item ends where it says, encapsulated pixel data closes with its delimiter,
and the pixel data have the length the image header declares. :func:`file_defect` names the
first defect found (in words that hold no value of the file), or returns None.

The walk reads explicit and implicit VR, little and big endian, and deflated datasets
(inflated with a size ceiling), with and without the 128-byte preamble.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from ..scrub.dicom_dict import dictionary_vr
from .syntax import transfer_syntax

# VRs with a 4-byte length in explicit VR encoding (PS3.5 7.1.2)
LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"})
VRS = frozenset(("AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR "
                 "US UT UV").split())
UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
PIXEL_DATA, FLOAT_PIXEL_DATA, DOUBLE_PIXEL_DATA = 0x7FE00010, 0x7FE00008, 0x7FE00009
MAX_DEPTH = 64  # nested sequences deeper than this are refused (hostile files)
INFLATE_MAX = 4 << 30  # a deflated dataset may not unpack beyond 4 GiB (deflate bombs)
# top-level values the pixel length rule needs: tag -> VR (as the dictionary gives them)
_PIXEL_MODULE = {0x00280002: "US", 0x00280004: "CS", 0x00280008: "IS", 0x00280010: "US", 0x00280011: "US",
                 0x00280100: "US"}


class Defect(Exception):
    """The file is not whole (the message says where and what, never a value)."""


class _Walk:
    __slots__ = ("data", "implicit", "little", "u16", "u32", "hdr", "top", "pixel", "tags")

    def __init__(self, data, implicit: bool, little: bool):
        self.data, self.implicit, self.little = data, implicit, little
        e = "<" if little else ">"
        self.u16, self.u32 = struct.Struct(e + "H"), struct.Struct(e + "I")
        self.hdr = struct.Struct(e + "HHI")
        self.top: dict[int, bytes] = {}
        self.pixel: tuple[int, int, int] | None = None  # (tag, defined length or -1, fragments)
        self.tags: dict[int, str | None] = {}  # top-level tag -> VR as read (None: implicit)

    def elements(self, pos: int, end: int, depth: int, in_item: bool) -> int:
        """Walk the elements of ``data[pos:end]``; returns where the walk stopped (an item
        delimiter ends an undefined-length item)."""
        if depth > MAX_DEPTH:
            raise Defect(f"sequences nested deeper than {MAX_DEPTH}")
        data = self.data
        while pos < end:
            if pos + 8 > end:
                raise Defect(f"truncated element header at byte {pos}")
            group, elem, length = self.hdr.unpack_from(data, pos)
            tag = group << 16 | elem
            if group == 0xFFFE:
                if tag == ITEM_END and in_item:
                    if length != 0:
                        raise Defect(f"item delimiter with a length at byte {pos}")
                    return pos + 8
                raise Defect(f"stray item or delimiter tag at byte {pos}")
            if self.implicit:
                vr, vpos = None, pos + 8
            else:
                vr = data[pos + 4:pos + 6].decode("latin-1")
                if vr not in VRS:
                    raise Defect(f"unknown VR at byte {pos}")
                if vr in LONG_VRS:
                    if pos + 12 > end:
                        raise Defect(f"truncated element header at byte {pos}")
                    length, vpos = self.u32.unpack_from(data, pos + 8)[0], pos + 12
                else:
                    length, vpos = self.u16.unpack_from(data, pos + 6)[0], pos + 8
            seq = vr == "SQ" or vr is None and dictionary_vr(tag) == "SQ"
            if depth == 0:
                self.tags[tag] = vr
            if length == UNDEFINED:
                if tag == PIXEL_DATA and depth == 0:
                    pos = self.fragments(vpos, end)
                    continue
                if not seq and vr not in (None, "UN"):
                    raise Defect(f"undefined length outside a sequence at byte {pos}")
                if vr == "UN" and not self.implicit:  # PS3.5 6.2.2: its items are implicit VR LE
                    sub = _Walk(data, True, True)
                    pos = sub.items(vpos, end, depth + 1, undefined=True)
                else:
                    pos = self.items(vpos, end, depth + 1, undefined=True)
                continue
            stop = vpos + length
            if stop > end:
                raise Defect(f"element ({group:04X},{elem:04X}) runs past the end of the "
                             f"{'item' if depth else 'file'} ({length} bytes declared, {end - vpos} there)")
            if seq and length:
                self.items(vpos, stop, depth + 1, undefined=False)
            if depth == 0:
                if tag in _PIXEL_MODULE:
                    self.top[tag] = bytes(data[vpos:stop])
                elif tag in (PIXEL_DATA, FLOAT_PIXEL_DATA, DOUBLE_PIXEL_DATA) and self.pixel is None:
                    self.pixel = (tag, length, 0)
            pos = stop
        if in_item:
            raise Defect("undefined-length item without its delimiter (truncated)")
        return pos

    def items(self, pos: int, end: int, depth: int, undefined: bool) -> int:
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
                pos = self.elements(pos + 8, end, depth, in_item=True)
            else:
                stop = pos + 8 + length
                if stop > end:
                    raise Defect(f"sequence item runs past its end at byte {pos}")
                self.elements(pos + 8, stop, depth, in_item=False)
                pos = stop
        if undefined:
            raise Defect("sequence without its delimiter (truncated)")
        if pos != end:
            raise Defect("sequence ends inside an item header")
        return pos

    def fragments(self, pos: int, end: int) -> int:
        data, n = self.data, 0
        while pos + 8 <= end:
            group, elem, length = self.hdr.unpack_from(data, pos)
            tag = group << 16 | elem
            if tag == SEQ_END:
                self.pixel = (PIXEL_DATA, -1, max(0, n - 1))  # the first item is the offset table
                return pos + 8
            if tag != ITEM or length == UNDEFINED:
                raise Defect(f"encapsulated pixel data holds a non-item element at byte {pos}")
            if pos + 8 + length > end:
                raise Defect(f"pixel data fragment {n} runs past the end of the file "
                             f"({length} bytes declared, {end - pos - 8} there)")
            pos += 8 + length
            n += 1
        raise Defect(f"encapsulated pixel data without its delimiter (truncated after {max(0, n - 1)} fragment(s))")


def _int(raw: bytes | None, vr: str, little: bool) -> int | None:
    if not raw:
        return None
    try:
        if vr == "US":
            return struct.unpack_from("<H" if little else ">H", raw)[0]
        text = raw.decode("latin-1").strip(" \0").split("\\")[0]
        return int(text) if text else None
    except (struct.error, ValueError):
        return None


def expected_pixel_length(rows: int, cols: int, samples: int, bits: int, frames: int,
                          photometric: str = "") -> int:
    """Bytes of native pixel data that the image header declares (odd lengths padded to even)."""
    if photometric in ("YBR_FULL_422", "YBR_PARTIAL_422") and samples == 3:
        samples = 2  # two samples per pixel stored on average (PS3.3 C.7.6.3.1.2)
    if bits == 1:
        n = (rows * cols * samples * frames + 7) // 8
    else:
        n = rows * cols * samples * frames * ((bits + 7) // 8)
    return n + (n & 1)


def pixel_defect(values: dict[int, bytes], pixel: tuple[int, int, int] | None, little: bool = True) -> str | None:
    """Why the pixel data do not match the image header (``values``: raw top-level values of
    the image pixel module), or None."""
    if pixel is None:
        return None
    tag, length, fragments = pixel
    rows = _int(values.get(0x00280010), "US", little)
    cols = _int(values.get(0x00280011), "US", little)
    if tag == PIXEL_DATA:
        bits = _int(values.get(0x00280100), "US", little)
    else:
        bits = 32 if tag == FLOAT_PIXEL_DATA else 64
    samples = _int(values.get(0x00280002), "US", little) or 1
    frames = _int(values.get(0x00280008), "IS", little)
    frames = 1 if frames is None else frames
    if length == -1:  # encapsulated
        if fragments < 1:
            return "encapsulated pixel data hold no fragment"
        if frames > fragments:
            return f"encapsulated pixel data hold {fragments} fragment(s) for {frames} frame(s)"
        return None
    if length == 0:
        return None  # an empty Pixel Data element declares nothing to check
    if not rows or not cols or not bits:
        return "pixel data without Rows, Columns or Bits Allocated"
    if frames < 1:
        return "pixel data with a Number of Frames below 1"
    photometric = (values.get(0x00280004) or b"").decode("latin-1").strip(" \0").upper()
    want = expected_pixel_length(rows, cols, samples, bits, frames, photometric)
    if length + (length & 1) < want:
        return f"pixel data shorter than the header declares ({length} of {want} bytes)"
    return None


def _dataset_start(data) -> tuple[int, dict[int, bytes]]:
    """Where the dataset starts, and the file meta values (raw), for a file with or without a preamble."""
    pos = 0
    if len(data) >= 132 and data[128:132] == b"DICM":
        pos = 132
    elif data[:4] == b"DICM":
        pos = 4
    meta: dict[int, bytes] = {}
    if pos == 0 and not (len(data) >= 4 and data[0:2] == b"\x02\x00"):
        return 0, meta
    u16, u32 = struct.Struct("<H"), struct.Struct("<I")
    while pos + 8 <= len(data) and data[pos:pos + 2] == b"\x02\x00":
        vr = data[pos + 4:pos + 6].decode("latin-1")
        if vr not in VRS:
            raise Defect("file meta not in explicit VR")
        if vr in LONG_VRS:
            if pos + 12 > len(data):
                raise Defect("truncated file meta")
            length, vpos = u32.unpack_from(data, pos + 8)[0], pos + 12
        else:
            length, vpos = u16.unpack_from(data, pos + 6)[0], pos + 8
        if length == UNDEFINED or vpos + length > len(data):
            raise Defect("truncated file meta")
        tag = 0x00020000 | u16.unpack_from(data, pos + 2)[0]
        meta[tag] = bytes(data[vpos:vpos + length])
        pos = vpos + length
    if pos + 8 > len(data) and pos < len(data):
        raise Defect(f"truncated element header at byte {pos}")
    return pos, meta


def _guess_encoding(data, pos: int) -> tuple[bool, bool]:
    """(implicit, little endian) of a dataset without a transfer syntax (as pydicom guesses)."""
    if pos + 6 <= len(data):
        vr = data[pos + 4:pos + 6]
        explicit = vr.isalpha() and vr.decode("latin-1") in VRS
        little = data[pos] != 0 or data[pos + 1] == 0  # group 0008 reads 08 00 little endian
        return not explicit, little
    return True, True


@dataclass
class Inspection:
    """What :func:`inspect` found: the first defect (None when whole), the transfer syntax
    UID of the file meta ('' without one), and the top-level tags with the VR read."""

    defect: str | None
    transfer_syntax: str = ""
    tags: dict[int, str | None] = field(default_factory=dict)
    media_sop_class: str = ""


def inspect(data: bytes | bytearray | memoryview) -> Inspection:
    """Walk the Part 10 file ``data`` completely (see the module doc)."""
    ts_uid, media = "", ""
    try:
        pos, meta = _dataset_start(data)
        media = (meta.get(0x00020002) or b"").decode("latin-1").strip(" \0")
        ts_raw = meta.get(0x00020010)
        body, start = data, pos
        if ts_raw is None:
            implicit, little = _guess_encoding(data, pos)
        else:
            ts_uid = ts_raw.decode("latin-1").strip(" \0")
            ts = transfer_syntax(ts_uid)
            if ts is None:
                return Inspection(None, ts_uid, {}, media)  # refused by name (syntax.refusal)
            implicit, little = ts.implicit, ts.little
            if ts.deflated:
                body, start = inflate(data[pos:]), 0
        if start + 6 <= len(body) and body[start + 4:start + 6] != b"\0\0":
            # as pydicom: a dataset whose first element contradicts the transfer syntax's VR
            # encoding is read in the encoding it has
            implicit = body[start + 4:start + 6].decode("latin-1") not in VRS
        walk = _Walk(body, implicit, little)
        walk.elements(start, len(body), 0, in_item=False)
        if not walk.tags:
            return Inspection("no data elements after the file meta", ts_uid, {}, media)
        return Inspection(pixel_defect(walk.top, walk.pixel, little), ts_uid, walk.tags, media)
    except Defect as exc:
        return Inspection(str(exc), ts_uid, {}, media)
    except (struct.error, IndexError, UnicodeDecodeError):  # pragma: no cover - bounds are checked above
        return Inspection("malformed element structure", ts_uid, {}, media)


def file_defect(data: bytes | bytearray | memoryview) -> str | None:
    """The first structural defect of the Part 10 file ``data``, or None when it is whole."""
    return inspect(data).defect


def fragments(data, pos: int, end: int) -> int:
    """Fragments (offset table not counted) of encapsulated pixel data whose items start at
    ``pos``; raises :class:`Defect` when they do not close inside ``data[:end]``."""
    walk = _Walk(data, False, True)
    walk.fragments(pos, end)
    return walk.pixel[2]


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


def inspect_path(path) -> Inspection:
    """:func:`inspect` of the file at ``path`` (memory-mapped when large)."""
    import mmap
    import os

    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return Inspection("empty file")
        if size <= 64 << 20:
            return inspect(fh.read())
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return inspect(mm)
