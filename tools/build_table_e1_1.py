"""Build ``bids_deid/data/ps3_15_table_e1_1.tsv`` (PS3.15 Table E.1-1) from two transcriptions.

Sources (facts of the DICOM standard, transcribed by hand into the two text files beside
this script; no code or text of the sources is used):

``e1_1_transcribed.txt``
    One row per attribute: tag, name, "in std. composite IOD", basic-profile code and the
    option columns. Transcribed from ``standard/confidentiality_profile_attributes.json``
    of github.com/innolitics/dicom-standard at commit 0d01bf11dfc1d0b73b6df85bbf6e1764d3c558a3
    (a machine-readable extract of an earlier edition of Table E.1-1; 460 rows).
``e1_1_2024b_basic.txt``
    The basic-profile code of every attribute of the 2024b edition (620 rows), transcribed
    from the per-code tag lists of github.com/KitwareMedical/dicom-anonymizer
    ``dicomanonymizer/dicom_anonymization_databases/dicomfields_2024b.py`` at commit
    3cd5853591ce1870011c6b98d2053c5737a39faa (which cites the 2024b edition of PS3.15).

Merge rule: the 2024b basic code wins. Option codes come from the first transcription; for the
161 rows only present in 2024b they are inferred (column ``options_source`` = ``inferred``):
date/time VRs (DA, DT, TM) get Retain Long. Full Dates = K and Retain Long. Modified Dates = C,
UID rows (basic U) get Retain UIDs = K, anything else gets no option code (the stricter reading:
options can only relax the basic profile). Names of those rows come from pydicom's dictionary.

Run: ``python tools/build_table_e1_1.py`` (needs pydicom).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "bids_deid" / "data" / "ps3_15_table_e1_1.tsv"
OPTION_KEYS = {
    "sp": "retain_safe_private",
    "uid": "retain_uids",
    "dev": "retain_device_identity",
    "inst": "retain_institution_identity",
    "pat": "retain_patient_characteristics",
    "full": "retain_long_full_dates",
    "mod": "retain_long_modified_dates",
    "desc": "clean_descriptors",
    "sc": "clean_structured_content",
    "gr": "clean_graphics",
}
COLUMNS = ["tag", "keyword", "name", "std_comp_iod", "basic", *OPTION_KEYS.values(), "options_source"]


def _norm(tag: str) -> str:
    tag = tag.strip().strip("()").upper()
    if tag.startswith("GGGG"):
        return "(GGGG,EEEE)"
    g, e = tag.split(",")
    return f"({g},{e})"


def read_transcribed(path: Path) -> dict[str, dict]:
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        tag, name, iod, basic, opts = line.split("|")
        row = {"tag": _norm(tag), "name": name, "std_comp_iod": iod, "basic": basic, "options_source": "transcribed"}
        for kv in opts.split():
            k, v = kv.split("=")
            row[OPTION_KEYS[k]] = v
        rows[row["tag"]] = row
    return rows


def read_2024b(path: Path) -> dict[str, str]:
    codes = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        code, tags = line.split(":", 1)
        for t in tags.split():
            codes[_norm(t)] = code.strip()
    return codes


def _dict_info(tag: str) -> tuple[str, str, str]:
    """(keyword, name, VR) from pydicom's dictionary; blanks for ranges/unknown."""
    from pydicom.datadict import dictionary_description, dictionary_keyword, dictionary_VR

    if "X" in tag or "G" in tag:
        return "", "", ""
    t = int(tag[1:5] + tag[6:10], 16)
    try:
        return dictionary_keyword(t), dictionary_description(t), dictionary_VR(t)
    except KeyError:
        return "", "", ""


def build() -> list[dict]:
    old = read_transcribed(HERE / "e1_1_transcribed.txt")
    new = read_2024b(HERE / "e1_1_2024b_basic.txt")
    rows = []
    for tag in sorted(set(old) | set(new)):
        kw, dname, vr = _dict_info(tag)
        if tag in old:
            row = dict(old[tag])
        else:
            row = {"tag": tag, "name": dname or tag, "std_comp_iod": "", "options_source": "inferred"}
            if vr in ("DA", "DT", "TM"):
                row["retain_long_full_dates"] = "K"
                row["retain_long_modified_dates"] = "C"
            if new[tag] == "U":
                row["retain_uids"] = "K"
        if tag in new:
            row["basic"] = new[tag]
        row["keyword"] = kw
        rows.append(row)
    return rows


def main() -> int:
    rows = build()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", encoding="utf-8", newline="") as fh:
        fh.write(
            "# PS3.15 Table E.1-1 Application Level Confidentiality Profile Attributes (2024b basic codes).\n"
            "# Facts transcribed from innolitics/dicom-standard@0d01bf1 (names, option columns) and\n"
            "# KitwareMedical/dicom-anonymizer@3cd5853 dicomfields_2024b.py (basic codes, 2024b);\n"
            "# options_source=inferred marks rows whose option codes were inferred (see tools/build_table_e1_1.py).\n"
        )
        w = csv.DictWriter(fh, COLUMNS, delimiter="\t", restval="", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {len(rows)} rows to {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
