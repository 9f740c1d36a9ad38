"""The packaged PS3.15 Table E.1-1 against the 2026c edition of the standard.

Every row in SAMPLE was read cell by cell in the NEMA DocBook source of PS3.15 2026c
(github.com/cosyte/dicom, vendor/nema/part15/77d60b85.../part15.xml at commit 3712b00) and is
written here as literals, independently of the transcription the table is built from.
"""

from __future__ import annotations

import csv
from importlib import resources

import pytest

from bids_deid.scrub.dicom_table import load_table

OPTIONS = ("retain_safe_private", "retain_uids", "retain_device_identity", "retain_institution_identity",
           "retain_patient_characteristics", "retain_long_full_dates", "retain_long_modified_dates",
           "clean_descriptors", "clean_structured_content", "clean_graphics")
DATES = {"retain_long_full_dates": "K", "retain_long_modified_dates": "C"}


def _text() -> str:
    return (resources.files("bids_deid") / "data" / "ps3_15_table_e1_1.tsv").read_text(encoding="utf-8")


def _rows() -> dict[str, dict[str, str]]:
    lines = [ln for ln in _text().splitlines() if not ln.startswith("#")]
    return {r["tag"]: r for r in csv.DictReader(lines, delimiter="\t")}


def test_size_is_the_2026c_row_count():
    rows = _rows()
    assert len(rows) == 656  # PS3.15 2026c Table E.1-1
    families = {t for t in rows if "X" in t[1:5] or "G" in t}
    assert families == {"(50XX,XXXX)", "(60XX,3000)", "(60XX,4000)", "(GGGG,EEEE)"}
    assert len(rows) - len(families) == 652
    assert len(load_table()) == 656
    assert "edition 2026c" in _text().splitlines()[0]


def test_no_inferred_options_left():
    sources = [r["options_source"] for r in _rows().values()]
    assert "inferred" not in sources
    assert sources.count("ps3.15-2026c") == 655
    assert sources.count("earlier-edition") == 1  # (GGGG,EEEE), see tools/e1_1_2026c.txt


def test_codes_are_valid():
    for row in _rows().values():
        assert row["basic"] in {"D", "Z", "X", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"}, row["tag"]
        for opt in OPTIONS:
            assert row[opt] in {"", "K", "C"}, (row["tag"], opt)


# (tag, basic code, every non-empty option code) read in part15.xml of PS3.15 2026c.
# "inferred" marks rows whose options the previous table had inferred.
SAMPLE = [
    ("(0008,1000)", "X", {"retain_device_identity": "C"}),  # Network ID (inferred: none)
    ("(0008,0019)", "U", {"retain_uids": "K"}),  # Pyramid UID (inferred)
    ("(0008,1088)", "X", {"clean_descriptors": "C"}),  # Pyramid Description (inferred: none)
    ("(0020,0027)", "X", {"clean_descriptors": "C"}),  # Pyramid Label (inferred: none)
    ("(3002,0121)", "X", {"clean_descriptors": "C"}),  # Position Acquisition Template Name (inferred)
    ("(3002,0123)", "X", {"clean_descriptors": "C"}),  # ... Template Description (inferred)
    ("(003A,0329)", "X", {"clean_descriptors": "C"}),  # Waveform Filter Description (inferred)
    ("(0008,1120)", "X", {"retain_uids": "K"}),  # Referenced Patient Sequence (was X before)
    ("(0008,1111)", "X/Z/D", {"retain_uids": "K"}),  # Referenced Performed Procedure Step Sequence
    ("(0008,1140)", "X/Z/U*", {"retain_uids": "K"}),  # Referenced Image Sequence
    ("(0040,4023)", "U", {"retain_uids": "K"}),  # Referenced General Purpose SPS Transaction UID
    ("(0040,A172)", "U", {"retain_uids": "K"}),  # Referenced Observation UID (Trial)
    ("(0040,A402)", "U", {"retain_uids": "K"}),  # Observation Subject UID (Trial)
    ("(0040,A192)", "X", DATES),  # Observation Date (Trial)
    ("(0040,A193)", "X", DATES),  # Observation Time (Trial)
    ("(0040,A032)", "X/D", DATES),  # Observation DateTime
    ("(0040,A033)", "X", DATES),  # Observation Start DateTime
    ("(3006,002E)", "X", DATES),  # ROI Observation DateTime
    ("(300A,0006)", "X/D", DATES),  # RT Plan Date
    ("(0040,B020)", "X/D", {"clean_structured_content": "C"}),  # Waveform Annotation Sequence (new row)
    ("(0010,0016)", "X", {"clean_descriptors": "C"}),  # Pronoun Comment (new row)
    ("(0018,1030)", "X/D", {"clean_descriptors": "C"}),  # Protocol Name
    ("(3006,0085)", "X", {"clean_descriptors": "C"}),  # ROI Observation Label
    ("(3006,0088)", "X", {"clean_descriptors": "C"}),  # ROI Observation Description
    ("(3010,005A)", "Z", {"clean_descriptors": "C"}),  # RT Physician Intent Narrative
    ("(300A,0619)", "D", {"clean_descriptors": "C"}),  # Radiation Dose Identification Label
    ("(300A,0623)", "D", {"clean_descriptors": "C"}),  # Radiation Dose In-Vivo Measurement Label
    ("(0018,1004)", "X", {"retain_device_identity": "K"}),  # Plate ID
    ("(0018,9367)", "D", {"retain_device_identity": "K"}),  # X-Ray Source ID
    ("(0018,9371)", "D", {"retain_device_identity": "K"}),  # X-Ray Detector ID
    ("(0018,9373)", "X", {"retain_device_identity": "K"}),  # X-Ray Detector Label
    ("(0040,2016)", "Z", {}),  # Placer Order Number / Imaging Service Request
    ("(300A,0611)", "Z", {}),  # RT Accessory Holder Slot ID
    ("(300A,0615)", "Z", {}),  # RT Accessory Device Slot ID
    ("(0008,1048)", "X", {}),  # Physician(s) of Record
    ("(0008,1049)", "X", {}),  # Physician(s) of Record Identification Sequence
    ("(0008,1062)", "X", {}),  # Physician(s) Reading Study Identification Sequence
    ("(4008,0114)", "X", {}),  # Physician Approving Interpretation
    ("(0038,0004)", "X", {}),  # Referenced Patient Alias Sequence
    ("(0010,1100)", "X", {}),  # Referenced Patient Photo Sequence
    ("(0400,0403)", "X", {}),  # Referenced SOP Instance MAC Sequence
    ("(0400,0551)", "X", {}),  # Nonconforming Modified Attributes Sequence
    ("(0400,0552)", "X", {}),  # Nonconforming Data Element Value
]


@pytest.mark.parametrize("tag,basic,opts", SAMPLE, ids=[s[0] for s in SAMPLE])
def test_row_matches_2026c(tag, basic, opts):
    row = _rows()[tag]
    assert row["basic"] == basic
    assert {o: row[o] for o in OPTIONS if row[o]} == opts
    assert row["options_source"] == "ps3.15-2026c"


def test_sample_is_broad():
    assert len(SAMPLE) >= 15
    assert len({b for _, b, _ in SAMPLE}) >= 6  # basic codes X, Z, D, U, X/D, X/Z/D, X/Z/U*
    assert len({o for _, _, opts in SAMPLE for o in opts}) >= 6  # option columns covered
