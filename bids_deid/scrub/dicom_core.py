"""The DICOM engine's decisions and shared state, without pydicom.

What every path of the engine shares: the per-tag decision of a profile plan (:func:`decide_tag`,
cached per plan by :func:`decide_cached`), the audit entries (:class:`Ctx`, interned notes), the
result object (:class:`DicomResult`) and free-text cleaning. Outputs are written by
:func:`bids_deid.atomic.atomic_write_parts` (the one writer). Nothing here imports pydicom, so the lean path
(:mod:`bids_deid.scrub.dicom_lean`) and the tree driver (:mod:`bids_deid.scrub.dicom_tree`)
start without its ~0.17 s import; :mod:`bids_deid.scrub.dicom` re-exports these names.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from struct import Struct

from .. import __version__
from ..dicom.reader import Defect, Reader
from ..pseudonym import Pseudonymizer
from . import dicom_allowlist as allow
from . import dicom_safe_private as safe_private
from .dicom_dict import dictionary_vr
from .dicom_table import (  # noqa: F401 - the action names, for the lean path
    CLEAN,
    DUMMY,
    EMPTY,
    KEEP,
    PSEUDO,
    RECURSE,
    REMOVE,
    REPLACE,
    SHIFT,
    UID,
    Plan,
    compile_plan,
    keyword,
)

# Part 10 encoding facts shared by the lean and raw paths.
PIXEL_DATA = 0x7FE00010
CHARSET = 0x00080005
ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF
# Files up to this size are read at once; larger ones are memory-mapped by the raw path so that
# the pixel data never enter the process (peak memory does not grow with file size).
READ_WHOLE_MAX = 16 * 1024 * 1024
# VRs with a 4-byte length in explicit VR encoding (PS3.5 7.1.2)
LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"})
VRS = {
    v.encode(): v
    for v in ("AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR "
              "US UT UV").split()
}
TAG = Struct("<HH")
U16 = Struct("<H")
U32 = Struct("<I")
IMPLICIT = Struct("<HHI")  # implicit VR element header; also an item or delimiter header
EXPLICIT = Struct("<HH2sH")  # explicit VR element header, 2-byte length
_EXPLICIT_LONG = Struct("<HH2s2xI")  # explicit VR element header, 4-byte length


def element_bytes(tag: int, vr: str, data: bytes, implicit: bool) -> bytes | None:
    """Header + ``data`` of one element (even-length ``data``); None when ``data`` is too long
    for a 2-byte length."""
    n = len(data)
    if implicit:
        return IMPLICIT.pack(tag >> 16, tag & 0xFFFF, n) + data
    if vr in LONG_VRS:
        return _EXPLICIT_LONG.pack(tag >> 16, tag & 0xFFFF, vr.encode(), n) + data
    if n > 0xFFFF:
        return None
    return EXPLICIT.pack(tag >> 16, tag & 0xFFFF, vr.encode(), n) + data


# The file meta elements the engine writes, with their VRs.
META_VRS = {0x00020001: "OB", 0x00020002: "UI", 0x00020003: "UI", 0x00020010: "UI", 0x00020012: "UI",
             0x00020013: "SH"}


def meta_group(fields: dict[int, bytes]) -> bytes:
    """Group 0002 (with its group length) as pydicom's ``write_file_meta_info`` writes it, from
    the values of :data:`_META_VRS` elements (padded here: OB and UI with NUL, SH with a space)."""
    body = bytearray()
    for tag in sorted(fields):
        vr = META_VRS[tag]
        value = fields[tag]
        if len(value) % 2:
            value += b"\0" if vr in ("OB", "UI") else b" "
        body += element_bytes(tag, vr, value, False)
    return b"\x02\x00\x00\x00UL\x04\x00" + U32.pack(len(body)) + bytes(body)


class Fallback(Exception):
    """The file needs a fuller path of the engine (not an error of the file itself)."""


def pixel_end(data, pos: int, size: int) -> int:
    """End of encapsulated pixel data whose items start at ``pos`` (walked by the one reader;
    its defects as :class:`Fallback`)."""
    try:
        return Reader(data, False, True).fragments(pos, size)
    except Defect as exc:
        raise Fallback(str(exc)) from None


# CID 7050 De-identification Method codes (PS3.16), a data table.
def _cid7050() -> dict[str, tuple[str, str]]:
    """Profile option -> (CodeValue, CodeMeaning) of CID 7050 (scheme DCM), from
    ``bids_deid/data/cid7050.tsv`` (built by ``tools/build_cid7050.py`` from pydicom's PS3.16 tables)."""
    text = (resources.files("bids_deid") / "data" / "cid7050.tsv").read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    return {r["option"]: (r["code_value"], r["code_meaning"]) for r in csv.DictReader(lines, delimiter="\t")
            if r["option"] and r["coding_scheme"] == "DCM"}


CID7050 = _cid7050()


def method_codes(plan: Plan, have: set) -> list[tuple[str, str]]:
    """The CID 7050 ``(CodeValue, CodeMeaning)`` pairs (scheme DCM) that ``plan`` adds to a
    DeidentificationMethodCodeSequence already holding the ``(CodeValue, scheme)`` pairs ``have``:
    the basic profile, each option, Retain Safe Private when private blocks are kept, and the
    modified-dates option when dates are shifted."""
    names = ("basic", *plan.options, *(("retain_safe_private",) if plan.private_keep else ()))
    codes = [CID7050[n] for n in dict.fromkeys(names) if n in CID7050 and (CID7050[n][0], "DCM") not in have]
    if (plan.date_handling == "MODIFIED" and ("113107", "DCM") not in have
            and "retain_long_modified_dates" not in plan.options):
        codes.append(CID7050["retain_long_modified_dates"])
    return codes


# Modalities by SOP Class (for burned-in text decisions when Modality is missing or generic).
SOP_MODALITY = {
    "1.2.840.10008.5.1.4.1.1.7": "SC",
    "1.2.840.10008.5.1.4.1.1.7.1": "SC",
    "1.2.840.10008.5.1.4.1.1.7.2": "SC",
    "1.2.840.10008.5.1.4.1.1.7.3": "SC",
    "1.2.840.10008.5.1.4.1.1.7.4": "SC",
    "1.2.840.10008.5.1.4.1.1.6.1": "US",
    "1.2.840.10008.5.1.4.1.1.6.2": "US",
    "1.2.840.10008.5.1.4.1.1.3.1": "US",
    "1.2.840.10008.5.1.4.1.1.77.1.6": "SM",
    "1.2.840.10008.5.1.4.1.1.104.1": "DOC",
    "1.2.840.10008.5.1.4.1.1.104.2": "DOC",
}
DUMMY_VALUES = {
    "DA": "19000101", "DT": "19000101000000", "TM": "000000", "AS": "000Y", "IS": "0", "DS": "0",
    "CS": "REMOVED", "AE": "REMOVED", "PN": "REMOVED", "UR": "",
}
NUMERIC_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV", "AT"})
BYTES_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})
TEXT_VRS = frozenset({"PN", "LO", "SH", "LT", "ST", "UT", "UC", "AE", "CS", "AS", "UR", "DA", "DT", "TM", "UI", "IS", "DS"})
DATE_PATTERNS = re.compile(
    r"\d{8}|\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}|\d{5,}", re.ASCII
)
# ImplementationClassUID written into every output file meta.
IMPLEMENTATION_UID = "1.2.826.0.1.3680043.8.498.1"  # the value pydicom writes (checked by a test)
META_KEEP = {0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012, 0x00020013}
PATIENT_ID, PATIENT_NAME = 0x00100020, 0x00100010
SOP_INSTANCE_UID, SERIES_UID, STUDY_UID = 0x00080018, 0x0020000E, 0x0020000D
IDENT_SOURCES = (0x00100010, 0x00100020, 0x00101000, 0x00101001, 0x00100030, 0x00080050, 0x00080080,
                  0x00080081, 0x00081010, 0x00081040, 0x00181000, 0x00080090, 0x00081050, 0x00081070)


