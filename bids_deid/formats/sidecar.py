"""JSON sidecars: keep BIDS-defined fields, drop identifying ones, shift dates."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..profiles import Profile
from ..pseudonym import shift_iso
from ..schema import column_description_keys, date_fields, metadata_fields
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


# ------------------------------------------------------------------ column dictionaries
# The JSON beside a table (events.json, channels.json, physio.json, ...): a key that names a
# column of the table keeps its column description (LongName, Description, Levels, Units,
# TermURL, HED, Delimiter, Format, Maximum, Minimum: the keys the BIDS schema defines); every
# other key is an ordinary sidecar field and goes through :func:`scrub_sidecar`.
def table_columns(json_path: Path) -> list[str] | None:
    """Header of the table a column dictionary describes, or None (inherited, no table beside it)."""
    stem = json_path.name[: -len(".json")]
    for ext in (".tsv", ".tsv.gz"):
        tsv = json_path.with_name(stem + ext)
        if tsv.is_file() and tsv.stat().st_size:
            try:
                opener = gzip.open if ext == ".tsv.gz" else open
                with opener(tsv, "rt", encoding="utf-8-sig") as fh:
                    first = fh.readline().rstrip("\r\n")
            except (OSError, UnicodeDecodeError, EOFError):
                return None
            return None if ext == ".tsv.gz" else first.split("\t")  # physio tables have no header
    return None


def _is_description(value) -> bool:
    keys = column_description_keys()
    return isinstance(value, dict) and bool(value) and all(k in keys for k in value)


def scrub_column_dictionary(obj: dict, columns: list[str] | None, profile: Profile, offset_days: int | None,
                            log: ScrubLog) -> dict:
    """``obj`` with its column descriptions kept and its other fields scrubbed as sidecar fields.

    ``columns`` is the table's header; None accepts any key whose value has the shape of
    a column description (inherited dictionaries, headerless physio tables; ``Columns``
    listed in the JSON count too).
    """
    listed = obj.get("Columns") if isinstance(obj.get("Columns"), list) else None
    allowed = set(columns or ()) | set(listed or ())
    desc_keys = column_description_keys()
    known = metadata_fields()
    described: dict = {}
    rest: dict = {}
    for k, v in obj.items():
        rule = profile.tabular_rule(k)
        if rule is not None and rule.action == "remove":
            rest[k] = v  # the sidecar step logs it as removed
            continue
        names_column = k in allowed or (columns is None and k not in known)
        if names_column and isinstance(v, dict):
            kept = {dk: dv for dk, dv in v.items() if dk in desc_keys}
            for dk in set(v) - set(kept):
                log.met(f"coldict:{k}.{dk}", v[dk])
                log.change(f"{k}.{dk}", "remove", "not a column description key")
            if kept:
                described[k] = kept
            continue
        rest[k] = v
    scrubbed = scrub_sidecar(rest, profile, offset_days, log)
    return {k: (described[k] if k in described else scrubbed[k]) for k in obj if k in described or k in scrubbed}


def scrub_table_dictionary(obj, profile: Profile, log: ScrubLog) -> dict:
    """A ``scans.json`` / ``sessions.json``: only the entries of columns that are kept (schema
    columns, or a profile rule that keeps them)."""
    from ..schema import column_names

    keep = {
        k: v
        for k, v in (obj.items() if isinstance(obj, dict) else [])
        if k in column_names() or (profile.tabular_rule(k) and profile.tabular_rule(k).action != "remove")
    }
    for k in set(obj) - set(keep):
        log.change(k, "remove", "column not kept")
    return keep


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
    (:func:`scrub_column_dictionary`). IntendedFor, Sources, AssociatedEmptyRoom ... name
    files by their original labels, so every string goes through ``ctx.relabel``.
    """
    from ..jsonwalk import map_strings
    from ..schema import tabular_suffixes

    if src.name.split(".")[0].rpartition("_")[2] in tabular_suffixes() and isinstance(obj, dict):
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
