"""DICOM de-identification engine: PS3.15 Annex E basic profile + options + profile rules.

The table (``bids_deid/data/ps3_15_table_e1_1.tsv``) and the profile decide one action per
attribute (see :mod:`bids_deid.scrub.dicom_table`); attributes outside the table are removed
unless they are standard image/geometry/acquisition attributes of the allowlist
(:mod:`bids_deid.scrub.dicom_allowlist`); private attributes, curves and overlays are removed
(with ``retain_safe_private``, the private attributes of PS3.15 Table E.3.10-1 and their creators
are kept: :mod:`bids_deid.scrub.dicom_safe_private`).
Sequences are treated recursively at any depth. Pixel data are copied as bytes, never decoded.

Files take a raw fast path (:mod:`bids_deid.scrub.dicom_raw`): the same walk runs on a dataset
whose elements stay unconverted until an action needs their value; kept elements are copied
back as their original bytes and Pixel Data is copied as a byte range, never parsed. Unusual
files (no preamble, big endian, deflated, malformed) take the full pydicom path. Per-tag
decisions are cached per profile plan (``Plan.decisions``).

The pydicom side of the engine's decisions: the dataset walk (:func:`deidentify_dataset`, pure,
in place). The raw and full file paths that use it, for files the lean byte path declines, are
in :mod:`bids_deid.scrub.dicom_files`. It never imports the driver; the public names of all
are gathered in :mod:`bids_deid.scrub.dicom`.
"""

from __future__ import annotations

import logging
import re

import pydicom
from pydicom.charset import default_encoding
from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import UID as UIDValue
from pydicom.values import multi_string

from .. import __version__
from ..dicom.sniff import is_dicom
from ..profiles import Profile
from ..pseudonym import Pseudonymizer, shift_da, shift_dt
from . import dicom_allowlist as allow
from . import dicom_safe_private as safe_private
from .dicom_core import (  # noqa: F401 - re-exported: the engine's shared decisions and state
    BYTES_VRS,
    CID7050,
    DATE_PATTERNS,
    DROP,
    DUMMY_VALUES,
    IDENT_SOURCES,
    IMPLEMENTATION_UID,
    META_KEEP,
    METHOD_TAGS,
    MISS,
    NOTES,
    NUMERIC_VRS,
    PATIENT_ID,
    PATIENT_NAME,
    PIXEL_DATA,
    QUIET_REMOVE,
    SAFE_CHECK,
    SAFE_KEEP_WHY,
    SAFE_PRIVATE_CHECK,
    SERIES_UID,
    SOP_INSTANCE_UID,
    SOP_MODALITY,
    STUDY_UID,
    TEXT_VRS,
    Ctx,
    DicomResult,
    Fallback,
    burned_in_rule,
    clean_text,
    converted_vr,
    decide_cached,
    decide_tag,
    ident_kind,
    is_curve,
    is_overlay,
    keeps_pixels,
    method_codes,
    method_text,
    not_to_write,
    quiet_note,
    tag_label,
    vr_of_tag,
)
from .dicom_table import (
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

# Scanner files often break VR length rules; reading them must not warn per file.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

log = logging.getLogger(__name__)

def _values(elem: DataElement) -> list[str]:
    """String values of a (converted) element; [] for binary or sequence values."""
    if elem.VR in ("SQ",) or elem.VR in BYTES_VRS or elem.VR in NUMERIC_VRS or elem.value is None:
        return []
    val = elem.value
    vals = list(val) if isinstance(val, (list, tuple, pydicom.multival.MultiValue)) else [val]
    return [str(v).strip() for v in vals if str(v).strip()]


def _ident(ctx: Ctx, kind: str, elem: DataElement) -> None:
    """Record the string values of a converted element as identifiers of ``kind``."""
    for v in _values(elem):
        if len(v) >= 3:
            ctx.identifiers.append((kind, v))


def _set_empty(elem: DataElement) -> None:
    if elem.VR == "SQ":
        elem.value = Sequence()
    elif elem.VR in BYTES_VRS:
        elem.value = b""
    else:
        elem.value = None


def _dummy(elem: DataElement, ctx: Ctx) -> None:
    vr = elem.VR
    if vr == "UI":
        _remap(elem, ctx)
    elif vr in NUMERIC_VRS:
        elem.value = 0
    elif vr in BYTES_VRS:
        elem.value = b"\x00\x00"
    elif vr in ("DA", "DT") and ctx.plan.dates == "shift":
        _shift(elem, ctx)
    else:
        elem.value = DUMMY_VALUES.get(vr, "REMOVED")


def _remap(elem: DataElement, ctx: Ctx) -> None:
    vals = _values(elem)
    out = []
    for v in vals:
        if v.startswith(allow.DICOM_ROOT):
            out.append(v)
        else:
            ctx.identifiers.append(("uid", v))
            out.append(ctx.pseudo.uid(v))
    elem.value = out if len(out) != 1 else out[0]


def _shift(elem: DataElement, ctx: Ctx) -> bool:
    """Shift DA/DT values by the subject offset; TM is unchanged. False if any value failed."""
    vr = elem.VR
    if vr == "TM":
        return True
    fn = shift_da if vr == "DA" else shift_dt
    vals = _values(elem)
    out = []
    for v in vals:
        s = fn(v, ctx.offset)
        if s is None:
            elem.value = None  # unparsable: empty rather than leak
            return False
        out.append(s)
    elem.value = out if len(out) != 1 else (out[0] if out else None)
    return True


_SPLIT_TEXT_VRS = frozenset({"LO", "SH", "UC"})
_SINGLE_TEXT_VRS = frozenset({"LT", "ST", "UT"})
_PLAIN_STRING_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "TM"})
_LATIN1 = ("iso8859", ["iso8859"], ["latin_1"])
_DIRECT_VRS = _SPLIT_TEXT_VRS | _SINGLE_TEXT_VRS | _PLAIN_STRING_VRS | {"UI"}


