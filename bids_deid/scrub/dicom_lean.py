"""Lean path of the DICOM engine: de-identify a usual file working on its bytes alone.

The engine's raw path (:mod:`bids_deid.scrub.dicom_raw`) parses a file into pydicom objects
and writes back the ones it did not change as bytes. This path goes one step further for the
files most archives hold (explicit VR little endian, native or encapsulated pixels, no
character set beyond ISO 8859-1 or plain ASCII, the table's usual actions): it never builds a
pydicom object. Elements are read as ``(tag, VR, byte range)`` records, decided by the same
cached plan (:func:`bids_deid.scrub.dicom_core.decide_cached`), and the output is gathered as
slices of the input plus the few re-encoded elements, then written with one ``writev``.

The top-level walk (:meth:`_File.scan`) is fused with the decision cache (one dictionary
lookup per element gives tag, VR, length form and decision); file meta, sequences and items
are walked by the one reader (:mod:`bids_deid.dicom.reader`). Values are read and encoded by
:mod:`bids_deid.scrub.dicom_values`, the method attributes made by
:mod:`bids_deid.scrub.dicom_method`.

Its contract is that of the raw path, byte for byte: the same output file, the same audit
entries in the same order and the same identifier list (``tests/test_dicom_lean.py`` checks
this on every file of ``../shared/data/dicom`` and on synthetic files). Whatever it does not
handle exactly raises :class:`~bids_deid.scrub.dicom_core.Fallback` before anything is
written, and the caller takes the raw path.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..atomic import atomic_write_parts
from ..dicom import integrity
from ..dicom.reader import Defect, Reader, file_meta, sequence_items
from ..pseudonym import shift_da, shift_dt
from . import dicom_core
from .dicom_core import (
    BYTES_VRS,
    CHARSET,
    LONG_VRS,
    META_VRS,
    METHOD_TAGS,
    PIXEL_DATA,
    READ_WHOLE_MAX,
    TAG,
    TEXT_VRS,
    U32,
    UNDEFINED,
    VRS,
    Fallback,
    meta_group,
    pixel_end,
)
from .dicom_dict import dictionary_vr
from .dicom_method import method_elements, with_prior_method
from .dicom_values import (
    CHARSETS,
    ENCODABLE,
    PLAIN,
    SINGLE_TEXT,
    SPLIT_TEXT,
    canonical,
    element,
    encode,
    single,
    values,
)

_DUMMY_TEXT = {"TM": "000000", "AS": "000Y", "CS": "REMOVED", "AE": "REMOVED", "PN": "REMOVED", "UR": ""}
_TS_NATIVE = b"1.2.840.10008.1.2.1"
_TS_IMPLICIT = b"1.2.840.10008.1.2"
_TS_ENCAPSULATED = re.compile(rb"1\.2\.840\.10008\.1\.2\.(4\.\d+|5)\Z")
_META_KEEP = frozenset(META_VRS)
_PATIENT_ID, _PATIENT_NAME = 0x00100020, 0x00100010
_SOP_CLASS, _SOP_INSTANCE, _SERIES_UID, _STUDY_UID = 0x00080016, 0x00080018, 0x0020000E, 0x0020000D
_BURNED_IN, _MODALITY = 0x00280301, 0x00080060
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


def _walked(walk, *args):
    """``walk(*args)`` of the reader, its defects as :class:`Fallback` (the slower paths report them)."""
    try:
        return walk(*args)
    except Defect as exc:
        raise Fallback(str(exc)) from None


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
        for v in values(vr, raw, self.codec):
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
        for v in values(vr, raw, self.codec):
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
            if (tag >> 16) % 2 == 0 and vr in TEXT_VRS:
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
            return canonical(tag, vr, data[vpos:end], imp, self.codec)
        raw = data[vpos:end]
        if vr in TEXT_VRS:
            self.ident(tag, vr, raw)
        if action == eng.EMPTY:
            out = element(tag, vr, b"", imp)
        elif action == eng.DUMMY or (action == eng.UID and vr != "UI"):
            out = self.dummy(tag, vr, raw)
        elif action == eng.UID or action == "remap_uid":
            if vr != "UI":
                raise Fallback("remap_uid on a non-UI element")
            out = encode(tag, vr, self.remap(values(vr, raw, self.codec)), imp)
        elif action == eng.SHIFT:
            if vr in ("DA", "DT"):
                vals = self.shift(vr, raw)
                if vals is None:
                    why += " (unparsable: emptied)"
                out = encode(tag, vr, vals, imp)
            elif vr == "TM":
                out = canonical(tag, vr, raw, imp, self.codec)
            else:
                out = element(tag, vr, b"", imp)
        elif action == eng.CLEAN:
            if vr not in TEXT_VRS:
                out = element(tag, vr, b"", imp)
            else:
                out = encode(tag, vr, [eng.clean_text(v, ctx) for v in values(vr, raw, self.codec)], imp)
        elif action == eng.PSEUDO:
            if tag in (_PATIENT_ID, _PATIENT_NAME):
                out = encode(tag, vr, [f"sub-{ctx.subject}"], imp)
            elif vr == "UI":
                out = encode(tag, vr, self.remap(values(vr, raw, self.codec)), imp)
            else:
                token = ctx.pseudo.text_token(eng.keyword(tag) or f"{tag:08X}", "\\".join(values(vr, raw, self.codec)))
                out = encode(tag, vr, [token], imp)
        elif action == eng.REPLACE:
            if not isinstance(value, str) or vr not in ENCODABLE:
                raise Fallback("replace value needs pydicom")
            out = encode(tag, vr, [value] if value else None, imp)
        else:
            raise Fallback(f"action {action}")
        ctx.note(tag, action, why)
        return out

    def dummy(self, tag: int, vr: str, raw: bytes) -> bytes:
        imp = self.implicit
        if vr == "UI":
            return encode(tag, vr, self.remap(values(vr, raw, self.codec)), imp)
        if vr in BYTES_VRS:
            return element(tag, vr, b"\0\0", imp)
        if vr in ("DA", "DT") and self.plan.dates == "shift":
            vals = self.shift(vr, raw)
            return encode(tag, vr, vals, imp)
        if vr in ("DA", "DT"):
            return encode(tag, vr, ["19000101" if vr == "DA" else "19000101000000"], imp)
        if vr in ("IS", "DS"):
            return element(tag, vr, b"0 ", imp)
        if vr in ENCODABLE:
            text = _DUMMY_TEXT.get(vr, "REMOVED")
            return encode(tag, vr, [text] if text else None, imp)
        raise Fallback(f"dummy value for VR {vr}")

    def sequence(self, rec: tuple, empty: bool = False) -> bytes:
        tag, vr, start, vpos, end, undefined = rec[:6]
        parts = []
        if not empty:
            data = self.data
            for bstart, bend, item_undefined in _walked(sequence_items, data, vpos, end, undefined,
                                                        self.implicit):
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
                    stop = _walked(Reader(data, implicit).items, vpos, end, 1, True)
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
        """The item's elements as written; an item with its own Specific Character Set (one
        the byte path reads: latin-1 or UTF-8) reads its text in it, and its items inherit it."""
        outer = self.codec
        try:
            return self._item(pos, end)
        finally:
            self.codec = outer

    def _item(self, pos: int, end: int) -> bytes:
        data = self.data
        out = []
        seen, changes = self.ctx.seen, self.ctx.changes
        for rec in self.scan(pos, end):
            kind = rec[6]
            if rec[0] == CHARSET:
                name = data[rec[3]:rec[4]].strip(b" \0")
                if rec[5] or name not in CHARSETS:
                    raise Fallback("item with a character set the byte path does not read")
                self.codec = CHARSETS[name]
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
    pos, spans = _walked(file_meta, data)
    return [(tag, a, b) for tag, (a, b) in spans.items()], pos


def _meta_bytes(fields: dict[int, bytes]) -> bytes:
    """Zeroed preamble, ``DICM`` and group 0002."""
    return b"\x00" * 128 + b"DICM" + meta_group(fields)


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
        if cs[5] or name not in CHARSETS:
            raise Fallback("character set")
        codec = f.codec = CHARSETS[name]
    read: set[int] = set()  # top-level elements the engine converts before its walk

    def sv(tag: int) -> str:
        r = by_tag.get(tag)
        if r is None:
            return ""
        if r[5] or r[1] not in ENCODABLE and r[1] not in ("IS", "DS"):
            raise Fallback("identifier element of an unusual VR")
        read.add(tag)
        return single(r[1], data[r[3]:r[4]], codec)

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
    # identifying strings for free-text cleaning (dicom_engine._collect_known)
    for t in eng.IDENT_SOURCES:
        r = by_tag.get(t)
        if r is not None:
            if r[1] not in TEXT_VRS or r[5]:
                raise Fallback("identifier source of an unusual VR")
            read.add(t)
            for v in values(r[1], data[r[3]:r[4]], codec):
                for part in re.split(r"[\^=\\]", v) + [v]:
                    part = part.strip()
                    if len(part) >= 3:
                        ctx.known.append(part)
    ctx.known.sort(key=len, reverse=True)
    if _SOP_CLASS in by_tag:  # read again when the file meta is set (dicom_engine._treat_meta)
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
                if rec[1] not in PLAIN and rec[1] not in SPLIT_TEXT and rec[1] not in SINGLE_TEXT\
                        and rec[1] != "UI":
                    raise Fallback("read and kept element needs pydicom")
                append((tag, canonical(tag, rec[1], data[rec[3]:rec[4]], implicit, codec)))
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
    method = method_elements(eng, plan, profile.name, implicit)
    if any(t in METHOD_TAGS for t, _ in out):
        if implicit:
            raise Fallback("earlier de-identification method attributes (implicit VR)")
        method = with_prior_method(eng, plan, profile.name, ctx, out, codec)
    out = [p for p in out if p[0] not in method] + list(method.items())
    out.sort(key=_first)
    # file meta (dicom_engine._treat_meta)
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
        v = single("UI", bytes(fields[tag]))
        if not v.isascii():
            raise Fallback("unusual file meta UID")
        fields[tag] = v.encode("ascii")
    parts = [_meta_bytes(fields)]
    parts.extend(b for _, b in out)
    atomic_write_parts(dst, parts, fsync=fsync)
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
    return single("UI", bytes(element[8:])) or None
