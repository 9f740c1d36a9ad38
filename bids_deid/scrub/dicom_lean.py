"""Lean path of the DICOM engine: de-identify a usual file working on its bytes alone.

The engine's raw path (:mod:`bids_deid.scrub.dicom_raw`) parses a file into pydicom objects
and writes back the ones it did not change as bytes. This path goes one step further for the
files most archives hold (explicit VR little endian, native or encapsulated pixels, no
character set beyond ISO 8859-1 or plain ASCII, the table's usual actions): it never builds a
pydicom object. Elements are read as ``(tag, VR, byte range)`` records, decided by the same
cached plan (:func:`bids_deid.scrub.dicom._decide_cached`), and the output is gathered as
slices of the input plus the few re-encoded elements, then written with one ``writev``.

Its contract is that of the raw path, byte for byte: the same output file, the same audit
entries in the same order and the same identifier list (``tests/test_dicom_lean.py`` checks
this on every file of ``../shared/data/dicom`` and on synthetic files). Whatever it does not
handle exactly raises :class:`~bids_deid.scrub.dicom_raw.Fallback` before anything is
written, and the caller takes the raw path.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

from ..dicom import integrity
from ..dicom.header import NotPlain, read_header
from ..pseudonym import shift_da, shift_dt
from . import dicom_core
from .dicom_core import (
    CHARSET,
    EXPLICIT,
    ITEM,
    LONG_VRS,
    META_VRS,
    PIXEL_DATA,
    READ_WHOLE_MAX,
    SEQ_END,
    TAG,
    U32,
    UNDEFINED,
    VRS,
    Fallback,
    element_bytes,
    meta_group,
    pixel_end,
    write_parts_atomic,
)
from .dicom_dict import dictionary_vr

_ITEM_HDR = dicom_core.IMPLICIT  # item and delimiter headers have the implicit element form

# Value families (how pydicom converts the raw value; see dicom._get and pydicom.values).
_PLAIN = frozenset({"AE", "AS", "CS", "DA", "DT", "TM"})  # whole value right-stripped, split
_SPLIT_TEXT = frozenset({"LO", "SH", "UC"})  # split, each part right-stripped
_SINGLE_TEXT = frozenset({"LT", "ST", "UT"})  # one value, right-stripped
_TEXT_VRS = frozenset({"PN", "LO", "SH", "LT", "ST", "UT", "UC", "AE", "CS", "AS", "UR", "DA", "DT", "TM", "UI",
                       "IS", "DS"})
_BYTES_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})
# Elements whose new value the fast writer encodes (dicom_raw._fast_element); PN is encoded by
# pydicom's writer the same way for ASCII values.
_ENCODABLE = _PLAIN | _SPLIT_TEXT | _SINGLE_TEXT | {"UI", "UR", "PN"}
_DUMMY_TEXT = {"TM": "000000", "AS": "000Y", "CS": "REMOVED", "AE": "REMOVED", "PN": "REMOVED", "UR": ""}
# Character sets the lean path reads (others, e.g. ISO 2022 escapes, take the raw path).
_CHARSETS = {b"": "latin-1", b"ISO_IR 100": "latin-1", b"ISO_IR 192": "utf-8"}
_CHARSET_VRS = frozenset({"LO", "SH", "UC", "LT", "ST", "UT", "PN"})
_TS_NATIVE = b"1.2.840.10008.1.2.1"
_TS_IMPLICIT = b"1.2.840.10008.1.2"
_TS_ENCAPSULATED = re.compile(rb"1\.2\.840\.10008\.1\.2\.(4\.\d+|5)\Z")
_META_KEEP = frozenset(META_VRS)
_PATIENT_ID, _PATIENT_NAME = 0x00100020, 0x00100010
_SOP_CLASS, _SOP_INSTANCE, _SERIES_UID, _STUDY_UID = 0x00080016, 0x00080018, 0x0020000E, 0x0020000D
_BURNED_IN, _MODALITY = 0x00280301, 0x00080060
_METHOD_TAGS = (0x00120063, 0x00120064)
_UID_WATCH = frozenset({_SOP_CLASS, _SOP_INSTANCE, _STUDY_UID, _SERIES_UID})
_MEDIA_DIRECTORY = b"1.2.840.10008.1.3.10"
_PIXEL_MODULE = (0x00280002, 0x00280004, 0x00280008, 0x00280010, 0x00280011, 0x00280100)
_PIXEL_TAGS = (PIXEL_DATA, integrity.FLOAT_PIXEL_DATA, integrity.DOUBLE_PIXEL_DATA)
# Top-level elements read before the walk (identifiers, output name, burned-in check, charset)
# or looked at by the pixel length check.
_LOOKED_UP = frozenset({CHARSET, _PATIENT_ID, _PATIENT_NAME, _SERIES_UID, _SOP_INSTANCE, _SOP_CLASS, _BURNED_IN,
                        _MODALITY, *dicom_core.IDENT_SOURCES, *_PIXEL_MODULE, *_PIXEL_TAGS})


def _check_pixels(data, by_tag: dict) -> None:
    """Fallback (the slower paths report the defect) when the pixel data do not have the length
    the image header declares."""
    rec = next((by_tag[t] for t in _PIXEL_TAGS if t in by_tag), None)
    if rec is None:
        return
    try:
        if rec[5]:
            pixel = (rec[0], -1, integrity.fragments(data, rec[3], rec[4]))
        else:
            pixel = (rec[0], rec[4] - rec[3], 0)
    except integrity.Defect as exc:
        raise Fallback(str(exc)) from None
    values = {t: data[by_tag[t][3]:by_tag[t][4]] for t in _PIXEL_MODULE if t in by_tag}
    defect = integrity.pixel_defect(values, pixel)
    if defect is not None:
        raise Fallback(defect)
_MISS = object()


# ------------------------------------------------------------------ parsing
def _scan_items(data, pos: int, size: int, implicit: bool = False) -> int:
    """End of an undefined-length sequence whose first item starts at ``pos``."""
    while pos + 8 <= size:
        group, elem, length = _ITEM_HDR.unpack_from(data, pos)
        tag = group << 16 | elem
        if tag == SEQ_END:
            return pos + 8
        if tag != ITEM:
            raise Fallback("malformed sequence")
        if length == UNDEFINED:
            pos = _scan_elements(data, pos + 8, size, True, implicit)
        else:
            pos += 8 + length
    raise Fallback("truncated sequence")


def _scan_elements(data, pos: int, size: int, in_item: bool, implicit: bool = False) -> int:
    """End of an undefined-length item (its delimiter included)."""
    while pos + 8 <= size:
        group, elem, length = _ITEM_HDR.unpack_from(data, pos)
        if group == 0xFFFE:
            if elem == 0xE00D and in_item:
                return pos + 8
            raise Fallback("stray delimiter")
        if implicit:
            hdr, is_seq = 8, True  # an undefined length can only be a sequence (checked below)
        else:
            vr = VRS.get(data[pos + 4:pos + 6])
            if vr is None:
                raise Fallback("unknown VR")
            if vr in LONG_VRS:
                length, hdr = U32.unpack_from(data, pos + 8)[0], 12
            else:
                length, hdr = data[pos + 6] | data[pos + 7] << 8, 8
            is_seq = vr == "SQ"
        if length == UNDEFINED:
            if not is_seq or implicit and TAG.unpack_from(data, pos + hdr) not in ((0xFFFE, 0xE000),
                                                                                   (0xFFFE, 0xE0DD)):
                raise Fallback("undefined length outside a sequence")
            pos = _scan_items(data, pos + hdr, size, implicit)
        else:
            pos += hdr + length
    raise Fallback("truncated item")


def _items(data, vpos: int, end: int, undefined: bool, implicit: bool = False) -> list[tuple[int, int, bool]]:
    """``(body start, body end, undefined)`` of each item of a sequence value."""
    out = []
    pos = vpos
    while pos + 8 <= end:
        group, elem, length = _ITEM_HDR.unpack_from(data, pos)
        tag = group << 16 | elem
        if tag == SEQ_END:
            break
        if tag != ITEM:
            raise Fallback("malformed sequence")
        if length == UNDEFINED:
            stop = _scan_elements(data, pos + 8, end, True, implicit)
            out.append((pos + 8, stop - 8, True))
        else:
            stop = pos + 8 + length
            if stop > end:
                raise Fallback("truncated item")
            out.append((pos + 8, stop, False))
        pos = stop
    return out


# ------------------------------------------------------------------ values
def _text(raw: bytes, codec: str = "latin-1") -> str:
    if codec == "latin-1":
        if b"\x1b" in raw:
            raise Fallback("escape sequence in text")
        return raw.decode("latin-1")
    try:
        return raw.decode(codec)
    except UnicodeDecodeError:
        raise Fallback("text not in the declared character set") from None


def _items_of(vr: str, raw: bytes, codec: str = "latin-1") -> list[str]:
    """The string values pydicom would give (before ``str(v).strip()``); ``codec`` decodes the
    VRs that follow the character set (the others are read as ISO 8859-1, as dicom._get does)."""
    if not raw:
        return []
    s = _text(raw, codec if vr in _CHARSET_VRS else "latin-1")
    if vr in _SPLIT_TEXT:
        return [p.rstrip("\0 ") for p in s.split("\\")]
    if vr in _SINGLE_TEXT:
        return [s.rstrip("\0 ")]
    items = s.rstrip(" \0").split("\\")
    if vr == "UI" or vr in ("IS", "DS"):
        return [x.strip() for x in items]
    return items


def _values(vr: str, raw: bytes, codec: str = "latin-1") -> list[str]:
    """``dicom._values`` of the converted element."""
    out = []
    for v in _items_of(vr, raw, codec):
        v = v.strip()
        if v:
            out.append(v)
    return out


def _element(tag: int, vr: str, data: bytes, implicit: bool = False) -> bytes:
    b = element_bytes(tag, vr, data, implicit)
    if b is None:
        raise Fallback("value too long for its VR")
    return b


def _encode(tag: int, vr: str, values: list[str] | None, implicit: bool = False) -> bytes:
    """A string element with ``values`` (None: empty), as the engine's writers encode it."""
    if not values:
        return _element(tag, vr, b"", implicit)
    if vr not in _ENCODABLE:
        raise Fallback(f"new value for VR {vr}")
    text = "\\".join(values)
    if not text.isascii():
        raise Fallback("non-ASCII new value")
    b = text.encode("ascii")
    if len(b) & 1:
        b += b"\0" if vr == "UI" else b" "
    return _element(tag, vr, b, implicit)


