"""Siemens mosaics stay convertible: dicom.keep_private (set siemens_mosaic) and the CSA sanitizer.

Proof item of issue 3: dcm2niix converts a de-identified mosaic to the same voxels, affine, slice
timing, phase-encoding direction and diffusion vectors as the original. The CSA tests plant canaries
in every part of a synthetic CSA header (field values, names, padding, trailing bytes) and search
the sanitized bytes for them (ASCII and UTF-16).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
import subprocess
from pathlib import Path

import pydicom
import pytest
from conftest import SHARED, needs_shared
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from test_dicom_fast import _assert_same, _both, _save
from test_scrub_dicom import _canary_dataset

from bids_deid.errors import ProfileError
from bids_deid.profiles import load_profile
from bids_deid.scrub import dicom_csa as csa
from bids_deid.scrub import dicom_safe_private as sp
from bids_deid.scrub.dicom import deidentify_dataset, deidentify_tree

MOSAIC_SERIES = ("mr_siemens_epi_nih", "mr_siemens_mosaic_nibabel")
CANARIES = (b"CANARY", b"DOE^JANE", b"MRN1234567", b"19800102")


def _all_forms(needle: bytes) -> list[bytes]:
    text = needle.decode()
    return [needle.lower(), text.encode("utf-16-le").lower(), text.encode("utf-16-be").lower()]


def _hits(blob: bytes, needles=CANARIES) -> list[bytes]:
    low = blob.lower()
    return [n for n in needles if any(f in low for f in _all_forms(n))]


def _field(name, vr, *values, vm=1, syngodt=6, nitems=None):
    items = [v if isinstance(v, bytes) else f"{v}".encode() + b"\0" for v in values]
    if nitems is not None:
        items += [b""] * (nitems - len(items))
    return csa.CsaField(name, vm, vr, syngodt, tuple(items))


def _canary_fields() -> list[csa.CsaField]:
    return [
        _field("NumberOfImagesInMosaic", "US", "48      "),
        _field("SliceNormalVector", "FD", "0.00000000", "0.00523632", "0.99998629", vm=3),
        _field("MosaicRefAcqTimes", "FD", *[f"{i * 62.5:.8f}" for i in range(10)], vm=0),
        _field("B_value", "IS", "1000", nitems=6),
        _field("PhaseEncodingDirectionPositive", "IS", "1"),
        _field("ImaCoilString", "LO", "CANARY-COIL"),  # not allowlisted
        _field("PatientName", "PN", "DOE^JANE"),  # not allowlisted
        _field("SliceMeasurementDuration", "DS", "DOE^JANE"),  # allowlisted name, text value
        _field("BandwidthPerPixelPhaseEncode", "LO", "19.055"),  # allowlisted name, text VR
        _field("ProtocolSliceNumber", "IS", b"0\0MRN1234567"),  # number, then text after the NUL
        _field("DiffusionGradientDirection", "FD", vm=3, nitems=0),  # empty: kept empty
        _field("ImageHistory", "UT", "CANARY 19800102"),
    ]


def _dirty_csa2() -> bytes:
    """A CSA2 header built by :func:`csa.build` then soiled where a parser does not look: the
    bytes after each name's NUL (scanners leave memory there, e.g. station names), the item
    padding and trailing bytes after the last field."""
    data = bytearray(csa.build(_canary_fields()))
    pos = 16
    _, fields = csa.parse(bytes(data))
    for f in fields:
        name_end = pos + len(f.name) + 1
        junk = b"CANARY"[: 64 - (name_end - pos)]
        data[name_end:name_end + len(junk)] = junk
        pos += 84
        for v in f.items:
            pos += 16 + (len(v) + 3) // 4 * 4
    return bytes(data[:-4]) + b"\0\0\0\0MRN1234567"


def _csa1(fields: list[csa.CsaField]) -> bytes:
    """The CSA1 layout: no signature; item length = first int32 - nitems of the first field."""
    first = len(fields[0].items)
    out = bytearray(struct.pack("<II", len(fields), 77))
    for f in fields:
        out += struct.pack("<64si4siii", f.name.encode(), f.vm, f.vr.encode(), f.syngodt, len(f.items),
                           77 if f.items else 205)
        for v in f.items:
            out += struct.pack("<4i", len(v) + first, len(v) + first, 77, len(v) + first)
            out += v + b"\0" * ((4 - len(v) % 4) % 4)
    return bytes(out)


# ------------------------------------------------------------------ CSA parser / builder
def test_csa_round_trip():
    fields = _canary_fields()
    blob = csa.build(fields)
    assert blob[:4] == b"SV10" and len(blob) % 4 == 0
    version, back = csa.parse(blob)
    assert version == 2 and back == fields
    assert csa.build(back) == blob
    assert csa.parse(blob, frozenset({"B_value", "NotThere"}))[1] == [f for f in fields if f.name == "B_value"]


def test_csa1_parsed_and_rebuilt_as_csa2():
    fields = _canary_fields()[:5]
    version, back = csa.parse(_csa1(fields))
    assert version == 1 and back == fields
    out = csa.sanitize_image_header(_csa1(fields))
    assert out[:4] == b"SV10" and csa.parse(out)[1] == fields


@pytest.mark.parametrize("blob", [b"", b"SV10", b"SV10\4\3\2\1" + struct.pack("<II", 0, 77),
                                  b"SV10\4\3\2\1" + struct.pack("<II", 3, 77) + b"\0" * 40,
                                  b"\xff" * 64])
def test_csa_garbage_is_refused(blob):
    with pytest.raises(csa.CsaError):
        csa.parse(blob)
    assert csa.sanitize_image_header(blob) is None


def test_sanitized_csa_holds_no_canary():
    dirty = _dirty_csa2()
    assert _hits(dirty) == list(CANARIES)  # the planted values are there before
    clean = csa.sanitize_image_header(dirty)
    assert clean is not None
    assert _hits(clean) == []
    kept = {f.name: f for f in csa.parse(clean)[1]}
    assert set(kept) == {"NumberOfImagesInMosaic", "SliceNormalVector", "MosaicRefAcqTimes", "B_value",
                         "PhaseEncodingDirectionPositive", "DiffusionGradientDirection"}
    assert kept["SliceNormalVector"].items[2] == b"0.99998629\0"
    assert len(kept["MosaicRefAcqTimes"].items) == 10
    assert kept["B_value"].items[0] == b"1000\0" and len(kept["B_value"].items) == 6
    assert all(set(v.rstrip(b"\0")) <= set(b"0123456789.+-eE ") for f in kept.values() for v in f.items)


def test_is_number():
    for ok in (b"", b"48      \0", b"-0.5\0", b"1e-3", b" 12 "):
        assert csa.is_number(ok), ok
    for bad in (b"DOE", b"1\\2", b"0\0X", b"12ab", b"--1", b"\0\0MRN"):
        assert not csa.is_number(bad), bad


@needs_shared
@pytest.mark.parametrize("series", MOSAIC_SERIES)
def test_real_csa_headers_parse_and_sanitize(series):
    src = next((SHARED / "dicom" / series).glob("*.dcm"))
    ds = pydicom.dcmread(src, stop_before_pixels=True)
    for tag in (0x00291010, 0x00291020):
        version, fields = csa.parse(ds[tag].value)
        assert version == 2 and len(fields) > 50
        assert csa.parse(csa.build(fields))[1] == fields
    clean = csa.sanitize_image_header(ds[0x00291010].value)
    names = [f.name for f in csa.parse(clean)[1]]
    assert "NumberOfImagesInMosaic" in names and "ImaCoilString" not in names and "ICE_Dims" not in names
    assert len(clean) < len(ds[0x00291010].value) / 3


# ------------------------------------------------------------------ profiles
def test_profile_key_keep_private(tmp_path):
    research = load_profile("dicom-research")
    assert {r.name for r in research.dicom_keep_private} >= {"NumberOfImagesInMosaic", "CSA Image Header Info"}
    assert load_profile("basic").dicom_keep_private == ()
    off = tmp_path / "off.yaml"
    off.write_text("extends: dicom-research\ndicom:\n  keep_private: []\n")
    assert load_profile(str(off)).dicom_keep_private == ()
    own = tmp_path / "own.yaml"
    own.write_text("extends: basic\ndicom:\n  keep_private:\n    - siemens_mosaic\n"
                   "    - {creator: ACME 1.0, group: '0043', element: '2A', vr: FD, name: Gain}\n")
    rows = load_profile(str(own)).dicom_keep_private
    assert rows[-1] == sp.SafePrivate("ACME 1.0", 0x43, 0x2A, "FD", "Gain", "", "keep", "keep_private: Gain")
    for bad, msg in [("[nope]", "unknown set"), ("[{creator: X, group: '0010', element: '01', vr: US}]", "private"),
                     ("[{creator: X, group: '0011', element: '01', vr: LO}]", "not numeric"),
                     ("[{creator: X, group: '0011', vr: US}]", "mapping"), ("siemens_mosaic", "list")]:
        p = tmp_path / "bad.yaml"
        p.write_text(f"extends: basic\ndicom:\n  keep_private: {bad}\n")
        with pytest.raises(ProfileError, match=msg):
            load_profile(str(p))


# ------------------------------------------------------------------ engine
@pytest.fixture(scope="module")
def mosaic_profile():
    """basic + keep_private: [siemens_mosaic] (no other option)."""
    return dataclasses.replace(load_profile("basic"), name="basic+mosaic", dicom_keep_private=sp.load_set("siemens_mosaic"))


def _siemens(ds: Dataset) -> Dataset:
    ds.add_new(0x00190010, "LO", "SIEMENS MR HEADER")
    ds.add_new(0x0019100A, "US", 48)
    ds.add_new(0x0019100B, "DS", "40")
    # a listed IS slot holding text (as a scanner could write it): removed
    ds._dict[Tag(0x0019100C)] = RawDataElement(Tag(0x0019100C), "IS", 6, b"CANARY", 0, False, True)
    ds.add_new(0x00191008, "CS", "CANARY IMAGE NUM 4")  # not listed
    ds.add_new(0x00191029, "FD", [6487.5, 6350.0])
    ds.add_new(0x00290010, "LO", "SIEMENS CSA HEADER")
    ds.add_new(0x00290011, "LO", "SIEMENS MEDCOM HEADER2")
    ds.add_new(0x00291009, "LO", "20100114")  # CSA version: a date-like string, not kept
    ds.add_new(0x00291010, "OB", _dirty_csa2())
    ds.add_new(0x00291020, "OB", csa.build([_field("UsedPatientWeight", "IS", "88"),
                                             _field("MrPhoenixProtocol", "UN", "CANARY protocol")]))
    ds.add_new(0x00291160, "LO", "CANARY workflow")
    ds.add_new(0x00510010, "LO", "SIEMENS MR HEADER")
    ds.add_new(0x0051100A, "LO", "CANARY TA 05.00")  # same creator, another group: not listed
    return ds


def _private_tags(ds: Dataset) -> set[int]:
    return {int(el.tag) for el in ds.iterall() if el.tag.is_private}


def test_engine_keeps_set_and_rebuilds_csa(mosaic_profile, profile, pseudo):
    ds = _siemens(_canary_dataset())
    changes, _ = deidentify_dataset(ds, mosaic_profile, pseudo, "abc", -10)
    assert _private_tags(ds) == {0x00190010, 0x0019100A, 0x0019100B, 0x00191029, 0x00290010, 0x00291010}
    assert ds[0x0019100A].value == 48 and list(ds[0x00191029].value) == [6487.5, 6350.0]
    assert _hits(ds[0x00291010].value) == []
    assert "NumberOfImagesInMosaic" in [f.name for f in csa.parse(ds[0x00291010].value)[1]]
    by_tag = {c["tag"]: c for c in changes}
    assert by_tag["(0029,1010)"]["action"] == "replace" and "siemens_mosaic" in by_tag["(0029,1010)"]["why"]
    assert by_tag["(0019,100A)"]["action"] == "keep"
    codes = {i.CodeValue for i in ds.DeidentificationMethodCodeSequence}
    assert {"113100", "113111"} <= codes  # kept private attributes are declared (Retain Safe Private)
    plain = _siemens(_canary_dataset())
    deidentify_dataset(plain, profile, pseudo, "abc", -10)
    assert _private_tags(plain) == set()  # basic keeps nothing private


def test_unparsable_csa_removed(mosaic_profile, pseudo):
    ds = _siemens(_canary_dataset())
    ds[0x00291010].value = b"CANARY not a CSA header"
    deidentify_dataset(ds, mosaic_profile, pseudo, "abc", -10)
    assert 0x00291010 not in ds and 0x0019100A in ds


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_raw_path_equals_full_path(tmp_path, mosaic_profile, pseudo, ts):
    src = _save(_siemens(_canary_dataset()), tmp_path / "src.dcm", ts)
    full, raw = _both(src, tmp_path, mosaic_profile, pseudo)
    _assert_same(full, raw)
    assert full.status == "written"
    out = pydicom.dcmread(raw.dst)
    assert 0x00291010 in out and 0x0019100A in out
    assert b"CANARY" not in raw.dst.read_bytes()


# ------------------------------------------------------------------ the proof: dcm2niix on real mosaics
def _convert(exe: str, folder: Path, out: Path) -> dict:
    import nibabel as nib
    import numpy as np

    out.mkdir(parents=True)
    subprocess.run([exe, "-z", "n", "-b", "y", "-ba", "y", "-f", "img", "-o", str(out), str(folder)],
                   check=True, capture_output=True)
    (nii,) = sorted(out.glob("*.nii"))
    img = nib.load(nii)
    data = np.asanyarray(img.dataobj)
    side = json.loads(nii.with_suffix(".json").read_text())
    extra = {ext: (nii.with_suffix(ext).read_text() if nii.with_suffix(ext).exists() else None)
             for ext in (".bval", ".bvec")}
    return {"shape": data.shape, "sha": hashlib.sha256(data.tobytes()).hexdigest(),
            "affine": np.round(img.affine, 4).tolist(), "SliceTiming": side.get("SliceTiming"),
            "PhaseEncodingDirection": side.get("PhaseEncodingDirection"),
            "EffectiveEchoSpacing": side.get("EffectiveEchoSpacing"), **extra}


@needs_shared
@pytest.mark.parametrize("series", MOSAIC_SERIES)
@pytest.mark.parametrize("name", ["dicom-research", "basic+mosaic"])
def test_deidentified_mosaic_converts_like_the_original(tmp_path, series, name, mosaic_profile, pseudo):
    from bids_deid.convert.batch import dcm2niix_bin

    exe = dcm2niix_bin()  # a core dependency: its absence is a failure, not a skip
    prof = mosaic_profile if name == "basic+mosaic" else load_profile(name)
    src = SHARED / "dicom" / series
    res = [r for r in deidentify_tree(src, tmp_path / "deid", prof, pseudo, progress=False)
           if r.src.suffix == ".dcm"]  # the README files beside them are skipped as not DICOM
    assert res and all(r.status == "written" for r in res)
    before = _convert(exe, src, tmp_path / "a")
    after = _convert(exe, tmp_path / "deid", tmp_path / "b")
    assert before["SliceTiming"] and before["PhaseEncodingDirection"]  # the check has teeth
    assert after == before
    if name == "basic+mosaic":
        # The real CSA header of the nibabel sample carries the station name in the padding after
        # a field name ("MRC35119"): rebuilding drops it; no identifying value of the input is left.
        for dst in (r.dst for r in res):
            assert _hits(dst.read_bytes(), (b"MRC35119", b"35119", b"dft patient", b"AWP45160", b"Test^Regression",
                                            b"Center Drive")) == []
