"""PS3.15 Table E.1-1 (package data) and the resolution of one profile into per-tag actions.

The table lives in ``bids_deid/data/ps3_15_table_e1_1.tsv`` (see ``tools/build_table_e1_1.py``
for where its facts come from). :func:`compile_plan` turns the table plus a profile's options
and rules into a :class:`Plan`: one concrete action per tag, computed once per profile.
"""

from __future__ import annotations

import csv
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from ..profiles import DICOM_OPTIONS, Profile
from .dicom_dict import dictionary_vr, keyword_for_tag, tag_for_keyword

log = logging.getLogger(__name__)

TABLE_FILE = "ps3_15_table_e1_1.tsv"

# Concrete actions the engine knows.
KEEP, REMOVE, EMPTY, DUMMY, UID, CLEAN, SHIFT, PSEUDO, REPLACE, RECURSE = (
    "keep", "remove", "empty", "dummy", "remap_uid", "clean", "shift_date", "pseudonymize", "replace", "recurse",
)
DATE_VRS = frozenset({"DA", "DT", "TM"})


@dataclass(frozen=True)
class TableRow:
    """One row of Table E.1-1."""

    tag: str  # "(GGGG,EEEE)", may hold x ranges
    keyword: str
    name: str
    basic: str
    options: dict[str, str]


@lru_cache(maxsize=1)
def load_table() -> tuple[TableRow, ...]:
    """Read the packaged Table E.1-1 (656 rows in the 2026c edition)."""
    text = (resources.files("bids_deid") / "data" / TABLE_FILE).read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    rows = []
    for r in csv.DictReader(lines, delimiter="\t"):
        opts = {o: r[o] for o in DICOM_OPTIONS if r.get(o)}
        rows.append(TableRow(r["tag"], r["keyword"], r["name"], r["basic"], opts))
    return tuple(rows)


def _tag_int(tag: str) -> int | None:
    t = tag.strip("()").replace(",", "")
    try:
        return int(t, 16)
    except ValueError:
        return None


@dataclass
class Plan:
    """Per-tag actions for one profile: ``tags[tag] = (action, why, value)``."""

    tags: dict[int, tuple[str, str, object]] = field(default_factory=dict)
    overlay: dict[int, tuple[str, str, object]] = field(default_factory=dict)  # element -> action, 60xx
    curve_keep: bool = False
    overlay_keep: bool = False
    options: tuple[str, ...] = ()
    dates: str = "shift"
    # Human-readable summary for DeidentificationMethod.
    date_handling: str = "REMOVED"
    # Private elements the profile keeps beyond the table (dicom.keep_private rows).
    private_keep: tuple = ()
    # Filled by the engine as it meets tags: (tag, VR as read) -> decision (see dicom._decide).
    decisions: dict = field(default_factory=dict, repr=False, compare=False)


def _resolve_code(row: TableRow, options: tuple[str, ...], dates: str) -> tuple[str, str]:
    """The code that applies to ``row`` after options (later options win) and the date policy."""
    code, why = row.basic, f"basic profile {row.basic}"
    is_date_row = "retain_long_modified_dates" in row.options
    for opt in DICOM_OPTIONS:  # fixed order: modified dates after full dates (the more private wins)
        if opt in options and opt in row.options:
            code, why = row.options[opt], f"{opt} {row.options[opt]}"
    explicit_date_opt = any(o in options for o in ("retain_long_full_dates", "retain_long_modified_dates"))
    if is_date_row and not explicit_date_opt:
        if dates == "shift":
            code, why = "C", "dates: shift (retain longitudinal modified dates)"
        elif dates == "keep":
            code, why = "K", "dates: keep (retain longitudinal full dates)"
    return code, why


