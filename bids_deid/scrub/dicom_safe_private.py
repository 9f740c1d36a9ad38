"""PS3.15 Retain Safe Private Option: the packaged list of safe private attributes.

The list (``bids_deid/data/ps3_15_safe_private.tsv``, transcribed from PS3.15 Table E.3.10-1)
names each attribute by private creator string, odd group and element offset inside the
private block (the ``ee`` of ``(gggg,xxee)``). :func:`block_actions` decides, for one dataset
(or sequence item), which private elements the option keeps: an element is kept only when the
creator element of its block, ``(gggg,00xx)``, holds a listed creator for that group and the
offset is listed with it; the creator element is kept when at least one element of its block is.

VR rule (the engine's privacy-first reading of the option): a kept element must be encoded with
the VR the table gives, or with no explicit VR (implicit) / UN. Text VRs (LO, SH, LT, ST, UT, UC,
PN) are kept only where the table itself lists that text VR; rows without a VR in the table keep
only numeric values. Sequences are walked like any other sequence and UIDs are remapped unless
``retain_uids``; every other private element is removed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
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


@dataclass(frozen=True)
class SafePrivate:
    """One row of the safe-private list."""

    creator: str
    group: int
    element: int  # offset inside the private block (0x00-0xFF)
    vr: str  # "" where the table gives none
    name: str
    vm: str


def load_table(path: Path = TABLE_PATH) -> list[SafePrivate]:
    """Read the safe-private list.

    Parameters
    ----------
    path : Path
        TSV with columns ``private_creator, group, element, vr, name, vm`` (``#`` lines are comments).

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
        rows.append(SafePrivate(rec["private_creator"], group, element, rec["vr"], rec["name"], rec["vm"]))
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
    if not row.vr:
        return vr in _NUMERIC_VRS
    if row.vr in _OPAQUE_VRS:
        # Privacy first: the standard lists some OB/OW payloads (vendor blobs) as safe, but
        # their bytes cannot be inspected; a profile rule naming the tag can still keep them.
        return False
    if vr == row.vr:
        return True
    if vr is None or vr == "UN":
        return row.vr not in ("SQ", "UI")  # unknown encoding: neither walked nor remapped, so not kept
    return False


def creator_string(value: object) -> str:
    """A private creator element's value as text (raw bytes decoded as ASCII/Latin-1, padding stripped)."""
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("latin-1")
    elif value is None:
        value = ""
    return str(value).strip("\0 ")


def block_actions(elements: dict[int, tuple[str | None, object]]) -> dict[int, str]:
    """Private elements of one dataset that the option keeps.

    Parameters
    ----------
    elements : dict
        ``{tag: (vr, value)}`` of the dataset's private elements in :func:`groups` (``vr`` None
        for implicit VR; ``value`` is needed for creator elements only and may be raw bytes).

    Returns
    -------
    dict
        ``{tag: KEEP_AS_IS | KEEP_SEQUENCE | KEEP_UID}`` for every element to keep (creators
        included); elements not in it are removed.
    """
    table = index()
    blocks: dict[tuple[int, int], dict[int, SafePrivate]] = {}
    for tag, (_vr, value) in elements.items():
        group, elem = tag >> 16, tag & 0xFFFF
        if 0x10 <= elem <= 0xFF:
            rows = table.get((creator_string(value), group))
            if rows is not None:
                blocks[(group, elem)] = rows
    keep: dict[int, str] = {}
    for tag, (vr, _value) in elements.items():
        group, elem = tag >> 16, tag & 0xFFFF
        rows = blocks.get((group, elem >> 8)) if elem >= 0x1000 else None
        row = rows.get(elem & 0xFF) if rows is not None else None
        if row is None or not vr_allowed(row, vr):
            continue
        keep[tag] = KEEP_SEQUENCE if row.vr == "SQ" else KEEP_UID if row.vr == "UI" else KEEP_AS_IS
        keep[group << 16 | elem >> 8] = KEEP_AS_IS
    return keep