def _canonical(tag: int, vr: str, raw: bytes, implicit: bool = False, codec: str = "latin-1") -> bytes:
    """A kept element the engine has read: re-encoded from its converted value (dicom._get)."""
    if not raw:
        return _element(tag, vr, b"", implicit)
    if vr not in _PLAIN and vr not in _SPLIT_TEXT and vr not in _SINGLE_TEXT and vr != "UI":
        raise Fallback(f"read and kept element of VR {vr}")
    return _encode(tag, vr, _items_of(vr, raw, codec), implicit)


# ------------------------------------------------------------------ the walk
class _File:
    """State of one file: the engine's context plus the bytes."""

    __slots__ = ("data", "ctx", "eng", "decisions", "plan", "heads", "implicit", "codec")
    # the engine's markers, compared by identity in the hot loops
    drop = dicom_core.DROP
    quiet = dicom_core.QUIET_REMOVE
    safe_check = dicom_core.SAFE_CHECK
    keep_structure = frozenset({dicom_core.KEEP, dicom_core.CLEAN, dicom_core.SHIFT, dicom_core.UID, dicom_core.DUMMY,
                                dicom_core.PSEUDO})

    def __init__(self, data, ctx, eng, plan, implicit: bool = False):
        self.data, self.ctx, self.eng, self.plan = data, ctx, eng, plan
        self.decisions = plan.decisions
        self.implicit = implicit
        self.codec = "latin-1"  # of the text VRs: latin-1 (no or ISO_IR 100 character set) or utf-8
        key = "lean_heads_implicit" if implicit else "lean_heads"
        heads = plan.decisions.get(key)
        if heads is None:
            heads = plan.decisions[key] = {}
        self.heads = heads

    def decide(self, tag: int, vr: str):
        key = (tag, vr)
        act = self.decisions.get(key, _MISS)
        if act is _MISS:
            act = self.decisions[key] = self.eng.decide_cached(self.plan, tag, vr)
        return act

    def ident(self, tag: int, vr: str, raw: bytes) -> None:
        kind = "uid" if vr == "UI" else "date" if vr in ("DA", "DT") else (self.eng.keyword(tag) or "value")
        idents = self.ctx.identifiers
        for v in _values(vr, raw, self.codec):
            if len(v) >= 3:
                idents.append((kind, v))

    def remap(self, vals: list[str]) -> list[str]:
        ctx = self.ctx
        root = self.eng.allow.DICOM_ROOT
        out = []
        for v in vals:
            if v.startswith(root):
                out.append(v)
            else:
                ctx.identifiers.append(("uid", v))
                out.append(ctx.pseudo.uid(v))
        return out

    def shift(self, vr: str, raw: bytes) -> list[str] | None:
        """Shifted DA/DT values; None if one does not parse (the element is then emptied)."""
        fn = shift_da if vr == "DA" else shift_dt
        out = []
        for v in _values(vr, raw, self.codec):
            s = fn(v, self.ctx.offset)
            if s is None:
                return None
            out.append(s)
        return out

    def act(self, rec: tuple, act: tuple) -> bytes | None:
        """Apply ``act`` to one element; its new bytes, or None when it is removed."""
        tag, vr, start, vpos, end, undefined = rec[:6]
        data, ctx = self.data, self.ctx
        action, why, value = act
        eng = self.eng
        imp = self.implicit
        if action == eng.REMOVE:
            if (tag >> 16) % 2 == 0 and vr in _TEXT_VRS:
                self.ident(tag, vr, data[vpos:end])
            ctx.note(tag, "remove", why)
            return None
        if vr == "UN" or vr is None:
            raise Fallback("action on an element of unknown VR")
        if action == eng.RECURSE or (vr == "SQ" and action in self.keep_structure):
            return self.sequence(rec)
        if vr == "SQ":
            if action == eng.EMPTY:
                ctx.note(tag, action, why)
                return self.sequence(rec, empty=True)
            raise Fallback(f"{action} on a sequence")
        if action == eng.KEEP:
            return _canonical(tag, vr, data[vpos:end], imp, self.codec)
        raw = data[vpos:end]
        if vr in _TEXT_VRS:
            self.ident(tag, vr, raw)
        if action == eng.EMPTY:
            out = _element(tag, vr, b"", imp)
        elif action == eng.DUMMY or (action == eng.UID and vr != "UI"):
            out = self.dummy(tag, vr, raw)
        elif action == eng.UID or action == "remap_uid":
            if vr != "UI":
                raise Fallback("remap_uid on a non-UI element")
            out = _encode(tag, vr, self.remap(_values(vr, raw, self.codec)), imp)
        elif action == eng.SHIFT:
            if vr in ("DA", "DT"):
                vals = self.shift(vr, raw)
                if vals is None:
                    why += " (unparsable: emptied)"
                out = _encode(tag, vr, vals, imp)
            elif vr == "TM":
                out = _canonical(tag, vr, raw, imp, self.codec)
            else:
                out = _element(tag, vr, b"", imp)
        elif action == eng.CLEAN:
            if vr not in _TEXT_VRS:
                out = _element(tag, vr, b"", imp)
            else:
                out = _encode(tag, vr, [eng.clean_text(v, ctx) for v in _values(vr, raw, self.codec)], imp)
        elif action == eng.PSEUDO:
            if tag in (_PATIENT_ID, _PATIENT_NAME):
                out = _encode(tag, vr, [f"sub-{ctx.subject}"], imp)
            elif vr == "UI":
                out = _encode(tag, vr, self.remap(_values(vr, raw, self.codec)), imp)
            else:
                token = ctx.pseudo.text_token(eng.keyword(tag) or f"{tag:08X}", "\\".join(_values(vr, raw, self.codec)))
                out = _encode(tag, vr, [token], imp)
        elif action == eng.REPLACE:
            if not isinstance(value, str) or vr not in _ENCODABLE:
                raise Fallback("replace value needs pydicom")
            out = _encode(tag, vr, [value] if value else None, imp)
        else:
            raise Fallback(f"action {action}")
        ctx.note(tag, action, why)
        return out

    def dummy(self, tag: int, vr: str, raw: bytes) -> bytes:
        imp = self.implicit
        if vr == "UI":
            return _encode(tag, vr, self.remap(_values(vr, raw, self.codec)), imp)
        if vr in _BYTES_VRS:
            return _element(tag, vr, b"\0\0", imp)
        if vr in ("DA", "DT") and self.plan.dates == "shift":
            vals = self.shift(vr, raw)
            return _encode(tag, vr, vals, imp)
        if vr in ("DA", "DT"):
            return _encode(tag, vr, ["19000101" if vr == "DA" else "19000101000000"], imp)
        if vr in ("IS", "DS"):
            return _element(tag, vr, b"0 ", imp)
        if vr in _ENCODABLE:
            text = _DUMMY_TEXT.get(vr, "REMOVED")
            return _encode(tag, vr, [text] if text else None, imp)
        raise Fallback(f"dummy value for VR {vr}")

    def sequence(self, rec: tuple, empty: bool = False) -> bytes:
        tag, vr, start, vpos, end, undefined = rec[:6]
        parts = []
        if not empty:
            data = self.data
            for bstart, bend, item_undefined in _items(data, vpos, end, undefined, self.implicit):
                body = self.item(bstart, bend)
                if item_undefined:
                    parts.append(b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + body + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00")
                else:
                    parts.append(b"\xfe\xff\x00\xe0" + U32.pack(len(body)) + body)
        value = b"".join(parts)
        head = TAG.pack(tag >> 16, tag & 0xFFFF) + (b"" if self.implicit else b"SQ\0\0")
        if undefined:
            return head + b"\xff\xff\xff\xff" + value + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
        return head + U32.pack(len(value)) + value

    def scan(self, pos: int, end: int) -> list[tuple]:
        """The elements of ``data[pos:end]`` with the plan's decision, in file order:
        ``(tag, vr, start, value start, end, undefined, kind, payload)`` (dropped ones left out).

        Decisions are cached per plan by the element's first bytes (tag, and VR when explicit),
        so the usual element costs one slice, one dictionary lookup and one length read."""
        data, heads, implicit = self.data, self.heads, self.implicit
        out = []
        append = out.append
        last = -1
        while pos < end:
            if pos + 8 > end:
                raise Fallback("trailing bytes")
            if implicit:
                head = data[pos:pos + 4]
                e = heads.get(head)
                if e is None:
                    e = heads[head] = _head_entry_implicit(self, head)
                length = U32.unpack_from(data, pos + 4)[0]
                vpos = pos + 8
            else:
                head = data[pos:pos + 6]
                e = heads.get(head)
                if e is None:
                    e = heads[head] = _head_entry(self, head)
                if e[2]:
                    length = U32.unpack_from(data, pos + 8)[0]
                    vpos = pos + 12
                else:
                    length = data[pos + 6] | data[pos + 7] << 8
                    vpos = pos + 8
            tag = e[0]
            if tag <= last:
                raise Fallback("elements out of order")
            last = tag
            if length == UNDEFINED:
                if tag == PIXEL_DATA:
                    stop = pixel_end(data, vpos, end)
                elif e[1] == "SQ" or implicit and e[1] is None and vpos + 4 <= end and\
                        TAG.unpack_from(data, vpos) == (0xFFFE, 0xE000):
                    stop = _scan_items(data, vpos, end, implicit)
                else:
                    raise Fallback("undefined length outside a sequence")
                undefined = True
            else:
                stop = vpos + length
                if stop > end:
                    raise Fallback("truncated element")
                undefined = False
            if e[3] >= 0:
                append((tag, "SQ" if undefined and tag != PIXEL_DATA else e[1], pos, vpos, stop, undefined, e[3],
                        e[4]))
            pos = stop
        return out

    def item(self, pos: int, end: int) -> bytes:
        data = self.data
        out = []
        seen, changes = self.ctx.seen, self.ctx.changes
        for rec in self.scan(pos, end):
            kind = rec[6]
            if rec[0] == CHARSET:
                raise Fallback("item with its own character set")
            if kind == _K_KEEP:
                out.append(data[rec[2]:rec[4]])
            elif kind == _K_QUIET:
                key, entry = rec[7]
                if key not in seen:
                    seen.add(key)
                    changes.append(entry)
            elif kind == _K_ACT:
                b = self.act(rec, rec[7])
                if b is not None:
                    out.append(b)
            else:
                raise Fallback("pixel data or safe-private element in an item")
        return b"".join(out)


def _first(pair):
    return pair[0]


# Kinds of a scanned element (see _File.scan).
_K_KEEP, _K_QUIET, _K_ACT, _K_PIXEL, _K_SAFE = range(5)


def _head_entry_implicit(f: _File, head: bytes):
    """:func:`_head_entry` for implicit VR: the VR is the dictionary's (None when unknown or
    ambiguous, e.g. ``US or SS``); the decision is the one for an element read without VR."""
    group, elem = TAG.unpack_from(head)
    vr = dictionary_vr(group << 16 | elem)
    return _entry(f, group, elem, None if vr is None or " " in vr else vr, None, False)


def _head_entry(f: _File, head: bytes):
    """What the plan does with an element whose first six bytes (tag, VR) are ``head``:
    ``(tag, vr, long form, kind, payload)``; kind -1 for an element dropped without a note."""
    group, elem = TAG.unpack_from(head)
    vr = VRS.get(head[4:6])
    if vr is None:
        raise Fallback("unknown VR")
    return _entry(f, group, elem, vr, vr, vr in LONG_VRS)


def _entry(f: _File, group: int, elem: int, vr: str | None, read_vr: str | None, long: bool):
    """The cache entry of an element (``read_vr``: the VR as read, None when implicit)."""
    tag = group << 16 | elem
    if group == 0xFFFE:
        raise Fallback("stray delimiter")
    if tag == PIXEL_DATA:
        return (tag, vr, long, _K_PIXEL, None)
    act = f.decide(tag, read_vr)
    if act is None:
        return (tag, vr, long, _K_KEEP, None)
    if act is f.drop:
        return (tag, vr, long, -1, None)
    if act[0] is f.quiet:
        return (tag, vr, long, _K_QUIET, f.eng.quiet_note(tag, act[1]))
    if act[0] is f.safe_check:
        return (tag, vr, long, _K_SAFE, None)
    return (tag, vr, long, _K_ACT, act)


# ------------------------------------------------------------------ the file
def _meta(data, size: int) -> tuple[list[tuple[int, int, int]], int]:
    """File meta records ``(tag, value start, value end)`` and where the dataset starts."""
    if size < 144 or data[128:132] != b"DICM":
        raise Fallback("no DICM preamble")
    pos, out = 132, []
    while pos + 8 <= size:
        group, elem, vr_bytes, length = EXPLICIT.unpack_from(data, pos)
        if group != 0x0002:
            break
        vr = VRS.get(vr_bytes)
        if vr is None:
            raise Fallback("file meta not explicit VR")
        if vr in LONG_VRS:
            length, hdr = U32.unpack_from(data, pos + 8)[0], 12
        else:
            hdr = 8
        if length == UNDEFINED or pos + hdr + length > size:
            raise Fallback("odd file meta")
        out.append((group << 16 | elem, pos + hdr, pos + hdr + length))
        pos += hdr + length
    return out, pos


def _meta_bytes(fields: dict[int, bytes]) -> bytes:
    """Zeroed preamble, ``DICM`` and group 0002."""
    return b"\x00" * 128 + b"DICM" + meta_group(fields)


def _single(vr: str, raw: bytes, codec: str = "latin-1") -> str:
    """``str(value or "")`` of a converted single-valued element (Fallback when multi-valued)."""
    items = _items_of(vr, raw, codec)
    if len(items) > 1:
        raise Fallback("multi-valued identifier element")
    return items[0] if items else ""


def process(src: str, dst_for, profile, pseudo, subject, offset_days, overwrite: bool, fsync: bool):
    """De-identify ``src`` as :func:`bids_deid.scrub.dicom_files.process_raw` does; same result object.

    Raises :class:`Fallback` (nothing written) for a file this path does not handle exactly.
    """
    eng = dicom_core
    plan = eng.compile_plan(profile)
    with open(src, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > READ_WHOLE_MAX:
            raise Fallback("large file: streamed by the raw path")
        data = fh.read()
    size = len(data)
    meta, pos = _meta(data, size)
    meta_values = {tag: data[a:b] for tag, a, b in meta}
    ts = meta_values.get(0x00020010, b"").rstrip(b"\0 ")
    implicit = ts == _TS_IMPLICIT
    if ts != _TS_NATIVE and not implicit and not _TS_ENCAPSULATED.match(ts):
        raise Fallback("transfer syntax")
    if implicit and pos + 6 <= size and data[pos + 4:pos + 6] in VRS:
        raise Fallback("implicit transfer syntax but explicit-looking data")
    if 0x00020001 not in meta_values:
        raise Fallback("no file meta version")
    if meta_values.get(0x00020002, b"").rstrip(b"\0 ") == _MEDIA_DIRECTORY:
        raise Fallback("media directory (DICOMDIR)")
    f = _File(data, None, eng, plan, implicit)
    recs = f.scan(pos, size)
    by_tag = {r[0]: r for r in recs if r[0] in _LOOKED_UP}
    _check_pixels(data, by_tag)
    if not eng.keeps_pixels(plan) and any(r[6] == _K_PIXEL for r in recs):
        raise Fallback("the plan does not keep Pixel Data as is")
    cs = by_tag.get(CHARSET)
    codec = "latin-1"
    if cs is not None:
        name = data[cs[3]:cs[4]].strip(b" \0")
        if cs[5] or name not in _CHARSETS:
            raise Fallback("character set")
        codec = f.codec = _CHARSETS[name]
    read: set[int] = set()  # top-level elements the engine converts before its walk

    def sv(tag: int) -> str:
        r = by_tag.get(tag)
        if r is None:
            return ""
        if r[5] or r[1] not in _ENCODABLE and r[1] not in ("IS", "DS"):
            raise Fallback("identifier element of an unusual VR")
        read.add(tag)
        return _single(r[1], data[r[3]:r[4]], codec)

    # subject, output name, burned-in check: as dicom_files.process_raw
    if subject is not None:
        subj = subject
    else:
        pid = sv(_PATIENT_ID).strip() or sv(_PATIENT_NAME).strip()
        subj = pseudo.subject(pid or "unknown")
    dst = dst_for(subj, sv(_SERIES_UID), sv(_SOP_INSTANCE))
    early = eng.not_to_write(src, dst, subj, overwrite, sv, profile)  # sv marks what it reads
    if early is not None:
        return early
    offset = pseudo.date_offset_days(subj) if offset_days is None else offset_days
    ctx = f.ctx = eng.Ctx(plan, pseudo, subj, offset)
    # identifying strings for free-text cleaning (dicom._collect_known)
    for t in eng.IDENT_SOURCES:
        r = by_tag.get(t)
        if r is not None:
            if r[1] not in _TEXT_VRS or r[5]:
                raise Fallback("identifier source of an unusual VR")
            read.add(t)
            for v in _values(r[1], data[r[3]:r[4]], codec):
                for part in re.split(r"[\^=\\]", v) + [v]:
                    part = part.strip()
                    if len(part) >= 3:
                        ctx.known.append(part)
    ctx.known.sort(key=len, reverse=True)
    if _SOP_CLASS in by_tag:  # read again when the file meta is set (dicom._treat_meta)
        read.add(_SOP_CLASS)
    # the walk, in file order
    out: list[tuple[int, object]] = []
    append = out.append
    seen, changes = ctx.seen, ctx.changes
    view = memoryview(data)
    for rec in recs:
        kind = rec[6]
        if kind == _K_QUIET:
            key, entry = rec[7]
            if key not in seen:
                seen.add(key)
                changes.append(entry)
            continue
        tag = rec[0]
        if kind == _K_KEEP:
            if tag in read:
                if rec[1] not in _PLAIN and rec[1] not in _SPLIT_TEXT and rec[1] not in _SINGLE_TEXT\
                        and rec[1] != "UI":
                    raise Fallback("read and kept element needs pydicom")
                append((tag, _canonical(tag, rec[1], data[rec[3]:rec[4]], implicit, codec)))
            else:
                append((tag, view[rec[2]:rec[4]]))
        elif kind == _K_ACT:
            b = f.act(rec, rec[7])
            if b is not None:
                append((tag, b))
        elif kind == _K_PIXEL:
            append((tag, view[rec[2]:rec[4]]))
        else:
            raise Fallback("retain_safe_private")
    new_uid = {t: bytes(b) for t, b in out if t in _UID_WATCH}
    # method attributes (shared per plan), replacing any of the same tag
    method = _method_elements(eng, plan, profile.name, implicit)
    if any(t in _METHOD_TAGS for t, _ in out):
        if implicit:
            raise Fallback("earlier de-identification method attributes (implicit VR)")
        method = _with_prior_method(eng, plan, profile.name, ctx, out, codec)
    out = [p for p in out if p[0] not in method] + list(method.items())
    out.sort(key=_first)
    # file meta (dicom._treat_meta)
    for tag, _a, _b in meta:
        if tag not in _META_KEEP:
            ctx.note(tag, "remove", "file meta: not needed")
    fields = {0x00020001: meta_values[0x00020001], 0x00020010: ts}
    for tag in (0x00020002, 0x00020003, 0x00020012, 0x00020013):
        if tag in meta_values:
            fields[tag] = meta_values[tag]
    if _SOP_INSTANCE in new_uid:
        fields[0x00020003] = new_uid[_SOP_INSTANCE][8:]
    elif 0x00020003 in meta_values:
        raise Fallback("file meta SOP instance without a dataset one")
    if _SOP_CLASS in new_uid:
        fields[0x00020002] = new_uid[_SOP_CLASS][8:]
    fields[0x00020012] = eng.IMPLEMENTATION_UID.encode()
    fields[0x00020013] = f"BIDSDEID_{eng.__version__}"[:16].encode()
    for tag in (0x00020002, 0x00020003, 0x00020010):
        if tag not in fields:
            raise Fallback("file meta incomplete")
        v = _single("UI", bytes(fields[tag]))
        if not v.isascii():
            raise Fallback("unusual file meta UID")
        fields[tag] = v.encode("ascii")
    parts = [_meta_bytes(fields)]
    parts.extend(b for _, b in out)
    write_parts_atomic(parts, dst, fsync)
    ctx.identifiers = list(dict.fromkeys(ctx.identifiers))
    res = eng.DicomResult(
        Path(src), Path(dst), "written", "ok", ctx.changes, ctx.identifiers, subj,
        _result_uid(new_uid.get(_STUDY_UID)), _result_uid(new_uid.get(_SERIES_UID)),
    )
    res.__dict__["_ckey"] = tuple(map(id, ctx.changes))
    return res


def _result_uid(element: bytes | None) -> str | None:
    if element is None:
        return None
    return _single("UI", bytes(element[8:])) or None


_METHOD_CACHE: dict = {}


def _code_items(eng, plan, have: set, implicit: bool) -> list[bytes]:
    """Items of DeidentificationMethodCodeSequence (CID 7050) that ``plan`` adds to a file whose
    sequence already holds the ``(CodeValue, CodingSchemeDesignator)`` pairs ``have``, as
    ``dicom._add_method`` adds them."""
    items = []
    for value, meaning in eng.method_codes(plan, have):
        body = (_encode(0x00080100, "SH", [value], implicit) + _encode(0x00080102, "SH", ["DCM"], implicit)
                + _encode(0x00080104, "LO", [meaning], implicit))
        items.append(b"\xfe\xff\x00\xe0" + U32.pack(len(body)) + body)
    return items


def _method_elements(eng, plan, profile_name: str, implicit: bool = False) -> dict[int, bytes]:
    """The de-identification method elements of ``plan`` (what ``dicom._add_method`` adds to a
    dataset that has none), encoded once per plan (explicit VR little endian)."""
    key = (id(plan), profile_name, implicit)
    hit = _METHOD_CACHE.get(key)
    if hit is not None and hit[0] is plan:
        return hit[1]
    imp = implicit
    seq = b"".join(_code_items(eng, plan, set(), imp))
    out = {
        0x00120062: _encode(0x00120062, "CS", ["YES"], imp),
        0x00120063: _encode(0x00120063, "LO", eng.method_text(plan, profile_name), imp),
        0x00120064: TAG.pack(0x0012, 0x0064) + (b"" if imp else b"SQ\0\0") + U32.pack(len(seq)) + seq,
        0x00280303: _encode(0x00280303, "CS", [plan.date_handling], imp),
    }
    if len(_METHOD_CACHE) >= 32:  # plans are few (compile_plan keeps the last 8)
        _METHOD_CACHE.clear()
    _METHOD_CACHE[key] = (plan, out)
    return out


def _with_prior_method(eng, plan, profile_name: str, ctx, out: list, codec: str = "latin-1") -> dict[int, bytes]:
    """Method elements for a file that already has some (an earlier de-identification), as
    ``dicom._add_method`` makes them: earlier method texts (cleaned) come first, earlier method
    codes are kept and only the missing ones are added."""
    present = {t: bytes(b) for t, b in out if t in (0x00120063, 0x00120064)}
    method = dict(_method_elements(eng, plan, profile_name))
    if 0x00120063 in present:
        element = present[0x00120063]
        if element[4:6] != b"LO":
            raise Fallback("earlier DeidentificationMethod of another VR")
        raw = element[8:]
        prior = _items_of("LO", raw, codec) if raw else [""]
        prior = [eng.clean_text(p, ctx)[:64] for p in prior]
        method[0x00120063] = _encode(0x00120063, "LO", prior + eng.method_text(plan, profile_name))
    if 0x00120064 in present:
        element = present[0x00120064]
        undefined = element[8:12] == b"\xff\xff\xff\xff"
        have = set()
        bodies = []
        for bstart, bend, item_undefined in _items(element, 12, len(element), undefined):
            values = {}
            for tag, vr, _start, vpos, end, *_ in _File(element, None, eng, plan).scan(bstart, bend):
                if tag in (0x00080100, 0x00080102):
                    items = _items_of(vr, element[vpos:end], codec) if vr in _SPLIT_TEXT else None
                    if items is None or len(items) > 1:
                        raise Fallback("earlier method code of an unusual form")
                    values[tag] = items[0] if items else ""
            have.add((values.get(0x00080100), values.get(0x00080102)))
            bodies.append(element[bstart - 8:bend + (8 if item_undefined else 0)])
        bodies.extend(_code_items(eng, plan, have, False))
        seq = b"".join(bodies)
        head = TAG.pack(0x0012, 0x0064) + b"SQ\0\0"
        if undefined:
            method[0x00120064] = head + b"\xff\xff\xff\xff" + seq + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
        else:
            method[0x00120064] = head + U32.pack(len(seq)) + seq
    return method


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


def _lean_syntax(ts: str) -> bool:
    b = ts.encode("latin-1")
    return b in (_TS_NATIVE, _TS_IMPLICIT) or bool(_TS_ENCAPSULATED.match(b))


def _peek(data: bytes, tags: frozenset[int]) -> dict[int, list[str]]:
    try:
        head = read_header(data, tags | {CHARSET}, max(tags), _lean_syntax)
    except NotPlain as exc:
        raise Fallback(str(exc)) from None
    if not head.complete:
        raise Fallback("truncated element")
    codec = "latin-1"
    cs = head.elements.get(CHARSET)
    if cs is not None:
        name = data[cs[1]:cs[2]].strip(b" \0")
        if name not in _CHARSETS:
            raise Fallback("character set")
        codec = _CHARSETS[name]
    out: dict[int, list[str]] = {}
    for tag, (vr, a, b) in head.elements.items():
        if tag not in tags:
            continue
        if vr is None:
            vr = dictionary_vr(tag)
        if vr is None or vr not in _PLAIN and vr not in _CHARSET_VRS and vr != "UI":
            raise Fallback("value of an unusual VR")
        out[tag] = _items_of(vr, data[a:b], codec)
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