def _get(ds: Dataset, tag: int) -> DataElement:
    """``ds[tag]``, converting the usual string VRs of a raw element directly (same value as
    pydicom's conversion, without its per-element hooks); anything else goes through pydicom."""
    elems = ds._dict
    el = elems.get(tag)
    kind = type(el)
    if kind is DataElement:
        return el  # already converted (what ds[tag] returns too)
    if kind is RawDataElement and el.value is not None:
        vr, raw = el.VR, el.value
        value = MISS
        if not raw:
            if vr in _DIRECT_VRS:
                value = empty_value_for_VR(vr)  # as pydicom for a zero length
        elif vr == "UI":
            value = multi_string(raw.decode(default_encoding).rstrip("\0 "), UIDValue)
        elif vr in _PLAIN_STRING_VRS:
            value = multi_string(raw.decode(default_encoding))
        elif (vr in _SPLIT_TEXT_VRS or vr in _SINGLE_TEXT_VRS) and b"\x1b" not in raw and (
                (ds.original_character_set or ds._character_set) in _LATIN1):
            text = raw.decode(default_encoding)
            if vr in _SINGLE_TEXT_VRS:
                value = text.rstrip("\0 ")
            else:
                parts = [v.rstrip("\0 ") for v in text.split("\\")]
                value = parts[0] if len(parts) == 1 else MultiValue(str, parts)
        if value is not MISS:
            new = DataElement(el.tag, vr, value, el.value_tell, False, already_converted=True)
            elems[el.tag] = new
            return new
    return ds[tag]


def string_value(ds: Dataset, tag: int) -> str:
    """``str(ds.get(keyword, "") or "")`` for the keyword of ``tag``, converting through :func:`_get`."""
    if tag not in ds._dict:
        return ""
    return str(_get(ds, tag).value or "")


