"""DICOM records grouped into series: patient -> study (session) -> series, with their problems.

A series is (SeriesInstanceUID, SeriesNumber, object kind): one UID may hold several series
numbers (copies in several transfer syntaxes) and several SOP classes (raw data, presentation
states or Enhanced next to classic images); each part is staged on its own.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from ..pseudonym import Pseudonymizer
from .batch import conversion_key
from .classify import sanitize_label
from .discovery import sop_kind


@dataclass
class Series:
    subject: str
    session: str | None
    token: str
    uid: str
    key: str | None  # dcm2niix output stem ``<uid>_<series number>`` (None: not predictable)
    kind: str  # "image", "enhanced" or the SOP class UID of a non-image object
    modality: str
    number: float
    time: str
    records: list[dict]
    fields: dict
    problems: list[str] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)  # {nii, json, bval, bvec, fields, guess}
    action: str = "skipped"
    reason: str = ""
    names: list[str] = field(default_factory=list)
    deduped: bool = False  # duplicate instances were dropped (whole-folder conversion would include them)
    partial: str = ""  # why some of its images got no BIDS name (its DICOM then goes to sourcedata too)


def header_fields(f: dict) -> dict:
    """Header values renamed/scaled like a dcm2niix sidecar (times in seconds)."""
    out = {k: f.get(k) for k in ("Modality", "ImageType", "ScanningSequence", "SequenceVariant", "SequenceName")}
    out["SeriesDescription"] = f.get("SeriesDescription")
    out["ProtocolName"] = f.get("ProtocolName")
    for k in ("EchoTime", "InversionTime"):
        v = f.get(k)
        try:
            out[k] = float(v) / 1000.0 if v is not None else None
        except (TypeError, ValueError):
            out[k] = None
    out["EchoNumber"] = f.get("EchoNumbers")
    out["SeriesNumber"] = f.get("SeriesNumber")
    return {k: v for k, v in out.items() if v is not None}


def dedupe(series: Series) -> None:
    """Drop repeated instances (same SOPInstanceUID) and report them, gaps and out-of-order storage."""
    stored = [num(r["fields"].get("InstanceNumber")) for r in series.records]
    if any(b < a for a, b in zip(stored, stored[1:], strict=False)):
        series.problems.append(f"series {series.token}: instances are not stored in instance-number order "
                               "(converted in slice order)")
    recs = sorted(series.records, key=lambda r: (num(r["fields"].get("InstanceNumber")), r["path"]))
    seen: dict[str, dict] = {}
    keep, dups, differ = [], 0, 0
    for r in recs:
        sop = r["fields"].get("SOPInstanceUID") or r["path"]
        if sop in seen:
            dups += 1
            differ += _size(seen[sop]) != _size(r)
            continue
        seen[sop] = r
        keep.append(r)
    series.records = keep
    series.deduped = dups > 0
    if dups:
        series.problems.append(f"series {series.token}: {dups} duplicate instance(s) (same SOPInstanceUID) ignored"
                               + (f", {differ} of them with other content (the first by instance number kept)"
                                  if differ else ""))
    nums = sorted({int(num(r["fields"].get("InstanceNumber"))) for r in keep if r["fields"].get("InstanceNumber")})
    if len(nums) > 1:
        missing = (nums[-1] - nums[0] + 1) - len(nums)
        if missing > 0:
            series.problems.append(
                f"series {series.token}: {missing} instance number(s) missing between {nums[0]} and {nums[-1]} "
                "(missing slices?)"
            )


def _size(r: dict) -> int:
    try:
        return os.path.getsize(r["path"])
    except OSError:
        return -1


def num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return 0.0


def patients_by_folder(dicoms: list[dict], problems: list[str]) -> dict[str, set[str]]:
    """Set ``r["pid"]`` (PatientID, else PatientName) of every DICOM record; {folder: patient IDs in it}.

    Folders holding several patients and files without PatientID are reported in ``problems``.
    """
    by_folder: dict[str, set[str]] = defaultdict(set)
    no_pid = 0
    for r in dicoms:
        f = r["fields"]
        pid = str(f.get("PatientID") or "").strip()
        if not pid:
            no_pid += 1
            pid = str(f.get("PatientName") or "").strip() or "unknown"
        r["pid"] = pid
        by_folder[r["folder"]].add(pid)
    mixed = sum(1 for v in by_folder.values() if len(v) > 1)
    if mixed:
        problems.append(
            f"{mixed} folder(s) hold files of more than one patient; files were grouped by PatientID"
        )
    if no_pid:
        problems.append(f"{no_pid} DICOM file(s) without PatientID (grouped by PatientName)")
    return by_folder


def series_tree(dicoms: list[dict]) -> dict[str, dict[str, dict[tuple, list[dict]]]]:
    """{patient ID: {StudyInstanceUID: {(series UID, series number, object kind): records}}}."""
    tree: dict[str, dict[str, dict[tuple, list[dict]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in dicoms:
        f = r["fields"]
        study = str(f.get("StudyInstanceUID") or "unknown-study")
        uid = str(f.get("SeriesInstanceUID") or f"{study}/{f.get('SeriesNumber')}/{f.get('Modality')}")
        # Siemens XA "MFSPLIT" time series give every volume a series number of its own: one series
        number = "MFSPLIT" if "MFSPLIT" in (f.get("ImageType") or []) else str(f.get("SeriesNumber") or "")
        tree[r["pid"]][study][(uid, number, sop_kind(f))].append(r)
    return tree


def ordered_studies(studies: dict[str, dict[tuple, list[dict]]]) -> list[tuple[str, dict[tuple, list[dict]]]]:
    """A patient's studies in (StudyDate, StudyTime, StudyInstanceUID) order: the order of its sessions."""

    def study_key(item):
        first = next(iter(item[1].values()))[0]["fields"]
        return (str(first.get("StudyDate") or ""), str(first.get("StudyTime") or ""), item[0])

    return sorted(studies.items(), key=study_key)


