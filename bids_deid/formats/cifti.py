"""The CIFTI-2 extension of a NIfTI-2 file (``.dtseries.nii``, ``.dscalar.nii``, ``.dlabel.nii``, ...).

Without its XML extension (code 32) a CIFTI file is no longer CIFTI: readers need the brain
models, parcels and maps it describes. So the extension is kept, but re-written: the XML's
structure, indices, volume geometry, label tables and map names stay; every ``MetaData``
entry except the few that say what a map is (the rest are provenance: command lines, paths,
user names, dates) is removed and recorded for the leak audit; a map name that holds a
subject or session label, a path or an e-mail is replaced by ``map <n>``. An extension that
declares XML entities or does not parse as CIFTI is removed, as every other extension is.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from .base import ScrubLog

ECODE = 32
#: MetaData entries that describe a map rather than its making
SAFE_KEYS = {"AnatomicalStructurePrimary", "AnatomicalStructureSecondary", "Description", "PaletteColorMapping"}
_RISKY_NAME = re.compile(r"sub-|ses-|[/\\@]|\d{4}-\d{2}-\d{2}|\d{8}")


def scrub_cifti_xml(content: bytes, log: ScrubLog) -> bytes | None:
    """The cleaned XML of one CIFTI extension, or None when it must be dropped."""
    body = content.rstrip(b"\x00")
    if b"<!ENTITY" in body:
        return None
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    if root.tag != "CIFTI":
        return None
    for meta in root.iter("MetaData"):
        for md in list(meta):
            key = (md.findtext("Name") or "").strip()
            value = (md.findtext("Value") or "").strip()
            if md.tag == "MD" and key in SAFE_KEYS and not _RISKY_NAME.search(value):
                continue
            meta.remove(md)
            log.met(f"cifti:{key or 'metadata'}", value)
            log.change(f"extension[32] MetaData {key or md.tag}", "remove", "CIFTI provenance may identify")
    for i, name in enumerate(root.iter("MapName"), 1):
        text = (name.text or "").strip()
        if text and _RISKY_NAME.search(text):
            log.met("cifti:MapName", text)
            log.change("extension[32] MapName", "replace", "a map name holding a label, path or date")
            name.text = f"map {i}"
    out = ET.tostring(root, encoding="unicode").encode("utf-8")
    log.change("extension[32]", "keep", "CIFTI-2 XML kept (structure), provenance metadata removed")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + out
