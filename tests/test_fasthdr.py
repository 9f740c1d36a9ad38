"""The fast header reader gives what pydicom gives, or steps aside (None)."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian
from test_convert_raw import SHARED, needs_shared, write_series

import bids_deid.convert.discovery as discovery
from bids_deid.convert.fasthdr import fast_header


def _norm(rec: dict) -> tuple:
    fields = {k: (float(v) if isinstance(v, float) else v) for k, v in rec.get("fields", {}).items()}
    return rec["kind"], fields


def _both(path, monkeypatch) -> tuple[tuple, tuple]:
    monkeypatch.setattr(discovery, "FAST_HEADERS", False)
    slow = _norm(discovery.read_header(path))
    monkeypatch.setattr(discovery, "FAST_HEADERS", True)
    return slow, _norm(discovery.read_header(path))


@needs_shared
def test_same_as_pydicom_on_scanner_files(monkeypatch):
    files = [p for p in sorted((SHARED / "dicom").rglob("*")) if p.is_file()]
    fast_used = 0
    for p in files:
        slow, fast = _both(p, monkeypatch)
        assert fast == slow, p.name
        fast_used += fast_header(str(p), discovery.HEADER_TAGS_T) is not None
    assert fast_used > 300  # the fast path is the common path, not the exception


def test_charsets_sequences_and_implicit_vr(tmp_path, monkeypatch):
    extra_latin = {"SpecificCharacterSet": "ISO_IR 100", "ReferringPhysicianName": "MÜLLER^JÖRG"}
    extra_utf8 = {"SpecificCharacterSet": "ISO_IR 192", "InstitutionName": "Hôpital Ñandú 東京"}
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    extra_seq = {"ReferencedImageSequence": Sequence([item, item])}
    files = []
    for i, extra in enumerate((extra_latin, extra_utf8, extra_seq)):
        files += write_series(tmp_path / f"s{i}", n=1, extra=extra)
    # implicit VR little endian, with an undefined-length sequence
    ds = pydicom.dcmread(files[-1])
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    implicit = tmp_path / "implicit.dcm"
    ds.save_as(implicit, implicit_vr=True, little_endian=True, enforce_file_format=True)
    files.append(implicit)
    for p in files:
        slow, fast = _both(p, monkeypatch)
        assert fast == slow
        assert fast_header(str(p), discovery.HEADER_TAGS_T) is not None, p.name
    assert _both(files[0], monkeypatch)[1][1]["ReferringPhysicianName"] == "MÜLLER^JÖRG"
    assert _both(files[1], monkeypatch)[1][1]["InstitutionName"] == "Hôpital Ñandú 東京"


def test_steps_aside_for_unusual_files(tmp_path, monkeypatch):
    good = write_series(tmp_path / "g", n=1, extra={"SpecificCharacterSet": "ISO_IR 144"})[0]
    assert fast_header(str(good), discovery.HEADER_TAGS_T) is None  # Cyrillic: pydicom decodes it
    plain = write_series(tmp_path / "p", n=1)[0]
    data = plain.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[:-200])
    fh = fast_header(str(cut), discovery.HEADER_TAGS_T)
    assert fh is None or fh["pixels_complete"] is False
    assert discovery.read_header(cut)["kind"] == "corrupt"
    padded = tmp_path / "padded.dcm"
    padded.write_bytes(data + b"\xfc\xff\xfc\xff" + b"OB\x00\x00" + b"\x04\x00\x00\x00" + b"\x00" * 4)
    slow, fast = _both(padded, monkeypatch)
    assert fast == slow


@pytest.mark.parametrize("keywords", [("NoSuchKeyword",)])
def test_unknown_keyword_is_an_error(tmp_path, keywords):
    p = write_series(tmp_path, n=1)[0]
    with pytest.raises(ValueError):
        fast_header(str(p), keywords)
