"""Build ``bids_deid/data/ps3_15_table_e1_1.tsv`` (PS3.15 Table E.1-1, edition 2026c).

Sources (facts of the DICOM standard, transcribed by hand into the text files beside this
script; no code or text of the sources is used):

``e1_1_2026c.txt``
    Every row of Table E.1-1 in the 2026c edition (656 rows: 652 single tags and the four
    family rows (50xx,xxxx), (60xx,3000), (60xx,4000), (gggg,eeee)): tag, basic-profile code, the
    ten option columns and the attribute name. Where each fact was read (repository, path,
    commit, edition) is written in that file's header. This file decides every code.
``e1_1_transcribed.txt``
    An earlier transcription (innolitics/dicom-standard@0d01bf1, an older edition, 460 rows).
    Used only for the informative "In Std. Comp. IOD" column (left empty for rows it lacks) and
    for the cross-check printed by ``--compare``.

Column ``options_source`` says where each row's option codes come from:
``ps3.15-2026c`` (the 2026c table) or ``earlier-edition`` (the private-attributes family row,
whose codes the 2026c source used here does not carry). Keywords come from pydicom's dictionary
(empty for family rows and tags pydicom does not know).

Run: ``python tools/build_table_e1_1.py`` (needs pydicom). ``--compare OLD.tsv`` also prints how
the codes differ from a previous build of the table.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "bids_deid" / "data" / "ps3_15_table_e1_1.tsv"
EDITION = "2026c"
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
CODES = {"K", "C", "X", "Z", "D", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"}
# Family rows whose codes the 2026c source file does not carry (see e1_1_2026c.txt header).
EARLIER_EDITION_ROWS = {"(GGGG,EEEE)"}
HEADER = f"""\
# PS3.15 Table E.1-1 Application Level Confidentiality Profile Attributes, edition {EDITION}
# (656 rows: 652 single tags + (50XX,XXXX), (60XX,3000), (60XX,4000), (GGGG,EEEE)).
# Codes transcribed from github.com/cosyte/dicom src/dictionary/generated/annex-e.ts @339892a4,
# generated there from the NEMA DocBook part15.xml of PS3.15 {EDITION} (sha256 77d60b85..., stored in the
# same repository @3712b00); sample rows checked in that part15.xml. Full provenance: tools/e1_1_2026c.txt.
# options_source: ps3.15-{EDITION} = option columns of the {EDITION} table; earlier-edition = codes of the
# earlier transcription (innolitics/dicom-standard@0d01bf1), used for the private-attributes row only.
# std_comp_iod comes from that earlier transcription (empty where it lacks the row); informative only.
# Build: python tools/build_table_e1_1.py
"""


def norm_tag(tag: str) -> str:
    """``(gggg,eeee)`` in upper case (family rows keep their x/G/E letters)."""
    tag = tag.strip().split(")")[0].strip("(").upper()  # drop trailing words such as "where GGGG is odd"
    group, elem = tag.split(",")
    return f"({group},{elem})"


def read_2026c(path: Path) -> list[dict[str, str]]:
    """Rows of ``e1_1_2026c.txt`` as dicts keyed like the output columns."""
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        tag, basic, opts, name = line.split("|")
        if basic not in CODES:
            raise ValueError(f"{path.name}:{n}: unknown basic code {basic!r}")
        row = {"tag": norm_tag(tag), "basic": basic, "name": name}
        for kv in opts.split():
            key, code = kv.split("=")
            if code not in ("K", "C"):
                raise ValueError(f"{path.name}:{n}: unexpected option code {code!r}")
            row[OPTION_KEYS[key]] = code
        rows.append(row)
    return rows


def read_earlier(path: Path) -> dict[str, dict[str, str]]:
    """Rows of the earlier transcription (``e1_1_transcribed.txt``) by tag."""
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        tag, name, iod, basic, opts = line.split("|")
        row = {"tag": norm_tag(tag), "name": name, "std_comp_iod": iod, "basic": basic}
        for kv in opts.split():
            key, code = kv.split("=")
            row[OPTION_KEYS[key]] = code
        rows[row["tag"]] = row
    return rows


def _keyword(tag: str) -> str:
    from pydicom.datadict import dictionary_keyword

    if "X" in tag or "G" in tag:
        return ""
    try:
        return dictionary_keyword(int(tag[1:5] + tag[6:10], 16))
    except KeyError:
        return ""


def build() -> list[dict[str, str]]:
    """The output rows, sorted by tag."""
    new = read_2026c(HERE / "e1_1_2026c.txt")
    earlier = read_earlier(HERE / "e1_1_transcribed.txt")
    tags = [r["tag"] for r in new]
    if len(set(tags)) != len(tags):
        raise ValueError("duplicate tag in e1_1_2026c.txt")
    out = []
    for row in sorted(new, key=lambda r: r["tag"]):
        old = earlier.get(row["tag"], {})
        row = dict(row)
        row["std_comp_iod"] = old.get("std_comp_iod", "")
        row["keyword"] = _keyword(row["tag"])
        if row["tag"] in EARLIER_EDITION_ROWS:
            for col in OPTION_KEYS.values():
                row.pop(col, None)
                if old.get(col):
                    row[col] = old[col]
            row["options_source"] = "earlier-edition"
        else:
            row["options_source"] = f"ps3.15-{EDITION}"
        out.append(row)
    return out


def compare(rows: list[dict[str, str]], old_path: Path) -> None:
    """Print how ``rows`` differ from a previous build (rows added/removed, changed cells)."""
    text = old_path.read_text(encoding="utf-8").splitlines()
    old = {r["tag"]: r for r in csv.DictReader([ln for ln in text if not ln.startswith("#")], delimiter="\t")}
    new = {r["tag"]: r for r in rows}
    print(f"previous: {len(old)} rows, new: {len(new)} rows")
    print("added:", " ".join(sorted(set(new) - set(old))) or "-")
    print("removed:", " ".join(sorted(set(old) - set(new))) or "-")
    stats = {"inferred": [0, 0, 0], "transcribed": [0, 0, 0]}  # rows, cells changed, rows changed
    basic_changed = []
    for tag in sorted(set(old) & set(new)):
        o, n = old[tag], new[tag]
        if o["basic"] != n["basic"]:
            basic_changed.append(f"{tag} {o['basic']}->{n['basic']}")
        src = o.get("options_source") or "transcribed"
        diff = [c for c in OPTION_KEYS.values() if (o.get(c) or "") != (n.get(c) or "")]
        s = stats.setdefault(src, [0, 0, 0])
        s[0] += 1
        s[1] += len(diff)
        s[2] += bool(diff)
        if diff:
            cells = ", ".join(f"{c}: {o.get(c) or '-'}->{n.get(c) or '-'}" for c in diff)
            print(f"  options {src} {tag} {n['name']}: {cells}")
    print("basic code changed:", "; ".join(basic_changed) or "-")
    for src, (nrows, ncells, nrows_changed) in stats.items():
        print(f"previously {src}: {nrows} rows kept, {nrows_changed} rows / {ncells} option cells changed "
              f"(of {nrows * len(OPTION_KEYS)} cells)")


def main(argv: list[str] | None = None) -> int:
    """Write the TSV (and optionally print a comparison with a previous build)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compare", type=Path, help="previous ps3_15_table_e1_1.tsv to compare with")
    args = ap.parse_args(argv)
    rows = build()
    if args.compare:
        compare(rows, args.compare)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        fh.write(HEADER)
        w = csv.DictWriter(fh, COLUMNS, delimiter="\t", restval="", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    tmp.replace(OUT)
    print(f"wrote {len(rows)} rows to {OUT.relative_to(HERE.parent)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