def _apply(ds: Dataset, tag: int, action: str, why: str, value: object, ctx: Ctx, key=None) -> None:
    """Apply one concrete action to ``ds[tag]`` (``key``: the dataset's own key object for ``tag``)."""
    if key is None:
        key = tag
    if action == REMOVE:
        # Private values are not reported as identifiers (no conversion needed: fast path).
        if (tag >> 16) % 2 == 0:
            raw = ds._dict[key]
            if raw.VR in TEXT_VRS or raw.VR is None:
                elem = _get(ds, key)
                if elem.VR in TEXT_VRS:
                    _ident(ctx, ident_kind(tag, elem.VR), elem)
        del ds[tag]
        ctx.note(tag, "remove", why)
        return
    elem = _get(ds, key)  # converts a raw element
    vr = elem.VR
    if action == RECURSE or (vr == "SQ" and action in (KEEP, CLEAN, SHIFT, UID, DUMMY, PSEUDO)):
        for item in elem.value or ():
            _walk(item, ctx)
        return
    if action == KEEP:
        return
    if vr in TEXT_VRS:
        _ident(ctx, ident_kind(tag, vr), elem)
    if action == EMPTY:
        _set_empty(elem)
    elif action == DUMMY:
        _dummy(elem, ctx)
    elif action == UID:
        if vr == "UI":
            _remap(elem, ctx)
        else:
            _dummy(elem, ctx)
    elif action == SHIFT:
        if vr in ("DA", "DT", "TM"):
            if not _shift(elem, ctx):
                why += " (unparsable: emptied)"
        else:
            _set_empty(elem)
    elif action == CLEAN:
        vals = _values(elem)
        if vr in NUMERIC_VRS or vr in BYTES_VRS:
            _set_empty(elem)
        else:
            cleaned = [clean_text(v, ctx) for v in vals]
            elem.value = cleaned if len(cleaned) != 1 else cleaned[0]
    elif action == PSEUDO:
        if tag in (PATIENT_ID, PATIENT_NAME):
            elem.value = f"sub-{ctx.subject}"
        elif vr == "UI":
            _remap(elem, ctx)
        else:
            elem.value = ctx.pseudo.text_token(keyword(tag) or f"{tag:08X}", "\\".join(_values(elem)))
    elif action == REPLACE:
        elem.value = value
    elif action == "remap_uid":
        _remap(elem, ctx)
    else:  # pragma: no cover - compile_plan only emits known actions
        del ds[tag]
        action = "remove"
    ctx.note(tag, action, why)


def _walk(ds: Dataset, ctx: Ctx, events: list | None = None) -> None:
    """Treat every element of ``ds`` (and of its sequences) in place.

    ``events`` (raw path, top level): the elements in file order as :func:`read_raw` listed
    them with :func:`skip_for`; those it left out of ``ds`` get their audit entry here, in
    the same order as if they had been walked.
    """
    plan = ctx.plan
    decisions = plan.decisions
    elems = ds._dict
    seen, changes = ctx.seen, ctx.changes
    safe_keep = None  # retain_safe_private: this dataset's kept private elements, found when first needed
    for tag in (list(elems) if events is None else events):
        if type(tag) is tuple:
            left_out = tag[1]
            if left_out is not DROP and left_out[0] not in seen:  # as ctx.note, inlined
                seen.add(left_out[0])
                changes.append(left_out[1])
            continue
        if tag not in elems:
            continue
        itag = int(tag)
        key = (itag, elems[tag].VR)
        act = decisions.get(key, MISS)
        if act is MISS:
            act = decisions[key] = decide_cached(plan, itag, key[1])
        if act is None:
            continue
        if act is DROP:
            del elems[tag]
        elif act[0] is QUIET_REMOVE:
            del elems[tag]
            ctx.note(itag, REMOVE, act[1])
        elif act[0] is SAFE_CHECK:
            if safe_keep is None:
                safe_keep = safe_private.dataset_actions(ds, plan)  # {tag: (how, why)}
            how, why = safe_keep.get(itag, (None, act[1]))
            if how is None or (how == safe_private.KEEP_SANITIZE_CSA and not safe_private.sanitize_csa_element(ds, tag)):
                del elems[tag]
                ctx.note(itag, REMOVE, act[1])
            elif how == safe_private.KEEP_SANITIZE_CSA:
                ctx.note(itag, REPLACE, why + " (rebuilt: allowlisted numeric fields only)")
            elif how == safe_private.KEEP_SEQUENCE:
                _apply(ds, itag, RECURSE, why, None, ctx, tag)
            elif how == safe_private.KEEP_UID and "retain_uids" not in plan.options:
                _apply(ds, itag, UID, why + " (UID remapped)", None, ctx, tag)
            elif how == safe_private.KEEP_TEXT:
                # listed free text (e.g. Philips labels): kept, but cleaned of this file's
                # identifiers, date-like strings and long digit runs (privacy first); read as
                # implicit VR or UN it is cleaned when pydicom knows its VR, else emptied
                _apply(ds, itag, CLEAN, why + " (text cleaned)", None, ctx, tag)
            else:
                ctx.note(itag, KEEP, why)
        else:
            _apply(ds, itag, act[0], act[1], act[2], ctx, tag)


