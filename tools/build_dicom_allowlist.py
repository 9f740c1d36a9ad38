"""Build ``bids_deid/data/dicom_allowlist.tsv``: the standard attributes outside PS3.15 Table
E.1-1 that the DICOM engine keeps, and the UID attributes whose values are never remapped.

Source: ``tools/dicom_allowlist.txt``, hand-kept (bids-deid's choice: the standard has no list of
attributes safe to keep); its ``## list: why`` lines group the keywords and say why each group is
kept. Tag, VR and name of every keyword come from the PS3.6 data dictionary as pydicom ships it.
A keyword the dictionary does not know stops the build unless its section is ``unknown``; an
``unknown`` keyword the dictionary has come to know stops it too (move it to a real section).

Run: ``python tools/build_dicom_allowlist.py`` (needs pydicom); ``--check`` only compares with the
shipped file (exit status 1 when they differ).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "dicom_allowlist.txt"
OUT = HERE.parent / "bids_deid" / "data" / "dicom_allowlist.tsv"
LISTS = ("keep", "unknown", "well_known_uid")
COLUMNS = ("tag", "keyword", "vr", "name", "list", "why")
HEADER = """\
# Standard DICOM attributes outside PS3.15 Table E.1-1 that bids-deid keeps (list = keep), keywords
# the data dictionary does not know (list = unknown, no tag: they match nothing), and UID attributes
# whose values are well-known UIDs, never remapped (list = well_known_uid).
# Hand-kept choice of bids-deid (the standard has no list of attributes safe to keep): source
# tools/dicom_allowlist.txt, whose sections give the reason in column "why". tag, vr and name come
# from the PS3.6 data dictionary as pydicom ships it.
# Read by bids_deid/scrub/dicom_allowlist.py. Build: python tools/build_dicom_allowlist.py
"""


def read_source(path: Path = SOURCE) -> list[tuple[str, str, str]]:
    """``(list, why, keyword)`` in source order."""
    out: list[tuple[str, str, str]] = []
    current: tuple[str, str] | None = None
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("## "):
            name, _, why = line[3:].partition(":")
            if name.strip() not in LISTS or not why.strip():
                raise SystemExit(f"{path.name}:{n}: a section is '## <{'|'.join(LISTS)}>: <why>'")
            current = (name.strip(), why.strip())
        elif line.strip() and not line.startswith("#"):
            if current is None:
                raise SystemExit(f"{path.name}:{n}: keywords before the first section")
            out.extend((current[0], current[1], kw) for kw in line.split())
    return out


def build(path: Path = SOURCE) -> str:
    """The TSV text."""
    from pydicom.datadict import dictionary_description, dictionary_VR, tag_for_keyword

    rows, seen = [], set()
    for name, why, kw in read_source(path):
        if (name, kw) in seen:
            raise SystemExit(f"{kw} listed twice in '{name}'")
        seen.add((name, kw))
        tag = tag_for_keyword(kw)
        if name == "unknown":
            if tag is not None:
                raise SystemExit(f"{kw} is in the dictionary now: move it to a section")
            rows.append(("", kw, "", "", name, why))
            continue
        if tag is None:
            raise SystemExit(f"{kw}: not a keyword of the data dictionary")
        rows.append((f"({tag >> 16:04X},{tag & 0xFFFF:04X})", kw, dictionary_VR(tag), dictionary_description(tag),
                     name, why))
    lines = [HEADER + "\t".join(COLUMNS)]
    lines += ["\t".join(r) for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the shipped file, write nothing")
    args = ap.parse_args(argv)
    text = build()
    if args.check:
        same = OUT.read_text(encoding="utf-8") == text
        print(f"{OUT.name}: {'up to date' if same else 'differs from tools/dicom_allowlist.txt'}")
        return 0 if same else 1
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT} ({text.count(chr(10)) - HEADER.count(chr(10)) - 1} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
