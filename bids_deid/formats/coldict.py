"""Column dictionaries: the JSON beside a table (events.json, channels.json, physio.json, ...).

A key that names a column of the table keeps its column description (LongName,
Description, Levels, Units, TermURL, HED, Delimiter, Format, Maximum, Minimum: the keys
the BIDS schema defines); every other key is an ordinary sidecar field and goes through
:func:`bids_deid.formats.sidecar.scrub_sidecar`.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from ..profiles import Profile
from ..schema import column_description_keys, metadata_fields
from .base import ScrubLog
from .sidecar import scrub_sidecar


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
