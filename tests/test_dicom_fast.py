"""Tests of the raw fast path of the DICOM engine (``bids_deid.scrub.dicom_raw``).

The raw path must give the same results (audit entries, identifiers) and the same output bytes
as the full pydicom path, use the full path for what it does not handle, and never let a
changed element be copied back as original bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pydicom
import pytest
from conftest import SHARED
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)
from test_scrub_dicom import _canary_dataset, _leaks

from bids_deid.atomic import atomic_open
from bids_deid.scrub import dicom as engine
from bids_deid.scrub import dicom_files, dicom_raw
from bids_deid.scrub.dicom import deidentify_file, deidentify_tree, iter_files, iter_tree

DICOM_DIR = SHARED / "dicom"
needs_shared = pytest.mark.skipif(not DICOM_DIR.is_dir(), reason="../shared/data absent")


@pytest.fixture()
def full_calls(monkeypatch):
    """Count calls of the full pydicom path."""
    calls = []
    real = engine.process_full

    def spy(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(dicom_files, "process_full", spy)  # the module whose process_slow calls it
    return calls


def _both(src: Path, tmp: Path, profile, pseudo, name: str = "x"):
    """(full-path result, raw-path result); raw raises if it would fall back."""
    full = engine.process_full(src, lambda *_: tmp / "full" / f"{name}.dcm", profile, pseudo, None, None, True)
    raw = engine.process_raw(src, lambda *_: tmp / "raw" / f"{name}.dcm", profile, pseudo, None, None, True, False)
    return full, raw


def _assert_same(full, raw):
    assert raw.status == full.status, (raw.reason, full.reason)
    assert raw.changes == full.changes
    assert raw.identifiers == full.identifiers
    assert (raw.subject, raw.study_uid, raw.series_uid) == (full.subject, full.study_uid, full.series_uid)
    if full.status == "written":
        assert raw.dst.read_bytes() == full.dst.read_bytes()


def _save(ds: Dataset, path: Path, ts) -> Path:
    ds.file_meta.TransferSyntaxUID = ts
    ds.save_as(path, enforce_file_format=True)
    return path


# ------------------------------------------------------------------ equivalence with the full path
@pytest.mark.parametrize("ts", [pydicom.uid.ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_raw_equals_full_on_canaries(tmp_path, profile, pseudo, ts):
    ds = _canary_dataset()
    # an undefined-length top-level sequence whose item must be changed (nested UID + private)
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    item.ReferencedSOPInstanceUID = "1.2.3.4.5.6.CANARY".replace(".CANARY", ".77")
    item.add_new(0x00091001, "LO", "CANARY-IN-UNDEFINED-SQ")
    ds.SourceImageSequence = Sequence([item])
    ds["SourceImageSequence"].is_undefined_length = True
    src = _save(ds, tmp_path / "in.dcm", ts)
    full, raw = _both(src, tmp_path, profile, pseudo)
    _assert_same(full, raw)
    assert _leaks(raw.dst) == []
    out = pydicom.dcmread(raw.dst)
    assert out.SourceImageSequence[0].ReferencedSOPInstanceUID.startswith("2.25.")


@needs_shared
def test_raw_equals_full_on_shared_files(tmp_path, profile, pseudo):
    files = [p for p in iter_files(DICOM_DIR) if engine.is_dicom(p)]
    big = {"mr_ge_epi_nih", "mr_ge_irspgr_refaced_deident"}
    picked = [p for p in files if p.parent.name not in big]
    picked += [p for p in files if p.parent.name in big][::25]  # a sample of the large series
    assert len(picked) >= 15
    for i, src in enumerate(picked):
        full, raw = _both(src, tmp_path, profile, pseudo, str(i))
        _assert_same(full, raw)


def test_changed_sequence_never_copied_raw(tmp_path, profile, pseudo):
    """A parsed (undefined-length) sequence changed in place must be re-encoded."""
    ds = _canary_dataset()
    ds["ReferencedImageSequence"].is_undefined_length = True
    src = _save(ds, tmp_path / "in.dcm", pydicom.uid.ExplicitVRLittleEndian)
    raw = dicom_raw.read_raw(src)
    try:
        elem = raw.ds._dict[0x00081140]
        assert not isinstance(elem, dicom_raw.RawDataElement)  # parsed while reading
        assert 0x00081140 not in raw.originals
    finally:
        raw.close()
    res = deidentify_file(src, tmp_path / "o.dcm", profile, pseudo)
    assert _leaks(res.dst) == []
    ref = pydicom.dcmread(res.dst).ReferencedImageSequence[0]
    assert ref.ReferencedSOPInstanceUID != "1.2.3.4.1.999"
    assert 0x00091001 not in ref


# ------------------------------------------------------------------ what the raw path handles itself
def test_encapsulated_pixels_and_elements_after_pixel_data(tmp_path, profile, pseudo, full_calls):
    ds = _canary_dataset()
    frame = bytes(range(256)) * 3 + b"\xff\xd9"
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].is_undefined_length = True
    ds["PixelData"].VR = "OB"
    ds.add_new(0x7FE10010, "LO", "CANARY-CREATOR")  # private block after Pixel Data
    ds.add_new(0x7FE11001, "OB", b"CANARY-AFTER-PIXELS")
    ds.add_new(0xFFFCFFFC, "OB", b"CANARY-PADDING")  # data set trailing padding
    src = _save(ds, tmp_path / "in.dcm", JPEGBaseline8Bit)
    res = deidentify_file(src, tmp_path / "o.dcm", profile, pseudo)
    assert res.status == "written" and full_calls == []
    assert _leaks(res.dst) == []
    out = pydicom.dcmread(res.dst)
    assert out.PixelData == ds.PixelData
    assert 0x7FE11001 not in out and 0xFFFCFFFC not in out
    full, raw = _both(src, tmp_path, profile, pseudo)
    _assert_same(full, raw)


def test_large_file_is_mapped_and_pixels_copied(tmp_path, profile, pseudo, monkeypatch, full_calls):
    monkeypatch.setattr(dicom_raw, "READ_WHOLE_MAX", 0)  # every file takes the mmap + copy_file_range route
    ds = _canary_dataset()
    ds.Rows, ds.Columns = 256, 256
    ds.PixelData = os.urandom(256 * 256 * 2)
    src = _save(ds, tmp_path / "in.dcm", pydicom.uid.ExplicitVRLittleEndian)
    full, raw = _both(src, tmp_path, profile, pseudo)
    _assert_same(full, raw)
    assert pydicom.dcmread(raw.dst).PixelData == ds.PixelData
    assert _leaks(raw.dst) == []


# ------------------------------------------------------------------ what goes to the full path
@pytest.mark.parametrize("ts", [ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian])
def test_unusual_transfer_syntaxes_fall_back(tmp_path, profile, pseudo, full_calls, ts):
    src = _save(_canary_dataset(), tmp_path / "in.dcm", ts)
    with pytest.raises(dicom_raw.Fallback):
        dicom_raw.read_raw(src)
    res = deidentify_file(src, tmp_path / "o.dcm", profile, pseudo)
    assert full_calls == [src]
    assert res.status == "written", res.reason
    assert _leaks(res.dst) == []


def test_no_preamble_falls_back(tmp_path, profile, pseudo, full_calls):
    ds = _canary_dataset()
    path = tmp_path / "bare.dcm"
    pydicom.dcmwrite(path, ds, implicit_vr=False, little_endian=True)  # no preamble, no meta
    with pytest.raises(dicom_raw.Fallback):
        dicom_raw.read_raw(path)
    res = deidentify_file(path, tmp_path / "o.dcm", profile, pseudo)
    assert full_calls == [path] and res.status == "written"
    assert _leaks(res.dst) == []


def test_mismatched_encoding_falls_back(tmp_path, profile, pseudo, full_calls):
    """Meta says explicit VR but the data set is implicit: the raw parser must not guess."""
    ds = _canary_dataset()
    path = tmp_path / "mismatch.dcm"
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    pydicom.dcmwrite(path, ds, enforce_file_format=False, implicit_vr=True, little_endian=True, force_encoding=True)
    with pytest.raises(dicom_raw.Fallback):
        dicom_raw.read_raw(path)
    res = deidentify_file(path, tmp_path / "o.dcm", profile, pseudo)
    assert full_calls == [path]
    # the full path decides (today it reports an error for this file); never a leaky copy
    assert res.status in ("error", "written")
    if res.status == "written":
        assert _leaks(res.dst) == []
    else:
        assert not (tmp_path / "o.dcm").exists()


def test_truncated_file_is_an_error_not_a_copy(tmp_path, profile, pseudo):
    src = _save(_canary_dataset(), tmp_path / "in.dcm", pydicom.uid.ExplicitVRLittleEndian)
    data = src.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) - 5])
    with pytest.raises(dicom_raw.Fallback):
        dicom_raw.read_raw(cut)
    res = deidentify_file(cut, tmp_path / "o.dcm", profile, pseudo)
    # an input defect: withheld with its reason, never a partial (husk) copy
    assert res.status == "withheld" and "input defect" in res.reason
    assert not (tmp_path / "o.dcm").exists()


# ------------------------------------------------------------------ trees, streaming, fsync
def test_tree_streams_results_in_order(tmp_path, profile, pseudo):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(6):
        _save(_canary_dataset(i), src / f"f{i}.dcm", pydicom.uid.ExplicitVRLittleEndian)
    (src / "note.txt").write_text("not dicom")
    seen = []
    assert deidentify_tree(src, tmp_path / "out", profile, pseudo, n_cpus=2, progress=False,
                           on_result=seen.append) == []
    assert [r.src.name for r in seen] == sorted(p.name for p in src.iterdir())
    assert {r.status for r in seen} == {"written", "skipped"}
    again = list(iter_tree(src, tmp_path / "out", profile, pseudo, n_cpus=1, progress=False))
    assert [r.status for r in again if r.src.suffix == ".dcm"] == ["exists"] * 6
    assert not any(p.name.startswith(".bids-deid-tmp-") for p in (tmp_path / "out").rglob("*"))


def test_atomic_open_without_fsync_is_still_atomic(tmp_path):
    target = tmp_path / "f.bin"
    with pytest.raises(RuntimeError), atomic_open(target, fsync=False) as fh:
        fh.write(b"half")
        raise RuntimeError("killed")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_open(target, fsync=False) as fh:
        fh.write(b"whole")
    assert target.read_bytes() == b"whole"
