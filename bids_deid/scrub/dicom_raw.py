"""Raw DICOM file access for the pydicom raw path of the de-identification engine.

:func:`read_raw` builds, from the element records of the one reader
(:class:`bids_deid.dicom.reader.Reader`: this module has no walk of its own), a pydicom
:class:`~pydicom.dataset.Dataset` whose top-level elements stay *raw* (bytes, not converted) and remembers where each element's bytes
lie in the file. Pixel Data is never read into Python: only its byte range is kept.
:func:`write_raw` writes the (de-identified) dataset back: elements the engine did not touch
are copied byte for byte, changed or new ones are encoded by pydicom, and the Pixel Data range
is copied from the input file (``os.copy_file_range`` when the file is large).

Anything unusual raises :class:`Fallback` so the caller uses the full pydicom path instead:
no preamble/``DICM``, big endian, deflated or private transfer syntaxes, a dataset whose
encoding does not match its transfer syntax, truncated or malformed elements.
"""

from __future__ import annotations

import mmap
import os
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import IO

from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO, DicomFileLike
from pydicom.filereader import read_sequence
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.uid import UID, ImplicitVRLittleEndian
from pydicom.values import convert_string

from ..atomic import atomic_open, atomic_write_parts
from ..dicom.reader import Defect, Reader, file_meta_records
from .dicom_core import (  # noqa: F401 - Fallback and PIXEL_DATA re-exported
    CHARSET,
    META_VRS,
    PIXEL_DATA,
    READ_WHOLE_MAX,
    TAG,
    U32,
    UNDEFINED,
    VRS,
    Fallback,
    element_bytes,
    meta_group,
)


@dataclass
class RawFile:
    """A parsed file: raw dataset, file meta and where each top-level element lies.

    ``ds`` holds the top-level elements except Pixel Data; ``originals[tag]`` is the element
    object as parsed and ``spans[tag]`` its byte range ``(start, end)`` in ``data``; an element
    still identical (``is``) to its original is written back as those bytes.
    """

    data: bytes | mmap.mmap
    fh: IO[bytes]
    ds: Dataset
    meta: FileMetaDataset
    implicit: bool
    spans: dict[int, tuple[int, int]] = field(default_factory=dict)
    originals: dict[int, object] = field(default_factory=dict)
    pixel: tuple[int, int] | None = None
    # With a ``skip`` callable (see read_raw): the top-level elements in file order, each the
    # tag of an element of ``ds`` or ``(tag, skip(tag, vr))`` for one left out of ``ds``.
    events: list | None = None

    def close(self) -> None:
        """Release the file (and the mapping of a large file)."""
        if isinstance(self.data, mmap.mmap):
            self.data.close()
        self.fh.close()


def _parse_meta(data, size: int) -> tuple[FileMetaDataset, int]:
    """The file meta as raw elements (walked by the one reader), and where the dataset starts."""
    if size < 144 or data[128:132] != b"DICM":
        raise Fallback("no DICM preamble")
    try:
        pos, records = file_meta_records(data)
    except Defect as exc:
        raise Fallback(str(exc)) from None
    elems = {}
    for tag, vr, vpos, end in records:
        length = end - vpos
        value = data[vpos:end] if length else empty_value_for_VR(vr, raw=True)
        elems[BaseTag(tag)] = RawDataElement(BaseTag(tag), vr, length, value, vpos, False, True)
    return FileMetaDataset(elems), pos


def _transfer_syntax_implicit(meta: FileMetaDataset) -> bool:
    """True for implicit VR LE, False for explicit VR LE (incl. encapsulated); else Fallback."""
    try:
        ts = meta.TransferSyntaxUID
        if ts == ImplicitVRLittleEndian:
            return True
        if ts.is_private or not ts.is_transfer_syntax or ts.is_deflated or not ts.is_little_endian or ts.is_implicit_VR:
            raise Fallback(f"transfer syntax {ts}")
    except (AttributeError, ValueError, TypeError) as exc:
        raise Fallback("no usable transfer syntax") from exc
    return False


