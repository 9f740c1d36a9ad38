"""The lean byte-level path of the DICOM engine: same bytes, audit and identifiers as the raw path.

The raw path is itself checked against the full pydicom path (test_dicom_fast.py), so equality
here ties the lean path to the reference behaviour. Files the lean path declines must raise
Fallback before writing anything.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from conftest import SHARED
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit
from test_scrub_dicom import _canary_dataset, _leaks, _nested

from bids_deid.dicom import header
from bids_deid.profiles import Profile, Rule, load_profile
from bids_deid.scrub import dicom as engine
from bids_deid.scrub import dicom_core, dicom_dict, dicom_lean, dicom_tree
from bids_deid.scrub.dicom_core import Fallback

DICOM_DIR = SHARED / "dicom"
needs_shared = pytest.mark.skipif(not DICOM_DIR.is_dir(), reason="../shared/data absent")


def _lean_and_raw(src: Path, tmp: Path, profile, pseudo, name: str = "x"):
    """(lean result, raw-path result); the lean call raises Fallback when it declines."""
    dst_lean, dst_raw = tmp / "lean" / f"{name}.dcm", tmp / "raw" / f"{name}.dcm"
    for d in (dst_lean, dst_raw):
        if d.exists():
            d.unlink()
    lean = dicom_lean.process(str(src), lambda *_: str(dst_lean), profile, pseudo, None, None, False, False)
    raw = engine.process_raw(Path(src), lambda *_: dst_raw, profile, pseudo, None, None, False, False)
    return lean, raw


def _assert_same(lean, raw):
    assert lean.status == raw.status, (lean.reason, raw.reason)
    assert lean.reason == raw.reason
    assert lean.changes == raw.changes
    assert lean.identifiers == raw.identifiers
    assert (lean.subject, lean.study_uid, lean.series_uid) == (raw.subject, raw.study_uid, raw.series_uid)
    if raw.status == "written":
        assert Path(lean.dst).read_bytes() == Path(raw.dst).read_bytes()


def _save(ds: Dataset, path: Path, ts=ExplicitVRLittleEndian) -> Path:
    ds.file_meta.TransferSyntaxUID = ts
    ds.save_as(path, enforce_file_format=True)
    return path


def _profile(name: str, options=(), rules=(), dates="shift") -> Profile:
    base = load_profile("basic")
    return Profile(**{**base.__dict__, "name": name, "dicom_options": tuple(options), "dicom_rules": tuple(rules),
                      "dates": dates})


# ------------------------------------------------------------------ synthetic files
@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_canaries_nested_sequences(tmp_path, profile, pseudo, ts):
    ds = _canary_dataset()
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    item.ReferencedSOPInstanceUID = "1.2.3.4.5.6.77"
    item.add_new(0x00091001, "LO", "CANARY-IN-UNDEFINED-SQ")
    ds.SourceImageSequence = Sequence([item])
    ds["SourceImageSequence"].is_undefined_length = True
    item.is_undefined_length_sequence_item = True
    src = _save(ds, tmp_path / "in.dcm", ts)
    lean, raw = _lean_and_raw(src, tmp_path, profile, pseudo)
    _assert_same(lean, raw)
    assert lean.status == "written"
    assert _leaks(Path(lean.dst)) == []
    out = pydicom.dcmread(lean.dst)
    assert out.SourceImageSequence[0].ReferencedSOPInstanceUID.startswith("2.25.")
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert out.PatientIdentityRemoved == "YES"


@pytest.mark.parametrize("options, dates", [
    ((), "remove"),
    (("clean_descriptors", "retain_device_identity", "retain_institution_identity"), "shift"),
    (("retain_uids", "retain_patient_characteristics", "retain_long_full_dates"), "keep"),
    (("clean_structured_content", "clean_graphics", "retain_long_modified_dates"), "shift"),
])
def test_options_and_date_policies(tmp_path, pseudo, options, dates):
    prof = _profile("opts", options, dates=dates)
    ds = _canary_dataset(3)
    ds.AcquisitionDateTime = "20200102101010.5"
    ds.ContentDate = "notadate"
    src = _save(ds, tmp_path / "in.dcm")
    lean, raw = _lean_and_raw(src, tmp_path, prof, pseudo)
    _assert_same(lean, raw)


def test_profile_rules(tmp_path, pseudo):
    rules = (Rule("SeriesDescription", "keep", None), Rule("StudyDescription", "replace", "anonymous study"),
             Rule("00181030", "remove", None), Rule("StudyID", "empty", None),
             Rule("AccessionNumber", "pseudonymize", None), Rule("FrameOfReferenceUID", "remap_uid", None))
    prof = _profile("rules", rules=rules)
    ds = _canary_dataset(4)
    ds.ProtocolName = "kept protocol"
    src = _save(ds, tmp_path / "in.dcm")
    lean, raw = _lean_and_raw(src, tmp_path, prof, pseudo)
    _assert_same(lean, raw)
    out = pydicom.dcmread(lean.dst)
    assert out.StudyDescription == "anonymous study"


def test_prior_method_and_latin1(tmp_path, profile, pseudo):
    ds = _canary_dataset(5)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Müller^Jürgen"
    ds.InstitutionName = "Klinik Ärzte"
    ds.DeidentificationMethod = ["earlier tool CANARY-PID", "second"]
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "113100", "DCM", "Basic Application"
    ds.DeidentificationMethodCodeSequence = Sequence([code])
    ds.PatientIdentityRemoved = "YES"
    src = _save(ds, tmp_path / "in.dcm")
    lean, raw = _lean_and_raw(src, tmp_path, profile, pseudo)
    _assert_same(lean, raw)
    out = pydicom.dcmread(lean.dst)
    assert out.DeidentificationMethod[0] == "earlier tool X"  # the earlier text is cleaned
    assert [i.CodeValue for i in out.DeidentificationMethodCodeSequence].count("113100") == 1
    assert ("PatientName", "Müller^Jürgen") in lean.identifiers


@pytest.mark.parametrize("options", [(), ("retain_institution_identity", "clean_descriptors")])
def test_utf8_character_set(tmp_path, pseudo, options):
    prof = _profile("utf8", options)
    ds = _canary_dataset(10)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Wéber^Zoë"
    ds.InstitutionName = "Hôpital CANARY"
    ds.StudyDescription = "CANARY étude"
    src = _save(ds, tmp_path / "in.dcm")
    try:
        lean, raw = _lean_and_raw(src, tmp_path, prof, pseudo)
    except Fallback as exc:  # a kept or cleaned non-ASCII text needs pydicom's writer
        assert options and "non-ASCII" in str(exc)
        return
    _assert_same(lean, raw)
    assert ("PatientName", "Wéber^Zoë") in lean.identifiers
    assert pydicom.dcmread(lean.dst).SpecificCharacterSet == "ISO_IR 192"


def test_invalid_utf8_is_declined(tmp_path, profile, pseudo):
    ds = _canary_dataset(11)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.add_new(0x00081030, "LO", "CANARY")  # StudyDescription, bytes replaced below
    path = _save(ds, tmp_path / "in.dcm")
    path.write_bytes(path.read_bytes().replace(b"CANARY\x20", b"CAN\xffRY ", 1))
    with pytest.raises(Fallback):
        dicom_lean.process(str(path), lambda *_: str(tmp_path / "o.dcm"), profile, pseudo, None, None, False, False)


def test_encapsulated_pixels_and_trailing_elements(tmp_path, profile, pseudo):
    ds = _canary_dataset(6)
    ds.PixelData = encapsulate([b"\xff\xd8frame-one\xff\xd9", b"\xff\xd8frame-two\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.NumberOfFrames = 2
    ds.add_new(0xFFFCFFFC, "OB", b"CANARY-PADDING")
    ds.add_new(0x7FE10010, "LO", "CANARY-AFTER-PIXELS")
    src = _save(ds, tmp_path / "in.dcm", JPEGBaseline8Bit)
    lean, raw = _lean_and_raw(src, tmp_path, profile, pseudo)
    _assert_same(lean, raw)
    assert b"frame-two" in Path(lean.dst).read_bytes()
    assert _leaks(Path(lean.dst)) == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(inner=_nested(), implicit=st.booleans())
def test_property_lean_equals_raw(tmp_path, profile, pseudo, inner, implicit):
    ds = _canary_dataset()
    for el in inner:
        ds[el.tag] = el
    src = _save(ds, tmp_path / "p.dcm", ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian)
    lean, raw = _lean_and_raw(src, tmp_path, profile, pseudo)
    _assert_same(lean, raw)
    assert _leaks(Path(lean.dst)) == []


@pytest.mark.parametrize("change", ["big endian", "charset", "preamble"])
def test_declined_files_raise_before_writing(tmp_path, profile, pseudo, change):
    ds = _canary_dataset(7)
    path = tmp_path / "in.dcm"
    if change == "big endian":
        _save(ds, path, ExplicitVRBigEndian)
    elif change == "charset":
        ds.SpecificCharacterSet = "ISO 2022 IR 87"
        _save(ds, path)
    else:
        _save(ds, path)
        path.write_bytes(path.read_bytes()[132:])
    out = tmp_path / "out" / "x.dcm"
    with pytest.raises(Fallback):
        dicom_lean.process(str(path), lambda *_: str(out), profile, pseudo, None, None, False, False)
    assert not out.parent.exists() or not any(out.parent.iterdir())
    # the tree driver still de-identifies it through the pydicom paths
    r = engine.deidentify_file(path, out, profile, pseudo)
    assert r.status == "written" and _leaks(out) == []


def test_exists_and_burned_in_results_match(tmp_path, profile, pseudo):
    ds = _canary_dataset(8)
    ds.BurnedInAnnotation = "YES"
    src = _save(ds, tmp_path / "b.dcm")
    lean, raw = _lean_and_raw(src, tmp_path, profile, pseudo)
    _assert_same(lean, raw)
    assert lean.status == "skipped"
    done = _save(_canary_dataset(9), tmp_path / "d.dcm")
    (tmp_path / "lean").mkdir(exist_ok=True)
    (tmp_path / "raw").mkdir(exist_ok=True)
    (tmp_path / "lean" / "y.dcm").write_bytes(b"x")
    (tmp_path / "raw" / "y.dcm").write_bytes(b"x")
    lean = dicom_lean.process(str(done), lambda *_: str(tmp_path / "lean" / "y.dcm"), profile, pseudo, None, None,
                              False, False)
    assert lean.status == "exists"


# ------------------------------------------------------------------ real files
@needs_shared
@pytest.mark.parametrize("profile_name", ["basic", "dicom-retain-longitudinal", "dicom-research"])
def test_lean_equals_raw_on_shared_files(tmp_path, pseudo, profile_name):
    prof = load_profile(profile_name)
    files = [p for p in dicom_tree.iter_files(DICOM_DIR) if engine.is_dicom(p)]
    big = {"mr_ge_epi_nih", "mr_ge_irspgr_refaced_deident"}
    picked = [p for p in files if p.parent.name not in big] + [p for p in files if p.parent.name in big][::20]
    handled = 0
    for i, src in enumerate(picked):
        try:
            lean, raw = _lean_and_raw(src, tmp_path, prof, pseudo, str(i))
        except Fallback:
            continue
        handled += 1
        _assert_same(lean, raw)
    if profile_name != "dicom-research":  # retain_safe_private files take the raw path
        assert handled >= len(picked) - 3  # only files without a preamble are declined


# ------------------------------------------------------------------ no pydicom at start-up
def test_dictionary_agrees_with_pydicom():
    from pydicom.datadict import DicomDictionary, dictionary_VR, keyword_for_tag, tag_for_keyword

    tags = list(DicomDictionary)[::7] + [0x60003000, 0x60220010, 0x50000010, 0x50301000, 0x00091010, 0x00190010,
                                         0x00080000, 0x12345678, 0x7FE00010, 0xFFFEE000]
    for tag in tags:
        try:
            want = dictionary_VR(tag)
        except KeyError:
            want = None
        assert dicom_dict.dictionary_vr(tag) == want, hex(tag)
        assert dicom_dict.keyword_for_tag(tag) == keyword_for_tag(tag), hex(tag)
    for kw in ("PatientName", "SOPInstanceUID", "OverlayData", "NoSuchKeyword"):
        assert dicom_dict.tag_for_keyword(kw) == tag_for_keyword(kw)
    assert dicom_core.IMPLEMENTATION_UID == pydicom.uid.PYDICOM_IMPLEMENTATION_UID


def test_tree_driver_does_not_import_pydicom(tmp_path, profile, pseudo):
    """A run over usual files needs neither pydicom nor NumPy (start-up time)."""
    src = _save(_canary_dataset(), tmp_path / "in" / "a.dcm") if (tmp_path / "in").mkdir() is None else None
    code = (
        "import sys\n"
        "from bids_deid.scrub.dicom_tree import iter_tree\n"
        "from bids_deid.profiles import load_profile\n"
        "from bids_deid.pseudonym import Pseudonymizer\n"
        f"rs = list(iter_tree({str(src.parent)!r}, {str(tmp_path / 'out')!r}, load_profile('basic'),"
        " Pseudonymizer(b'k' * 32), progress=False))\n"
        "assert [r.status for r in rs] == ['written'], [r.reason for r in rs]\n"
        "print(sorted(m for m in ('pydicom', 'numpy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------ reading a few values (App)
def _pydicom_values(path: Path) -> dict[int, list[str]]:
    ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    out = {}
    for tag in header.SOURCE_TAGS:
        if tag in ds:
            v = ds[tag].value
            vals = list(v) if isinstance(v, pydicom.multival.MultiValue) else [v]
            out[tag] = [str(x) for x in vals if x is not None and str(x) != ""]
    return out


def _peeked(path: Path) -> dict[int, list[str]] | None:
    got = header.peek(path, header.SOURCE_TAGS)
    return None if got is None else {t: [v for v in vals if v] for t, vals in got.items()}


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_peek_reads_what_pydicom_reads(tmp_path, ts):
    ds = _canary_dataset(12)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.ScanningSequence = ["GR", "IR"]
    ds.SequenceName = "*tfl3d1"
    ds.BurnedInAnnotation = "NO"
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3.4.5"
    ds.ReferencedImageSequence = Sequence([item])
    ds["ReferencedImageSequence"].is_undefined_length = True
    path = _save(ds, tmp_path / "a.dcm", ts)
    assert _peeked(path) == _pydicom_values(path)
    assert _peeked(path)[0x00080008] == ["ORIGINAL", "PRIMARY", "M", "ND"]


@needs_shared
def test_peek_and_face_check_agree_with_pydicom_on_shared_files(monkeypatch):
    from bids_deid import handlers

    files = [p for p in dicom_tree.iter_files(DICOM_DIR) if engine.is_dicom(p)]
    handled = 0
    for path in files:
        got = _peeked(path)
        if got is None:
            continue
        handled += 1
        assert got == _pydicom_values(path), path
    assert handled >= len(files) - 6  # only files without a preamble are left to pydicom
    # the App's face check decides the same through either reader
    lean_answers = [handlers.face_in_pixels(p) for p in files]
    monkeypatch.setattr(header, "source_header", lambda path: None)
    assert [handlers.face_in_pixels(p) for p in files] == lean_answers
    assert any(lean_answers) and not all(lean_answers)  # the check can go both ways on this data
