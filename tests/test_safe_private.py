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
# Rows of PS3.15 Table E.3.10-1, edition 2026c, read cell by cell in NEMA's part15.xml
# (cosyte/dicom@3712b00, vendor/nema/part15/77d60b85.../part15.xml):
# (creator, group, offset) -> (VR, VM, meaning)
EDITION_2026C_ROWS = {
    ("SIEMENS MR HEADER", 0x0019, 0x0C): ("IS", "1", "B Value"),
    ("SIEMENS MR HEADER", 0x0019, 0x0D): ("CS", "1", "Diffusion Directionality"),
    ("SIEMENS MR HEADER", 0x0019, 0x0E): ("FD", "3", "Diffusion Gradient Direction"),
    ("SIEMENS MR HEADER", 0x0019, 0x27): ("FD", "6", "B Matrix"),
    ("GEMS_ACQU_01", 0x0019, 0x9E): ("LO", "1", "Internal Pulse Sequence Name"),
    ("GEMS_PARM_01", 0x0043, 0x27): ("SH", "1", 'Scan Pitch Ratio in the form "n.nnn:1"'),
    ("GEMS_PARM_01", 0x0043, 0x39): ("IS", "4", "1st value is B Value"),
    ("GEMS_PARM_01", 0x0043, 0x6F): ("DS", "3-4", "Scanner Table Entry + Gradient Coil Selected"),
    ("GEMS_SERS_01", 0x0025, 0x07): ("SL", "1", "Images in Series"),
    ("GEIIS PACS", 0x0903, 0x12): ("US", "1", "Confidential Flag"),
    ("ELSCINT1", 0x01F1, 0x26): ("DS", "1", "Pitch"),
    ("Philips PET Private Group", 0x7053, 0x00): (
        "DS", "1", "SUV Factor - Multiplying Stored Pixel Values by Rescale Slope then this factor results in SUVbw in g/l"),
    ("Philips Imaging DD 001", 0x2001, 0x03): ("FL", "1", "MR Image Diffusion B-Factor"),
    ("Philips Imaging DD 001", 0x2001, 0x1A): ("FL", "3", "MR Series Pc Velocity"),
    ("Philips Imaging DD 001", 0x2001, 0x7D): ("OW/OB", "1", "Frame Pixel Data"),
    ("Philips Imaging DD 001", 0x2001, 0x8C): ("CS", "0-n", "Needs Processing"),
    ("Philips Imaging DD 001", 0x2001, 0xD0): ("AT", "1-n", "Frame Index Pointer"),
    ("Philips Imaging DD 001", 0x2001, 0xDF): ("UL", "1", "Voxel Number"),
    ("Philips Imaging DD 001", 0x2001, 0xFF): ("OW/OB", "1", "Volume Pixel"),
    ("Philips Imaging DD 002", 0x2001, 0x01): ("US", "1", "Edr Setgp"),
    ("Philips Imaging DD 002", 0x2001, 0x75): ("SS", "0-n", "Graphic Annotation Id Reference"),
    ("Philips Imaging DD 097", 0x2001, 0x2F): ("OB", "1", "Volume Mask Data"),
    ("Philips Imaging DD 097", 0x2001, 0x38): ("FD", "9", "Cone Geometry Orientation"),
    ("Philips Imaging DD 129", 0x2001, 0x00): ("SQ", "1", "Presentation State Sequence"),
    ("Philips Imaging DD 129", 0x2001, 0x09): ("UL", "1", "Plane Highlight Color"),
    ("Philips ST80i", 0x0025, 0x01): ("OW", "1", "ST80i Stress Study file data"),
    ("Philips MR Imaging DD 001", 0x2005, 0x0E): ("FL", "1", "Scale Slope"),
    ("HOLOGIC, Inc.", 0x7E01, 0x02): ("SH", "1", "Codec Content Type"),
    ("NQRight", 0x0299, 0x16): ("FL", "1", "Right Other"),
    ("SIEMENS Ultrasound SC2000", 0x0119, 0x11): ("", "1", "Stage Timer Time"),
    ("SIEMENS Ultrasound SC2000", 0x0119, 0x21): ("SH", "1", ""),
    ("SIEMENS SYNGO ULTRA-SOUND TOYON DATA STREAMING", 0x7FD1, 0x09): ("UI", "1", "Version ID"),
}
EDITION_2026C_COUNTS = {
    "Philips Imaging DD 001": 184, "Philips Imaging DD 002": 86, "Philips Imaging DD 097": 70,
    "Philips Imaging DD 129": 10, "SIEMENS Ultrasound SC2000": 40, "NQLeft": 22, "NQRight": 22,
    "ELSCINT1": 7, "NQHeader": 7, "HOLOGIC, Inc.": 5, "SIEMENS MR HEADER": 4, "GEMS_ACQU_01": 4,
    "SIEMENS SYNGO ULTRA-SOUND TOYON DATA STREAMING": 4, "GEMS_PARM_01": 3, "GEIIS PACS": 3,
    "Philips PET Private Group": 2, "GEMS_HELIOS_01": 2, "Philips MR Imaging DD 001": 2,
    "Philips ST80i": 1, "GEMS_SERS_01": 1,
}


