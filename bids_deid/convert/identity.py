"""What identifies a patient in raw input: identifier values to search for, and demographics.

The values (names, IDs, dates, sites, identifying series names) are PRIVATE: they go to the
private record and are what the scrubbers search the converted files for.
"""

from __future__ import annotations

import re

from ..dicom.header import peek
from ..scrub.dicom_dict import tag_for_keyword
from .discovery import DATE_TAGS, ID_TAGS, LATE_ID_TAGS, pydicom_reader


def late_identifiers(path: str) -> list[tuple[str, str]]:
    """(tag, value) of :data:`LATE_ID_TAGS` in one file (header only); [] when unreadable.

    Read by the engine's own reader when the file is a plain one, else by pydicom.
    """
    tags = {tag_for_keyword(k): k for k in LATE_ID_TAGS}
    found = peek(path, frozenset(t for t in tags if t is not None))
    if found is not None:
        values = {tags[t]: v for t, v in found.items()}
    else:
        try:
            ds = pydicom_reader().dcmread(path, stop_before_pixels=True, force=True, specific_tags=list(LATE_ID_TAGS))
        except Exception:  # noqa: BLE001 - the series' own reading reports problems
            return []
        values = {}
        for tag in LATE_ID_TAGS:
            v = ds.get(tag)
            values[tag] = list(v) if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue" else [v]
    out = []
    for tag in LATE_ID_TAGS:
        for item in values.get(tag) or []:
            text = str(item or "").strip()
            if len(text) >= 3:
                out.append((tag, text))
    return out


def demographics(f: dict) -> dict[str, object]:
    """Sex (``M``/``F``/``O``) and age in whole years at the first study, from one header; missing values left out.

    The age comes from PatientAge (``034Y``, ``006M``, ``010W``, ``003D``) or, without it, from
    PatientBirthDate and StudyDate. Capping (HIPAA: over 89) is the profile's, at group level.
    """
    out: dict[str, object] = {}
    sex = str(f.get("PatientSex") or "").strip().upper()
    if sex in ("M", "F", "O"):
        out["sex"] = sex
    age = str(f.get("PatientAge") or "").strip().upper()
    m = re.fullmatch(r"(\d{1,3})\s*([YMWD])?", age)
    if m:
        n, unit = int(m[1]), m[2] or "Y"
        out["age"] = n if unit == "Y" else n // {"M": 12, "W": 52, "D": 365}[unit]
    else:
        b, d = str(f.get("PatientBirthDate") or ""), str(f.get("StudyDate") or "")
        if re.fullmatch(r"\d{8}", b) and re.fullmatch(r"\d{8}", d):
            years = int(d[:4]) - int(b[:4]) - ((int(d[4:8]) < int(b[4:8])) and 1 or 0)
            if 0 <= years < 150:
                out["age"] = years
    return out


def looks_identifying(text: str, known: list[str]) -> bool:
    t = text.lower()
    if re.search(r"\d{6,}|\^|@", t) or re.search(r"(19|20)\d\d[-./]?[01]\d[-./]?[0-3]\d", t):
        return True
    for k in known:
        for part in re.split(r"[\^ ,]+", k.lower()):
            if len(part) >= 3 and part in t:
                return True
    return False


def collect_identifiers(records: list[dict]) -> list[tuple[str, str]]:
    found: dict[tuple[str, str], None] = {}
    names: list[str] = []
    for r in records:
        f = r["fields"]
        for tag in ID_TAGS + DATE_TAGS:
            v = f.get(tag)
            if v:
                for item in v if isinstance(v, list) else [v]:
                    s = str(item).strip()
                    # values under 3 characters ("1", "MC") cannot be searched for usefully
                    if s and (len(s) >= 3 or tag == "PatientID"):
                        kind = "StudyDate" if tag in DATE_TAGS else tag
                        found[(kind, s)] = None
                        if tag in ("PatientName", "PatientID", "InstitutionName", "ReferringPhysicianName"):
                            names.append(s)
        if f.get("SourceApplicationEntityTitle"):
            found[("StationName", f["SourceApplicationEntityTitle"].strip())] = None
    unique_names = list(dict.fromkeys(names))
    descriptions = {
        (tag, str(r["fields"][tag]))
        for r in records
        for tag in ("SeriesDescription", "ProtocolName")
        if r["fields"].get(tag)
    }
    for tag, v in sorted(descriptions):
        if looks_identifying(v, unique_names):
            found[(tag, v.strip())] = None
    return list(found)


def patient_identifiers(ordered: list[tuple[str, dict[tuple, list[dict]]]],
                        twix_ids: list[list[tuple[str, str]]]) -> list[tuple[str, str]]:
    """Every identifier of one patient: its DICOM headers', the late tags of one file per series, its twix files'."""
    ids = [r for _study, sers in ordered for recs in sers.values() for r in recs]
    idents = collect_identifiers(ids) if ids else []
    for _study, sers in ordered:
        for recs in sers.values():
            for t in late_identifiers(recs[0]["path"]):
                if t not in idents:
                    idents.append(t)
    for tids in twix_ids:
        for t in tids:
            if t not in idents:
                idents.append(t)
    return idents