def code_to_action(code: str, vr: str | None) -> str:
    """Map a table code (incl. combined ones) to one concrete action.

    Combined codes take the choice that keeps the object valid with least information:
    X/Z -> Z, X/D, Z/D, X/Z/D -> D; X/Z/U* -> keep the sequence and treat its items
    (their UIDs are remapped by their own rows).
    """
    if vr == "SQ":
        if code in ("X",):
            return REMOVE
        if code in ("Z", "X/Z"):
            return EMPTY
        return RECURSE  # K, C, D, U, X/D, Z/D, X/Z/D, X/Z/U*: keep structure, treat items
    if code == "K":
        return KEEP
    if code == "X":
        return REMOVE
    if code in ("Z", "X/Z"):
        return EMPTY
    if code in ("D", "X/D", "Z/D", "X/Z/D"):
        return DUMMY
    if code in ("U", "X/Z/U*"):
        return UID
    if code == "C":
        return SHIFT if vr in DATE_VRS else CLEAN
    return REMOVE


def _vr(tag: int) -> str | None:
    return dictionary_vr(tag)


def rule_tag(target: str) -> int | None:
    """Tag for a profile rule target (keyword or GGGGEEEE)."""
    t = tag_for_keyword(target)
    if t is not None:
        return t
    try:
        return int(target, 16)
    except ValueError:
        return None


# Plans of the last few distinct profiles, least recently used first. Profiles are frozen
# values: an equal copy (``dataclasses.replace`` per file, as the whole-slide and pixel paths
# make) finds the plan of the first; the last profile asked is checked by identity first.
PLANS_MAX = 8
_PLANS: OrderedDict = OrderedDict()
_LAST: list = [None, None]  # [profile, plan]


def compile_plan(profile: Profile) -> Plan:
    """Resolve Table E.1-1 + options + ``dicom_rules`` of ``profile`` into a :class:`Plan`
    (cached for the :data:`PLANS_MAX` most recently used profiles)."""
    if _LAST[0] is profile:
        return _LAST[1]
    try:
        hash(profile)
        key: object = profile
    except TypeError:  # a profile with unhashable parts: keyed by identity
        key = ("id", id(profile))
    hit = _PLANS.get(key)
    if hit is not None and (key is profile or hit[0] is profile):
        _PLANS.move_to_end(key)
        plan = hit[1]
    else:
        plan = _compile(profile)
        _PLANS[key] = (profile, plan)
        while len(_PLANS) > PLANS_MAX:
            _PLANS.popitem(last=False)
    _LAST[0], _LAST[1] = profile, plan
    return plan


def _compile(profile: Profile) -> Plan:
    options = tuple(profile.dicom_options)
    plan = Plan(options=options, dates=profile.dates)
    plan.private_keep = tuple(getattr(profile, "dicom_keep_private", ()))
    plan.curve_keep = "clean_graphics" in options
    plan.overlay_keep = "clean_graphics" in options
    for row in load_table():
        code, why = _resolve_code(row, options, profile.dates)
        if row.tag.startswith("(60XX"):
            el = int(row.tag[6:10], 16)
            vr = _vr(0x60000000 | el)
            plan.overlay[el] = (code_to_action(code, vr), why, None)
            continue
        t = _tag_int(row.tag)
        if t is None:  # curves (50xx,xxxx) and private attributes: handled by the walker
            continue
        plan.tags[t] = (code_to_action(code, _vr(t)), why, None)
    # Free text of SR content items is not in the table; without Clean Structured Content it is
    # replaced by a dummy (keeps the object valid), with it the text is cleaned.
    text_value = (CLEAN, "clean_structured_content C") if "clean_structured_content" in options else (
        DUMMY, "SR text outside Table E.1-1: dummy")
    plan.tags.setdefault(0x0040A160, (*text_value, None))
    for rule in profile.dicom_rules:
        t = rule_tag(rule.target)
        if t is None:
            continue
        plan.tags[t] = (rule.action, f"profile rule {rule.action}", rule.value)
    if "retain_long_full_dates" in options or (profile.dates == "keep" and "retain_long_modified_dates" not in options):
        plan.date_handling = "UNMODIFIED"
    elif "retain_long_modified_dates" in options or profile.dates == "shift":
        plan.date_handling = "MODIFIED"
    else:
        plan.date_handling = "REMOVED"
    log.debug("compiled DICOM plan for profile %s: %d tags", profile.name, len(plan.tags))
    return plan


@lru_cache(maxsize=8192)
def keyword(tag: int) -> str:
    """Keyword of ``tag`` or '' when unknown/private (cached)."""
    return keyword_for_tag(tag) or ""