def test_list_size_and_sample_rows():
    rows = sp.load_table()
    assert len(rows) == 479  # Table E.3.10-1, edition 2026c
    assert len({(r.creator, r.group, r.element) for r in rows}) == 479  # no duplicate row
    by_key = {(r.creator, r.group, r.element): r for r in rows}
    for key, (vr, vm, name) in EDITION_2026C_ROWS.items():
        assert key in by_key, key
        assert (by_key[key].vr, by_key[key].vm, by_key[key].name) == (vr, vm, name), key
    counts = {}
    for r in rows:
        counts[r.creator] = counts.get(r.creator, 0) + 1
    assert counts == EDITION_2026C_COUNTS
    assert all(r.group % 2 == 1 and 0 <= r.element <= 0xFF for r in rows)
    # table order: first and last rows; offsets the 2026c table skips are not invented
    assert (rows[0].creator, rows[0].group, rows[0].element) == ("Philips PET Private Group", 0x7053, 0x00)
    assert (rows[-1].creator, rows[-1].element, rows[-1].name) == (
        "SIEMENS SYNGO ULTRA-SOUND TOYON DATA STREAMING", 0x11, "After Payload")
    for gap in [("SIEMENS MR HEADER", 0x0019, 0x0B), ("Philips Imaging DD 001", 0x2001, 0x52),
                ("Philips Imaging DD 001", 0x2001, 0x5B), ("Philips Imaging DD 002", 0x2001, 0x41)]:
        assert gap not in by_key, gap


def test_packaged_list_is_the_built_transcription():
    """bids_deid/data/ps3_15_safe_private.tsv is exactly what tools/build_safe_private.py makes."""
    tool = _build_tool()
    assert tool.to_tsv(tool.read_transcription()) == sp.TABLE_PATH.read_text(encoding="utf-8")


def test_build_tool_reads_the_docbook_table(tmp_path):
    tool = _build_tool()
    row = (
        '<tr valign="top"><td><para>(0043,xx39)</para></td><td><para>GEMS_PARM_01</para></td>'
        "<td><para>IS</para></td><td><para>4</para></td>"
        "<td><para>1<superscript>st</superscript>value is B Value</para></td></tr>"
        '<tr valign="top"><td><para>(0119,xx11)</para></td><td><para>SIEMENS Ultrasound SC2000</para></td>'
        "<td><para/></td><td><para>1</para></td><td><para>Stage Timer Time</para></td></tr>"
    )
    xml = tmp_path / "part15.xml"
    xml.write_text(
        '<book xmlns="http://docbook.org/ns/docbook" xmlns:xml="http://www.w3.org/XML/1998/namespace">'
        '<table xml:id="table_E.3.10-1"><thead><tr><th><para>Data Element</para></th></tr></thead>'
        f"<tbody>{row}</tbody></table></book>", encoding="utf-8")
    rows = tool.read_xml(xml)
    assert rows == [("(0043,xx39)", "GEMS_PARM_01", "IS", "4", "1st value is B Value"),
                    ("(0119,xx11)", "SIEMENS Ultrasound SC2000", "", "1", "Stage Timer Time")]
    ours = [r for r in tool.read_transcription() if r[1] in ("GEMS_PARM_01", "SIEMENS Ultrasound SC2000")]
    assert [r for r in ours if r[0].upper() in ("(0043,XX39)", "(0119,XX11)")] == rows
    with pytest.raises(ValueError):
        tool.parse_tag("(0018,xx10)")  # even group: not private


