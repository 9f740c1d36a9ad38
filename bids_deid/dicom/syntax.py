"""Transfer syntaxes: how each one encodes the dataset, and what the engine does with it.

Every transfer syntax pydicom knows is handled: the uncompressed ones (implicit and explicit
VR little endian, explicit VR big endian, deflated explicit VR little endian) and every
encapsulated one (JPEG, JPEG-LS, JPEG 2000, HTJ2K, RLE, MPEG/HEVC video, SMPTE 2110, whose
datasets are explicit VR little endian and whose pixel fragments are copied as they are).
Any other UID is refused with its name (:func:`refusal`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
# encapsulated syntaxes of PS3.5 Annex A.4 and PS3.6 Table A-1 that pydicom knows
_ENCAPSULATED = re.compile(r"1\.2\.840\.10008\.1\.2\.(4\.(5[0-7]|70|8[01]|9[0-5]|10[0-8](\.1)?|20[1-5])|5|7\.[1-3])")
# transfer syntaxes the engine refuses, with the names PS3.6 gives them (pydicom 3.0 does not know them)
_KNOWN_ELSEWHERE = {
    "1.2.840.10008.1.2.8.1": "Deflated Image Frame Compression",
    "1.2.840.10008.1.2.4.110": "JPEG XL Lossless",
    "1.2.840.10008.1.2.4.111": "JPEG XL JPEG Recompression",
    "1.2.840.10008.1.2.4.112": "JPEG XL",
    "1.2.840.10008.1.2.1.98": "Encapsulated Uncompressed Explicit VR Little Endian",
}


@dataclass(frozen=True)
class Syntax:
    """One transfer syntax the engine handles."""

    uid: str
    implicit: bool
    little: bool
    encapsulated: bool

    @property
    def deflated(self) -> bool:
        return self.uid == DEFLATED


_PLAIN = {
    IMPLICIT_LE: Syntax(IMPLICIT_LE, True, True, False),
    EXPLICIT_LE: Syntax(EXPLICIT_LE, False, True, False),
    DEFLATED: Syntax(DEFLATED, False, True, False),
    EXPLICIT_BE: Syntax(EXPLICIT_BE, False, False, False),
}


def transfer_syntax(uid: str) -> Syntax | None:
    """The :class:`Syntax` of ``uid``, or None when the engine does not handle it."""
    hit = _PLAIN.get(uid)
    if hit is not None:
        return hit
    if _ENCAPSULATED.fullmatch(uid):
        return Syntax(uid, False, True, True)
    return None


def name(uid: str) -> str:
    """The name of a transfer syntax UID ('unknown' when neither PS3.6 nor pydicom names it)."""
    if uid in _KNOWN_ELSEWHERE:
        return _KNOWN_ELSEWHERE[uid]
    try:
        from pydicom.uid import UID

        n = UID(uid).name
    except Exception:  # noqa: BLE001 - a malformed UID has no name
        return "unknown"
    return n if n and n != uid else "unknown"


def refusal(uid: str) -> str:
    """The one-line reason a file of transfer syntax ``uid`` is not written."""
    shown = uid if re.fullmatch(r"[0-9.]{1,64}", uid) else "(malformed)"
    return f"transfer syntax {shown} ({name(uid)}) is not supported: file withheld"