@dataclass
class DicomResult:
    """Outcome of one file (no original identifier in ``reason`` or ``changes``)."""

    src: Path
    dst: Path | None
    status: str  # "written" | "skipped" | "error" | "exists"
    reason: str
    changes: list[dict] = field(default_factory=list)
    identifiers: list[tuple[str, str]] = field(default_factory=list)
    subject: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None

    def changes_json(self) -> str:
        """``changes`` as a JSON array (as ``json.dumps`` gives it), cached per distinct list.

        Files of one series usually get the very same audit entries, so the text is made once
        per worker and travels between processes in place of the list (see ``__getstate__``).
        """
        js = self.__dict__.get("_cj")
        if js is None:
            key = self.__dict__.get("_ckey")
            js = _JSON_CACHE.get(key) if key is not None else None
            if js is None:
                js = json.dumps(self.changes)
                if key is not None:
                    if len(_JSON_CACHE) > 512:
                        _JSON_CACHE.clear()
                    _JSON_CACHE[key] = js
            self.__dict__["_cj"] = js
        return js

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_cj"] = self.changes_json()
        state.pop("changes", None)
        state.pop("_ckey", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def __getattr__(self, name: str):
        # ``changes`` of an unpickled result: decoded on first use only.
        if name == "changes" and "_cj" in self.__dict__:
            value = self.__dict__["changes"] = json.loads(self.__dict__["_cj"])
            return value
        raise AttributeError(name)


_JSON_CACHE: dict[tuple, str] = {}
# Audit entries are interned (one dict per tag, action and reason, never changed): results of
# one worker share them and ``changes_json`` can key its cache on their ids.
NOTES: dict[tuple[int, str, str], dict] = {}


# ------------------------------------------------------------------ dataset engine
class Ctx:
    """State of one dataset walk."""

    __slots__ = ("plan", "pseudo", "subject", "offset", "changes", "identifiers", "known", "seen")

    def __init__(self, plan: Plan, pseudo: Pseudonymizer, subject: str, offset: int):
        self.plan = plan
        self.pseudo = pseudo
        self.subject = subject
        self.offset = offset
        self.changes: list[dict] = []
        self.identifiers: list[tuple[str, str]] = []
        self.known: list[str] = []  # identifying strings of this dataset, for cleaning free text
        self.seen: set[tuple[int, str]] = set()

    def note(self, tag: int, action: str, why: str) -> None:
        key = (tag, action)
        if key in self.seen:  # one audit line per tag and action, not per item
            return
        self.seen.add(key)
        entry = NOTES.get((tag, action, why))
        if entry is None:
            label, kw = tag_label(tag)
            entry = NOTES[(tag, action, why)] = {"tag": label, "keyword": kw, "action": action, "why": why}
        self.changes.append(entry)


@lru_cache(maxsize=8192)
def tag_label(tag: int) -> tuple[str, str]:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})", keyword(tag)


