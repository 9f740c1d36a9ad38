"""PS3.15 Retain Safe Private Option: the packaged list of safe private attributes.

The list (``bids_deid/data/ps3_15_safe_private.tsv``, PS3.15 Table E.3.10-1 of the 2026c edition,
479 rows; built by ``tools/build_safe_private.py``) names each attribute by private creator
string, odd group and element offset inside the private block (the ``ee`` of ``(gggg,xxee)``). :func:`block_actions` decides, for one dataset
(or sequence item), which private elements the option keeps: an element is kept only when the
creator element of its block, ``(gggg,00xx)``, holds a listed creator for that group and the
offset is listed with it; the creator element is kept when at least one element of its block is.

VR rule (the engine's privacy-first reading of the option): a kept element must be encoded with
the VR the table gives, or with no explicit VR (implicit) / UN. Text VRs (LO, SH, LT, ST, UT, UC,
PN) are kept only where the table itself lists that text VR; rows without a VR in the table keep
only numeric values. Sequences are walked like any other sequence and UIDs are remapped unless
``retain_uids``; every other private element is removed. Listed IS/DS slots must hold numbers
(text in a numeric-string slot is removed); listed binary slots (US, FL, AT, ...) must hold
binary numbers that fit the VR size and the table's VM (text bytes read implicitly / as UN are
removed). OB/OW payloads, also in cells naming alternatives such as ``OW/OB``, are not kept.

Profiles may keep further private elements with ``dicom.keep_private`` (see
:func:`parse_keep_entries`): packaged sets such as ``siemens_mosaic``
(``bids_deid/data/private_keep_siemens_mosaic.tsv``: what dcm2niix needs to demosaic a Siemens
mosaic) or explicit numeric entries. They are merged with the table (when the option is on) in
:func:`plan_index`; a row whose ``action`` is ``sanitize_csa`` (the Siemens CSA image header) is
not kept as it is but rebuilt with only technical numeric fields (:mod:`bids_deid.scrub.dicom_csa`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import MutableSequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

TABLE_PATH = Path(__file__).resolve().parents[1] / "data" / "ps3_15_safe_private.tsv"
TEXT_VRS = frozenset({"LO", "SH", "LT", "ST", "UT", "UC", "PN"})
# VRs accepted for a listed row whose VR the table leaves blank: numbers only.
_NUMERIC_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV", "IS", "DS"})
# Kept-element decisions returned by :func:`block_actions`.
KEEP_AS_IS = "keep"
KEEP_SEQUENCE = "sequence"
KEEP_UID = "uid"
KEEP_SANITIZE_CSA = "sanitize_csa"
KEEP_TEXT = "text"  # a listed free-text slot: kept, but cleaned by the engine
TABLE_WHY = "retain_safe_private: PS3.15 Table E.3.10-1"
DATA_DIR = Path(__file__).resolve().parents[1] / "data"
# Packaged sets a profile can name in dicom.keep_private.
KEEP_SETS = {"siemens_mosaic": "private_keep_siemens_mosaic.tsv"}
ROW_ACTIONS = ("keep", KEEP_SANITIZE_CSA)


@dataclass(frozen=True)
class SafePrivate:
    """One row of the safe-private list."""

    creator: str
    group: int
    element: int  # offset inside the private block (0x00-0xFF)
    vr: str  # "" where the table gives none
    name: str
    vm: str
    action: str = "keep"  # "keep" or "sanitize_csa" (profile sets only)
    why: str = TABLE_WHY  # audit reason for a kept element


def load_table(path: Path = TABLE_PATH) -> list[SafePrivate]:
    """Read the safe-private list.

    Parameters
    ----------
    path : Path
        TSV with columns ``private_creator, group, element, vr, name, vm`` and optionally ``action``
        (``#`` lines are comments).

    Returns
    -------
    list of SafePrivate
        The rows in file order.
    """
    rows: list[SafePrivate] = []
    header: list[str] | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        cells = line.split("\t")
        if header is None:
            header = cells
            continue
        rec = dict(zip(header, cells, strict=True))
        group, element = int(rec["group"], 16), int(rec["element"], 16)
        if group % 2 == 0 or not 0 <= element <= 0xFF:
            raise ValueError(f"{path.name}: not a private attribute: {rec}")
        action = rec.get("action") or "keep"
        if action not in ROW_ACTIONS:
            raise ValueError(f"{path.name}: unknown action {action!r}")
        rows.append(SafePrivate(rec["private_creator"], group, element, rec["vr"], rec["name"], rec["vm"], action))
    return rows


@lru_cache(maxsize=1)
def index() -> dict[tuple[str, int], dict[int, SafePrivate]]:
    """``{(creator, group): {offset: row}}`` of the packaged list (cached)."""
    out: dict[tuple[str, int], dict[int, SafePrivate]] = {}
    for row in load_table():
        out.setdefault((row.creator, row.group), {})[row.element] = row
    return out


@lru_cache(maxsize=1)
def groups() -> frozenset[int]:
    """Odd groups that hold at least one listed attribute."""
    return frozenset(group for _, group in index())


_OPAQUE_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})


def vr_allowed(row: SafePrivate, vr: str | None) -> bool:
    """Whether an element of ``row`` read with VR ``vr`` (None: implicit) may be kept (see module doc)."""
    if row.action == KEEP_SANITIZE_CSA:
        return vr in (None, "OB", "UN")  # parsed and rebuilt, whatever it holds
    if not row.vr:
        return vr in _NUMERIC_VRS
    listed = frozenset(row.vr.split("/"))  # a cell may name alternatives, e.g. "OW/OB"
    if listed & _OPAQUE_VRS:
        # Privacy first: the standard lists some OB/OW payloads (vendor blobs) as safe, but
        # their bytes cannot be inspected; a profile rule naming the tag can still keep them.
        return False
    if vr in listed:
        return True
    if vr is None or vr == "UN":
        return not listed & {"SQ", "UI"}  # unknown encoding: neither walked nor remapped, so not kept
    return False


_NUMBER_TEXT = re.compile(r"[ ]*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[ ]*")


# Bytes per value of the fixed-size binary VRs.
_BINARY_SIZES = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "AT": 4, "FD": 8, "UV": 8, "SV": 8}
_VM = re.compile(r"(\d+)(?:-(\d+|n))?")


def _binary_allowed(row: SafePrivate, value: object) -> bool:
    """A slot listed with a binary VR (US, FL, AT, ...) must hold binary numbers: text (a str, or
    raw bytes that are all printable ASCII) is refused, and raw bytes must fit the VR size and the
    table's VM. This matters when the element is read implicitly / as UN, where the VR says nothing."""
    sizes = {_BINARY_SIZES[v] for v in row.vr.split("/") if v in _BINARY_SIZES}
    if not sizes or value is None:
        return True
    if isinstance(value, str):
        return not value.strip("\0 ")
    if not isinstance(value, bytes | bytearray):
        return True  # already decoded as numbers
    raw = bytes(value)
    if not raw:
        return True
    if len(raw) >= 4 and all(0x20 <= b <= 0x7E for b in raw):
        return False  # looks like text written into a binary slot
    size = min(sizes)
    if len(raw) % size:
        return False
    m = _VM.fullmatch(row.vm.strip())
    if m and m.group(2) != "n":
        high = int(m.group(2) or m.group(1))
        return len(raw) // size <= high
    return True


def value_allowed(row: SafePrivate, value: object) -> bool:
    """Whether ``value`` may be kept for ``row``: IS/DS slots must hold numbers (or nothing) and
    binary slots binary numbers (see :func:`_binary_allowed`)."""
    if not _binary_allowed(row, value):
        return False
    if row.vr not in ("IS", "DS") or value is None:
        return True
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("latin-1")
    elif isinstance(value, list | tuple | MutableSequence):  # MutableSequence: pydicom's MultiValue
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    text = text.rstrip("\0 ")
    return not text or all(_NUMBER_TEXT.fullmatch(part) for part in text.split("\\"))


def creator_string(value: object) -> str:
    """A private creator element's value as text (raw bytes decoded as ASCII/Latin-1, padding stripped)."""
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("latin-1")
    elif value is None:
        value = ""
    return str(value).strip("\0 ")


def _kept_rows(elements: dict[int, tuple[str | None, object]],
               table: dict[tuple[str, int], dict[int, SafePrivate]]) -> dict[int, SafePrivate]:
    """``{tag: row}`` of the elements kept under ``table``, creators included (their row: the first
    kept element's)."""
    blocks: dict[tuple[int, int], dict[int, SafePrivate]] = {}
    for tag, (_vr, value) in elements.items():
        group, elem = tag >> 16, tag & 0xFFFF
        if 0x10 <= elem <= 0xFF:
            rows = table.get((creator_string(value), group))
            if rows is not None:
                blocks[(group, elem)] = rows
    keep: dict[int, SafePrivate] = {}
    for tag, (vr, value) in elements.items():
        group, elem = tag >> 16, tag & 0xFFFF
        rows = blocks.get((group, elem >> 8)) if elem >= 0x1000 else None
        row = rows.get(elem & 0xFF) if rows is not None else None
        if row is None or not vr_allowed(row, vr) or not value_allowed(row, value):
            continue
        keep[tag] = row
        keep.setdefault(group << 16 | elem >> 8, row)
    return keep


def _how(row: SafePrivate, tag: int) -> str:
    if tag & 0xFF00 == 0:
        return KEEP_AS_IS  # the creator element
    if row.action == KEEP_SANITIZE_CSA:
        return KEEP_SANITIZE_CSA
    if row.vr in _FREE_TEXT_VRS:
        return KEEP_TEXT
    return KEEP_SEQUENCE if row.vr == "SQ" else KEEP_UID if row.vr == "UI" else KEEP_AS_IS


_FREE_TEXT_VRS = frozenset({"LO", "SH", "LT", "ST", "UT", "UC"})


def block_actions(elements: dict[int, tuple[str | None, object]],
                  table: dict[tuple[str, int], dict[int, SafePrivate]] | None = None) -> dict[int, str]:
    """Private elements of one dataset that the option keeps.

    Parameters
    ----------
    elements : dict
        ``{tag: (vr, value)}`` of the dataset's private elements in :func:`groups` (``vr`` None
        for implicit VR; ``value`` may be raw bytes; it is needed for creator elements and for
        IS/DS slots, whose value must be a number; None skips that check).
    table : dict, optional
        ``{(creator, group): {offset: row}}`` to use instead of the packaged list (see :func:`plan_index`).

    Returns
    -------
    dict
        ``{tag: KEEP_AS_IS | KEEP_TEXT | KEEP_SEQUENCE | KEEP_UID | KEEP_SANITIZE_CSA}`` for every element to
        keep (creators included); elements not in it are removed.
    """
    rows = _kept_rows(elements, index() if table is None else table)
    return {tag: _how(row, tag) for tag, row in rows.items()}


# ------------------------------------------------------------------ profile entries (dicom.keep_private)
@lru_cache(maxsize=8)
def load_set(name: str) -> tuple[SafePrivate, ...]:
    """The rows of a packaged keep set (see :data:`KEEP_SETS`), each with its audit reason."""
    rows = load_table(DATA_DIR / KEEP_SETS[name])
    return tuple(replace(r, why=f"keep_private {name}: {r.name}") for r in rows)


_ENTRY_KEYS = {"creator", "group", "element", "vr", "name", "why"}


def parse_keep_entries(items: object, where: str) -> tuple[SafePrivate, ...]:
    """Validate a profile's ``dicom.keep_private`` list.

    Each item is either the name of a packaged set (``siemens_mosaic``) or a mapping
    ``{creator, group, element, vr}`` naming one private element by creator string, odd group
    (hex) and offset in its block (hex ``00``-``FF``) with a numeric VR (binary numbers or IS/DS;
    text, UID, sequence and opaque VRs are refused: a ``rules`` entry with ``action: keep`` can keep
    those, at the user's responsibility).

    Raises
    ------
    ProfileError
        One line naming the offending item.
    """
    from ..errors import ProfileError

    if items is None:
        return ()
    if not isinstance(items, list):
        raise ProfileError(f"{where}: dicom.keep_private must be a list")
    out: list[SafePrivate] = []
    for i, item in enumerate(items):
        at = f"{where}: dicom.keep_private[{i}]"
        if isinstance(item, str):
            if item not in KEEP_SETS:
                raise ProfileError(f"{at}: unknown set '{item}' (known: {', '.join(sorted(KEEP_SETS))})")
            out.extend(load_set(item))
            continue
        if not isinstance(item, dict) or set(item) - _ENTRY_KEYS or not {"creator", "group", "element", "vr"} <= set(item):
            raise ProfileError(f"{at} must be a set name or a mapping with creator, group, element, vr")
        try:
            group, element = int(str(item["group"]), 16), int(str(item["element"]), 16)
        except ValueError:
            raise ProfileError(f"{at}: group and element must be hexadecimal") from None
        if group % 2 == 0 or not 0x0009 <= group <= 0xFFFF or not 0 <= element <= 0xFF:
            raise ProfileError(f"{at}: not a private element (odd group, element offset 00-FF)")
        vr = str(item["vr"]).upper()
        if vr not in _NUMERIC_VRS:
            raise ProfileError(f"{at}: vr {vr} is not numeric (allowed: {', '.join(sorted(_NUMERIC_VRS))})")
        creator = str(item["creator"]).strip()
        if not creator:
            raise ProfileError(f"{at}: creator must be a non-empty string")
        name = str(item.get("name") or f"({group:04X},xx{element:02X})")
        out.append(SafePrivate(creator, group, element, vr, name, "", "keep", f"keep_private: {name}"))
    return tuple(out)


def plan_index(options: tuple[str, ...], entries: tuple[SafePrivate, ...]) -> dict[tuple[str, int], dict[int, SafePrivate]]:
    """The packaged list (when ``retain_safe_private`` is in ``options``) merged with profile
    entries (an entry wins over a table row for the same element). Cached per arguments."""
    return _plan_index(tuple(options), tuple(entries))


@lru_cache(maxsize=32)
def _plan_index(options: tuple[str, ...], entries: tuple[SafePrivate, ...]) -> dict:
    out: dict[tuple[str, int], dict[int, SafePrivate]] = {}
    if "retain_safe_private" in options:
        for key, rows in index().items():
            out[key] = dict(rows)
    for row in entries:
        out.setdefault((row.creator, row.group), {})[row.element] = row
    return out


def plan_table(plan) -> dict[tuple[str, int], dict[int, SafePrivate]]:
    """:func:`plan_index` of a compiled DICOM plan (``plan.options``, ``plan.private_keep``)."""
    return plan_index(plan.options, getattr(plan, "private_keep", ()))


def plan_groups(plan) -> frozenset[int]:
    """Odd groups in which ``plan`` may keep private elements (decided per dataset)."""
    hit = plan.decisions.get("private_keep_groups")
    if hit is None:
        hit = plan.decisions["private_keep_groups"] = frozenset(group for _, group in plan_table(plan))
    return hit


def dataset_actions(ds, plan) -> dict[int, tuple[str, str]]:
    """``{tag: (how, why)}`` of the private elements of ``ds`` (not of its items) that ``plan`` keeps.

    Raw elements are read without conversion (values as bytes), so that the raw fast path and the
    full path decide alike and kept elements stay byte-identical.
    """
    groups = plan_groups(plan)
    elements = {}
    for tag, el in ds._dict.items():
        itag = int(tag)
        if itag >> 16 in groups:
            elements[itag] = (el.VR, el.value)
    rows = _kept_rows(elements, plan_table(plan))
    return {tag: (_how(row, tag), row.why) for tag, row in rows.items()}


def sanitize_csa_element(ds, key) -> bool:
    """Replace the CSA image header ``ds[key]`` by its rebuilt, allowlisted form (in place).

    Returns False (and changes nothing) when the value cannot be parsed or keeps no field; the
    caller then removes the element.
    """
    from pydicom.dataelem import DataElement

    from .dicom_csa import sanitize_image_header

    value = ds._dict[key].value
    if not isinstance(value, bytes | bytearray):
        return False
    clean = sanitize_image_header(bytes(value))
    if clean is None:
        return False
    ds._dict[key] = DataElement(key, "OB", clean)
    return True
