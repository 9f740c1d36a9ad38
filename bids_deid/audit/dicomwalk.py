"""Which DICOM element holds a byte offset: to name the place of a hit and to know its VR.

A flat walk over the Part 10 file (sequences and items are entered, not skipped) lists each
element's value range. Only files with a hit are walked. Little-endian explicit and implicit
VR; other transfer syntaxes (big endian, deflated) give no element names.
"""

from __future__ import annotations

import bisect
import struct
from pathlib import Path

_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UT", b"UN", b"UC", b"UR", b"SV", b"UV"}
_IMPLICIT = "1.2.840.10008.1.2"
_UNDEFINED = 0xFFFFFFFF


def elements(path: Path, limit: int = 64 << 20) -> list[tuple[int, int, int, str]]:
    """``(value start, value end, tag, VR)`` of every element, in file order; [] when not walkable."""
    with open(path, "rb") as fh:
        data = fh.read(limit)
    if data[128:132] != b"DICM":
        return []
    out: list[tuple[int, int, int, str]] = []
    pos, n = 132, len(data)
    implicit = False
    in_meta = True
    while pos + 8 <= n:
        group, elem = struct.unpack_from("<HH", data, pos)
        tag = (group << 16) | elem
        if in_meta and group != 2:
            in_meta = False
            ts = next((data[a:b].rstrip(b"\0 ").decode("ascii", "replace") for a, b, t, _v in out
                       if t == 0x00020010), "")
            if ts not in (_IMPLICIT, "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.57",
                          "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90",
                          "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.5") and not ts.startswith("1.2.840.10008.1.2.4"):
                return out
            implicit = ts == _IMPLICIT
        if group == 0xFFFE:  # item, item delimiter, sequence delimiter: enter / step over
            pos += 8
            continue
        vr_bytes = data[pos + 4:pos + 6]
        if not implicit or in_meta:
            if vr_bytes in _LONG_VRS:
                length = struct.unpack_from("<I", data, pos + 8)[0]
                start = pos + 12
            else:
                length = struct.unpack_from("<H", data, pos + 6)[0]
                start = pos + 8
            vr = vr_bytes.decode("ascii", "replace")
        else:
            length = struct.unpack_from("<I", data, pos + 4)[0]
            start = pos + 8
            vr = _dict_vr(tag)
        if length == _UNDEFINED:
            out.append((start, n, tag, vr))
            if tag in (0x7FE00010, 0x7FE00008, 0x7FE00009):  # encapsulated pixel data: fragments follow
                return out
            pos = start  # enter the sequence (or undefined-length UN)
            continue
        out.append((start, start + length, tag, vr))
        pos = start if vr == "SQ" else start + length
    return out


def _dict_vr(tag: int) -> str:
    from ..scrub.dicom_dict import dictionary_vr

    return (dictionary_vr(tag) or "UN").split(" ")[0]


def element_at(elems: list[tuple[int, int, int, str]], starts: list[int], offset: int):
    """``(tag, VR)`` of the element whose value holds ``offset`` (None: in a header or outside)."""
    i = bisect.bisect_right(starts, offset) - 1
    while i >= 0 and elems[i][3] == "SQ":
        i -= 1
    if i >= 0 and elems[i][0] <= offset < elems[i][1]:
        return elems[i][2], elems[i][3]
    return None


def label(tag: int, vr: str) -> str:
    from ..scrub.dicom_dict import keyword_for_tag

    kw = keyword_for_tag(tag) or ("private" if (tag >> 16) & 1 else "unknown")
    return f"DICOM ({tag >> 16:04X},{tag & 0xFFFF:04X}) {kw} [{vr}]"
