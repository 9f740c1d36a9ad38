"""What the leak audit searches for: identifiers met by the scrubbers, by class, in every spelling.

Each scrubber records, on the private side, ``(kind, value)`` pairs: ``kind`` names the
source field (a DICOM keyword, ``sidecar:Field``, ``tsv:column``, ``MINC group:attr``, ...).
This module gives each pair an identifier class and turns it into needles: the byte forms
to search and how a found form must sit in the text to count:

========================  =====================================================  ==================
class                     forms                                                  match
========================  =====================================================  ==================
person name               every DICOM PN spelling, each name part                whole words
ID                        the value                                              whole token
date                      ISO, DICOM, European, US, month-name spellings         whole token
place/institution         the phrase (space, ``_``, ``-``, ``^`` or no joins)    whole words
device/station            the value                                              whole token
free-text token           dates, IDs, e-mails, phones, addresses found in it     as their class
subject/session label     ``sub-X``/``ses-X`` and the bare label                 whole token
UID                       the original UID                                       whole number run
key                       raw bytes, hex, base64                                 exact, anywhere
========================  =====================================================  ==================

A whole token is not inside a longer run of letters and digits ("USC" counts in "USC-3T",
not in "MUSCLE"); whole words are the same for names and phrases. Values that are not
identifiers are not searched and are listed with the reason: times of day (kept by BIDS in
``acq_time``), defined terms and structural values (DICOM CS values, MINC ``parent``),
measurements (age, size, weight), category values of dropped table columns (``young``,
``control``), and values too short to tell from chance.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import unicodedata
from dataclasses import dataclass

NAME = "person name"
ID = "ID"
DATE = "date"
PLACE = "place/institution"
DEVICE = "device/station"
TEXT = "free-text token"
LABEL = "subject/session label"
UID = "UID"
KEY = "key"
SEQ_LABEL = "original label (sequence number)"  # sub-01 in a README: listed for review, not a failure
NOT_ID = "not an identifier"  # the class of values the audit leaves out on purpose (with the reason)
SEARCHED_CLASSES = (NAME, ID, DATE, PLACE, DEVICE, TEXT, LABEL, SEQ_LABEL, UID, KEY)

# how a found form must sit in the bytes around it
WORD = "word"  # not inside a run of letters/digits
NUMBER = "number"  # not inside a run of digits, letters or a decimal number ("1.23456")
EXACT = "exact"  # anywhere, case kept (key bytes)

MIN_TOKEN = 3  # shortest value searched as a whole token (letters or mixed)
MIN_DIGITS = 5  # shortest digits-only value searched as a whole number
CASE_EXACT_BELOW = 5  # shorter forms match as written or in capitals only ("USC", not "usc" in a word)
BINARY_MIN = 8  # fewest characters a form needs to count inside voxel/pixel/raw-data blocks

# Words that are never a person's name or an institution on their own.
NOT_IDENTIFYING = {
    "none", "unknown", "anonymous", "anonymized", "anonymised", "anon", "n/a", "na", "nan", "null", "male",
    "female", "other", "true", "false", "yes", "no", "original", "primary", "secondary", "derived", "head",
    "brain", "axial", "sagittal", "coronal", "normal", "research", "patient", "subject", "removed",
    "deidentified", "de-identified", "xxxx", "xxxxx", "dcm2niix", "bids", "test", "phantom", "volunteer",
    "qa", "qc", "study", "control", "dr", "mr", "mrs", "ms", "prof", "md", "phd", "jr", "sr", "ii", "iii",
    "physics", "service", "default", "empty", "missing", "not", "given", "and", "the", "of", "name",
    # generic words of places: a department or site field that holds only one of them names no site
    "department", "hospital", "clinic", "university", "institute", "institution", "center", "centre", "lab",
    "laboratory", "radiology", "neurology", "neuroradiology", "imaging", "school", "faculty", "site", "unit",
    # scanner makers: an institution or station field that holds the vendor names no one
    "siemens", "philips", "ge", "ge medical systems", "gems", "toshiba", "canon", "hitachi", "bruker", "agfa",
    "fujifilm", "hologic", "united imaging", "varian", "elscint", "picker", "marconi", "imatron", "esaote",
}  # fmt: skip
# DICOM defined terms that BIDS sidecars keep (PS3.3: Patient Position C.7.3.1.1.2; Scanning Sequence,
# Sequence Variant and Scan Options C.8.3.1): a name field holding one (QA phantoms are named after
# the position they were scanned in: PatientName "HFS") would otherwise "leak" through
# PatientPosition. Such a value names no one.
DEFINED_TERMS = {
    "hfp", "hfs", "hfdr", "hfdl", "ffp", "ffs", "ffdr", "ffdl", "lfp", "lfs", "rfp", "rfs", "afdr", "afdl",
    "pfdr", "pfdl", "mtc", "osp", "tof", "spoiled", "mp", "sat", "fc", "pfp", "pff", "fs", "ir", "se", "gr",
    "ep", "rm", "sk", "ss", "sp", "mosaic",
}  # fmt: skip

_DATE_WORDS = re.compile(r"date|birth|dob|\bday\b", re.I)
_TIME_WORDS = re.compile(r"time|TimezoneOffset|TimeOffsets", re.I)
_NAME_FIELDS = re.compile(
    r"PatientName|PhysicianName|PhysiciansName|PhysiciansReadingStudy|OperatorsName|ObserverName|PersonName|"
    r"OtherPatientNames|PatientBirthName|PatientMotherBirthName|ResponsiblePerson|NameOfPhysicians|"
    r"Author|Reviewer|Requesting|Referring|Performing|ContactName|full_name|first_name|last_name|surname|"
    r"given_name|family_name|initials|^name$|_name$|rater|experimenter|examiner|operator|technician|"
    r"physician|doctor|clinician|scorer|interviewer|informant|guardian|parent|mother|father|contact",
    re.I,
)
_PLACE_FIELDS = re.compile(
    r"Institution|Address|Department|Organi[sz]ation|Location|Hospital|Center|Centre|Clinic|City|Country|"
    r"Street|Zip|Postal|Region|State$|^site$|_site$|^site_|Place|TelephoneNumber|Phone|Email|Fax",
    re.I,
)
_DEVICE_FIELDS = re.compile(r"Station|Serial|DeviceUID|DeviceID|DeviceLabel|scanner_id|AETitle|EntityTitle", re.I)
_ID_FIELDS = re.compile(
    r"ID$|IDs$|Id$|_id$|^id$|Number$|Numbers$|Accession|MRN|Identifier|Barcode|genetic_id|BatchID|record|chart",
    re.I,
)
_TEXT_FIELDS = re.compile(
    r"Description|Comment|Protocol|Text|Note|History|Remark|Reason|Observation|descrip|aux_file|intent_name|"
    r"db_name|generated|scannum|ImageDescription|burned-in|Concept|Diagnos|Indication|Allerg|Medical|"
    r"Occupation|Ethnic|Religio|Additional",
    re.I,
)
# DICOM VRs whose values are defined terms, codes or numbers, never names or free text.
_STRUCT_VRS = {"CS", "AT", "OB", "OW", "OF", "OD", "OL", "OV", "UN", "SQ"}
_NUMBER_VRS = {"AS", "DS", "IS", "FL", "FD", "SL", "SS", "UL", "US", "SV", "UV"}
# MINC/NetCDF attributes that describe the file's own structure.
_MINC_STRUCT = {
    "parent", "children", "dimorder", "varid", "vartype", "version", "signtype", "spacing", "alignment",
    "units", "valid_range", "direction_cosines", "start", "step", "length", "complete", "image-min",
    "image-max", "class", "datatype", "rootname", "ident",
}  # fmt: skip


@dataclass(frozen=True)
class Needle:
    """One form to search: ``form`` in text, matched by ``mode``; ``value`` is what the scrubber met."""

    form: str
    cls: str
    kind: str  # the source field as the scrubber recorded it
    value: str
    mode: str = WORD
    scope: str = "*"  # "*" everywhere, else only in this subject's files (and dataset-level files)
    exact: bytes | None = None  # byte pattern searched as given (the key)


@dataclass(frozen=True)
class NotSearched:
    """A value the audit does not search, and why (private side: it names the value)."""

    cls: str
    kind: str
    value: str
    reason: str


# ------------------------------------------------------------------ classes
def field_of(kind: str) -> str:
    """The field name inside a recorded kind (``sidecar:InstitutionName`` -> ``InstitutionName``)."""
    k = kind.strip().removesuffix(" (shared)")
    for sep in (":", " "):
        if sep in k and not k.startswith(("subject label", "session label", "burned-in")):
            k = k.rsplit(sep, 1)[1]
    return k


def _dicom_vr(fieldname: str) -> str | None:
    from ..scrub.dicom_dict import dictionary_vr, tag_for_keyword

    tag = tag_for_keyword(fieldname)
    if tag is None:
        return None
    vr = dictionary_vr(tag) or ""
    return vr.split(" ")[0] or None


def classify(kind: str, value: str) -> str:
    """The identifier class of one recorded value, or a reason it is not an identifier (``not:...``)."""
    k = kind.strip()
    fieldname = field_of(k)
    low = k.lower()
    if low.startswith(("subject label", "session label")):
        if value.strip().removeprefix("sub-") == "emptyroom":
            return "not:BIDS's label for empty-room recordings (no person)"
        return LABEL
    shared = k.endswith(" (shared)")
    if shared:
        k = k.removesuffix(" (shared)")
        fieldname, low = field_of(k), k.lower()
    if low == "uid":
        return UID
    if low == "date":
        return DATE
    if low.startswith("minc") and fieldname.lower() in _MINC_STRUCT:
        return "not:structural value of the file format"
    vr = _dicom_vr(fieldname)
    if vr == "UI":
        return UID
    if vr in ("DA", "DT"):
        return DATE
    if vr == "TM":
        return "not:time of day (BIDS keeps times: acq_time, AcquisitionTime)"
    if vr == "PN":
        return NAME
    if vr in _NUMBER_VRS and not _ID_FIELDS.search(fieldname):
        return "not:measurement or number"
    if vr in _STRUCT_VRS:
        return "not:defined term or code (DICOM CS)"
    if _DATE_WORDS.search(fieldname) or low == "studydate":
        return DATE
    if _TIME_WORDS.search(fieldname):
        return DATE if parse_date(value) else "not:time of day (BIDS keeps times: acq_time, AcquisitionTime)"
    if _PLACE_FIELDS.search(fieldname):
        return PLACE
    if _DEVICE_FIELDS.search(fieldname):
        return DEVICE
    if _NAME_FIELDS.search(fieldname):
        return NAME
    if _ID_FIELDS.search(fieldname):
        return "not:category value shared by several participants" if shared else ID
    if low.startswith("tsv:") and not _TEXT_FIELDS.search(fieldname):
        cls = _column_value_class(value)
        return "not:category value shared by several participants" if shared and cls in (ID, TEXT) else cls
    return TEXT


def _column_value_class(value: str) -> str:
    """A value of a dropped table column with no telling name: identifying by its shape only."""
    v = value.strip()
    if parse_date(v):
        return DATE
    if re.search(r"\d{5,}", v) or _ID_TOKEN.fullmatch(v):
        return ID
    if len(v.split()) >= 3:
        return TEXT
    return "not:category value of a dropped column"


# ------------------------------------------------------------------ dates
_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december"]
_MON_RE = "|".join(m[:3] for m in _MONTHS) + "|sept"
DATE_IN_TEXT = re.compile(
    rf"(?<![0-9])(?:\d{{4}}[-/._][01]?\d[-/._][0-3]?\d|\d{{4}}[01]\d[0-3]\d|[0-3]?\d[-/.][01]?\d[-/.]\d{{4}}|"
    rf"[0-3]?\d[ -]?(?:{_MON_RE})[a-z]*\.?[ -]?\d{{4}}|(?:{_MON_RE})[a-z]*\.? [0-3]?\d(?:st|nd|rd|th)?,? \d{{4}})"
    rf"(?![0-9])",
    re.I,
)


def parse_date(value: str) -> dt.date | None:
    """A calendar date at the start of ``value`` (DICOM, ISO, DT, ``ses-20090409`` style), else None."""
    v = value.strip()
    m = re.match(r"(?:ses-|sub-)?(\d{4})([-/._]?)(\d{1,2})\2(\d{1,2})(?![0-9])", v)
    if not m and re.fullmatch(r"\d{10,14}(?:\.\d+)?(?:[+-]\d{4})?", v):  # DICOM DT
        m = re.match(r"(\d{4})()(\d{2})(\d{2})", v)
    if not m:
        m2 = re.fullmatch(r"(\d{1,2})[./-](\d{1,2})[./-](\d{4})", v)
        if not m2:
            return _parse_month_name(v)
        a, b, y = int(m2[1]), int(m2[2]), int(m2[3])
        for d_, mo in ((a, b), (b, a)):
            try:
                return dt.date(y, mo, d_)
            except ValueError:
                continue
        return None
    try:
        if not m[2] and (len(m[3]) != 2 or len(m[4]) != 2):
            return None
        return dt.date(int(m[1]), int(m[3]), int(m[4]))
    except ValueError:
        return None


def _parse_month_name(v: str) -> dt.date | None:
    m = re.fullmatch(rf"([0-3]?\d)[ -]?({_MON_RE})[a-z]*\.?[ -]?(\d{{4}})", v, re.I) or None
    if m:
        day, mon, year = m[1], m[2], m[3]
    else:
        m = re.fullmatch(rf"({_MON_RE})[a-z]*\.? ([0-3]?\d)(?:st|nd|rd|th)?,? (\d{{4}})", v, re.I)
        if not m:
            return None
        mon, day, year = m[1], m[2], m[3]
    try:
        return dt.date(int(year), [x[:3] for x in _MONTHS].index(mon[:3].lower()) + 1, int(day))
    except ValueError:
        return None


def date_forms(d: dt.date) -> set[str]:
    """The common spellings of one calendar date (any year, also before 1900)."""
    y, m, dd = f"{d.year:04d}", f"{d.month:02d}", f"{d.day:02d}"
    mo, day = str(d.month), str(d.day)
    name = _MONTHS[d.month - 1].title()
    out = {f"{y}-{m}-{dd}", f"{y}{m}{dd}", f"{y}/{m}/{dd}", f"{y}.{m}.{dd}", f"{y}_{m}_{dd}",
           f"{dd}.{m}.{y}", f"{dd}/{m}/{y}", f"{m}/{dd}/{y}", f"{dd}-{m}-{y}", f"{m}-{dd}-{y}", f"{dd}{m}{y}",
           f"{day}.{mo}.{y}", f"{day}/{mo}/{y}", f"{mo}/{day}/{y}",
           f"{day} {name} {y}", f"{day} {name[:3]} {y}", f"{dd}-{name[:3]}-{y}", f"{dd}{name[:3]}{y}",
           f"{name} {day}, {y}", f"{name[:3]} {day}, {y}", f"{name} {day} {y}", f"{name[:3]} {day} {y}"}
    return out


# ------------------------------------------------------------------ names, phrases, tokens
def name_parts(value: str) -> list[str]:
    """The words of a person name, DICOM PN (``family^given^middle^prefix^suffix``) or plain."""
    first = value.split("=")[0]  # alphabetic group; ideographic/phonetic groups are searched as given
    return [p for p in re.split(r"[\^\s,]+", first) if p and p != "."]


def name_forms(value: str) -> set[str]:
    """Ways a writer spells one person's name, and each distinctive part alone."""
    v = value.strip()
    out: set[str] = set()
    if "^" in v:
        parts = [p.strip() for p in v.split("=")[0].split("^")]
        family, given, middle = (parts + ["", "", ""])[:3]
        named = [p for p in parts if p]
        out |= {" ".join(named), " ".join(reversed(named)), ", ".join(named), "^".join(named)}
        if family and given:
            out |= {f"{given} {family}", f"{family}, {given}", f"{family} {given}", f"{family},{given}",
                    f"{given}{family}", f"{family}{given}", f"{given}_{family}", f"{family}_{given}"}
            if middle:
                out |= {f"{given} {middle} {family}", f"{given} {middle[0]}. {family}",
                        f"{given} {middle[0]} {family}", f"{family}, {given} {middle}",
                        f"{family}, {given} {middle[0]}."}
        for g in v.split("=")[1:]:  # ideographic / phonetic groups as written
            out |= {" ".join(p for p in g.split("^") if p)}
    else:
        words = name_parts(v)
        out.add(" ".join(words))
        if len(words) >= 2:
            out |= {" ".join(reversed(words)), f"{words[-1]}, {' '.join(words[:-1])}", "".join(words)}
    for p in name_parts(v):
        if len(p) >= MIN_TOKEN and p.lower().strip(".") not in NOT_IDENTIFYING:
            out.add(p)
    return {f for f in out if f.strip()}


