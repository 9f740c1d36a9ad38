"""twix header scrubbing: same length, data byte-identical, planted values gone."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from bids_deid.convert.twix import is_twix, read_twix_identifiers, scrub_twix, twix_layout
from bids_deid.errors import InputError

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
