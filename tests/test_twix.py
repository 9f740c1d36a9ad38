"""twix header scrubbing: same length, data byte-identical, planted values gone."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from bids_deid.errors import InputError
from bids_deid.formats.twix import is_twix, read_twix_identifiers, scrub_twix, twix_layout

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "twix"
needs_twix = pytest.mark.skipif(not (DATA / "epi.dat").exists(), reason="shared twix data absent")

# fake identifiers of exactly the length of the 'x' filler already in the shared files
FAKE = {
    b'"PatientName">  { "xxxxxxx"': b'"PatientName">  { "DOE^JON"',
    b'"tPatientName">  { "xxxxxxx"': b'"tPatientName">  { "DOE^JON"',
    b'"PatientBirthDay">  { "xxxxxxxx"': b'"PatientBirthDay">  { "19610203"',
    b'"PatientID">  { "' + b"x" * 48: b'"PatientID">  { "' + b"MRN9876543".ljust(48, b"Q"),
}
PLANTED = [b"DOE^JON", b"19610203", b"MRN9876543", b"DZNE", b"45385", b"Venusberg"]


def _plant(src: Path, dst: Path) -> None:
    data = bytearray(src.read_bytes())
    for old, new in FAKE.items():
        assert len(old) == len(new)
        data[:] = data.replace(old, new)
    # the multi-RAID table's patient name field
    off = 8 + 24
    data[off : off + 7] = b"DOE^JON"
    dst.write_bytes(bytes(data))


@needs_twix
@pytest.mark.parametrize("name", ["epi.dat", "gre.dat"])
def test_scrub_removes_planted_values_and_keeps_data(tmp_path, name):
    twixtools = pytest.importorskip("twixtools")
    planted = tmp_path / "planted.dat"
    _plant(DATA / name, planted)
    raw = planted.read_bytes()
    assert raw.count(b"DOE^JON") >= 3 and b"MRN9876543" in raw
    out = tmp_path / "out" / "scrubbed.dat"
    changes, ids = scrub_twix(planted, out, "abc123def4")
    assert out.stat().st_size == planted.stat().st_size
    scrubbed = out.read_bytes()
    for value in PLANTED:
        assert value not in scrubbed, value
    kinds = {k for k, _v in ids}
    assert ("PatientName", "DOE^JON") in ids
    assert ("PatientBirthDate", "19610203") in ids
    assert "InstitutionName" in kinds and "DeviceSerialNumber" in kinds
    assert changes and all("offset" in c and "length" in c for c in changes)
    assert not any("DOE" in str(c) for c in changes)  # audit rows carry no values
    # the input was not modified
    assert planted.read_bytes() == raw
    # everything past the protocol headers is byte-identical
    _v, _names, buffers = twix_layout(planted)
    end = max(off + n for _n, off, n in buffers)
    assert scrubbed[end:] == raw[end:]
    a = twixtools.read_twix(str(planted), verbose=False)[-1]
    b = twixtools.read_twix(str(out), verbose=False)[-1]
    assert len(a["mdb"]) == len(b["mdb"]) > 0
    for x, y in zip(a["mdb"], b["mdb"], strict=True):
        np.testing.assert_array_equal(x.data, y.data)
    assert b["hdr"]["MeasYaps"]["tProtocolName"] == a["hdr"]["MeasYaps"]["tProtocolName"]


@needs_twix
def test_read_identifiers_does_not_write(tmp_path):
    src = tmp_path / "epi.dat"
    shutil.copy(DATA / "epi.dat", src)
    before = src.read_bytes()
    ids = read_twix_identifiers(src)
    assert src.read_bytes() == before
    assert any(k == "InstitutionName" for k, _v in ids)
    assert is_twix(src)


def _vb_file(path: Path, payload: bytes) -> int:
    text = b'<XProtocol> {\n  <ParamString."PatientName">  { "SMITH^ANNA"  }\n  <ParamLong."lPatientSex">  { 2  }\n}\n'
    yaps = b'### ASCCONV BEGIN ###\ntPatientName\t = \t"SMITH^ANNA"\ntProtocolName\t = \t"gre"\n### ASCCONV END ###\n'
    bufs = b""
    for name, data in ((b"Config", text), (b"MeasYaps", yaps)):
        bufs += name + b"\0" + struct.pack("<I", len(data)) + data
    hdr_len = 8 + len(bufs)
    path.write_bytes(struct.pack("<II", hdr_len, 2) + bufs + payload)
    return hdr_len


def test_vb_single_raid_scrub(tmp_path):
    payload = bytes(range(256)) * 8
    src = tmp_path / "meas_vb.dat"
    hdr_len = _vb_file(src, payload)
    assert twix_layout(src)[0] == "VB"
    out = tmp_path / "vb_out.dat"
    _changes, ids = scrub_twix(src, out, "pseudo1")
    data = out.read_bytes()
    assert b"SMITH" not in data
    assert data[hdr_len:] == payload
    assert ("PatientName", "SMITH^ANNA") in ids
    assert b'"gre"' in data  # protocol name kept


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00" * 4,
        struct.pack("<II", 0, 0) + b"\x00" * 100,
        struct.pack("<II", 0, 500),
        b"hello world, not twix" * 10,
    ],
)
def test_unknown_versions_raise_one_line(tmp_path, content):
    bad = tmp_path / "bad.dat"
    bad.write_bytes(content)
    assert not is_twix(bad)
    with pytest.raises(InputError) as exc:
        scrub_twix(bad, tmp_path / "o.dat", "x")
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "o.dat").exists()


@needs_twix
def test_the_profile_decides_as_for_the_same_dicom_attributes(tmp_path):
    from bids_deid.formats import twix
    from bids_deid.formats.base import Context, write_outcome
    from bids_deid.profiles import load_profile

    src = tmp_path / "in.dat"
    _plant(DATA / "gre.dat", src)

    def run(profile_text: str | None, name: str) -> tuple[bytes, list]:
        profile = load_profile("basic")
        if profile_text is not None:
            (tmp_path / f"{name}.yaml").write_text("extends: basic\n" + profile_text)
            profile = load_profile(str(tmp_path / f"{name}.yaml"))
        out = twix.scrub(src, profile, Context(rel_out=f"{name}.dat", subject="01"))
        write_outcome(tmp_path, out, skip_existing=False)
        data = (tmp_path / f"{name}.dat").read_bytes()
        assert len(data) == src.stat().st_size
        return data, out.log.identifiers

    basic, ids = run(None, "basic")
    for gone in (b"DZNE_Bonn-Venusberg", b"45385", b"DOE^JON", b"MRN9876543", b'"flPatientAge">  { <Precision> 6  33.'):
        assert gone not in basic
    assert ("InstitutionName", "DZNE_Bonn-Venusberg") in ids
    # options of PS3.15 Table E.1-1 keep the patient characteristics and the device identity
    chars, ids = run("dicom:\n  options: [retain_patient_characteristics, retain_device_identity]\n", "chars")
    assert b"33.000000" in chars and b"100.000000" in chars and b"45385" in chars
    assert b"DZNE_Bonn-Venusberg" not in chars and b"DOE^JON" not in chars
    # a keep rule for one attribute; what is kept is not reported as an identifier
    inst, ids = run("dicom:\n  rules:\n    - {tag: InstitutionName, action: keep}\n", "inst")
    assert b"DZNE_Bonn-Venusberg" in inst and b"DOE^JON" not in inst and b"MRN9876543" not in inst
    assert not any(kind == "InstitutionName" for kind, _v in ids)
    profile = load_profile(str(tmp_path / "inst.yaml"))
    assert not any(k == "InstitutionName" for k, _v in read_twix_identifiers(src, profile))
    assert any(k == "InstitutionName" for k, _v in read_twix_identifiers(src))
