"""Retain Safe Private Option: the packaged list (PS3.15 Table E.3.10-1) and how the engine uses it."""

from __future__ import annotations

import dataclasses

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from test_dicom_fast import DICOM_DIR, _assert_same, _both, _save, needs_shared
from test_scrub_dicom import _canary_dataset

from bids_deid.scrub import dicom as engine
from bids_deid.scrub import dicom_safe_private as sp
from bids_deid.scrub.dicom import deidentify_dataset, iter_files

SIEMENS_MR = "SIEMENS MR HEADER"


@pytest.fixture(scope="module")
def safe_profile(profile):
    return dataclasses.replace(profile, name="basic+safe", dicom_options=("retain_safe_private",))


@pytest.fixture(scope="module")
def safe_uid_profile(profile):
    return dataclasses.replace(profile, name="basic+safe+uids", dicom_options=("retain_safe_private", "retain_uids"))


# ------------------------------------------------------------------ the list
def test_list_size_and_sample_rows():
    rows = sp.load_table()
    assert len(rows) == 130
    assert len({(r.creator, r.group, r.element) for r in rows}) == 130  # no duplicate row
    by_key = {(r.creator, r.group, r.element): r for r in rows}
    # Rows of PS3.15 Table E.3.10-1: (creator, group, offset) -> (VR, meaning)
    sample = {
        ("SIEMENS MR HEADER", 0x0019, 0x0C): ("IS", "B Value"),
        ("SIEMENS MR HEADER", 0x0019, 0x0E): ("FD", "Diffusion Gradient Direction"),
        ("SIEMENS MR HEADER", 0x0019, 0x27): ("FD", "B Matrix"),
        ("GEMS_ACQU_01", 0x0019, 0x9E): ("LO", "Internal Pulse Sequence Name"),
        ("GEMS_PARM_01", 0x0043, 0x39): ("IS", "1st value is B Value"),
        ("Philips Imaging DD 001", 0x2001, 0x03): ("FL", "Diffusion B-Factor"),
        ("Philips MR Imaging DD 001", 0x2005, 0x0E): ("FL", "Scale Slope"),
        ("Philips PET Private Group", 0x7053, 0x00): ("DS", "SUV Factor - Multiplying stored pixel values by Rescale "
                                                           "Slope then this factor results in SUVbw in g/l"),
        ("ELSCINT1", 0x01F1, 0x26): ("DS", "Pitch"),
        ("GEMS_SERS_01", 0x0025, 0x07): ("SL", "Images in Series"),
        ("NQRight", 0x0299, 0x16): ("FL", "Right Other"),
    }
    for key, (vr, name) in sample.items():
        assert key in by_key, key
        assert by_key[key].vr == vr
        assert by_key[key].name.startswith(name.split(" - ")[0])
    counts = {}
    for r in rows:
        counts[r.creator] = counts.get(r.creator, 0) + 1
    assert counts[SIEMENS_MR] == 4 and counts["GEMS_ACQU_01"] == 4 and counts["NQLeft"] == 22
    assert all(r.group % 2 == 1 and 0 <= r.element <= 0xFF for r in rows)
    assert ("SIEMENS MR HEADER", 0x0019, 0x0B) not in by_key


def test_vr_rule():
    row = sp.index()[(SIEMENS_MR, 0x0019)][0x0C]  # IS
    assert sp.vr_allowed(row, "IS") and sp.vr_allowed(row, None) and sp.vr_allowed(row, "UN")
    assert not sp.vr_allowed(row, "LO") and not sp.vr_allowed(row, "PN") and not sp.vr_allowed(row, "UT")
    text_row = sp.index()[("GEMS_ACQU_01", 0x0019)][0x9E]  # LO, listed as such
    assert sp.vr_allowed(text_row, "LO") and not sp.vr_allowed(text_row, "UT")
    blank = sp.index()[("SIEMENS Ultrasound SC2000", 0x0119)][0x11]  # no VR in the table
    assert blank.vr == "" and sp.vr_allowed(blank, "FD") and not sp.vr_allowed(blank, "SH")
    assert not sp.vr_allowed(blank, None)
    uid_row = sp.index()[("NQHeader", 0x0099)][0x02]
    assert sp.vr_allowed(uid_row, "UI") and not sp.vr_allowed(uid_row, "UN")


# ------------------------------------------------------------------ the engine
def _with_blocks(ds: Dataset) -> Dataset:
    """Add a Siemens MR block (0019,10xx) with a safe and an unsafe element, a second block
    in the same group under an unlisted creator, and a canary block in another group."""
    ds.add_new(0x00190010, "LO", SIEMENS_MR)
    ds.add_new(0x0019100C, "IS", "1000")  # B Value: listed
    ds.add_new(0x0019100B, "DS", "12345")  # same block, not listed
    ds.add_new(0x00191008, "LO", "CANARY-SAME-BLOCK")  # same block, not listed (text)
    ds.add_new(0x00190011, "LO", "CANARY-OTHER-CREATOR")
    ds.add_new(0x0019110C, "IS", "777")  # same offset as B Value, but an unlisted creator
    ds.add_new(0x00291010, "OB", b"CANARY-CSA")  # (0029,xx) block has no creator at all
    return ds


def _private_tags(ds: Dataset) -> set[int]:
    return {int(el.tag) for el in ds.iterall() if el.tag.is_private}


def test_only_listed_element_and_its_creator_kept(safe_profile, pseudo):
    ds = _with_blocks(_canary_dataset())
    changes, _ = deidentify_dataset(ds, safe_profile, pseudo, "abc", -10)
    assert _private_tags(ds) == {0x00190010, 0x0019100C}
    assert ds[0x00190010].value == SIEMENS_MR and ds[0x0019100C].value == 1000
    assert "CANARY" not in str(ds)
    kept = {c["tag"] for c in changes if c["action"] == "keep"}
    assert kept == {"(0019,0010)", "(0019,100C)"}


