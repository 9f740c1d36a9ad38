"""Tests of the PS3.15 DICOM engine: table, canaries, real files, UIDs, dcm2niix, dciodvfy."""

from __future__ import annotations

import csv
import hashlib
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pydicom
import pytest
from conftest import DICOM_KEY, SHARED
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from bids_deid.profiles import load_profile
from bids_deid.pseudonym import Pseudonymizer
from bids_deid.scrub.dicom import (
    deidentify_dataset,
    deidentify_file,
    deidentify_tree,
    is_dicom,
)
from bids_deid.scrub.dicom_table import compile_plan, load_table

DICOM_DIR = SHARED / "dicom"
needs_shared = pytest.mark.skipif(not DICOM_DIR.is_dir(), reason="../shared/data absent")
KEY = DICOM_KEY
CANARY = "CANARY"


# ------------------------------------------------------------------ table
def _rows():
    text = (resources.files("bids_deid") / "data" / "ps3_15_table_e1_1.tsv").read_text(encoding="utf-8")
    return list(csv.DictReader([ln for ln in text.splitlines() if not ln.startswith("#")], delimiter="\t"))


def test_table_size_and_columns():
    rows = _rows()
    assert len(rows) >= 600
    assert len(load_table()) == len(rows)
    for col in ("retain_safe_private", "retain_uids", "retain_device_identity", "retain_institution_identity",
                "retain_patient_characteristics", "retain_long_full_dates", "retain_long_modified_dates",
                "clean_descriptors", "clean_structured_content", "clean_graphics"):
        assert col in rows[0]
    codes = {r["basic"] for r in rows}
    assert codes <= {"D", "Z", "X", "K", "C", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"}


# (tag, basic code, {option: code}) from PS3.15 Table E.1-1 (2026c; more rows: tests/test_table_e1_1_2026c.py).
SAMPLE = [
    ("(0008,0050)", "Z", {}),  # Accession Number
    ("(0010,0010)", "Z", {}),  # Patient's Name
    ("(0010,0020)", "Z/D", {}),  # Patient ID
    ("(0010,0030)", "Z", {}),  # Patient's Birth Date
    ("(0010,1010)", "X", {"retain_patient_characteristics": "K"}),  # Patient's Age
    ("(0010,0040)", "Z", {"retain_patient_characteristics": "K"}),  # Patient's Sex
    ("(0008,0020)", "Z", {"retain_long_full_dates": "K", "retain_long_modified_dates": "C"}),  # Study Date
    ("(0008,002A)", "X/Z/D", {"retain_long_full_dates": "K", "retain_long_modified_dates": "C"}),
    ("(0008,0018)", "U", {"retain_uids": "K"}),  # SOP Instance UID
    ("(0020,000D)", "U", {"retain_uids": "K"}),  # Study Instance UID
    ("(0008,0080)", "X/Z/D", {"retain_institution_identity": "K"}),  # Institution Name
    ("(0008,1010)", "X/Z/D", {"retain_device_identity": "K"}),  # Station Name
    ("(0018,1000)", "X/Z/D", {"retain_device_identity": "K"}),  # Device Serial Number
    ("(0008,103E)", "X", {"clean_descriptors": "C"}),  # Series Description
    ("(0018,1030)", "X/D", {"clean_descriptors": "C"}),  # Protocol Name
    ("(0040,A730)", "D", {"clean_structured_content": "C"}),  # Content Sequence
    ("(0008,1140)", "X/Z/U*", {"retain_uids": "K"}),  # Referenced Image Sequence
    ("(50XX,XXXX)", "X", {"clean_graphics": "C"}),  # Curve Data
    ("(60XX,3000)", "X", {"clean_graphics": "C"}),  # Overlay Data
    ("(GGGG,EEEE)", "X", {"retain_safe_private": "C"}),  # private attributes
    ("(0008,1120)", "X", {"retain_uids": "K"}),  # Referenced Patient Sequence (K in 2026c; X in an older edition)
    ("(0008,0012)", "X/D", {"retain_long_full_dates": "K", "retain_long_modified_dates": "C"}),  # Instance Creation Date
    ("(0008,0055)", "X", {"retain_device_identity": "C"}),  # Station AE Title
]


@pytest.mark.parametrize("tag,basic,opts", SAMPLE)
def test_table_rows_match_standard(tag, basic, opts):
    row = {r["tag"]: r for r in _rows()}[tag]
    assert row["basic"] == basic
    for opt, code in opts.items():
        assert row[opt] == code


# ------------------------------------------------------------------ synthetic canaries
def _canary_dataset(n: int = 0) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.3.4.{n}.999"
    ds.file_meta.SourceApplicationEntityTitle = "CANARY-AET"
    ds.file_meta.ImplementationVersionName = "CANARY-IVN"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.SOPInstanceUID = f"1.2.3.4.{n}.999"
    ds.StudyInstanceUID = "1.2.3.4.77"
    ds.SeriesInstanceUID = "1.2.3.4.78"
    ds.FrameOfReferenceUID = "1.2.3.4.79"
    ds.Modality = "MR"
    ds.PatientName = "CANARY^NAME"
    ds.PatientID = "CANARY-PID"
    ds.PatientBirthDate = "19710203"
    ds.OtherPatientIDs = "CANARY-OPID"
    ds.PatientAddress = "CANARY street 1"
    ds.AccessionNumber = "CANARY-ACC"
    ds.InstitutionName = "CANARY hospital"
    ds.InstitutionAddress = "CANARY road"
    ds.StationName = "CANARY-STN"
    ds.DeviceSerialNumber = "CANARY-SN"
    ds.ReferringPhysicianName = "CANARY^DOC"
    ds.OperatorsName = "CANARY^OP"
    ds.StudyDescription = "CANARY study"
    ds.SeriesDescription = "CANARY series"
    ds.ProtocolName = "CANARY protocol"
    ds.ImageComments = "CANARY comments"
    ds.StudyDate = "20200102"
    ds.StudyTime = "101010"
    ds.StudyID = "CANARY-SID"
    ds.AdditionalPatientHistory = "CANARY history"
    ds.add_new(0x00211010, "LO", "CANARY-UNKNOWN-PUBLIC")  # odd -> private without creator
    ds.add_new(0x00090010, "LO", "CANARY-CREATOR")
    ds.add_new(0x00091001, "LO", "CANARY-PRIVATE")
    ds.add_new(0x00091002, "OB", b"CANARY-BYTES")
    ds.add_new(0x60003000, "OB", b"CANARY-OVERLAY")
    ds.add_new(0x60000022, "LO", "CANARY overlay description")
    ds.add_new(0x50000000 | 0x3000, "OB", b"CANARY-CURVE")
    ds.add_new(0x00400555, "SQ", Sequence())  # AcquisitionContextSequence
    inner = Dataset()
    inner.PersonName = "CANARY^NESTED"
    inner.TextValue = "CANARY nested text"
    deeper = Dataset()
    deeper.add_new(0x00291010, "LO", "CANARY-DEEP-PRIVATE")
    deeper.ReferencedSOPInstanceUID = "1.2.3.4.0.999"
    deeper.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    inner.ReferencedImageSequence = Sequence([deeper])
    ds.ContentSequence = Sequence([inner])
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ref.ReferencedSOPInstanceUID = "1.2.3.4.1.999"
    ref.add_new(0x00091001, "LO", "CANARY-REF-PRIVATE")
    ds.ReferencedImageSequence = Sequence([ref])
    ds.Rows, ds.Columns = 2, 2
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = b"\x01\x00\x02\x00\x03\x00\x04\x00"
    return ds


def _write(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def _leaks(path: Path, canary: str = CANARY) -> list[str]:
    raw = path.read_bytes()
    found = []
    for enc in ("ascii", "utf-16-le", "utf-16-be"):
        if canary.encode(enc) in raw or canary.lower().encode(enc) in raw:
            found.append(f"raw {enc}")
    ds = pydicom.dcmread(path)

    def scan(d):
        for el in d.iterall():
            if el.VR != "SQ" and canary.lower() in str(el.value).lower():
                found.append(f"{el.tag} {el.keyword}")

    scan(ds)
    scan(ds.file_meta)
    return found


def test_no_canary_survives(tmp_path, profile, pseudo):
    src = _write(_canary_dataset(), tmp_path / "in.dcm")
    before = src.read_bytes()
    res = deidentify_file(src, tmp_path / "out" / "x.dcm", profile, pseudo)
    assert res.status == "written", res.reason
    assert src.read_bytes() == before  # input untouched
    assert _leaks(res.dst) == []
    out = pydicom.dcmread(res.dst)
    label = pseudo.subject("CANARY-PID")
    assert res.subject == label
    assert out.PatientName == f"sub-{label}" and out.PatientID == f"sub-{label}"
    assert out.PatientIdentityRemoved == "YES"
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    codes = [i.CodeValue for i in out.DeidentificationMethodCodeSequence]
    assert "113100" in codes and "113107" in codes
    assert out.StudyDate == pydicom.valuerep.DA("20200102") or True
    from bids_deid.pseudonym import shift_da

    assert out.StudyDate == shift_da("20200102", pseudo.date_offset_days(label))
    assert out.PatientBirthDate == ""
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert out.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
    assert out.PixelData == b"\x01\x00\x02\x00\x03\x00\x04\x00"
    kinds = {k for k, _ in res.identifiers}
    assert {"PatientName", "PatientID", "uid", "date"} <= kinds
    assert all(CANARY not in str(c) for c in res.changes)  # no original values in the audit
    assert ("PatientID", "CANARY-PID") in res.identifiers


def test_uid_consistency_and_references(tmp_path, profile, pseudo):
    a = _write(_canary_dataset(0), tmp_path / "a.dcm")
    b = _write(_canary_dataset(1), tmp_path / "b.dcm")
    ra = deidentify_file(a, tmp_path / "o" / "a.dcm", profile, pseudo)
    rb = deidentify_file(b, tmp_path / "o" / "b.dcm", profile, pseudo)
    da, db = pydicom.dcmread(ra.dst), pydicom.dcmread(rb.dst)
    assert da.StudyInstanceUID == db.StudyInstanceUID == ra.study_uid
    assert da.SeriesInstanceUID == db.SeriesInstanceUID
    assert da.SOPInstanceUID != db.SOPInstanceUID
    assert da.StudyInstanceUID.startswith("2.25.")
    # a references b's original instance: the remapped reference points at b's new UID
    assert da.ReferencedImageSequence[0].ReferencedSOPInstanceUID == db.SOPInstanceUID
    # second run, new Pseudonymizer with the same key: same UIDs
    rc = deidentify_file(a, tmp_path / "o2" / "a.dcm", profile, Pseudonymizer(KEY))
    assert pydicom.dcmread(rc.dst).SOPInstanceUID == da.SOPInstanceUID
    # another key: other UIDs
    rd = deidentify_file(a, tmp_path / "o3" / "a.dcm", profile, Pseudonymizer(b"another-key-0123456789abcdef"))
    assert pydicom.dcmread(rd.dst).SOPInstanceUID != da.SOPInstanceUID


def test_exists_and_error(tmp_path, profile, pseudo):
    src = _write(_canary_dataset(), tmp_path / "in.dcm")
    dst = tmp_path / "out.dcm"
    assert deidentify_file(src, dst, profile, pseudo).status == "written"
    assert deidentify_file(src, dst, profile, pseudo).status == "exists"
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 40)
    r = deidentify_file(bad, tmp_path / "bad-out.dcm", profile, pseudo)
    assert r.status == "withheld" and "input defect" in r.reason and not (tmp_path / "bad-out.dcm").exists()
    txt = tmp_path / "note.txt"
    txt.write_text("CANARY not dicom")
    assert not is_dicom(txt) and is_dicom(src)


def test_options_change_actions(tmp_path, pseudo):
    prof_file = tmp_path / "p.yaml"
    prof_file.write_text(
        "extends: basic\ndicom:\n  options: [retain_device_identity, retain_long_full_dates, retain_patient_characteristics]\n"
        "  rules:\n    - {tag: StudyDescription, action: replace, value: 'research'}\n"
    )
    prof = load_profile(str(prof_file))
    ds = _canary_dataset()
    ds.PatientAge = "042Y"
    changes, _ = deidentify_dataset(ds, prof, pseudo, "abc", -400)
    assert ds.StationName == "CANARY-STN"  # retained device identity
    assert ds.StudyDate == "20200102"  # full dates
    assert ds.PatientAge == "042Y"
    assert ds.StudyDescription == "research"
    assert ds.LongitudinalTemporalInformationModified == "UNMODIFIED"
    assert "InstitutionName" not in ds or ds.InstitutionName != "CANARY hospital"
    codes = {i.CodeValue for i in ds.DeidentificationMethodCodeSequence}
    assert {"113100", "113106", "113108", "113109"} <= codes
    assert any(c["keyword"] == "StudyDescription" and c["action"] == "replace" for c in changes)


def test_dates_remove_and_clean_descriptors(tmp_path, pseudo):
    prof_file = tmp_path / "p.yaml"
    prof_file.write_text("extends: basic\ndates: remove\ndicom:\n  options: [clean_descriptors]\n")
    prof = load_profile(str(prof_file))
    ds = _canary_dataset()
    ds.SeriesDescription = "T1w MPRAGE CANARY^NAME 20200102"
    deidentify_dataset(ds, prof, pseudo, "abc", -400)
    assert not ds.StudyDate  # basic Z
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"
    assert ds.SeriesDescription.startswith("T1w MPRAGE")
    assert "CANARY" not in ds.SeriesDescription and "20200102" not in ds.SeriesDescription


def test_burned_in_skipped(tmp_path, profile, pseudo):
    ds = _canary_dataset()
    ds.Modality = "US"
    src = _write(ds, tmp_path / "us.dcm")
    r = deidentify_file(src, tmp_path / "o.dcm", profile, pseudo)
    assert r.status == "skipped" and "burned-in" in r.reason and not (tmp_path / "o.dcm").exists()
    ds.BurnedInAnnotation = "NO"
    src = _write(ds, tmp_path / "us2.dcm")
    assert deidentify_file(src, tmp_path / "o2.dcm", profile, pseudo).status == "written"


# ------------------------------------------------------------------ property-based
_VRS = {"LO": "CANARY-{}", "SH": "CANARY{}", "PN": "CANARY^{}", "LT": "CANARY text {}", "UT": "CANARY {}",
        "DA": "20200101", "UI": "1.2.3.{}"}


@st.composite
def _nested(draw, depth=0):
    ds = Dataset()
    n = draw(st.integers(1, 4))
    for i in range(n):
        kind = draw(st.sampled_from(["private", "public", "seq"] if depth < 3 else ["private", "public"]))
        vr = draw(st.sampled_from(sorted(_VRS)))
        val = _VRS[vr].format(i)
        if kind == "private":
            group = draw(st.sampled_from([0x0009, 0x0019, 0x0029, 0x0043]))
            ds.add_new((group << 16) | 0x0010, "LO", "CANARY-CREATOR")
            ds.add_new((group << 16) | 0x1000 | i, vr, val)
        elif kind == "public":
            tag = draw(st.sampled_from([0x00081030, 0x0008103E, 0x00100010, 0x00101000, 0x00204000,
                                        0x00321060, 0x00400254, 0x0040A123, 0x00080080, 0x00181030]))
            vrs = pydicom.datadict.dictionary_VR(tag)
            ds.add_new(tag, vrs, _VRS.get(vrs, "CANARY-{}").format(i))
        else:
            tag = draw(st.sampled_from([0x0040A730, 0x00081140, 0x00400555, 0x00089215, 0x52009229]))
            ds.add_new(tag, "SQ", Sequence([draw(_nested(depth + 1))]))
    return ds


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(inner=_nested())
def test_property_no_canary(tmp_path, profile, inner):
    ds = _canary_dataset()
    for el in inner:
        ds[el.tag] = el
    path = tmp_path / "p.dcm"
    _write(ds, path)
    out = tmp_path / "p-out.dcm"
    if out.exists():
        out.unlink()
    r = deidentify_file(path, out, profile, Pseudonymizer(KEY))
    assert r.status == "written", r.reason
    assert _leaks(out) == []


# ------------------------------------------------------------------ real files
PHI = ["Test^Regression", "NIH FMRIF", "fmrif3tb", "000301496MR3T6MR", "AWP45160", "10 Center Drive",
       "Perfusion^MCA", "St. Nowhere", "Thomas^Albert", "Jones^Molly", "CONSOLE01", "JFK IMAGING",
       "CompressedSamples", "AKH - WIEN", "Waehringer", "meduser", "MRC25641", "dft patient name",
       "MRC35119", "1177879318455840", "3282424594434339", "Sssssss"]


@needs_shared
def test_real_tree(tmp_path, profile, pseudo):
    res = deidentify_tree(DICOM_DIR, tmp_path / "out", profile, pseudo, n_cpus=2, progress=False)
    by = {}
    for r in res:
        by.setdefault(r.status, []).append(r)
    assert not by.get("error"), [(r.src.name, r.reason) for r in by.get("error", [])]
    assert {r.src.name for r in by["skipped"] if "burned-in" in r.reason} == {"OBXXXX1A.dcm", "US1_UNCR.dcm"}
    assert all(r.src.suffix in (".txt", ".md") for r in by["skipped"] if "not a DICOM" in r.reason)
    written = by["written"]
    assert len(written) >= 350
    for r in written:
        assert "sub-" in r.dst.parts[-3]
        raw = r.dst.read_bytes()
        for phi in PHI:
            assert phi.encode() not in raw, (r.src.name, phi)
        ds = pydicom.dcmread(r.dst)
        assert ds.PatientIdentityRemoved == "YES"
        assert not any(el.tag.is_private for el in ds.iterall())
        assert not any(0x6000 <= el.tag.group <= 0x601E for el in ds.iterall())
    # original names never appear in output paths
    assert not any("axial_epi" in str(p) for p in (tmp_path / "out").rglob("*"))
    # rerun: nothing rewritten
    again = deidentify_tree(DICOM_DIR, tmp_path / "out", profile, pseudo, n_cpus=1, progress=False)
    assert {r.status for r in again if r.status != "skipped"} == {"exists"}


def _nifti_digest(folder: Path) -> list[tuple]:
    import nibabel as nib
    import numpy as np

    out = []
    for f in sorted(folder.glob("*.nii")):
        img = nib.load(f)
        data = np.asanyarray(img.dataobj)
        out.append((data.shape, hashlib.sha256(data.tobytes()).hexdigest(), np.round(img.affine, 4).tolist()))
    return out


@needs_shared
def test_dcm2niix_same_voxels_and_geometry(tmp_path, profile, pseudo):
    from bids_deid.convert.batch import dcm2niix_bin

    exe = dcm2niix_bin()  # a core dependency: its absence is a failure, not a skip
    series = DICOM_DIR / "mr_ge_irspgr_refaced_deident"
    out = tmp_path / "deid"
    res = deidentify_tree(series, out, profile, pseudo, n_cpus=2, progress=False)
    assert all(r.status == "written" for r in res)
    digests = []
    for i, folder in enumerate([series, out]):
        nd = tmp_path / f"nii{i}"
        nd.mkdir()
        subprocess.run([exe, "-z", "n", "-b", "n", "-f", "img", "-o", str(nd), str(folder)],
                       check=True, capture_output=True)
        digests.append(_nifti_digest(nd))
    assert digests[0] and digests[0] == digests[1]


@needs_shared
@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) absent")
@pytest.mark.parametrize("rel", ["ct_enhanced_multiframe/eCT_Supplemental.dcm", "mr_small_pydicom/MR_small.dcm",
                                 "mr_siemens_epi_nih/epi_pe_ap-00001.dcm"])
def test_dciodvfy_no_new_errors(tmp_path, profile, pseudo, rel):
    src = DICOM_DIR / rel
    r = deidentify_file(src, tmp_path / "o.dcm", profile, pseudo)
    assert r.status == "written"

    def errors(p):
        proc = subprocess.run(["dciodvfy", str(p)], capture_output=True, text=True)
        lines = (proc.stdout + proc.stderr).splitlines()
        return {ln.split(" - ", 1)[-1].strip() for ln in lines if ln.startswith("Error")}

    new = errors(r.dst) - errors(src)
    assert not new, sorted(new)


def test_plan_cached_and_private_not_kept(profile):
    assert compile_plan(profile) is compile_plan(profile)
    ds = Dataset()
    ds.add_new(0x00091001, "LO", "x")
    ds.SOPInstanceUID = generate_uid()
    deidentify_dataset(ds, profile, Pseudonymizer(KEY), "abc", -10)
    assert 0x00091001 not in ds
