"""What a run removed, per class of identifier, from the private audit log.

The audit log (``audit/*.jsonl``) holds one line per change: file, field (or DICOM keyword and
tag), action and why — never the value; a DICOM file's changes share one line (``file`` and
its list of ``changes``), which :func:`audit_entries` reads as one entry per change. This
module sorts those entries into the classes a data steward asks about (names, IDs, dates, institutions, free text, private tags, extensions,
burned-in text, faces) and counts changes and files per class.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

#: (class id, title, what it covers) in the order the report shows them
CLASSES = (
    ("names", "Names", "people's names: patient, physicians, operators, other persons"),
    ("ids", "IDs and UIDs", "patient IDs, accession and study numbers, subject labels; DICOM UIDs remapped"),
    ("dates", "Dates and times", "dates and times shifted by the subject's keyed offset, or removed"),
    ("institutions", "Institutions and devices", "institution, department, address, station name, serial numbers"),
    ("demographics", "Age, sex and other patient data", "ages capped, birth data, sizes, weights, other patient "
     "attributes"),
    ("free_text", "Free text", "descriptions, comments, protocol text, header text fields"),
    ("private", "Private tags", "vendor-private DICOM elements (unknown content)"),
    ("extensions", "Header extensions", "NIfTI extensions and other embedded blocks"),
    ("burned_in", "Burned-in text", "text in the pixels: blacked out by OCR, or the file withheld"),
    ("faces", "Faces", "anatomical images defaced; face-bearing source images withheld"),
    ("other", "Other fields", "fields outside the BIDS specification or the DICOM profile: unknown means identifying"),
)
TITLES = {c: t for c, t, _ in CLASSES}

_NAME = re.compile(r"(Patient|Physicians?|Operators?|Persons?|Creator|Reviewer|Observer|Authors?|Contact|Responsible|"
                   r"Verifying|Reading|Requesting|Referring|Performing|Other)\w*Names?$|^Names?Of|PersonName|"
                   r"^(operator|experimenter|technician|physician|patient_?name)$", re.I)
_INSTITUTION = re.compile(r"Institution|Department|Address|Station|SerialNumber|DeviceUID|^site$|Telephone|Phone|"
                          r"Country|Region|Location|AETitle", re.I)
_ID = re.compile(r"(^|[a-z])IDs?$|Identifier|Accession|UID$|MRN|subject label|session label|^(Study|Patient)\w*Number",
                 re.I)
_DEMOGRAPHIC = re.compile(r"^age$|^sex$|PatientAge|PatientSex|PatientSize|PatientWeight|Birth(?!Date)|Ethnic|"
                          r"Occupation|Pregnan|Smoking|Allerg|MedicalAlert|Patient(Comments|State|History|Transport|"
                          r"Religious|Species|Breed)|AdditionalPatientHistory", re.I)
_DATE = re.compile(r"Date|^(Acquisition|Content|Study|Series|Instance|Performed\w*|Issue\w*|Scheduled\w*|Scan)\w*Time$|"
                   r"acq_time|^Time$", re.I)
_TEXT = re.compile(r"Comment|Description|^header\.|Text|Note|Protocol|History|Reason|Label|Narrative|Instructions|"
                   r"Summary|Impression|Diagnos", re.I)


@dataclass
class ClassCount:
    """Changes and files of one class, and the field names met (names only, never values)."""

    changes: int = 0
    files: set[str] = field(default_factory=set)
    fields: dict[str, int] = field(default_factory=dict)
    actions: dict[str, int] = field(default_factory=dict)

    def add(self, file: str, name: str, action: str, n: int = 1) -> None:
        self.changes += n
        if file:
            self.files.add(file)
        if name:
            self.fields[name] = self.fields.get(name, 0) + n
        self.actions[action] = self.actions.get(action, 0) + n

    def top_fields(self, most: int = 8) -> list[str]:
        return [k for k, _ in sorted(self.fields.items(), key=lambda kv: (-kv[1], kv[0]))[:most]]


@lru_cache(maxsize=4096)
def classify(name: str, action: str, why: str, tag: str = "") -> str:
    """The class of one change, from its field name (or DICOM keyword/tag), action and reason."""
    why_l = why.lower()
    if action in ("deface", "withhold") and name == "voxels":
        return "faces"
    if "burned" in why_l or "ocr" in why_l or name == "PixelData":
        return "burned_in"
    if "private" in why_l or (tag and _odd_group(tag)):
        return "private"
    if name.startswith("extension[") or "extension" in why_l:
        return "extensions"
    if action == "remap_uid":
        return "ids"
    if name.startswith("header."):  # NIfTI/Analyze text fields
        return "free_text"
    if _DEMOGRAPHIC.search(name) or "age above" in why_l:
        return "demographics"
    if action == "shift_date":
        return "dates"
    if _INSTITUTION.search(name):
        return "institutions"
    if _NAME.search(name):
        return "names"
    if action == "pseudonymize" or _ID.search(name):
        return "ids"
    if _DATE.search(name):
        return "dates"
    if _TEXT.search(name) or "free text" in why_l or "free-text" in why_l:
        return "free_text"
    return "other"


def _odd_group(tag: str) -> bool:
    m = re.match(r"\(?([0-9A-Fa-f]{4})", tag)
    return bool(m) and int(m.group(1), 16) % 2 == 1


def audit_entries(private_dir: Path):
    """Every entry of the audit logs in ``private_dir``, one per change, each naming its file
    (a line holding a file's list of ``changes`` gives one entry per change)."""
    for log in sorted((private_dir / "audit").glob("*.jsonl")):
        with open(log, encoding="utf-8") as fh:
            for line in fh:
                try:
                    a = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(a, dict):
                    continue
                changes = a.get("changes")
                if isinstance(changes, list):
                    for c in changes:
                        if isinstance(c, dict):
                            yield {"file": a.get("file", ""), **c}
                else:
                    yield a


def summarize(private_dir: Path, records: dict[str, dict]) -> dict[str, ClassCount]:
    """Counts per class over every audit log in ``private_dir`` and the file records (faces, burned-in)."""
    out = {c: ClassCount() for c, _, _ in CLASSES}
    for a in audit_entries(private_dir):
        action = str(a.get("action", ""))
        if action in ("keep", "convert"):
            continue
        name = str(a.get("keyword") or a.get("field") or a.get("tag") or "")
        cls = classify(name, action, str(a.get("why", "")), str(a.get("tag", "")))
        if cls == "faces":  # counted from the records below, once per image
            continue
        out[cls].add(str(a.get("file", "")), name, action)
    for rel, r in records.items():
        status, reason = r.get("status"), str(r.get("reason", ""))
        if status == "defaced":
            out["faces"].add(rel, "defaced image", "deface")
        elif status == "withheld" and ("face" in reason or "metrics" in r or "defac" in reason):
            out["faces"].add(rel, "withheld image" if "metrics" in r else "withheld source DICOM", "withhold")
        elif status in ("withheld", "left out") and "burned" in reason.lower():
            out["burned_in"].add(rel, "withheld file", "withhold")
    return out