def ident_kind(tag: int, vr: str) -> str:
    if vr == "UI":
        return "uid"
    if vr in ("DA", "DT"):
        return "date"
    return keyword(tag) or "value"


def clean_text(value: str, ctx: Ctx) -> str:
    """Remove identifiers of this dataset, date-like and long number runs from free text."""
    out = value
    for k in ctx.known:
        if k and k.lower() in out.lower():
            out = re.sub(re.escape(k), "X", out, flags=re.IGNORECASE)
    return DATE_PATTERNS.sub("X", out)


def is_overlay(group: int) -> bool:
    return 0x6000 <= group <= 0x601E and group % 2 == 0


def is_curve(group: int) -> bool:
    return 0x5000 <= group <= 0x501E and group % 2 == 0


DROP = ("drop", "", None)  # removed without an audit line (group lengths, stray meta)


def converted_vr(tag: int, vr: str | None) -> str:
    """The VR pydicom gives an element read with VR ``vr`` (None: implicit)."""
    if vr is not None and vr != "UN":
        return vr
    return vr_of_tag(tag) or "UN"


def decide_tag(plan: Plan, tag: int, vr: str | None) -> tuple[str, str, object] | None:
    """What to do with ``tag`` read with VR ``vr``: None (keep as is), _DROP or ``(action, why, value)``.

    Depends only on the plan, the tag and the VR, so it is cached per plan (``plan.decisions``).
    """
    group, elem_no = tag >> 16, tag & 0xFFFF
    hit = plan.tags.get(tag)
    if hit is not None:
        if hit[0] == KEEP and converted_vr(tag, vr) != "SQ":
            return None
        return hit
    if elem_no == 0 or group == 0x0002:  # group lengths (retired); meta is handled apart
        return DROP
    if group % 2 == 1:
        # Private: removed. With retain_safe_private, elements of a group holding listed safe
        # attributes are decided per dataset from their block's creator (see _walk).
        if group in safe_private.plan_groups(plan):  # retain_safe_private and/or profile keep_private
            return SAFE_PRIVATE_CHECK
        return (REMOVE, "private attribute", None)
    if is_curve(group):
        return None if plan.curve_keep else (REMOVE, "curve data (50xx)", None)
    if is_overlay(group):
        ov = plan.overlay.get(elem_no)
        if ov is not None and not (plan.overlay_keep and ov[0] in (CLEAN, KEEP)):
            if ov[0] == KEEP and converted_vr(tag, vr) != "SQ":
                return None
            return ov
        if plan.overlay_keep:
            if converted_vr(tag, vr) in ("LO", "LT", "ST", "UT", "SH"):
                return (CLEAN, "clean_graphics: overlay text", None)
            return None
        return (REMOVE, "overlay (60xx) without clean_graphics", None)
    if vr is None or vr == "UN":
        vr = vr_of_tag(tag)
    if allow.is_allowed(tag, vr):
        if vr == "SQ":
            return (RECURSE, "allowlist", None)
        if vr == "UI" and tag not in allow.WELL_KNOWN_UID_TAGS and "retain_uids" not in plan.options:
            return (UID, "allowlisted UID", None)
        if vr in ("DA", "DT") and plan.dates != "keep":
            if plan.dates == "shift" or "retain_long_modified_dates" in plan.options:
                return (SHIFT, "allowlisted date: shift", None)
            return (REMOVE, "allowlisted date: dates remove", None)
        return None
    return (REMOVE, "not in Table E.1-1 nor allowlist", None)


