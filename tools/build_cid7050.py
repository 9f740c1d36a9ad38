"""Build ``bids_deid/data/cid7050.tsv``: DICOM CID 7050 "De-identification Method" (PS3.16), the
codes written in DeidentificationMethodCodeSequence, and the bids-deid profile option each stands for.

Codes, scheme and meanings come from pydicom's PS3.16 tables (``pydicom.sr._cid_dict`` lists the
concepts of CID 7050, ``pydicom.sr._concepts_dict`` their code value and meaning; pydicom builds
both from the standard). Which option of a profile each concept is comes from :data:`OPTIONS` below
(bids-deid's own names: ``basic`` for the profile, the ``dicom.options`` keys for the options);
concepts without an option there get an empty ``option`` and are never written.

Run: ``python tools/build_cid7050.py`` (needs pydicom); ``--check`` only compares with the shipped
file (exit status 1 when they differ).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "bids_deid" / "data" / "cid7050.tsv"
CID = 7050
# pydicom concept keyword -> bids-deid profile option (hand-kept: the names are ours)
OPTIONS = {
    "BasicApplicationConfidentialityProfile": "basic",
    "CleanPixelDataOption": "clean_pixel_data",  # not a profile option: written by --clean-pixels
    "CleanGraphicsOption": "clean_graphics",
    "CleanStructuredContentOption": "clean_structured_content",
    "CleanDescriptorsOption": "clean_descriptors",
    "RetainLongitudinalTemporalInformationFullDatesOption": "retain_long_full_dates",
    "RetainLongitudinalTemporalInformationModifiedDatesOption": "retain_long_modified_dates",
    "RetainPatientCharacteristicsOption": "retain_patient_characteristics",
    "RetainDeviceIdentityOption": "retain_device_identity",
    "RetainUidsOption": "retain_uids",
    "RetainSafePrivateOption": "retain_safe_private",
    "RetainInstitutionIdentityOption": "retain_institution_identity",
}
COLUMNS = ("code_value", "coding_scheme", "code_meaning", "keyword", "option")
HEADER = """\
# DICOM PS3.16 CID 7050 "De-identification Method": every concept, as pydicom's PS3.16 tables give them
# (pydicom.sr._cid_dict, pydicom.sr._concepts_dict), sorted by code value.
# option: the bids-deid profile option the code stands for ("basic" = the Basic Application
# Confidentiality Profile); empty = a concept bids-deid never writes. The option names are ours
# (tools/build_cid7050.py OPTIONS). Read by bids_deid/scrub/dicom_core.py. Build: python tools/build_cid7050.py
"""


def build() -> str:
    """The TSV text."""
    from pydicom.sr import _cid_dict, _concepts_dict

    rows = []
    for scheme, keywords in _cid_dict.cid_concepts[CID].items():
        for kw in keywords:
            for value, (meaning, _cids) in _concepts_dict.concepts[scheme][kw].items():
                rows.append((value, scheme, meaning, kw, OPTIONS.get(kw, "")))
    missing = set(OPTIONS) - {r[3] for r in rows}
    if missing:
        raise SystemExit(f"not in CID {CID}: {sorted(missing)}")
    rows.sort()
    return HEADER + "\t".join(COLUMNS) + "\n" + "".join("\t".join(r) + "\n" for r in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the shipped file, write nothing")
    args = ap.parse_args(argv)
    text = build()
    if args.check:
        same = OUT.read_text(encoding="utf-8") == text
        print(f"{OUT.name}: {'up to date' if same else 'differs from pydicom PS3.16 tables'}")
        return 0 if same else 1
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
