"""Standard attributes outside Table E.1-1 that a valid, convertible image needs.

PS3.15 Table E.1-1 lists what may identify; everything else in a real object is not
necessarily harmless (free text, vendor fields), so bids-deid removes any attribute that is
neither in the table nor in this allowlist ("unknown means identifying").

The allowlist holds non-identifying attributes of the pixel, geometry, frame-of-reference,
acquisition and enhanced multi-frame (functional group) modules that converters such as
dcm2niix read, plus code-sequence building blocks. Date/time and UID values that pass the
allowlist still follow the date policy and the UID remapping.

The lists are data: ``bids_deid/data/dicom_allowlist.tsv``, built by
``tools/build_dicom_allowlist.py`` from the hand-kept ``tools/dicom_allowlist.txt`` (each group
of keywords with the reason it is kept; tags from the PS3.6 dictionary).
"""

from __future__ import annotations

import csv
from importlib import resources

# Whole public groups whose non-text attributes are acquisition/geometry/pixel parameters.
# Text VRs in these groups are kept only when in the allowlist (TAGS).
SAFE_GROUPS = frozenset({0x0018, 0x0020, 0x0028, 0x0054, 0x7FE0})
TEXT_VRS = frozenset({"LO", "LT", "ST", "UT", "UC", "SH", "PN", "AE", "UR", "UN", "OB", "OW"})



def _load() -> dict[str, list[tuple[int | None, str]]]:
    """``list -> [(tag or None, keyword)]`` of ``bids_deid/data/dicom_allowlist.tsv`` (built by
    ``tools/build_dicom_allowlist.py`` from the hand-kept ``tools/dicom_allowlist.txt``)."""
    text = (resources.files("bids_deid") / "data" / "dicom_allowlist.tsv").read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    out: dict[str, list[tuple[int | None, str]]] = {}
    for row in csv.DictReader(lines, delimiter="\t"):
        tag = int(row["tag"][1:5] + row["tag"][6:10], 16) if row["tag"] else None
        out.setdefault(row["list"], []).append((tag, row["keyword"]))
    return out


_LISTS = _load()
# Keywords kept (those the dictionary does not know match no element).
KEYWORDS = frozenset(kw for name in ("keep", "unknown") for _t, kw in _LISTS.get(name, ()))
TAGS = frozenset(t for t, _kw in _LISTS.get("keep", ()) if t is not None)
# UID attributes whose values are well-known (class, syntax, coding scheme): never remapped.
WELL_KNOWN_UID_TAGS = frozenset(t for t, _kw in _LISTS.get("well_known_uid", ()) if t is not None)
DICOM_ROOT = "1.2.840.10008."


def is_allowed(tag: int, vr: str | None) -> bool:
    """True if a public attribute outside Table E.1-1 may be kept."""
    if tag in TAGS:
        return True
    return (tag >> 16) in SAFE_GROUPS and vr is not None and vr not in TEXT_VRS
