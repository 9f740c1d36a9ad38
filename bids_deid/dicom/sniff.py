"""Is this file DICOM? The one detector every part of bids-deid asks.

A file is DICOM when ``DICM`` follows its 128-byte preamble, or, without a preamble, when
pydicom reads from it a dataset holding a SOP Class UID, a SOP Instance UID or a Modality
(old ACR-NEMA style files and bare datasets). Privacy first: anything that reads as a
dataset counts, so it goes through the DICOM engine and is never copied as an unknown file.
"""

from __future__ import annotations

from pathlib import Path

_MARKERS = ("SOPClassUID", "SOPInstanceUID", "Modality")


def has_preamble(head: bytes) -> bool:
    """True when the first bytes ``head`` of a file hold ``DICM`` after a 128-byte preamble."""
    return len(head) >= 132 and head[128:132] == b"DICM"


def is_dicom(path: str | Path) -> bool:
    """True if ``path`` holds DICOM (see the module doc); False for unreadable files."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    if has_preamble(head):
        return True
    if len(head) < 8:
        return False
    import pydicom  # only for files without a preamble

    try:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=True, specific_tags=list(_MARKERS))
    except Exception:  # noqa: BLE001 - any parse failure means "not DICOM"
        return False
    return any(ds.get(k) for k in _MARKERS)