def read_raw(path: str | os.PathLike, skip=None) -> RawFile:
    """Parse ``path`` (see module doc); raises :class:`Fallback` for anything unusual.

    ``skip[tag, vr]`` (optional mapping, e.g. a dict with ``__missing__``; ``vr`` None for
    implicit VR) is looked up for every top-level element: a true answer leaves the element out
    of ``ds`` (it is neither converted nor written) and records ``(tag, answer)`` in ``events``
    at its place in the file order.
    """
    fh = open(path, "rb")  # noqa: SIM115 - owned by the returned RawFile
    try:
        size = os.fstat(fh.fileno()).st_size
        data = fh.read() if size <= READ_WHOLE_MAX else mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            meta, pos = _parse_meta(data, size)
            implicit = _transfer_syntax_implicit(meta)
            raw = RawFile(data, fh, Dataset(), meta, implicit)
            _parse_dataset(raw, pos, size, skip)
        except BaseException:
            if isinstance(data, mmap.mmap):
                data.close()
            raise
    except BaseException:
        fh.close()
        raise
    return raw


def _parse_dataset(raw: RawFile, pos: int, size: int, skip=None) -> None:
    """Build ``raw.ds`` from the element records of the one reader (:class:`Reader`): kept
    elements stay raw (their bytes), sequences are parsed by pydicom from the value range the
    reader found (and must end there), Pixel Data is only located."""
    data, implicit = raw.data, raw.implicit
    if implicit and pos + 6 <= size and data[pos + 4:pos + 6] in VRS:
        raise Fallback("implicit transfer syntax but explicit-looking data")
    reader = Reader(data, implicit)
    records: list = []
    try:
        reader.elements(pos, size, records)
    except Defect as exc:
        raise Fallback(str(exc)) from None
    if not reader.in_order:
        raise Fallback("elements out of order")
    elems: dict = {}
    events = raw.events = [] if skip is not None else None
    spans, originals = raw.spans, raw.originals
    encoding: str | list[str] = default_encoding
    for tag, vr, start, vpos, end, undefined in records:
        if tag == PIXEL_DATA:
            raw.pixel = (start, end)
            continue
        if events is not None and tag != CHARSET:
            left_out = skip[tag, vr]
            if left_out:  # neither converted nor written
                events.append((tag, left_out))
                continue
        btag = BaseTag(tag)
        if undefined:
            fp = DicomBytesIO(data) if isinstance(data, bytes) else DicomFileLike(raw.fh)
            fp.is_little_endian, fp.is_implicit_VR = True, implicit
            fp.seek(vpos)
            seq = read_sequence(fp, implicit, True, UNDEFINED, encoding)
            if fp.tell() != end:
                raise Fallback("sequence read by pydicom ends elsewhere than the reader's")
            element = DataElement(btag, "SQ", seq, vpos, is_undefined_length=True)
        else:
            length = end - vpos
            value = data[vpos:end] if length else empty_value_for_VR(vr, raw=True)
            element = RawDataElement(btag, vr, length, value, vpos, implicit, True)
            if tag == CHARSET:
                encoding = convert_encodings(convert_string(value or b"", True))
            # Only raw (immutable) elements may be copied back as bytes: a parsed sequence can
            # be changed in place by the engine, so it is always re-encoded.
            spans[btag] = (start, end)  # keyed by the same tag objects as ds (fast lookups)
            originals[btag] = element
        if events is not None:
            events.append(btag)
        elems[btag] = element
    ds = Dataset(elems)
    ds.set_original_encoding(implicit, True, encoding)
    ds.file_meta = raw.meta
    raw.ds = ds