def phrase_forms(value: str) -> set[str]:
    """A place or institution as written, and with its words joined by ``_``, ``-``, ``^`` or nothing."""
    words = [w for w in re.split(r"[\s^_]+", value.strip()) if w]
    if not words:
        return set()
    out = {" ".join(words)}
    if len(words) > 1:
        out |= {"_".join(words), "-".join(words), "^".join(words), "".join(words)}
    return out


_ID_TOKEN = re.compile(r"(?=[A-Za-z0-9._/#-]*\d)[A-Za-z0-9][A-Za-z0-9._/#-]{3,}[A-Za-z0-9]")
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
PHONE_RE = re.compile(r"(?<![\w.])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4}(?!\w|\.\d)")
_ADDRESS = re.compile(
    r"\b\d{1,5}[a-z]?,? (?:[A-Z][\w'-]+ ){1,4}(?:Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Boulevard|Blvd|"
    r"Way|Court|Ct|Place|Pl|Square|Sq|Wharf|Strasse|Straße|Weg|Gasse|Platz|Allee)\b\.?"
)


def _is_number(tok: str) -> bool:
    return bool(re.fullmatch(r"[-+]?\d+(?:[.,]\d+)?(?:[eE][-+]?\d+)?", tok))


def text_tokens(value: str) -> list[tuple[str, str]]:
    """The identifying tokens of removed free text: ``(class, token)`` for dates, IDs, e-mails, phones, addresses.

    Ordinary words ("Gradient Echo", "FMRIF^QA") are not identifying on their own: a person's
    or an institution's name in free text is searched through its own field's class.
    """
    out: list[tuple[str, str]] = []
    for m in DATE_IN_TEXT.finditer(value):
        if parse_date(m.group()):
            out.append((DATE, m.group()))
    for m in EMAIL_RE.finditer(value):
        out.append((ID, m.group()))
    for m in _ADDRESS.finditer(value):
        out.append((PLACE, m.group().rstrip(".,")))
    for m in PHONE_RE.finditer(value):
        digits = re.sub(r"\D", "", m.group())
        if len(digits) >= 7 and not DATE_IN_TEXT.fullmatch(m.group()):
            out.append((ID, m.group()))
    for m in _ID_TOKEN.finditer(value):
        tok = m.group().strip("._/#-")
        digits = sum(c.isdigit() for c in tok)
        if _is_number(tok) or DATE_IN_TEXT.fullmatch(tok) or "@" in tok or re.fullmatch(r"[\d.:]+", tok):
            continue
        if digits >= MIN_DIGITS + 1 or (digits >= 2 and len(tok) >= 6 and any(c.isalpha() for c in tok)):
            out.append((ID, tok))
    return out


