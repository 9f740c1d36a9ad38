"""Files whose sequence items carry their own Specific Character Set (Philips
ReferencedPerformedProcedureStepSequence) take the byte path: what is removed, kept and
remapped, parsed back with pydicom (real shared files; skipped when ../shared/data is absent)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from conftest import SHARED

from bids_deid.profiles import load_profile
from bids_deid.pseudonym import Pseudonymizer
from bids_deid.scrub import dicom_lean

PHILIPS = SHARED / "heads" / "dicom" / "philips_sag3d_t1"
needs_shared = pytest.mark.skipif(not PHILIPS.is_dir(), reason="../shared/data absent")


@needs_shared
@pytest.mark.parametrize("profile_name", ["basic", "dicom-retain-longitudinal"])
def test_item_with_own_charset_takes_the_byte_path(tmp_path: Path, profile_name: str) -> None:
    src = sorted(PHILIPS.iterdir())[0]
    before = pydicom.dcmread(src)
    item = before.ReferencedPerformedProcedureStepSequence[0]
    assert "SpecificCharacterSet" in item  # the case this test is about
    pseudo = Pseudonymizer(b"k" * 32)
    dst = tmp_path / "out.dcm"
    # dicom_lean.process raises Fallback when it declines: a result means the byte path wrote it
    res = dicom_lean.process(str(src), lambda *_: str(dst), load_profile(profile_name), pseudo, None, None,
                             False, False)
    assert res.status == "written", res.reason
    after = pydicom.dcmread(dst)
    data = dst.read_bytes()
    for kw in ("PatientName", "PatientID", "PatientBirthDate"):
        value = str(before.get(kw, "") or "")
        if len(value) >= 3:
            assert value.encode() not in data, kw
    out_item = after.ReferencedPerformedProcedureStepSequence[0]
    assert out_item.SpecificCharacterSet == item.SpecificCharacterSet
    # UIDs in the item are remapped as everywhere else, consistently with the top level
    assert out_item.ReferencedSOPInstanceUID == pseudo.uid(item.ReferencedSOPInstanceUID)
    assert item.ReferencedSOPInstanceUID.encode() not in data
    assert after.SOPInstanceUID == pseudo.uid(before.SOPInstanceUID)
    assert after.StudyInstanceUID == pseudo.uid(before.StudyInstanceUID)
    assert out_item.ReferencedSOPClassUID == item.ReferencedSOPClassUID  # a standard class UID is kept
    # kept image attributes and pixels stay as they were
    assert after.Rows == before.Rows and after.Columns == before.Columns
    assert after.PixelData == before.PixelData
    assert after.PatientIdentityRemoved == "YES"
    assert res.subject and str(after.PatientID) == f"sub-{res.subject}"
