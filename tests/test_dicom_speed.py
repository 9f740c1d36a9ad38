"""Tests of the speed paths of the DICOM engine (round 2): they must not change any result.

Covered: values converted and encoded without pydicom's element machinery (string VRs, person
names, multi-values, odd lengths, character sets, nested and undefined-length sequences),
elements left out while parsing, shared method attributes, results sent between processes with
their changes as JSON text, and the writev-based atomic writer.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from test_dicom_fast import _assert_same, _both, _save
from test_scrub_dicom import _canary_dataset, _leaks

from bids_deid.atomic import TMP_PREFIX
from bids_deid.profiles import load_profile
from bids_deid.scrub import dicom as engine
from bids_deid.scrub import dicom_raw
from bids_deid.scrub.dicom import deidentify_file


def _tricky_dataset(charset: str | None) -> Dataset:
    """A canary dataset with the value shapes the direct converters and encoders must get right."""
    ds = _canary_dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    name = "Müller^Jörg" if charset else "Smith^Jo"
    ds.PatientName = name
    ds.OtherPatientNames = [name, "Other^Name"]
    ds.InstitutionName = "Klinik Süd" if charset else "General"  # LO, odd length either way
    ds.StudyDescription = "brain 2019-03-04 " + ("Jörg" if charset else "Jo")
    ds.SeriesDescription = "a\\b"  # LO multi-value
    ds.StudyDate = "20190304"
    ds.AcquisitionDateTime = "20190304101112.123"
    ds.StudyTime = "101112 "  # trailing pad kept by the file
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M"]
    ds.OtherPatientIDs = ""  # empty text value
    ds.ReferencedPerformedProcedureStepSequence = Sequence()  # empty sequence
    inner = Dataset()
    inner.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    inner.ReferencedSOPInstanceUID = "1.2.3.4.5.6.7.8.9"
    inner.add_new(0x00291010, "LO", "CANARY-PRIVATE-NESTED")
    outer = Dataset()
    outer.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    outer.ReferencedSOPInstanceUID = "1.2.3.4.5.6.7.8.10"
    outer.ReferencedImageSequence = Sequence([inner])  # nested, defined length
    ds.SourceImageSequence = Sequence([outer])
    ds["SourceImageSequence"].is_undefined_length = True
    item = Dataset()
    item.SpecificCharacterSet = "ISO_IR 100"  # an item with its own character set
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "123", "99X", "Jörg's code"
    ds.AnatomicRegionSequence = Sequence([item])
    ds.DerivationDescription = "made from 1.2.3.4.5.6.7.8.9 of Jo"  # ST
    return ds


@pytest.mark.parametrize("charset", [None, "ISO_IR 100", "ISO_IR 192"])
@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_direct_conversion_equals_pydicom(tmp_path, profile, pseudo, charset, ts):
    src = _save(_tricky_dataset(charset), tmp_path / "in.dcm", ts)
    full, raw = _both(src, tmp_path, profile, pseudo)
    _assert_same(full, raw)
    assert raw.status == "written"
    assert _leaks(raw.dst) == []
    out = pydicom.dcmread(raw.dst)
    assert b"CANARY-PRIVATE-NESTED" not in raw.dst.read_bytes()
    assert out.SourceImageSequence[0].ReferencedImageSequence[0].ReferencedSOPInstanceUID.startswith("2.25.")


@pytest.mark.parametrize("name", ["basic", "dicom-research", "dicom-retain-longitudinal"])
def test_shipped_profiles_raw_equals_full(tmp_path, pseudo, name):
    prof = load_profile(name)
    src = _save(_tricky_dataset("ISO_IR 100"), tmp_path / "in.dcm", ExplicitVRLittleEndian)
    full, raw = _both(src, tmp_path, prof, pseudo)
    _assert_same(full, raw)


def test_left_out_elements_keep_audit_order(tmp_path, profile, pseudo):
    """Parsing with the skip map gives the same audit entries, in the same order, as walking all."""
    src = _save(_tricky_dataset(None), tmp_path / "in.dcm", ExplicitVRLittleEndian)
    plan = engine.compile_plan(profile)
    plain = dicom_raw.read_raw(src)
    skipped = dicom_raw.read_raw(src, engine.skip_for(plan))
    try:
        assert len(skipped.ds._dict) < len(plain.ds._dict)  # private attributes never built
        a = engine.deidentify_dataset(plain.ds, profile, pseudo, "abc", -10)
        b = engine.deidentify_events(skipped.ds, profile, pseudo, "abc", -10, skipped.events)
        assert a == b
    finally:
        plain.close()
        skipped.close()


def test_result_travels_with_changes_as_json(tmp_path, profile, pseudo):
    srcs = []
    for i in range(2):  # same layout, different instances: same audit entries
        ds = _tricky_dataset(None)
        ds.SOPInstanceUID = f"1.2.3.4.5.{i + 1}"
        srcs.append(_save(ds, tmp_path / f"in{i}.dcm", ExplicitVRLittleEndian))
    a, b = (deidentify_file(s, tmp_path / f"o{i}.dcm", profile, pseudo) for i, s in enumerate(srcs))
    assert a.changes == b.changes and a.changes
    assert a.changes_json() == json.dumps(a.changes)
    assert a.changes_json() is b.changes_json()  # made once per distinct list
    back = pickle.loads(pickle.dumps(a))
    assert "changes" not in back.__dict__  # decoded only when asked
    assert back.changes == a.changes and back.changes_json() == a.changes_json()
    assert (back.src, back.dst, back.status, back.identifiers) == (a.src, a.dst, a.status, a.identifiers)


def test_writer_is_atomic_with_exact_mode(tmp_path, profile, pseudo, monkeypatch):
    src = _save(_tricky_dataset(None), tmp_path / "in.dcm", ExplicitVRLittleEndian)
    old = os.umask(0o077)
    try:
        res = deidentify_file(src, tmp_path / "out" / "deep" / "a.dcm", profile, pseudo)
    finally:
        os.umask(old)
    assert res.status == "written"
    assert res.dst.stat().st_mode & 0o777 == 0o644
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.startswith(TMP_PREFIX)]

    def broken(fd, parts):
        raise OSError("disk full")

    monkeypatch.setattr(dicom_raw.os, "writev", broken)
    raw = dicom_raw.read_raw(src)
    try:
        with pytest.raises(OSError):
            dicom_raw.write_raw_file(raw, tmp_path / "out" / "b.dcm", fsync=False)
    finally:
        raw.close()
    names = [p.name for p in (tmp_path / "out").iterdir()]
    assert "b.dcm" not in names and not [n for n in names if n.startswith(TMP_PREFIX)]


def test_writer_skips_a_leftover_temp_name(tmp_path, profile, pseudo, monkeypatch):
    """A temp file an earlier process of the same pid left does not stop the write (the byte path
    once reported 'written' for a file it had not written when the name was taken)."""
    import itertools

    from bids_deid import atomic

    src = _save(_tricky_dataset(None), tmp_path / "in.dcm", ExplicitVRLittleEndian)
    out = tmp_path / "out"
    out.mkdir()
    leftover = out / f"{TMP_PREFIX}{os.getpid()}-0"
    leftover.write_bytes(b"old")
    monkeypatch.setattr(atomic, "_PART_COUNT", itertools.count())
    res = deidentify_file(src, out / "a.dcm", profile, pseudo)
    assert res.status == "written"
    assert pydicom.dcmread(out / "a.dcm").SOPInstanceUID
    assert leftover.read_bytes() == b"old"


def test_shared_method_attributes_are_not_changed_between_files(tmp_path, profile, pseudo):
    srcs = [_save(_tricky_dataset(None), tmp_path / f"in{i}.dcm", ExplicitVRLittleEndian) for i in range(2)]
    outs = [deidentify_file(s, tmp_path / f"o{i}.dcm", profile, pseudo).dst for i, s in enumerate(srcs)]
    a, b = (pydicom.dcmread(Path(o)) for o in outs)
    assert a.DeidentificationMethod == b.DeidentificationMethod
    assert len(a.DeidentificationMethodCodeSequence) == len(b.DeidentificationMethodCodeSequence) >= 1
    assert a.PatientIdentityRemoved == "YES" and a.LongitudinalTemporalInformationModified
