"""JSON sidecars: keep BIDS-defined fields, drop identifying ones, shift dates."""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import InputError
from ..profiles import Profile
from ..pseudonym import shift_iso
from ..schema import date_fields, metadata_fields
from .base import ScrubLog

# Field names that smell of identity: their removed values are remembered (privately)
# so the leak audit can search the output for them.
IDENTIFYING_NAME = re.compile(
    r"Patient|Subject|Name|ID$|Id$|Institution|Station|Serial|Address|Department|Physician|Operator|"
    r"Performing|Referring|Requesting|Procedure|Comment|Description|Accession|Date|Birth|Study|Protocol"
)
# Extra date-like names outside the schema that a profile may choose to keep and shift.
DATE_NAME = re.compile(r"Date(Time)?$")


def load_json(data: bytes, where: str) -> Any:
    """Parse JSON bytes or raise a one-line :class:`InputError`."""
    from ..limits import load_json_limited  # size and depth limits

    try:
        return load_json_limited(data, where)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"corrupt JSON file {where}: {exc.__class__.__name__}") from exc


def dump_json(obj: Any) -> bytes:
    """Deterministic JSON bytes (order as given, 2-space indent, trailing newline)."""
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _shift(value: Any, offset_days: int) -> Any:
    if isinstance(value, str):
        return shift_iso(value, offset_days)
    return None


def scrub_sidecar(data: dict, profile: Profile, offset_days: int | None, log: ScrubLog) -> dict:
    """Return a scrubbed copy of one sidecar's mapping.

    Parameters
    ----------
    data : dict
        The parsed sidecar.
    profile : Profile
        Rules; BIDS-defined fields are kept unless a rule says otherwise.
    offset_days : int or None
        The subject's date offset; ``None`` for dataset-level files (dates removed).
    log : ScrubLog
        Receives audit entries and the identifying values removed.
    """
    if not isinstance(data, dict):
        raise InputError("sidecar JSON must hold an object at its top level")
    known = metadata_fields()
    dated = date_fields()
    out: dict = {}
    for name, value in data.items():
        rule = profile.sidecar_rule(name)
        action = rule.action if rule else None
        why = f"profile rule ({profile.name})" if rule else ""
        if action is None:
            if name in dated or (DATE_NAME.search(name) and name in known):
                action, why = {"shift": "shift_date", "remove": "remove", "keep": "keep"}[profile.dates], "date"
            elif name in known:
                action, why = "keep", "BIDS-defined field"
            elif profile.sidecar_keep_unknown and not IDENTIFYING_NAME.search(name):
                action, why = "keep", "profile keeps unknown fields"
            else:
                action, why = "remove", "not defined by BIDS"
        if action == "shift_date" and offset_days is None:
            action, why = "remove", "dataset-level date (no subject offset)"
        if action == "keep":
            out[name] = value
            continue
        if action != "remove" or IDENTIFYING_NAME.search(name) or rule is not None:
            log.met(f"sidecar:{name}", value)
        if action == "remove":
            log.change(name, "remove", why)
        elif action == "empty":
            out[name] = "" if isinstance(value, str) else None
            log.change(name, "empty", why)
        elif action == "replace":
            out[name] = rule.value
            log.change(name, "replace", why)
        elif action == "shift_date":
            shifted = _shift(value, offset_days)
            if shifted is None:
                log.change(name, "remove", "date that does not parse")
            else:
                out[name] = shifted
                log.change(name, "shift_date", why)
        elif action == "pseudonymize":
            log.change(name, "remove", "pseudonymize is not defined for sidecar values")
        else:  # remap_uid and anything DICOM-only
            log.change(name, "remove", f"action {action} does not apply to sidecars")
    return out


# ------------------------------------------------------------------ the format module interface
NAME = "json"
SUFFIXES = (".json",)
COMPANION_SUFFIXES: tuple[str, ...] = ()


def sniff(path) -> bool:
    return path.name.endswith(".json") and path.is_file()


def companions(path) -> list:
    return []


def scrub_object(obj: Any, src, profile: Profile, ctx, log: ScrubLog) -> Any:
    """A parsed sidecar of ``src`` scrubbed by the profile, with every label in its strings relabelled.

    The JSON of a table the schema defines (events.json, channels.json, physio.json ...) is a
    column dictionary: keys naming the table's columns keep their descriptions
    (:mod:`bids_deid.formats.coldict`). IntendedFor, Sources, AssociatedEmptyRoom ... name
    files by their original labels, so every string goes through ``ctx.relabel``.
    """
    from ..dataset import map_strings
    from ..schema import tabular_suffixes

    if src.name.split(".")[0].rpartition("_")[2] in tabular_suffixes() and isinstance(obj, dict):
        from .coldict import scrub_column_dictionary, table_columns

        obj = scrub_column_dictionary(obj, table_columns(src), profile, ctx.offset_days, log)
    else:
        obj = scrub_sidecar(obj, profile, ctx.offset_days, log)
    return map_strings(obj, ctx.relabel)


def scrub(src, profile: Profile, ctx):
    """The scrubbed sidecar under ``ctx.rel_out`` (see :func:`scrub_object`); raises InputError for bad JSON."""
    from .base import Outcome

    log = ScrubLog()
    obj = scrub_object(load_json(src.read_bytes(), src.name), src, profile, ctx, log)
    return Outcome(writes={ctx.rel_out: dump_json(obj)}, log=log)