class _SkipMap(dict):
    """``skip[tag, vr]`` for :func:`read_raw`: for an element removed without a look at its
    value (dropped, or removed with no identifier to report) ``_DROP`` or its audit note, else
    None. Filled from the plan's decisions as tags are met."""

    def __init__(self, plan: Plan):
        super().__init__()
        self.plan = plan

    def __missing__(self, key: tuple[int, str | None]):
        tag, vr = key
        decisions = self.plan.decisions
        act = decisions.get(key, MISS)
        if act is MISS:
            act = decisions[key] = decide_cached(self.plan, tag, vr)
        if act is DROP:
            out = act
        elif act is not None and act[0] is QUIET_REMOVE:
            out = quiet_note(tag, act[1])
        else:
            out = None
        self[key] = out
        return out


def skip_for(plan: Plan) -> _SkipMap:
    """The :class:`_SkipMap` of ``plan``."""
    return _SkipMap(plan)


def _collect_known(ds: Dataset, ctx: Ctx) -> None:
    elems = ds._dict
    for t in IDENT_SOURCES:
        if t in elems:
            for v in _values(_get(ds, t)):
                for part in re.split(r"[\^=\\]", v) + [v]:
                    part = part.strip()
                    if len(part) >= 3:
                        ctx.known.append(part)
    ctx.known.sort(key=len, reverse=True)


def _add_method_shared(ds: Dataset, plan: Plan, profile_name: str, ctx: Ctx) -> None:
    """:func:`_add_method` for a dataset only written, never handed out: when it holds no earlier
    method attributes the four elements are the same for every file of a plan, so they are
    made once and shared (they are never changed afterwards)."""
    elems = ds._dict
    if METHOD_TAGS[0] in elems or METHOD_TAGS[1] in elems:
        _add_method(ds, plan, profile_name, ctx)
        return
    made = plan.decisions.get(("method", profile_name))
    if made is None:
        scratch = Dataset()
        _add_method(scratch, plan, profile_name, ctx)
        made = plan.decisions["method", profile_name] = tuple(scratch._dict.values())
    for element in made:
        elems[element.tag] = element


def _add_method(ds: Dataset, plan: Plan, profile_name: str, ctx: Ctx) -> None:
    ds.PatientIdentityRemoved = "YES"
    prior = list(ds.DeidentificationMethod) if "DeidentificationMethod" in ds else []
    if isinstance(ds.get("DeidentificationMethod"), str):
        prior = [ds.DeidentificationMethod]
    prior = [clean_text(p, ctx)[:64] for p in prior]
    ds.DeidentificationMethod = prior + method_text(plan, profile_name)
    seq = list(ds.DeidentificationMethodCodeSequence) if "DeidentificationMethodCodeSequence" in ds else []
    have = {(getattr(i, "CodeValue", None), getattr(i, "CodingSchemeDesignator", None)) for i in seq}
    for value, meaning in method_codes(plan, have):
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        seq.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(seq)
    ds.LongitudinalTemporalInformationModified = plan.date_handling


