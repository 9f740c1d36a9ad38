"""Build ``bids_deid/data/ps3_15_safe_private.tsv`` (PS3.15 Table E.3.10-1, edition 2026c).

Input (default): ``tools/safe_private_2026c.txt``, the hand transcription of every row of the
table (where it was read is written in its header). Each line is
``data element|private creator|VR|VM|meaning``, e.g. ``(0019,xx0C)|SIEMENS MR HEADER|IS|1|B Value``.

``--xml PART15_XML`` reads the rows from a local copy of NEMA's DocBook ``part15.xml`` instead
(the user provides the file; it is not part of this repository). ``--check PART15_XML`` builds
from the transcription and compares it cell by cell with that XML, printing every difference
(exit status 1 if any).

The TSV keeps one row per attribute: creator, group (4 upper-case hex digits), element (the low
byte ``ee`` of ``(gggg,xxee)``, 2 upper-case hex digits), VR, name, VM. A tag that is not a single
private slot ``(gggg,xxee)`` with an odd group stops the build (the 2026c table has none).

Run: ``python tools/build_safe_private.py`` (standard library only).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "safe_private_2026c.txt"
OUT = HERE.parent / "bids_deid" / "data" / "ps3_15_safe_private.tsv"
TABLE_ID = "table_E.3.10-1"
TAG = re.compile(r"\(([0-9A-Fa-f]{4}),xx([0-9A-Fa-f]{2})\)")
HEADER = """\
# DICOM PS3.15 Annex E, section E.3.10 (Retain Safe Private Option), table "Safe Private Attributes"
# (Table E.3.10-1), edition 2026c: all {n} rows, transcribed by hand (facts only) from NEMA's DocBook
# source of PS3.15 2026c as stored in github.com/cosyte/dicom at commit
# 3712b00b6503e815e82ce5eab729b2284a5e2d0e, path
# vendor/nema/part15/77d60b856faf4223ab40a398c53130fc0ee9490d0d811ee3536e6d25c02ac717/part15.xml
# (its <subtitle>: "DICOM PS3.15 2026c - Security and System Management Profiles").
# Transcription and build script: tools/safe_private_2026c.txt, tools/build_safe_private.py.
# One row per attribute: private creator string, group (hex), element = the low byte xx of (gggg,bbxx),
# i.e. the offset inside the private block; vr/vm/name as the table gives them (vr empty where the
# table gives none; a VR cell such as OW/OB is kept as written; name empty where the table gives none).
# The standard notes that vendors do not guarantee these to be safe. Read by
# bids_deid/scrub/dicom_safe_private.py; checked by tests/test_safe_private.py.
"""
COLUMNS = ("private_creator", "group", "element", "vr", "name", "vm")


def parse_tag(tag: str) -> tuple[str, str]:
    """``"(2001,xx0a)"`` -> ``("2001", "0A")``; raises ValueError for anything else."""
    m = TAG.fullmatch(tag.strip())
    if m is None:
        raise ValueError(f"not a single private slot (gggg,xxee): {tag!r}")
    group, elem = m.group(1).upper(), m.group(2).upper()
    if int(group, 16) % 2 == 0:
        raise ValueError(f"even group in {tag!r}")
    return group, elem


def read_transcription(path: Path = SOURCE) -> list[tuple[str, str, str, str, str]]:
    """Rows ``(tag, creator, vr, vm, meaning)`` of the hand transcription."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        cells = line.split("|")
        if len(cells) != 5:
            raise ValueError(f"{path.name}: expected 5 cells: {line!r}")
        rows.append(tuple(c.strip() for c in cells))
    return rows


def _cell_text(td: ET.Element) -> str:
    return " ".join("".join(td.itertext()).split())


def read_xml(path: Path) -> list[tuple[str, str, str, str, str]]:
    """Rows ``(tag, creator, vr, vm, meaning)`` of Table E.3.10-1 in a DocBook ``part15.xml``."""
    root = ET.parse(path).getroot()
    ns = {"db": root.tag.split("}")[0][1:]} if root.tag.startswith("{") else {}
    xml_id = "{http://www.w3.org/XML/1998/namespace}id"
    table = next((t for t in root.iter() if t.get(xml_id) == TABLE_ID), None)
    if table is None:
        raise ValueError(f"{path}: no table {TABLE_ID}")
    body = table.find("db:tbody", ns) if ns else table.find("tbody")
    rows = []
    for tr in body:
        cells = [_cell_text(td) for td in tr]
        if len(cells) != 5:
            raise ValueError(f"{path}: row with {len(cells)} cells: {cells}")
        # "1<superscript>st</superscript>value" flattens to "1stvalue"
        cells[4] = re.sub(r"\b1st(?=[a-z])", "1st ", cells[4])
        rows.append(tuple(cells))
    return rows


def to_tsv(rows: list[tuple[str, str, str, str, str]]) -> str:
    """TSV text (header comment, column line, one line per row) for ``rows``."""
    seen = set()
    lines = [HEADER.format(n=len(rows)).rstrip("\n"), "\t".join(COLUMNS)]
    for tag, creator, vr, vm, meaning in rows:
        group, elem = parse_tag(tag)
        key = (creator, group, elem)
        if key in seen:
            raise ValueError(f"duplicate row {key}")
        seen.add(key)
        lines.append("\t".join((creator, group, elem, vr, meaning, vm)))
    return "\n".join(lines) + "\n"


def compare(ours: list, theirs: list) -> list[str]:
    """Differences between two row lists (by position, then cell by cell)."""
    out = []
    if len(ours) != len(theirs):
        out.append(f"row count: transcription {len(ours)}, xml {len(theirs)}")
    for i, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        ka = (parse_tag(a[0]), a[1])
        kb = (parse_tag(b[0]), b[1])
        if ka != kb or a[2:] != b[2:]:
            out.append(f"row {i + 1}: transcription {a} != xml {b}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--xml", type=Path, help="build from a local copy of part15.xml instead")
    src.add_argument("--check", type=Path, metavar="PART15_XML", help="compare the transcription with part15.xml")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.check:
        diffs = compare(read_transcription(), read_xml(args.check))
        print("\n".join(diffs) or "transcription matches the XML table")
        return 1 if diffs else 0
    rows = read_xml(args.xml) if args.xml else read_transcription()
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(to_tsv(rows), encoding="utf-8")
    os.replace(tmp, args.out)
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