def test_without_option_nothing_private_survives(profile, pseudo):
    ds = _with_blocks(_canary_dataset())
    deidentify_dataset(ds, profile, pseudo, "abc", -10)
    assert _private_tags(ds) == set()


def test_block_moved_and_mismatched_vr(safe_profile, pseudo):
    ds = _canary_dataset()
    ds.add_new(0x00190012, "LO", SIEMENS_MR + " ")  # block 0x12, padded creator
    ds.add_new(0x0019120C, "IS", "500")
    ds.add_new(0x0019120D, "LT", "CANARY-TEXT-IN-CS-SLOT")  # listed CS, read as a text VR
    deidentify_dataset(ds, safe_profile, pseudo, "abc", -10)
    assert _private_tags(ds) == {0x00190012, 0x0019120C}
    assert "CANARY" not in str(ds)


def test_creator_removed_when_nothing_of_its_block_kept(safe_profile, pseudo):
    ds = _canary_dataset()
    ds.add_new(0x00190010, "LO", SIEMENS_MR)
    ds.add_new(0x001910FF, "FD", 1.0)
    deidentify_dataset(ds, safe_profile, pseudo, "abc", -10)
    assert _private_tags(ds) == set()


def test_nested_items_and_uids(safe_profile, safe_uid_profile, pseudo):
    def build():
        ds = _canary_dataset()
        item = Dataset()
        item.add_new(0x00990010, "LO", "NQHeader")
        item.add_new(0x00991002, "UI", "1.2.3.4.78")  # Analyzed Series UID: listed, remapped
        item.add_new(0x00991005, "LT", "fine")  # Return Message: listed LT
        item.add_new(0x00991003, "LO", "CANARY-NQ")
        ds.add_new(0x52009229, "SQ", Sequence([item]))  # SharedFunctionalGroupsSequence (walked)
        return ds

    ds = build()
    deidentify_dataset(ds, safe_profile, pseudo, "abc", -10)
    item = ds.SharedFunctionalGroupsSequence[0]
    assert _private_tags(item) == {0x00990010, 0x00991002, 0x00991005}
    assert item[0x00991002].value == ds.SeriesInstanceUID != "1.2.3.4.78"  # remapped like the public one
    ds = build()
    deidentify_dataset(ds, safe_uid_profile, pseudo, "abc", -10)
    assert ds.SharedFunctionalGroupsSequence[0][0x00991002].value == "1.2.3.4.78"


@pytest.mark.parametrize("implicit", [False, True])
def test_raw_path_equals_full_path(tmp_path, safe_profile, pseudo, implicit):
    ds = _with_blocks(_canary_dataset())
    ds.add_new(0x20010010, "LO", "Philips Imaging DD 001")
    ds.add_new(0x20011003, "FL", 1000.0)
    ds.add_new(0x20011004, "CS", "I")
    ds.add_new(0x20011005, "SH", "CANARY-PHILIPS")
    src = _save(ds, tmp_path / "src.dcm", ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian)
    full, raw = _both(src, tmp_path, safe_profile, pseudo)
    _assert_same(full, raw)
    assert full.status == "written"
    out = pydicom.dcmread(raw.dst)
    assert _private_tags(out) == {0x00190010, 0x0019100C, 0x20010010, 0x20011003, 0x20011004}
    assert b"CANARY" not in raw.dst.read_bytes()


@needs_shared
def test_raw_equals_full_on_shared_files_with_option(tmp_path, safe_profile, pseudo):
    files = [p for p in iter_files(DICOM_DIR) if engine.is_dicom(p)]
    picked = [p for p in files if p.parent.name not in {"mr_ge_epi_nih", "mr_ge_irspgr_refaced_deident"}]
    picked += [p for p in files if p.parent.name in {"mr_ge_epi_nih", "mr_ge_irspgr_refaced_deident"}][::25]
    assert len(picked) >= 15
    kept = set()
    for i, src in enumerate(picked):
        full, raw = _both(src, tmp_path, safe_profile, pseudo, str(i))
        _assert_same(full, raw)
        if raw.status == "written":
            kept |= {c["tag"] for c in raw.changes if c["action"] == "keep"}
    assert "(0019,100C)" in kept  # Siemens MR B Value of the shared Siemens series


def test_listed_private_sequence_is_walked(safe_profile, pseudo):
    ds = _canary_dataset()
    item = Dataset()
    item.PatientName = "CANARY^IN^PRIVATE^SQ"
    item.add_new(0x00091001, "LO", "CANARY-PRIVATE-IN-SQ")
    item.Rows = 4
    ds.add_new(0x7E010010, "LO", "HOLOGIC, Inc.")
    ds.add_new(0x7E011010, "SQ", Sequence([item]))  # High Resolution Data Sequence: listed SQ
    deidentify_dataset(ds, safe_profile, pseudo, "abc", -10)
    assert {0x7E010010, 0x7E011010} <= _private_tags(ds)
    kept_item = ds[0x7E011010].value[0]
    assert kept_item.Rows == 4 and "CANARY" not in str(ds)


def test_opaque_payloads_listed_as_safe_are_still_removed():
    """Privacy first: OB/OW rows of the list (vendor blobs) are not kept by the option."""
    from bids_deid.scrub.dicom_safe_private import load_table, vr_allowed

    opaque = [r for r in load_table() if r.vr in ("OB", "OW")]
    assert opaque, "the standard's list has OB/OW rows"
    assert not any(vr_allowed(r, r.vr) or vr_allowed(r, None) or vr_allowed(r, "UN") for r in opaque)