def deidentify_dataset(
    ds: Dataset, profile: Profile, pseudo: Pseudonymizer, subject: str, offset_days: int
) -> tuple[list[dict], list[tuple[str, str]]]:
    """De-identify ``ds`` in place (no I/O).

    Parameters
    ----------
    ds : pydicom.Dataset
        The dataset; its ``file_meta`` (if any) is treated as well.
    profile : Profile
        Options, rules and date policy.
    pseudo : Pseudonymizer
        Keyed pseudonyms and UID remapping.
    subject : str
        Pseudonymous subject label (without ``sub-``).
    offset_days : int
        Whole days added to every date kept under the date-shift policy.

    Returns
    -------
    changes, identifiers
        Audit entries (no original values) and ``(kind, original value)`` pairs of every
        identifying value removed or replaced (for the private-side leak audit).
    """
    return deidentify_events(ds, profile, pseudo, subject, offset_days)


def deidentify_events(ds: Dataset, profile: Profile, pseudo: Pseudonymizer, subject: str, offset_days: int,
                events: list | None = None) -> tuple[list[dict], list[tuple[str, str]]]:
    """:func:`deidentify_dataset`; with ``events`` (raw path: ``ds`` is only written) the method
    attributes may be shared between files."""
    plan = compile_plan(profile)
    ctx = Ctx(plan, pseudo, subject, offset_days)
    _collect_known(ds, ctx)
    _walk(ds, ctx, events)
    (_add_method if events is None else _add_method_shared)(ds, plan, profile.name, ctx)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        _treat_meta(ds, meta, ctx)
    # one (kind, value) pair per distinct value
    ctx.identifiers = list(dict.fromkeys(ctx.identifiers))
    return ctx.changes, ctx.identifiers


MS_SOP_CLASS, MS_SOP_INSTANCE, _IMPL_CLASS, _IMPL_VERSION = 0x00020002, 0x00020003, 0x00020012, 0x00020013
_SOP_CLASS_UID = 0x00080016


def _set_meta(meta: FileMetaDataset, tag: int, vr: str, value: object) -> None:
    """``meta.<keyword> = value`` without the keyword lookups (same element as pydicom makes)."""
    if tag in meta._dict:
        _get(meta, tag).value = value
    else:
        meta._dict[Tag(tag)] = DataElement(tag, vr, value)


def _treat_meta(ds: Dataset, meta: FileMetaDataset, ctx: Ctx) -> None:
    md = meta._dict
    for tag in list(md):
        itag = int(tag)
        if itag not in META_KEEP:
            del md[tag]
            ctx.note(itag, "remove", "file meta: not needed")
    if SOP_INSTANCE_UID in ds._dict:
        _set_meta(meta, MS_SOP_INSTANCE, "UI", _get(ds, SOP_INSTANCE_UID).value)
    elif MS_SOP_INSTANCE in md:
        _remap(_get(meta, MS_SOP_INSTANCE), ctx)
    if _SOP_CLASS_UID in ds._dict:
        _set_meta(meta, MS_SOP_CLASS, "UI", _get(ds, _SOP_CLASS_UID).value)
    _set_meta(meta, _IMPL_CLASS, "UI", IMPLEMENTATION_UID)
    _set_meta(meta, _IMPL_VERSION, "SH", f"BIDSDEID_{__version__}"[:16])


# ------------------------------------------------------------------ burned-in check
def burned_in_reason(ds: Dataset, profile: Profile) -> str | None:
    """Why ``ds`` may carry burned-in text, or None."""
    return burned_in_rule(lambda tag: string_value(ds, tag), profile)


__all__ = ["DicomResult", "deidentify_dataset", "is_dicom", "Tag"]

