"""The de-identification method attributes the byte path adds, as bytes (PS3.15 E.1.1, CID 7050).

``PatientIdentityRemoved``, ``DeidentificationMethod``, ``DeidentificationMethodCodeSequence``
and ``LongitudinalTemporalInformationModified``, encoded once per plan
(:func:`method_elements`), or merged with those an earlier de-identification left in the file
(:func:`with_prior_method`), as ``dicom_engine._add_method`` makes them on a pydicom dataset.
"""

from __future__ import annotations

from ..dicom.reader import Defect, Reader, sequence_items
from .dicom_core import TAG, U32, Fallback
from .dicom_values import SPLIT_TEXT, encode, items_of


def _read(walk, *args):
    """``walk(*args)`` with the reader's defects as :class:`Fallback` (the pydicom paths decide)."""
    try:
        return walk(*args)
    except Defect as exc:
        raise Fallback(str(exc)) from None


def _item_elements(data, pos: int, end: int) -> list[tuple]:
    """The element records of one explicit VR little endian item body ``data[pos:end]``."""
    walk = Reader(data, False, True)
    out: list = []
    walk.elements(pos, end, out, depth=1)
    if not walk.in_order:
        raise Fallback("elements out of order")
    return out


_METHOD_CACHE: dict = {}


def code_items(eng, plan, have: set, implicit: bool) -> list[bytes]:
    """Items of DeidentificationMethodCodeSequence (CID 7050) that ``plan`` adds to a file whose
    sequence already holds the ``(CodeValue, CodingSchemeDesignator)`` pairs ``have``, as
    ``dicom_engine._add_method`` adds them."""
    items = []
    for value, meaning in eng.method_codes(plan, have):
        body = (encode(0x00080100, "SH", [value], implicit) + encode(0x00080102, "SH", ["DCM"], implicit)
                + encode(0x00080104, "LO", [meaning], implicit))
        items.append(b"\xfe\xff\x00\xe0" + U32.pack(len(body)) + body)
    return items


def method_elements(eng, plan, profile_name: str, implicit: bool = False) -> dict[int, bytes]:
    """The de-identification method elements of ``plan`` (what ``dicom_engine._add_method`` adds to a
    dataset that has none), encoded once per plan (explicit VR little endian)."""
    key = (id(plan), profile_name, implicit)
    hit = _METHOD_CACHE.get(key)
    if hit is not None and hit[0] is plan:
        return hit[1]
    imp = implicit
    seq = b"".join(code_items(eng, plan, set(), imp))
    out = {
        0x00120062: encode(0x00120062, "CS", ["YES"], imp),
        0x00120063: encode(0x00120063, "LO", eng.method_text(plan, profile_name), imp),
        0x00120064: TAG.pack(0x0012, 0x0064) + (b"" if imp else b"SQ\0\0") + U32.pack(len(seq)) + seq,
        0x00280303: encode(0x00280303, "CS", [plan.date_handling], imp),
    }
    if len(_METHOD_CACHE) >= 32:  # plans are few (compile_plan keeps the last 8)
        _METHOD_CACHE.clear()
    _METHOD_CACHE[key] = (plan, out)
    return out


def with_prior_method(eng, plan, profile_name: str, ctx, out: list, codec: str = "latin-1") -> dict[int, bytes]:
    """Method elements for a file that already has some (an earlier de-identification), as
    ``dicom_engine._add_method`` makes them: earlier method texts (cleaned) come first, earlier method
    codes are kept and only the missing ones are added."""
    present = {t: bytes(b) for t, b in out if t in (0x00120063, 0x00120064)}
    method = dict(method_elements(eng, plan, profile_name))
    if 0x00120063 in present:
        element = present[0x00120063]
        if element[4:6] != b"LO":
            raise Fallback("earlier DeidentificationMethod of another VR")
        raw = element[8:]
        prior = items_of("LO", raw, codec) if raw else [""]
        prior = [eng.clean_text(p, ctx)[:64] for p in prior]
        method[0x00120063] = encode(0x00120063, "LO", prior + eng.method_text(plan, profile_name))
    if 0x00120064 in present:
        element = present[0x00120064]
        undefined = element[8:12] == b"\xff\xff\xff\xff"
        have = set()
        bodies = []
        for bstart, bend, item_undefined in _read(sequence_items, element, 12, len(element), undefined):
            values = {}
            for tag, vr, _start, vpos, end, *_ in _read(_item_elements, element, bstart, bend):
                if tag in (0x00080100, 0x00080102):
                    items = items_of(vr, element[vpos:end], codec) if vr in SPLIT_TEXT else None
                    if items is None or len(items) > 1:
                        raise Fallback("earlier method code of an unusual form")
                    values[tag] = items[0] if items else ""
            have.add((values.get(0x00080100), values.get(0x00080102)))
            bodies.append(element[bstart - 8:bend + (8 if item_undefined else 0)])
        bodies.extend(code_items(eng, plan, have, False))
        seq = b"".join(bodies)
        head = TAG.pack(0x0012, 0x0064) + b"SQ\0\0"
        if undefined:
            method[0x00120064] = head + b"\xff\xff\xff\xff" + seq + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
        else:
            method[0x00120064] = head + U32.pack(len(seq)) + seq
    return method
