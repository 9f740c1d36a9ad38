"""The DICOM engine's tables are data files: each is what its build tool makes from its source,
and the engine reads them at run time.

* ``bids_deid/data/dicom_allowlist.tsv``: ``tools/build_dicom_allowlist.py`` from the hand-kept
  ``tools/dicom_allowlist.txt`` (tags/VRs from the PS3.6 dictionary);
* ``bids_deid/data/cid7050.tsv``: ``tools/build_cid7050.py`` from pydicom's PS3.16 tables;
* ``bids_deid/data/siemens_csa_image_fields.tsv``: hand-kept, every row with its use.
"""

from __future__ import annotations

import csv
import importlib.util
from importlib import resources
from pathlib import Path

from pydicom.dataset import Dataset

from bids_deid.profiles import Profile
from bids_deid.scrub import dicom_allowlist, dicom_core, dicom_csa
from bids_deid.scrub.dicom import deidentify_dataset
from bids_deid.scrub.dicom_dict import dictionary_vr, tag_for_keyword

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _shipped(name: str) -> str:
    return (resources.files("bids_deid") / "data" / name).read_text(encoding="utf-8")


def _rows(name: str) -> list[dict[str, str]]:
    lines = [ln for ln in _shipped(name).splitlines() if ln and not ln.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t"))


def test_allowlist_is_what_its_build_tool_makes():
    assert _tool("build_dicom_allowlist").build() == _shipped("dicom_allowlist.tsv")


def test_cid7050_is_what_its_build_tool_makes():
    assert _tool("build_cid7050").build() == _shipped("cid7050.tsv")


def test_allowlist_rows_agree_with_the_dictionary_and_say_why():
    rows = _rows("dicom_allowlist.tsv")
    assert {r["list"] for r in rows} == {"keep", "unknown", "well_known_uid"}
    for r in rows:
        assert r["why"], r
        if r["list"] == "unknown":
            assert not r["tag"] and tag_for_keyword(r["keyword"]) is None
            continue
        tag = int(r["tag"][1:5] + r["tag"][6:10], 16)
        assert tag_for_keyword(r["keyword"]) == tag and dictionary_vr(tag) == r["vr"], r
    keep = {r["keyword"] for r in rows if r["list"] == "keep"}
    assert len(keep) == len(dicom_allowlist.TAGS) == 271
    assert {"Rows", "Columns", "PixelData", "ImageOrientationPatient", "RepetitionTime", "EchoTime"} <= keep
    assert tag_for_keyword("Rows") in dicom_allowlist.TAGS
    assert tag_for_keyword("TransferSyntaxUID") in dicom_allowlist.WELL_KNOWN_UID_TAGS
    assert tag_for_keyword("SOPInstanceUID") not in dicom_allowlist.WELL_KNOWN_UID_TAGS


def test_allowlist_governs_what_the_engine_keeps(profile, pseudo):
    ds = Dataset()
    ds.Rows, ds.Columns = 4, 4  # in the allowlist, outside Table E.1-1
    ds.ImagesInAcquisition = 3  # in the allowlist
    ds.DeviceID = "canary device"  # a text attribute neither in Table E.1-1 nor in the allowlist
    ds.FlipAngle = 9  # group 0018, numeric: kept by the safe-group rule as well
    deidentify_dataset(ds, profile, pseudo, "abc", 0)
    assert (ds.Rows, ds.Columns, ds.ImagesInAcquisition, ds.FlipAngle) == (4, 4, 3, 9)
    assert "DeviceID" not in ds
    assert tag_for_keyword("DeviceID") not in dicom_allowlist.TAGS


def test_cid7050_codes_as_the_standard_writes_them():
    # PS3.16 CID 7050, written here independently of the shipped table
    assert dicom_core.CID7050 == {
        "basic": ("113100", "Basic Application Confidentiality Profile"),
        "clean_pixel_data": ("113101", "Clean Pixel Data Option"),
        "clean_graphics": ("113103", "Clean Graphics Option"),
        "clean_structured_content": ("113104", "Clean Structured Content Option"),
        "clean_descriptors": ("113105", "Clean Descriptors Option"),
        "retain_long_full_dates": ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
        "retain_long_modified_dates": ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
        "retain_patient_characteristics": ("113108", "Retain Patient Characteristics Option"),
        "retain_device_identity": ("113109", "Retain Device Identity Option"),
        "retain_uids": ("113110", "Retain UIDs Option"),
        "retain_safe_private": ("113111", "Retain Safe Private Option"),
        "retain_institution_identity": ("113112", "Retain Institution Identity Option"),
    }


def test_written_method_codes_come_from_the_table(pseudo):
    prof = Profile(name="t", source="test", dicom_options=("retain_device_identity", "clean_descriptors"))
    ds = Dataset()
    ds.PatientID = "canary"
    deidentify_dataset(ds, prof, pseudo, "abc", 0)
    written = {(i.CodeValue, i.CodingSchemeDesignator, i.CodeMeaning) for i in ds.DeidentificationMethodCodeSequence}
    table = {(r["code_value"], r["coding_scheme"], r["code_meaning"]) for r in _rows("cid7050.tsv")}
    assert {("113100", "DCM", "Basic Application Confidentiality Profile"),
            ("113109", "DCM", "Retain Device Identity Option"),
            ("113105", "DCM", "Clean Descriptors Option")} <= written
    assert written <= table


def test_csa_fields_table():
    rows = _rows("siemens_csa_image_fields.tsv")
    assert all(r["used_by_dcm2niix_for"] for r in rows)
    assert dicom_csa.MOSAIC_IMAGE_FIELDS == {r["field"] for r in rows}
    assert {"NumberOfImagesInMosaic", "MosaicRefAcqTimes", "B_matrix"} <= dicom_csa.MOSAIC_IMAGE_FIELDS
    assert len(rows) == 10
