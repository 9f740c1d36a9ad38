"""Load and validate de-identification profiles (YAML files, never code).

A profile is a mapping of sections. Each rule names what it acts on (a JSON field,
a TSV column, a DICOM keyword or tag) and one action. Shipped profiles live in
``bids_deid/profiles/``; ``--profile`` takes one of their names or a path.
A profile may say ``extends: <name or path>`` to start from another one; its rules
are applied after (and so win over) the parent's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import ProfileError

ACTIONS = ("remove", "empty", "replace", "keep", "shift_date", "pseudonymize", "remap_uid")
DATE_POLICIES = ("shift", "remove", "keep")
LABEL_POLICIES = ("pseudonymize", "keep")
# PS3.15 Annex E options (Table E.1-1 columns), by short name.
DICOM_OPTIONS = (
    "retain_safe_private",
    "retain_uids",
    "retain_device_identity",
    "retain_institution_identity",
    "retain_patient_characteristics",
    "retain_long_full_dates",
    "retain_long_modified_dates",
    "clean_descriptors",
    "clean_structured_content",
    "clean_graphics",
)
DEFACE_METHODS = ("template", "skullstrip", "none")
BURNED_IN_POLICIES = ("skip", "keep")

_TOP_KEYS = {
    "name", "description", "extends", "subjects", "sessions", "dates",
    "sidecar", "nifti", "tabular", "dicom", "deface", "audit", "files",
}
_SECTION_KEYS = {
    "sidecar": {"rules", "keep_unknown"},
    "nifti": {"keep_extension_codes", "keep_descrip"},
    "tabular": {"participants_columns", "age_cap", "rules"},
    "dicom": {"options", "rules", "burned_in", "burned_in_modalities", "pixel_regions", "keep_private"},
    "deface": {"method", "write_defacemask"},
    "audit": {"free_text"},
    "files": {"keep_photos"},
}
_TAG_RE = re.compile(r"^\(?([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})\)?$")


@dataclass(frozen=True)
class Rule:
    """One profile rule: ``target`` (field, column, keyword or tag) and ``action``."""

    target: str
    action: str
    value: Any = None


@dataclass(frozen=True)
class Profile:
    """A validated profile. Use :func:`load_profile` to build one."""

    name: str
    source: str
    subjects: str = "pseudonymize"
    sessions: str = "keep"
    dates: str = "shift"
    sidecar_rules: tuple[Rule, ...] = ()
    sidecar_keep_unknown: bool = False
    nifti_keep_extension_codes: tuple[int, ...] = ()
    nifti_keep_descrip: bool = False
    participants_columns: tuple[str, ...] = ("participant_id", "age", "sex", "handedness")
    age_cap: int = 89
    tabular_rules: tuple[Rule, ...] = ()
    dicom_options: tuple[str, ...] = ()
    dicom_rules: tuple[Rule, ...] = ()
    dicom_burned_in: str = "skip"
    dicom_burned_in_modalities: tuple[str, ...] = ("US", "SC", "OT", "XC", "ES", "DOC", "SM", "GM", "OP")
    dicom_pixel_regions: tuple[dict, ...] = field(default=(), compare=False)  # fixed boxes blacked out by --clean-pixels (see _pixel_regions)
    # Private elements kept beyond PS3.15 (dicom.keep_private: sets such as siemens_mosaic, or entries);
    # rows of bids_deid.scrub.dicom_safe_private.SafePrivate.
    dicom_keep_private: tuple = ()
    deface_method: str = "template"
    write_defacemask: bool = False
    keep_photos: bool = False  # files.keep_photos: *_photo images carried (metadata stripped) instead of withheld
    audit_free_text: str = "review"  # identifier-shaped strings in kept free text: "review" or "require" (fail)
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    def sidecar_rule(self, name: str) -> Rule | None:
        """The last rule for JSON field ``name`` (later rules win)."""
        return _last(self.sidecar_rules, name)

    def tabular_rule(self, column: str) -> Rule | None:
        """The last rule for TSV column ``column``."""
        return _last(self.tabular_rules, column)


def _last(rules: tuple[Rule, ...], name: str) -> Rule | None:
    hit = None
    for r in rules:
        if r.target == name:
            hit = r
    return hit


def shipped_profiles() -> list[str]:
    """Names of the profiles that ship with the package."""
    root = resources.files("bids_deid") / "profiles"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def _resolve(spec: str) -> tuple[str, str]:
    """Return (text, source description) for a profile name or path."""
    p = Path(spec)
    if p.suffix in (".yaml", ".yml") or p.exists() or "/" in spec:
        try:
            return p.read_text(encoding="utf-8"), str(p)
        except OSError as exc:
            raise ProfileError(f"cannot read profile {spec}: {exc.strerror or exc}") from exc
    res = resources.files("bids_deid") / "profiles" / f"{spec}.yaml"
    if not res.is_file():
        raise ProfileError(
            f"unknown profile '{spec}'; shipped profiles: {', '.join(shipped_profiles())} (or give a path)"
        )
    return res.read_text(encoding="utf-8"), f"{spec} (shipped)"


def _rules(section: str, items: Any, where: str, key: str) -> tuple[Rule, ...]:
    if items is None:
        return ()
    if not isinstance(items, list):
        raise ProfileError(f"{where}: {section}.rules must be a list")
    out = []
    for i, item in enumerate(items):
        at = f"{where}: {section}.rules[{i}]"
        if not isinstance(item, dict):
            raise ProfileError(f"{at} must be a mapping with '{key}' and 'action'")
        unknown = set(item) - {key, "action", "value", "why"}
        if unknown:
            raise ProfileError(f"{at}: unknown field(s) {', '.join(sorted(unknown))}")
        target, action = item.get(key), item.get("action")
        if not isinstance(target, str) or not target:
            raise ProfileError(f"{at}: '{key}' must be a non-empty string")
        if action not in ACTIONS:
            raise ProfileError(f"{at}: unknown action '{action}' (one of: {', '.join(ACTIONS)})")
        if action == "replace" and "value" not in item:
            raise ProfileError(f"{at}: action 'replace' needs a 'value'")
        if section == "dicom":
            target = normalise_dicom_target(target, at)
        out.append(Rule(target, action, item.get("value")))
    return tuple(out)


def normalise_dicom_target(target: str, where: str) -> str:
    """Check a DICOM keyword or ``(gggg,eeee)`` tag; return keyword or ``GGGGEEEE``."""
    m = _TAG_RE.match(target.replace(" ", ""))
    if m:
        return (m[1] + m[2]).upper()
    from .scrub.dicom_dict import tag_for_keyword

    if tag_for_keyword(target) is None:
        raise ProfileError(f"{where}: '{target}' is not a DICOM keyword or (gggg,eeee) tag")
    return target


def _choice(value: Any, allowed: tuple[str, ...], what: str, where: str) -> str:
    if value not in allowed:
        raise ProfileError(f"{where}: {what} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _parse(spec: str, depth: int = 0) -> tuple[dict, list[str]]:
    if depth > 5:
        raise ProfileError(f"profile {spec}: 'extends' chain too deep")
    text, source = _resolve(spec)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        at = f" at line {line + 1}" if line is not None else ""
        raise ProfileError(f"profile {source} is not valid YAML{at}") from exc
    if not isinstance(data, dict):
        raise ProfileError(f"profile {source} must be a YAML mapping")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ProfileError(f"profile {source}: unknown key(s) {', '.join(sorted(unknown))}")
    for sec, keys in _SECTION_KEYS.items():
        body = data.get(sec) or {}
        if not isinstance(body, dict):
            raise ProfileError(f"profile {source}: section '{sec}' must be a mapping")
        bad = set(body) - keys
        if bad:
            raise ProfileError(f"profile {source}: unknown key(s) in '{sec}': {', '.join(sorted(bad))}")
    sources = [source]
    parent = data.get("extends")
    if parent:
        base, base_sources = _parse(str(parent), depth + 1)
        data = _merge(base, data)
        sources = base_sources + sources
    return data, sources


def _merge(base: dict, child: dict) -> dict:
    out = dict(base)
    for k, v in child.items():
        if k in _SECTION_KEYS and isinstance(v, dict):
            sec = dict(base.get(k) or {})
            for sk, sv in v.items():
                if sk == "rules":
                    sec["rules"] = list(sec.get("rules") or []) + list(sv or [])
                elif sk == "options":
                    sec["options"] = sorted(set(sec.get("options") or []) | set(sv or []))
                else:
                    sec[sk] = sv
            out[k] = sec
        elif k != "extends":
            out[k] = v
    return out


def _pixel_regions(items: Any, where: str) -> tuple[dict, ...]:
    """Validate ``dicom.pixel_regions``: a list of {modality, manufacturer, rows, columns, boxes}.

    Each box is ``[x0, y0, x1, y1]`` in pixels (x1/y1 exclusive); modality, manufacturer
    (case-insensitive substring), rows and columns are optional filters.
    """
    if items is None:
        return ()
    if not isinstance(items, list):
        raise ProfileError(f"{where}: dicom.pixel_regions must be a list")
    out = []
    for i, r in enumerate(items):
        what = f"{where}: dicom.pixel_regions[{i}]"
        if not isinstance(r, dict) or set(r) - {"modality", "manufacturer", "rows", "columns", "boxes", "why"}:
            raise ProfileError(f"{what} must be a mapping with modality/manufacturer/rows/columns/boxes")
        boxes = r.get("boxes")
        if not isinstance(boxes, list) or not boxes or not all(
            isinstance(b, list) and len(b) == 4 and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                        for v in b) and b[2] > b[0] and b[3] > b[1]
            for b in boxes
        ):
            raise ProfileError(f"{what}.boxes must be a list of [x0, y0, x1, y1] pixel boxes (x1 > x0, y1 > y0)")
        for k in ("rows", "columns"):
            if k in r and (not isinstance(r[k], int) or r[k] < 1):
                raise ProfileError(f"{what}.{k} must be a positive integer")
        out.append({k: (tuple(tuple(b) for b in v) if k == "boxes" else v) for k, v in r.items()})
    return tuple(out)


def _keep_private(items: Any, where: str) -> tuple:
    """Validate ``dicom.keep_private`` (see :func:`bids_deid.scrub.dicom_safe_private.parse_keep_entries`)."""
    if not items:
        return ()
    from .scrub.dicom_safe_private import parse_keep_entries

    return parse_keep_entries(items, where)


def load_profile(spec: str = "basic") -> Profile:
    """Load a profile by shipped name or path and validate every rule.

    Raises
    ------
    ProfileError
        With one line naming the file and the offending key.
    """
    data, sources = _parse(spec)
    where = f"profile {sources[-1]}"
    side, nif, tab, dcm, dfc = (data.get(s) or {} for s in ("sidecar", "nifti", "tabular", "dicom", "deface"))
    options = dcm.get("options") or []
    if not isinstance(options, list) or any(o not in DICOM_OPTIONS for o in options):
        bad = [o for o in (options if isinstance(options, list) else [options]) if o not in DICOM_OPTIONS]
        raise ProfileError(f"{where}: unknown dicom option(s) {bad}; known: {', '.join(DICOM_OPTIONS)}")
    codes = nif.get("keep_extension_codes") or []
    if not all(isinstance(c, int) and not isinstance(c, bool) for c in codes):
        raise ProfileError(f"{where}: nifti.keep_extension_codes must be a list of integers")
    cols = tab.get("participants_columns", ["participant_id", "age", "sex", "handedness"])
    if not isinstance(cols, list) or "participant_id" not in cols:
        raise ProfileError(f"{where}: tabular.participants_columns must be a list including participant_id")
    age_cap = tab.get("age_cap", 89)
    if not isinstance(age_cap, int) or isinstance(age_cap, bool) or age_cap < 1:
        raise ProfileError(f"{where}: tabular.age_cap must be a positive integer")
    mods = dcm.get("burned_in_modalities")
    return Profile(
        name=str(data.get("name") or Path(sources[-1].split(" ")[0]).stem),
        source=" <- ".join(reversed(sources)),
        subjects=_choice(data.get("subjects", "pseudonymize"), LABEL_POLICIES, "subjects", where),
        sessions=_choice(data.get("sessions", "keep"), LABEL_POLICIES, "sessions", where),
        dates=_choice(data.get("dates", "shift"), DATE_POLICIES, "dates", where),
        sidecar_rules=_rules("sidecar", side.get("rules"), where, "field"),
        sidecar_keep_unknown=bool(side.get("keep_unknown", False)),
        nifti_keep_extension_codes=tuple(codes),
        nifti_keep_descrip=bool(nif.get("keep_descrip", False)),
        participants_columns=tuple(str(c) for c in cols),
        age_cap=age_cap,
        tabular_rules=_rules("tabular", tab.get("rules"), where, "column"),
        dicom_options=tuple(options),
        dicom_rules=_rules("dicom", dcm.get("rules"), where, "tag"),
        dicom_burned_in=_choice(dcm.get("burned_in", "skip"), BURNED_IN_POLICIES, "dicom.burned_in", where),
        dicom_burned_in_modalities=tuple(mods) if mods else Profile.dicom_burned_in_modalities,
        dicom_pixel_regions=_pixel_regions(dcm.get("pixel_regions"), where),
        dicom_keep_private=_keep_private(dcm.get("keep_private"), where),
        deface_method=_choice(dfc.get("method", "template"), DEFACE_METHODS, "deface.method", where),
        write_defacemask=bool(dfc.get("write_defacemask", False)),
        keep_photos=bool((data.get("files") or {}).get("keep_photos", False)),
        audit_free_text=_choice((data.get("audit") or {}).get("free_text", "review"), ("review", "require"),
                                "audit.free_text", where),
        raw=data,
    )