def _copy_range(raw: RawFile, out: IO[bytes], start: int, end: int) -> None:
    if isinstance(raw.data, bytes):
        out.write(memoryview(raw.data)[start:end])
        return
    out.flush()
    src, dst = raw.fh.fileno(), out.fileno()
    offset = start
    try:
        while offset < end:
            n = os.copy_file_range(src, dst, end - offset, offset)
            if n <= 0:
                break
            offset += n
    except (AttributeError, OSError):
        pass
    if offset < end:  # no copy_file_range (or it stopped): plain chunked copy
        os.lseek(dst, 0, os.SEEK_END)
        raw.fh.seek(offset)
        while offset < end:
            chunk = raw.fh.read(min(1 << 20, end - offset))
            if not chunk:
                raise OSError("input file shrank while copying pixel data")
            out.write(chunk)
            offset += len(chunk)
        out.flush()
    else:
        os.lseek(dst, 0, os.SEEK_END)


_META_REQUIRED = (0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012)


def _encode_meta(meta: FileMetaDataset) -> bytes | None:
    """Group 0002 as pydicom's ``write_file_meta_info(enforce_standard=True)`` writes it, for the
    usual elements only; None when anything else is there (pydicom then writes it)."""
    tags = sorted(int(t) for t in meta._dict if int(t) != 0x00020000)
    if any(t not in META_VRS for t in tags) or any(t not in tags for t in _META_REQUIRED):
        return None
    fields = {}
    for tag in tags:
        value = meta[tag].value
        if META_VRS[tag] == "OB":
            fields[tag] = bytes(value or b"")
        elif isinstance(value, str):
            fields[tag] = value.encode("ascii")
        else:
            return None
    return meta_group(fields)


# VRs whose str values pydicom writes as ASCII joined by backslashes (write_string family) and
# text VRs (write_text: charset-encoded, which for ASCII under a single-byte or UTF-8 charset
# gives the same bytes).
_STRING_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "UI", "UR"})
_TEXTLIKE_VRS = frozenset({"LO", "SH", "LT", "ST", "UT", "UC"})
_ASCII_SAFE_CHARSETS = frozenset({"iso8859", "latin_1", "UTF8", "utf_8"})
_STR_TYPES = (str, UID)


def _fast_element(tag: int, element: DataElement, implicit: bool, text_ok: bool) -> bytes | None:
    """Bytes of a converted string element exactly as :func:`write_data_element` writes them, for
    plain ASCII ``str`` values of the usual string VRs; None for anything else (pydicom writes it)."""
    vr = element.VR
    if vr not in _STRING_VRS and (vr not in _TEXTLIKE_VRS or not text_ok):
        return None
    value = element._value
    if value is None:
        data = b""
    else:
        if type(value) in _STR_TYPES:
            text = value
        elif type(value) is MultiValue and all(type(v) in _STR_TYPES for v in value):
            text = "\\".join(value)
        else:
            return None
        if not text.isascii():
            return None
        data = text.encode("ascii")
        if len(data) & 1:
            data += b"\0" if vr == "UI" else b" "
    return element_bytes(tag, vr, data, implicit)


def _raw_element_bytes(tag: int, el: RawDataElement, implicit: bool) -> bytes | None:
    """A raw element (as read) re-serialised as :func:`write_data_element` does; None if unusual."""
    value = el.value
    if value is None or el.length == UNDEFINED:
        return None
    vr = el.VR
    if vr is None and not implicit:
        return None
    return element_bytes(tag, vr, value, implicit)