def _build_tool():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "build_safe_private.py"
    spec = importlib.util.spec_from_file_location("build_safe_private", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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

    opaque = [r for r in load_table() if set(r.vr.split("/")) & {"OB", "OW"}]
    assert len(opaque) == 20  # 17 OB, 1 OW, 2 OW/OB rows in the 2026c table
    for r in opaque:
        assert not any(vr_allowed(r, vr) for vr in (None, "UN", "OB", "OW", r.vr)), r


def test_binary_slots_refuse_text_and_wrong_sizes():
    """Slots listed with binary VRs keep binary numbers only, also when read implicitly / as UN."""
    idx = sp.index()
    ss = idx[("Philips Imaging DD 001", 0x2001)][0x05]  # SS, VM 1
    fd3 = idx[(SIEMENS_MR, 0x0019)][0x0E]  # FD, VM 3
    fl_n = idx[("Philips Imaging DD 001", 0x2001)][0xF2]  # FL, VM 1-n
    assert sp.value_allowed(ss, b"\x01\x00") and sp.value_allowed(ss, -3) and sp.value_allowed(ss, b"")
    assert not sp.value_allowed(ss, b"CANARY-PHILIPS")  # text in a binary slot
    assert not sp.value_allowed(ss, b"\x01\x00\x02\x00")  # two values in a VM 1 slot
    assert not sp.value_allowed(ss, "CANARY")
    assert sp.value_allowed(fd3, bytes(24)) and not sp.value_allowed(fd3, bytes(32))
    assert not sp.value_allowed(fd3, bytes(23))
    assert sp.value_allowed(fl_n, bytes(40)) and not sp.value_allowed(fl_n, b"Name")


@pytest.mark.parametrize("implicit", [False, True])
def test_philips_blocks_of_the_2026c_table(tmp_path, safe_profile, pseudo, implicit):
    """Two Philips creators share group 2001: each block keeps its own listed offsets; OW/OB
    payloads listed as safe and unlisted offsets are removed; raw and full paths agree."""
    ds = _canary_dataset()
    ds.add_new(0x20010010, "LO", "Philips Imaging DD 001")
    ds.add_new(0x20010011, "LO", "Philips Imaging DD 002")
    ds.add_new(0x200110D0, "AT", [0x00200013])  # DD 001 Frame Index Pointer (AT): kept
    ds.add_new(0x20011013, "SL", 6)  # DD 001 MR Series Epi Factor (SL): kept
    ds.add_new(0x2001107D, "OB", b"CANARY-PIXELS-OWOB")  # DD 001 Frame Pixel Data (OW/OB): removed
    ds.add_new(0x20011052, "LO", "CANARY-UNLISTED")  # DD 001 offset 52 is not in the table
    ds.add_new(0x20011101, "US", 3)  # DD 002 Edr Setgp (US): kept
    ds.add_new(0x20011175, "SS", [1, 2])  # DD 002 Graphic Annotation Id Reference (SS 0-n): kept
    ds.add_new(0x20011102, "LO", "CANARY-DD002")  # DD 002 offset 02 is FD: text refused
    src = _save(ds, tmp_path / "src.dcm", ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian)
    full, raw = _both(src, tmp_path, safe_profile, pseudo)
    _assert_same(full, raw)
    out = pydicom.dcmread(raw.dst)
    assert {t for t in _private_tags(out) if t >> 16 == 0x2001} == {
        0x20010010, 0x20010011, 0x200110D0, 0x20011013, 0x20011101, 0x20011175}
    assert b"CANARY" not in raw.dst.read_bytes()


def _philips_text() -> Dataset:
    ds = _canary_dataset()
    ds.add_new(0x20010010, "LO", "Philips Imaging DD 001")
    ds.add_new(0x20011050, "LO", "arrow CANARY-PID 20200102")  # PatientID and a date in a kept slot
    return ds


def test_listed_text_is_kept_but_cleaned(safe_profile, pseudo):
    """A listed text slot (Philips Graphic Marker Type, LO) keeps its words but loses this file's
    identifiers and date-like strings; creators are never changed."""
    ds = _philips_text()
    ds.add_new(0x2001105A, "ST", "model for CANARY^NAME")
    changes, _ = deidentify_dataset(ds, safe_profile, pseudo, "abc", -10)
    assert ds[0x20011050].value == "arrow X X"
    assert "CANARY" not in ds[0x2001105A].value
    assert ds[0x20010010].value == "Philips Imaging DD 001"
    assert {c["tag"]: c["action"] for c in changes}["(2001,1050)"] == "clean"


@pytest.mark.parametrize("ts", [pydicom.uid.ExplicitVRLittleEndian, pydicom.uid.ImplicitVRLittleEndian])
def test_listed_text_cleaned_in_files(safe_profile, pseudo, tmp_path, ts):
    """Raw and full paths write the same bytes; read as implicit VR the slot is cleaned too."""
    src = _save(_philips_text(), tmp_path / "t.dcm", ts)
    full, raw = _both(src, tmp_path, safe_profile, pseudo)
    _assert_same(full, raw)
    out = raw.dst.read_bytes()
    assert b"CANARY-PID" not in out and b"20200102" not in out
    if ts == pydicom.uid.ExplicitVRLittleEndian:
        assert b"arrow X X" in out
