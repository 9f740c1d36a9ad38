"""GIFTI surfaces and surface data (``.surf.gii``, ``.func.gii``, ``.shape.gii``, ``.label.gii``, ...).

GIFTI is XML. Its data arrays (vertex coordinates, triangles, values) are kept as they are;
its free-form metadata is not: the file-level and per-array ``MetaData`` keep only the
entries that describe what the array is (the structure, geometric and topological type,
the intent's names), every other entry (user names, dates, subject IDs, command lines,
paths) is removed and recorded for the leak audit. Label names are carried (atlas labels)
with subject labels replaced. A file that refers to external data, declares entities or
does not parse is withheld.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from .base import Context, Outcome, ScrubLog

NAME = "gifti"
COMPANION_SUFFIXES: tuple[str, ...] = ()
#: metadata entries that say what an array is (GIFTI 1.0, section 2.3.3; HCP/Connectome Workbench)
SAFE_KEYS = {
    "AnatomicalStructurePrimary", "AnatomicalStructureSecondary", "GeometricType", "TopologicalType",
    "Intent_code", "Intent_p1", "Intent_p2", "Intent_p3", "IntentName", "Name", "SurfaceID",
}  # fmt: skip
_MAX_BYTES = 2 << 30


def sniff(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(".gii")


def companions(path: Path) -> list[Path]:
    return []


def _text(el: ET.Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def _clean_metadata(meta: ET.Element, where: str, ctx: Context, log: ScrubLog) -> None:
    for md in list(meta):
        key, value = _text(md.find("Name")), _text(md.find("Value"))
        if md.tag == "MD" and key in SAFE_KEYS and not re.search(r"[/\\@]", value):
            value_el = md.find("Value")
            if value_el is not None and value:
                value_el.text = ctx.relabel(value)
            continue
        meta.remove(md)
        log.met(f"gifti:{key or 'metadata'}", value)
        log.change(f"{where} MetaData {key or md.tag}", "remove", "free-form GIFTI metadata may identify")


def scrub(src: Path, profile, ctx: Context) -> Outcome:
    if src.stat().st_size > _MAX_BYTES:
        return Outcome.withhold("GIFTI file larger than 2 GiB")
    raw = src.read_bytes()
    if b"<!ENTITY" in raw:
        return Outcome.withhold("GIFTI file declaring XML entities")
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as exc:
        return Outcome.withhold(f"GIFTI file that does not parse ({exc})")
    if root.tag != "GIFTI":
        return Outcome.withhold("XML file that is not GIFTI")
    log = ScrubLog()
    for child in list(root):
        if child.tag not in ("MetaData", "LabelTable", "DataArray"):
            root.remove(child)
            log.change(child.tag, "remove", "not a GIFTI element")
    for meta in root.findall("MetaData"):
        _clean_metadata(meta, "file", ctx, log)
    for label in root.iter("Label"):
        if label.text:
            label.text = ctx.relabel(label.text)
    for i, arr in enumerate(root.findall("DataArray")):
        if arr.get("Encoding") == "ExternalFileBinary" or arr.get("ExternalFileName"):
            return Outcome.withhold("GIFTI file whose data lie in another file (its path may identify)", log)
        for meta in arr.findall("MetaData"):
            _clean_metadata(meta, f"DataArray[{i}]", ctx, log)
        for child in list(arr):
            if child.tag not in ("MetaData", "CoordinateSystemTransformMatrix", "Data"):
                arr.remove(child)
                log.change(f"DataArray[{i}] {child.tag}", "remove", "not a GIFTI element")
    body = ET.tostring(root, encoding="unicode")
    out = '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"
    return Outcome(writes={ctx.rel_out: out.encode("utf-8")}, log=log)