def decide_cached(plan: Plan, tag: int, vr: str | None):
    """:func:`_decide`, plus ``_QUIET_REMOVE`` marks: removals that report no identifier
    (private attributes and non-text values) need no value conversion."""
    act = decide_tag(plan, tag, vr)
    if act is not None and act is not DROP and act[0] == REMOVE:
        if tag >> 16 & 1 or (vr is not None and vr not in TEXT_VRS and vr != "UN"):
            return (QUIET_REMOVE, act[1], None)
    return act


QUIET_REMOVE = "quiet_remove"
SAFE_CHECK = "safe_private_check"
SAFE_PRIVATE_CHECK = (SAFE_CHECK, "private attribute (not in the safe-private list)", None)
SAFE_KEEP_WHY = "retain_safe_private: PS3.15 Table E.3.10-1"


MISS = object()
@lru_cache(maxsize=16384)
def quiet_note(tag: int, why: str) -> tuple[tuple[int, str], dict]:
    """(seen key, interned audit entry) of a removal noted without the element."""
    entry = NOTES.get((tag, REMOVE, why))
    if entry is None:
        label, kw = tag_label(tag)
        entry = NOTES[(tag, REMOVE, why)] = {"tag": label, "keyword": kw, "action": REMOVE, "why": why}
    return (tag, REMOVE), entry


def vr_of_tag(tag: int) -> str | None:
    return dictionary_vr(tag)


def method_text(plan: Plan, profile_name: str) -> list[str]:
    opts = ", ".join(plan.options) or "none"
    text = [f"bids-deid {__version__}", "PS3.15 E.1 basic profile", f"profile {profile_name}"[:64],
            f"options: {opts}"[:64], f"dates {plan.date_handling.lower()}"]
    return text


METHOD_TAGS = (0x00120063, 0x00120064)  # DeidentificationMethod, DeidentificationMethodCodeSequence


def keeps_pixels(plan: Plan) -> bool:
    """True when the plan keeps Pixel Data as is (checked once per plan)."""
    ok = plan.decisions.get("keeps_pixels")
    if ok is None:
        ok = plan.decisions["keeps_pixels"] = all(decide_tag(plan, PIXEL_DATA, v) is None for v in (None, "OB", "OW"))
    return ok


def not_to_write(src: Path, dst, subj: str, overwrite: bool, sv, profile) -> DicomResult | None:
    """The result of a file the engine does not write: already written (``exists``), or held
    back as a burned-in text risk by a profile whose ``dicom.burned_in`` is ``skip``; else None.
    ``sv(tag)`` reads a value as :func:`burned_in_rule` says (one rule for every path)."""
    if not overwrite and os.path.exists(dst):
        return DicomResult(Path(src), Path(dst), "exists", "already written", subject=subj)
    reason = burned_in_rule(sv, profile)
    if reason and profile.dicom_burned_in == "skip":
        return DicomResult(Path(src), None, "skipped", f"possible burned-in text: {reason}", subject=subj)
    return None


def burned_in_rule(sv, profile) -> str | None:
    """Why a dataset may carry burned-in text, or None; ``sv(tag)`` gives an element's value as
    ``str(value or "")`` (each path reads values its own way)."""
    flag = sv(0x00280301).strip().upper()
    if flag == "YES":
        return "BurnedInAnnotation is YES"
    if flag == "NO":
        return None
    modality = sv(0x00080060).strip().upper()
    sop_mod = SOP_MODALITY.get(sv(0x00080016))
    mods = {m.upper() for m in profile.dicom_burned_in_modalities}
    for m in (modality, sop_mod):
        if m and m in mods:
            return f"modality {m} may carry burned-in text (BurnedInAnnotation not NO)"
    return None
