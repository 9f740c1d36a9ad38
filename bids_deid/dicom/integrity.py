"""Is a DICOM file whole? A strict walk of its Part 10 structure, without pydicom.

An output DICOM is written only when the file it comes from (and, for the pydicom paths, the
bytes about to be written) parse completely: every element's value lies inside the file,
every sequence and item ends where it says, encapsulated pixel data closes with its delimiter,
and the pixel data have the length the image header declares. :func:`file_defect` names the
first defect found (in words that hold no value of the file), or returns None.

The walk is the one reader's (:mod:`bids_deid.dicom.reader`) in full: explicit and implicit VR,
little and big endian, deflated datasets (inflated with a size ceiling), with and without the
128-byte preamble; this module adds the rule that pixel data match the image header.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .reader import (  # noqa: F401 - the reader's names, as this module has always offered them
    DOUBLE_PIXEL_DATA,
    FLOAT_PIXEL_DATA,
    INFLATE_MAX,
    ITEM,
    ITEM_END,
    LONG_VRS,
    MAX_DEPTH,
    PIXEL_DATA,
    SEQ_END,
    UNDEFINED,
    VRS,
    Defect,
    count_fragments,
    file_meta,
    inflate,
    open_part10,
)

# top-level values the pixel length rule needs
PIXEL_MODULE = (0x00280002, 0x00280004, 0x00280008, 0x00280010, 0x00280011, 0x00280100)


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


def dataset_start(data) -> tuple[int, dict[int, bytes]]:
    """Where the dataset starts, and the file meta values (raw), for a file with or without a preamble."""
    pos, spans = file_meta(data)
    return pos, {tag: bytes(data[x:y]) for tag, (x, y) in spans.items()}


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
        part = open_part10(data)
        ts_uid = part.transfer_syntax
        media = (part.meta.get(0x00020002) or b"").decode("latin-1").strip(" \0")
        if not part.known:
            return Inspection(None, ts_uid, {}, media)  # refused by name (syntax.refusal)
        walk = part.reader()
        records: list = []
        walk.elements(part.start, len(part.body), records)
        if not records:
            return Inspection("no data elements after the file meta", ts_uid, {}, media)
        body = part.body
        tags, top = {}, {}
        for tag, vr, _start, vpos, end, _undefined in records:
            tags[tag] = vr
            if tag in PIXEL_MODULE:
                top[tag] = bytes(body[vpos:end])
        return Inspection(pixel_defect(top, walk.pixel, part.little), ts_uid, tags, media)
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
    return count_fragments(data, pos, end)


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
