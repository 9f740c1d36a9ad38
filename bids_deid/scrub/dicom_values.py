"""Values of the DICOM byte path: element values read as pydicom converts them, and new
elements encoded as the engine's writers encode them.

Used by the lean byte path (:mod:`bids_deid.scrub.dicom_lean`), its method attributes
(:mod:`bids_deid.scrub.dicom_method`) and the header peek (:mod:`bids_deid.dicom.header`).
Anything not converted exactly raises :class:`~bids_deid.scrub.dicom_core.Fallback`: the caller
then takes a pydicom path.
"""

from __future__ import annotations

from .dicom_core import Fallback, element_bytes

# Value families (how pydicom converts the raw value; see dicom_engine._get and pydicom.values).
PLAIN = frozenset({"AE", "AS", "CS", "DA", "DT", "TM"})  # whole value right-stripped, split
SPLIT_TEXT = frozenset({"LO", "SH", "UC"})  # split, each part right-stripped
SINGLE_TEXT = frozenset({"LT", "ST", "UT"})  # one value, right-stripped
# Elements whose new value the byte path encodes (as dicom_raw's fast writer does); PN is
# encoded by pydicom's writer the same way for ASCII values.
ENCODABLE = PLAIN | SPLIT_TEXT | SINGLE_TEXT | {"UI", "UR", "PN"}
# Character sets the byte path reads (others, e.g. ISO 2022 escapes, take the raw path).
CHARSETS = {b"": "latin-1", b"ISO_IR 100": "latin-1", b"ISO_IR 192": "utf-8"}
CHARSET_VRS = frozenset({"LO", "SH", "UC", "LT", "ST", "UT", "PN"})


def text(raw: bytes, codec: str = "latin-1") -> str:
    if codec == "latin-1":
        if b"\x1b" in raw:
            raise Fallback("escape sequence in text")
        return raw.decode("latin-1")
    try:
        return raw.decode(codec)
    except UnicodeDecodeError:
        raise Fallback("text not in the declared character set") from None


def items_of(vr: str, raw: bytes, codec: str = "latin-1") -> list[str]:
    """The string values pydicom would give (before ``str(v).strip()``); ``codec`` decodes the
    VRs that follow the character set (the others are read as ISO 8859-1, as dicom_engine._get does)."""
    if not raw:
        return []
    s = text(raw, codec if vr in CHARSET_VRS else "latin-1")
    if vr in SPLIT_TEXT:
        return [p.rstrip("\0 ") for p in s.split("\\")]
    if vr in SINGLE_TEXT:
        return [s.rstrip("\0 ")]
    items = s.rstrip(" \0").split("\\")
    if vr == "UI" or vr in ("IS", "DS"):
        return [x.strip() for x in items]
    return items


def values(vr: str, raw: bytes, codec: str = "latin-1") -> list[str]:
    """``dicom.values`` of the converted element."""
    out = []
    for v in items_of(vr, raw, codec):
        v = v.strip()
        if v:
            out.append(v)
    return out


def element(tag: int, vr: str, data: bytes, implicit: bool = False) -> bytes:
    b = element_bytes(tag, vr, data, implicit)
    if b is None:
        raise Fallback("value too long for its VR")
    return b


def encode(tag: int, vr: str, values: list[str] | None, implicit: bool = False) -> bytes:
    """A string element with ``values`` (None: empty), as the engine's writers encode it."""
    if not values:
        return element(tag, vr, b"", implicit)
    if vr not in ENCODABLE:
        raise Fallback(f"new value for VR {vr}")
    text = "\\".join(values)
    if not text.isascii():
        raise Fallback("non-ASCII new value")
    b = text.encode("ascii")
    if len(b) & 1:
        b += b"\0" if vr == "UI" else b" "
    return element(tag, vr, b, implicit)


def canonical(tag: int, vr: str, raw: bytes, implicit: bool = False, codec: str = "latin-1") -> bytes:
    """A kept element the engine has read: re-encoded from its converted value (dicom_engine._get)."""
    if not raw:
        return element(tag, vr, b"", implicit)
    if vr not in PLAIN and vr not in SPLIT_TEXT and vr not in SINGLE_TEXT and vr != "UI":
        raise Fallback(f"read and kept element of VR {vr}")
    return encode(tag, vr, items_of(vr, raw, codec), implicit)


def single(vr: str, raw: bytes, codec: str = "latin-1") -> str:
    """``str(value or "")`` of a converted single-valued element (Fallback when multi-valued)."""
    items = items_of(vr, raw, codec)
    if len(items) > 1:
        raise Fallback("multi-valued identifier element")
    return items[0] if items else ""
