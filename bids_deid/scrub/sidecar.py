"""JSON sidecars: keep BIDS-defined fields, drop identifying ones, shift dates."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from ..profiles import Profile
from ..pseudonym import shift_iso
from ..schema import date_fields, metadata_fields

# Field names that smell of identity: their removed values are remembered (privately)
# so the leak audit can search the output for them.
IDENTIFYING_NAME = re.compile(
    r"Patient|Subject|Name|ID$|Id$|Institution|Station|Serial|Address|Department|Physician|Operator|"
    r"Performing|Referring|Requesting|Procedure|Comment|Description|Accession|Date|Birth|Study|Protocol"
)
# Extra date-like names outside the schema that a profile may choose to keep and shift.
DATE_NAME = re.compile(r"Date(Time)?$")


@dataclass
class ScrubLog:
    """What a scrubber did: audit entries (no values) and identifiers met (private)."""

    changes: list[dict] = field(default_factory=list)
    identifiers: list[tuple[str, str]] = field(default_factory=list)

    def change(self, where: str, action: str, why: str) -> None:
        self.changes.append({"field": where, "action": action, "why": why})

    def met(self, kind: str, value: Any) -> None:
        if isinstance(value, str) and value.strip():
            self.identifiers.append((kind, value.strip()))
        elif isinstance(value, list | tuple):
            for v in value:
                self.met(kind, v)
        elif isinstance(value, dict):
            for v in value.values():
                self.met(kind, v)


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
