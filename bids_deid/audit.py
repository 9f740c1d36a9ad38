"""Leak audit: search every byte of the public output for every identifier met.

The scrubbers record, on the private side, each identifying value they removed or
replaced. This module does not ask them what they did: it reads the output's raw
bytes (file names too; ``.gz`` both as stored and unpacked) and searches them for
those values in ASCII/UTF-8, UTF-16-LE/BE and DICOM person-name forms, case-blind.
Values too short or too common to be told apart from chance are listed as unchecked.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from isal import igzip

from .private import write_json

log = logging.getLogger(__name__)

CHUNK = 8 << 20
MIN_LEN = 4
MIN_DIGITS = 6
COMMON = {
    "none", "unknown", "anonymous", "anonymized", "n/a", "male", "female", "other", "true", "false", "yes",
    "no", "original", "primary", "secondary", "derived", "siemens", "philips", "ge medical systems", "head",
    "brain", "axial", "sagittal", "coronal", "normal", "research", "patient", "subject", "removed", "deidentified", "xxxx", "xxxxx", "dcm2niix", "bids",
}
DATE_KIND = re.compile(r"date|time|acq_time|birth", re.I)


@dataclass
class AuditResult:
    checked: int = 0
    unchecked: list[str] = field(default_factory=list)  # kinds only; values stay private
    hits: list[dict] = field(default_factory=list)  # file, kind, encoding
    files: int = 0
    bytes: int = 0

    def summary(self) -> dict:
        return {"checked_values": self.checked, "unchecked_values": len(self.unchecked), "files": self.files,
                "bytes": self.bytes, "hits": len(self.hits)}


def _name_forms(v: str) -> set[str]:
    """Ways a writer spells a DICOM person name ``family^given^middle^prefix^suffix``."""
    first = v.split("=")[0]  # alphabetic group only; ideographic/phonetic groups are searched as given
    parts = [p.strip() for p in first.split("^")]
    family, given, middle = (parts + ["", "", ""])[:3]
    named = [p for p in parts if p]
    out = {" ".join(named), " ".join(reversed(named)), ", ".join(named)}
    out |= {p for p in named if len(p) >= 5}
    if family and given:
        out |= {f"{given} {family}", f"{family}, {given}", f"{family} {given}", f"{family},{given}"}
        if middle:
            out |= {f"{given} {middle} {family}", f"{given} {middle[0]}. {family}", f"{given} {middle[0]} {family}",
                    f"{family}, {given} {middle}", f"{family}, {given} {middle[0]}."}
    return out


def _date_forms(y: str, m: str, d: str) -> set[str]:
    """ISO, DICOM, and the common European/US spellings of one calendar date."""
    return {f"{y}-{m}-{d}", f"{y}{m}{d}", f"{y}/{m}/{d}", f"{y}.{m}.{d}",
            f"{d}.{m}.{y}", f"{d}/{m}/{y}", f"{m}/{d}/{y}", f"{d}-{m}-{y}", f"{m}-{d}-{y}"}


def _variants(kind: str, value: str) -> set[str]:
    v = value.strip().strip("\x00")
    out = {v}
    if "^" in v:  # DICOM person name: family^given^middle^prefix^suffix
        out |= _name_forms(v)
    m = re.fullmatch(r"(\d{4})-?(\d{2})-?(\d{2})(?:[T ]?.*)?", v)
    if m and DATE_KIND.search(kind):
        out |= _date_forms(m[1], m[2], m[3])
    return out


def distinctive(value: str) -> bool:
    """True when a value is long and rare enough to search for without false alarms."""
    v = value.strip()
    if len(v) < MIN_LEN or v.lower() in COMMON:
        return False
    if not any(c.isalnum() for c in v):
        return False  # separators only (an empty DICOM name "^^^^"): no identity, matches binary data by chance
    if v.replace(".", "").replace("-", "").isdigit() and len(v) < MIN_DIGITS:
        return False
    if re.fullmatch(r"[\d.eE+-]+", v) and not re.fullmatch(r"\d{8}|\d{4}([-.])\d{2}\1\d{2}|\d{2}([-.])\d{2}\2\d{4}", v):
        return False  # numbers (floats, UIDs) are not searchable text
    return True


def _pattern(needles: dict[str, str]) -> re.Pattern | None:
    alts = []
    for text in sorted(needles, key=len, reverse=True):
        for enc in ("utf-8", "utf-16-le", "utf-16-be"):
            b = re.escape(text.encode(enc))
            if re.fullmatch(r"(sub|ses)-[A-Za-z0-9]+", text):  # labels: whole-label matches only
                b = rb"(?<![A-Za-z0-9])" + b + rb"(?![A-Za-z0-9])"
            alts.append(b)
    if not alts:
        return None
    return re.compile(b"|".join(alts), re.IGNORECASE)


def _scan_stream(fh, pat: re.Pattern, overlap: int) -> set[bytes]:
    found: set[bytes] = set()
    tail = b""
    while chunk := fh.read(CHUNK):
        buf = tail + chunk
        found |= {m.group().lower() for m in pat.finditer(buf)}
        tail = buf[-overlap:]
    return found


def _needles(private_dir: Path) -> tuple[dict[str, dict[str, str]], list[str], int]:
    """Needles per scope (subject pseudonym or '*'), the unchecked kinds, and count checked."""
    per: dict[str, dict[str, str]] = {"*": {}}
    unchecked: list[str] = []
    for f in sorted((private_dir / "identifiers").glob("*.json")):
        scope = f.stem.split(".")[0] if f.stem.startswith("sub-") else "*"
        for kind, value in json.loads(f.read_text(encoding="utf-8")):
            for v in _variants(kind, value):
                if not distinctive(v):
                    unchecked.append(kind)
                    continue
                # Dates are searched only in their own subject's files (another subject's
                # shifted date may equal them by chance); everything else everywhere.
                target = scope if DATE_KIND.search(kind) else "*"
                per.setdefault(target, {})[v.lower()] = kind
    checked = len({v for d in per.values() for v in d})
    return per, unchecked, checked


def audit_output(output_dir: Path, private_dir: Path) -> AuditResult:
    """Search the public output for the identifiers recorded in ``private_dir``.

    Writes ``leak-audit.json`` to the private dir and returns the result.
    """
    per, unchecked, checked = _needles(private_dir)
    res = AuditResult(checked=checked, unchecked=sorted(set(unchecked)))
    pats = {scope: (_pattern({**per["*"], **needles}) if scope != "*" else _pattern(needles),
                    {**per["*"], **needles}) for scope, needles in per.items()}
    # Files outside every subject folder (README, CHANGES, participants.tsv, ...) hold no
    # subject's shifted dates: there every subject's original dates are searched too.
    every = {k: v for d in per.values() for k, v in d.items()}
    outside = (_pattern(every), every)
    longest = max((len(v) for d in per.values() for v in d), default=1) * 2 + 8
    for path in sorted(output_dir.rglob("*")):
        rel = path.relative_to(output_dir).as_posix()
        sub = next((p for p in rel.split("/") if p.startswith("sub-")), None)
        pat, kinds = outside if sub is None else pats.get(sub, pats["*"])
        if pat is None:
            continue
        for m in pat.finditer(rel.encode()):
            res.hits.append({"file": rel, "kind": kinds.get(m.group().decode(errors="ignore").lower(), "?"),
                             "where": "file name"})
        if not path.is_file():
            continue
        res.files += 1
        res.bytes += path.stat().st_size
        found: set[bytes] = set()
        with open(path, "rb") as fh:
            found |= _scan_stream(fh, pat, longest)
        if path.name.endswith(".gz"):
            try:
                with igzip.open(path, "rb") as fh:
                    found |= _scan_stream(fh, pat, longest)
            except (OSError, EOFError) as exc:
                res.hits.append({"file": rel, "kind": "unreadable gzip", "where": str(exc.__class__.__name__)})
        for raw in found:
            res.hits.append({"file": rel, "kind": _kind_of(raw, kinds), "where": "content"})
    write_json(private_dir / "leak-audit.json", {"summary": res.summary(), "hits": res.hits,
                                                 "unchecked_kinds": res.unchecked})
    return res


def _kind_of(raw: bytes, kinds: dict[str, str]) -> str:
    for enc in ("utf-8", "utf-16-le", "utf-16-be"):
        try:
            k = kinds.get(raw.decode(enc).lower())
        except UnicodeDecodeError:
            continue
        if k:
            return k
    return "identifier"