def _sequence_bytes(tag: int, element: DataElement, implicit: bool, text_ok: bool) -> bytes | None:
    """A sequence element as :func:`write_data_element` writes it, for items made only of plain
    elements; None when anything needs pydicom (it then writes the whole sequence)."""
    items = []
    for item in element._value or ():
        body = _item_bytes(item, implicit, text_ok)
        if body is None:
            return None
        if getattr(item, "is_undefined_length_sequence_item", False):
            items.append(b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + body + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00")
        else:
            items.append(b"\xfe\xff\x00\xe0" + U32.pack(len(body)) + body)
    value = b"".join(items)
    group, elem_no = tag >> 16, tag & 0xFFFF
    if element.is_undefined_length:
        head = (TAG.pack(group, elem_no) + (b"" if implicit else b"SQ\0\0") + b"\xff\xff\xff\xff")
        return head + value + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    return TAG.pack(group, elem_no) + (b"" if implicit else b"SQ\0\0") + U32.pack(len(value)) + value


def _item_bytes(item: Dataset, implicit: bool, text_ok: bool) -> bytes | None:
    elems = item._dict
    if 0x00080005 in elems:
        return None  # own character set: pydicom
    plain = item.original_encoding == (implicit, True) and item.original_character_set == item._character_set
    out = []
    for tag in sorted(elems, key=int):
        if tag & 0xFFFF == 0 and tag >> 16 > 6:
            continue  # retired group length: not written
        el = elems[tag]
        kind = type(el)
        if kind is RawDataElement:
            b = _raw_element_bytes(tag, el, implicit) if plain else None
        elif kind is DataElement:
            if el.VR == "SQ":
                b = _sequence_bytes(tag, el, implicit, text_ok)
            else:
                b = _fast_element(tag, el, implicit, text_ok)
        else:
            b = None
        if b is None:
            return None
        out.append(b)
    return b"".join(out)


def write_raw(raw: RawFile, out: IO[bytes]) -> None:
    """Write ``raw.ds`` with ``raw.meta`` as a Part 10 file to the binary stream ``out``.

    The preamble is zeroed; untouched elements are copied as they were read.
    """
    ds = raw.ds
    if ds.original_character_set != ds._character_set:
        raise Fallback("character set changed: every element must be re-encoded")
    head = DicomBytesIO()
    head.is_little_endian, head.is_implicit_VR = True, False
    head.write(b"\x00" * 128 + b"DICM")
    meta_bytes = _encode_meta(raw.meta)
    if meta_bytes is None:
        write_file_meta_info(head, raw.meta, enforce_standard=True)
    else:
        head.write(meta_bytes)
    head.is_implicit_VR = raw.implicit
    encoding = ds.get("SpecificCharacterSet", default_encoding)
    encs = convert_encodings(encoding)
    text_ok = len(encs) == 1 and encs[0] in _ASCII_SAFE_CHARSETS
    implicit = raw.implicit
    data, spans, originals = raw.data, raw.spans, raw.originals
    buf, tail = head, None
    elems = ds._dict
    keys = sorted(elems, key=int)
    cut = bisect_right(list(map(int, keys)), PIXEL_DATA)  # elements after Pixel Data
    for i, tag in enumerate(keys):
        if i == cut:
            tail = DicomBytesIO()
            tail.is_little_endian, tail.is_implicit_VR = True, implicit
            buf = tail
        element = elems[tag]
        if element is originals.get(tag) and type(element) is RawDataElement:
            start, end = spans[tag]
            buf.write(data[start:end])
            continue
        fast = None
        if type(element) is DataElement:
            if element.VR == "SQ":
                fast = _sequence_bytes(tag, element, implicit, text_ok)
            else:
                fast = _fast_element(tag, element, implicit, text_ok)
        if fast is not None:
            buf.write(fast)
        else:
            write_data_element(buf, element, encoding)
    out.write(head.getvalue())
    if raw.pixel is not None:
        _copy_range(raw, out, *raw.pixel)
    if tail is not None:
        out.write(tail.getvalue())


class _Parts:
    """A write-only sink that keeps the written chunks (for one ``writev``)."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list = []

    def write(self, b) -> None:
        self.parts.append(b)




def write_raw_file(raw: RawFile, dst: str | os.PathLike, fsync: bool = True, perm: int = 0o644) -> None:
    """:func:`write_raw` into ``dst`` atomically (temp file beside it, then rename).

    A file held in memory is gathered and written with one ``writev``
    (:func:`bids_deid.atomic.atomic_write_parts`); a mapped one streams through
    :func:`bids_deid.atomic.atomic_open`.
    """
    if not isinstance(raw.data, bytes):
        with atomic_open(dst, "wb", perm=perm, fsync=fsync) as fh:
            write_raw(raw, fh)
        return
    sink = _Parts()
    write_raw(raw, sink)
    atomic_write_parts(dst, sink.parts, perm=perm, fsync=fsync)