def patient_series(label: str, ordered: list[tuple[str, dict[tuple, list[dict]]]], pseudo: Pseudonymizer,
                   ) -> tuple[list[Series], list[tuple[str | None, str]]]:
    """The series of one patient (subject ``label``) and its sessions as (label or None, StudyDate).

    One study gets no session level; several become ``01``, ``02``, ... in study order.
    """
    series: list[Series] = []
    sessions: list[tuple[str | None, str]] = []
    for si, (_study, sers) in enumerate(ordered, 1):
        ses = f"{si:02d}" if len(ordered) > 1 else None
        sdate = str(next(iter(sers.values()))[0]["fields"].get("StudyDate") or "")
        sessions.append((ses, sdate))
        parts_of = Counter(k[0] for k in sers)
        for (uid, _sn, kind), recs in sers.items():
            f0 = recs[0]["fields"]
            s = Series(
                subject=label,
                session=ses,
                token=pseudo.text_token("series", uid if parts_of[uid] == 1 else f"{uid}/{_sn}/{kind}"),
                uid=uid,
                key=None if _sn == "MFSPLIT" else conversion_key(uid, f0.get("SeriesNumber")),
                kind=kind,
                modality=sanitize_label(f0.get("Modality") or "OT").upper() or "OT",
                number=min(num(r["fields"].get("SeriesNumber")) for r in recs),
                time=str(f0.get("SeriesTime") or ""),
                records=list(recs),
                fields=header_fields(f0),
            )
            dedupe(s)
            series.append(s)
    return series, sessions


def report_row(s: Series) -> dict:
    """The private report's entry of one series."""
    return {
        "subject": s.subject,
        "session": s.session,
        "series_token": s.token,
        "modality": s.modality,
        "n_files": len(s.records),
        "action": s.action,
        "bids_name": ";".join(s.names),
        "reason": s.reason,
        "series_number": s.fields.get("SeriesNumber"),
        "description": s.fields.get("SeriesDescription") or s.fields.get("ProtocolName") or "",
        "images": len(s.outputs),
        "partial": s.partial,
    }