# ------------------------------------------------------------------ needles
def searchable(form: str, mode: str) -> str | None:
    """Why ``form`` cannot be searched without false alarms, or None when it can."""
    f = form.strip()
    if mode == EXACT:
        return None if len(f) >= 8 else "too short"
    alnum = sum(c.isalnum() for c in f)
    if alnum == 0:
        return "holds no letter or digit"
    if f.lower().strip(".") in NOT_IDENTIFYING:
        return "a common word"
    if f.lower() in DEFINED_TERMS:
        return "a DICOM defined term that sidecars keep (e.g. PatientPosition)"
    if f.isdigit() or re.fullmatch(r"[\d .:/-]+", f):
        return None if sum(c.isdigit() for c in f) >= MIN_DIGITS else "a number too short to tell from chance"
    if _is_number(f):
        return "a number"
    if alnum < MIN_TOKEN:
        return f"shorter than {MIN_TOKEN} letters"
    return None


def needles_for(kind: str, value: str, scope: str, public_names: set[str] | None = None,
                dataset_words: set[str] | None = None, public_text: str = "") -> tuple[list[Needle], list[NotSearched]]:
    """The needles of one recorded ``(kind, value)``, and the parts that are not searched (with why)."""
    v = unicodedata.normalize("NFC", str(value)).strip().strip("\x00").strip()
    if not v:
        return [], []
    cls = classify(kind, v)
    if re.fullmatch(r"(?:doi:|https?://|10\.\d{4,9}/)\S+", v, re.I) and cls != NAME:
        cls = "not:a public DOI or web address"
    if cls.startswith("not:"):
        return [], [NotSearched(NOT_ID, kind, v, cls[4:])]
    items: list[tuple[str, str, str]] = []  # (class, form, mode)
    parts: set[str] = set()
    skipped_parts: list[NotSearched] = []
    if cls == NAME:
        parts = {p.lower() for p in name_parts(v)} - {v.lower()}
        staff = not re.search(r"patient|^name$|full_name|first_name|last_name|surname|given|family|initials",
                              field_of(kind), re.I)
        for f in name_forms(v):
            if staff and public_names and f.lower() in public_names:
                return [], [NotSearched(NAME, kind, v, "staff name listed in the dataset's Authors (public)")]
            if dataset_words and f.lower() in parts and f.lower() in dataset_words:
                # "Biobank" of "BIOBANK^SUBJ7" is a word of the dataset's public Name: the whole
                # name is still searched, the word alone would only find the Name itself.
                skipped_parts.append(NotSearched(NAME, kind, f, "a word of the dataset's Name (public) alone"))
                continue
            items.append((NAME, f, WORD))
    elif cls == DATE:
        d = parse_date(v)
        if d is None:
            found = [t for t in text_tokens(v) if t[0] == DATE]
            if not found:
                return [], [NotSearched(DATE, kind, v, "a date that does not parse")]
            for _c, tok in found:
                items += [(DATE, f, NUMBER) for f in date_forms(parse_date(tok))]
        else:
            items += [(DATE, f, NUMBER) for f in date_forms(d)]
    elif cls == PLACE:
        if public_text and " ".join(v.lower().split()) in public_text:
            # The dataset's own description (License, Acknowledgements, ...) names the site.
            return [], [NotSearched(PLACE, kind, v, "named in the dataset's own dataset_description.json (public)")]
        items += [(PLACE, f, WORD) for f in phrase_forms(v)]
        items += [(c, t, NUMBER if c == DATE else WORD) for c, t in text_tokens(v) if c != DATE]
    elif cls in (ID, DEVICE):
        items.append((cls, v, NUMBER if v.isdigit() else WORD))
        if " " in v:
            items += [(cls, f, WORD) for f in phrase_forms(v)]
    elif cls == LABEL:
        bare = v.split("-", 1)[1] if v.startswith(("sub-", "ses-")) else v
        # "01", "002": a counter names no one; text that still speaks of sub-01 is stale, not a leak
        items.append((SEQ_LABEL if re.fullmatch(r"\d{1,3}", bare) else LABEL, v, WORD))
        d = parse_date(v.split("-", 1)[-1])
        if d is not None:  # a date-like label (ses-20090409): the date in every spelling too
            items += [(DATE, f, NUMBER) for f in date_forms(d)]
    elif cls == UID:
        items.append((UID, v, NUMBER))
    else:  # free text: only the identifying tokens inside it
        for c, t in text_tokens(v):
            if c == DATE and parse_date(t):
                items += [(DATE, f, NUMBER) for f in date_forms(parse_date(t))]
            else:
                items.append((c, t, NUMBER if c == DATE else WORD))
        if not items:
            return [], [NotSearched(TEXT, kind, v, "free text without identifying tokens")]
    needles, skipped = [], list(skipped_parts)
    seen: set[str] = set()
    for c, f, mode in items:
        key = f.lower()
        if key in seen:
            continue
        seen.add(key)
        why = searchable(f, mode)
        if why:
            if f == v or c in (ID, DEVICE, PLACE, LABEL):
                skipped.append(NotSearched(c, kind, f, why))
            continue
        # Dates and single name parts are searched in their own subject's files and in
        # dataset-level files (another subject's shifted date, or a word of another's scanner
        # protocol such as "Perfusion.pal", may equal them by chance); name parts of 7+ letters
        # also in every text file; whole names and the rest everywhere.
        where = "*"
        if c == DATE or (c == NAME and key in parts and len(f) < 7):
            where = scope
        elif c == NAME and key in parts and scope != "*":
            where = f"text:{scope}"  # a long name part: also in prose anywhere, not in others' scanner text
        needles.append(Needle(f, c, kind, v, mode, where))
    if not needles and not skipped:
        skipped.append(NotSearched(cls, kind, v, "no part of it can be searched"))
    return needles, skipped


def key_needles(key: bytes) -> list[Needle]:
    """The key's bytes as written in a key file, and its hex and base64 spellings."""
    forms: set[bytes] = {key, key.strip()}
    raw = [key]
    try:  # a key file holds base64 text: its decoded bytes are the secret too
        dec = base64.urlsafe_b64decode(key.strip() + b"=" * (-len(key.strip()) % 4))
        if len(dec) >= 16:
            raw.append(dec)
    except (ValueError, TypeError):
        pass
    for r in raw:
        forms |= {r, r.hex().encode(), r.hex().upper().encode(), base64.b64encode(r), base64.urlsafe_b64encode(r),
                  base64.b64encode(r).rstrip(b"="), base64.urlsafe_b64encode(r).rstrip(b"=")}
    return [Needle("", KEY, "key file", "(the key)", EXACT, "*", exact=f) for f in sorted(forms) if len(f) >= 16]
