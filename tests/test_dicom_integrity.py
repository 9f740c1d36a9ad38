"""DICOM integrity (issue 17): an output is written only when whole, hostile input never stops
a run, every withheld file is counted, and pydicom's own test files all come out readable.

Each run is ``bids-deid-dicom`` (or the BIDS App) on real files; outputs are parsed back with
pydicom, and their pixel data compared with the input's.
"""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import pydicom
import pytest
from conftest import SHARED, needs_shared
from pydicom.data import get_testdata_file, get_testdata_files

from bids_deid.dicom_cli import main
from bids_deid.pseudonym import generate_key

REAL = SHARED / "dicom" / "mr_siemens_epi_nih" / "epi_pe_ap-00001.dcm"
SUMMARY = re.compile(r"(\d+) written, (\d+) already done, (\d+) skipped, (\d+) withheld, (\d+) errors")
# elements every shipped profile keeps: a husk (a partial parse written out) loses them
STRUCTURAL = ("SOPClassUID", "Rows", "Columns", "BitsAllocated", "SamplesPerPixel", "PhotometricInterpretation",
              "PixelData", "FloatPixelData", "DoubleFloatPixelData", "NumberOfFrames")


def _run(tmp: Path, src: Path, *extra: str, name: str | None = None) -> tuple[int, str, str, Path]:
    """``bids-deid-dicom`` on a folder holding only ``src``; (exit code, stdout, stderr, out dir)."""
    import contextlib
    import io

    in_dir = tmp / "in"
    shutil.rmtree(tmp, ignore_errors=True)
    in_dir.mkdir(parents=True)
    shutil.copy(src, in_dir / (name or src.name))
    key = generate_key(tmp / "key")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main([str(in_dir), str(tmp / "out"), "--key-file", str(key), *extra])
    return rc, out.getvalue(), err.getvalue(), tmp / "out"


def _counts(stdout: str) -> dict[str, int]:
    m = SUMMARY.search(stdout)
    assert m, stdout
    return dict(zip(("written", "exists", "skipped", "withheld", "errors"), map(int, m.groups()), strict=True))


def _check_one(tmp: Path, src: Path, clean: bool) -> str:
    """One file through bids-deid-dicom: no crash, no traceback, accounted for, and an output
    that reads completely with the input's pixel data (or cleaned at the same bit depth)."""
    rc, out, err, out_dir = _run(tmp, src, *(["--clean-pixels"] if clean else []))
    assert "Traceback" not in err and "Traceback" not in out
    n = _counts(out)
    assert sum(n.values()) == 1, out  # the file is counted exactly once: nothing vanishes
    dcms = sorted(out_dir.rglob("*.dcm"))
    assert len(dcms) == n["written"]
    if n["withheld"] or n["errors"]:
        assert rc == 1
        assert re.search(r"bids-deid: (withheld|error): \S", err), err  # with its reason
        return "withheld"
    assert rc == 0
    if n["skipped"]:
        audit = [json.loads(x) for x in (tmp / "out-private" / "audit.jsonl").read_text().splitlines()]
        assert audit[0]["status"] == "skipped" and audit[0]["reason"]
        return "skipped"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        o = pydicom.dcmread(dcms[0])  # no force: a proper Part 10 file
        for elem in o.iterall():
            _ = elem.value  # every element converts
        i = pydicom.dcmread(src, force=True)
    for kw in STRUCTURAL:
        if kw in i:
            assert kw in o, f"{src.name}: {kw} lost"
    cleaned = "cleaned" in json.loads((tmp / "out-private" / "audit.jsonl").read_text().splitlines()[0])["reason"]
    for kw in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if kw not in i:
            continue
        if not cleaned:
            assert o[kw].value == i[kw].value, f"{src.name}: {kw} changed"
        else:
            assert o.BitsAllocated == i.BitsAllocated and o.BitsStored == i.BitsStored
            assert o.pixel_array.shape == i.pixel_array.shape
            assert o.pixel_array.dtype.itemsize == i.pixel_array.dtype.itemsize
            if o.PhotometricInterpretation != i.PhotometricInterpretation:
                reason = json.loads((tmp / "out-private" / "audit.jsonl").read_text().splitlines()[0])["reason"]
                assert str(i.PhotometricInterpretation) in reason  # says why not
    return "written"


def _local(name: str) -> str:
    """A test file shipped inside pydicom (never downloaded)."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not shipped with this pydicom")
    return path


def _pydicom_files() -> list[Path]:
    return sorted(Path(f) for f in get_testdata_files() if Path(f).is_file())


# A sample of the default run: truncated, hostile, odd encodings, DICOMDIR, 32-bit colour, big endian.
SAMPLE = ("MR_truncated.dcm", "rtplan_truncated.dcm", "empty_charset_LEI.dcm", "nested_priv_SQ.dcm", "DICOMDIR",
          "SC_rgb_jpeg.dcm", "SC_rgb_rle_32bit.dcm", "ExplVR_BigEnd.dcm", "J2K_pixelrep_mismatch.dcm",
          "image_dfl.dcm", "no_meta.dcm", "JPEG2000-embedded-sequence-delimiter.dcm", "MR_small.dcm")


@pytest.mark.parametrize("clean", [False, True], ids=["default", "clean-pixels"])
@pytest.mark.parametrize("name", SAMPLE)
def test_pydicom_sample(tmp_path, name, clean):
    _check_one(tmp_path, Path(_local(name)), clean)


@pytest.mark.slow
@pytest.mark.parametrize("clean", [False, True], ids=["default", "clean-pixels"])
def test_pydicom_all_test_files(tmp_path, clean):
    """Every file of pydicom's own test data, one per run."""
    outcome = {}
    for i, src in enumerate(_pydicom_files()):
        outcome[src.name] = _check_one(tmp_path / str(i), src, clean)
    assert sum(v == "written" for v in outcome.values()) > 100


def test_truncated_files_are_withheld_not_husks(tmp_path):
    """MR_truncated and a truncated RT plan parsed partially by pydicom used to come out "written"."""
    for name in ("MR_truncated.dcm", "rtplan_truncated.dcm"):
        rc, out, err, out_dir = _run(tmp_path / name, Path(_local(name)))
        assert rc == 1 and _counts(out)["withheld"] == 1
        assert "input defect" in err and not list(out_dir.rglob("*.dcm"))


def test_dicomdir_is_not_written_as_an_image(tmp_path):
    rc, out, err, out_dir = _run(tmp_path, Path(_local("DICOMDIR")))
    assert _counts(out)["skipped"] == 1 and not list(out_dir.rglob("*.dcm"))
    audit = json.loads((tmp_path / "out-private" / "audit.jsonl").read_text())
    assert "DICOMDIR" in audit["reason"]


def test_clean_pixels_keeps_32_bit_depth(tmp_path):
    src = Path(_local("SC_rgb_rle_32bit.dcm"))
    assert _check_one(tmp_path, src, clean=True) == "written"
    o = pydicom.dcmread(next((tmp_path / "out").rglob("*.dcm")))
    assert o.BitsAllocated == 32


@needs_shared
def test_truncation_sweep_bids_deid_dicom(tmp_path):
    """A real scanner file cut at 20 sizes: each is withheld as an input defect, never written."""
    data = REAL.read_bytes()
    sizes = sorted({132 + (len(data) - 133) * k // 19 for k in range(20)})
    assert len(sizes) == 20
    for size in sizes:
        cut = tmp_path / f"cut{size}.dcm"
        cut.write_bytes(data[:size])
        rc, out, err, out_dir = _run(tmp_path / str(size), cut, name="f.dcm")
        n = _counts(out)
        assert rc == 1 and n["withheld"] == 1, (size, out, err)
        assert "Traceback" not in err and "input defect" in err, (size, err)
        assert not list(out_dir.rglob("*.dcm")), size
    rc, out, err, out_dir = _run(tmp_path / "whole", REAL)
    assert rc == 0 and _counts(out)["written"] == 1
    assert pydicom.dcmread(next(out_dir.rglob("*.dcm"))).PixelData == pydicom.dcmread(REAL).PixelData


@needs_shared
def test_truncation_sweep_bids_app_sourcedata(tmp_path):
    """The same 20 cuts as sourcedata DICOM of a BIDS dataset: the App withholds each with its
    reason and finishes (it used to stop with ``internal error (struct.error)``)."""
    from bids_deid.cli import main as app
    from bids_deid.demo import build_demo_dataset
    from bids_deid.handlers import face_in_pixels

    data = REAL.read_bytes()
    sizes = sorted({132 + (len(data) - 133) * k // 19 for k in range(20)})
    ds = build_demo_dataset(tmp_path / "input", dicom=False)
    folder = ds / "sourcedata" / "sub-canary01" / "ses-01"
    folder.mkdir(parents=True)
    for size in sizes:
        (folder / f"cut{size:07d}.dcm").write_bytes(data[:size])
        assert face_in_pixels(folder / f"cut{size:07d}.dcm") in (None, "MR image whose pixels may show the face: "
                                                                        "withheld while defacing is on")
    key = generate_key(tmp_path / "key")
    out = tmp_path / "out"
    rc = app([str(ds), str(out), "participant", "--key-file", str(key), "--deface-method", "none",
              "--skip-bids-validation", "--participant-label", "canary01"])
    assert rc == 0
    assert not list((out / "sourcedata").rglob("*.dcm")) if (out / "sourcedata").exists() else True
    recs = {}
    for f in (tmp_path / "out-private" / "state").glob("*.json"):
        recs.update(json.loads(f.read_text()).get("records", {}))
    withheld = [v for k, v in recs.items() if k.startswith("sourcedata/") and v["status"] == "withheld"]
    assert len(withheld) == 20, recs
    assert all("input defect" in v["reason"] for v in withheld)


def _encapsulated(ts: str, tmp: Path) -> Path:
    """A small secondary-capture-like MR file in transfer syntax ``ts`` (pixel fragments are bytes)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import UID, generate_uid

    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = "CANARY-PID", "CANARY^NAME", "MR"
    ds.Rows = ds.Columns = 4
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 16, 12, 11
    ds.PixelRepresentation, ds.PhotometricInterpretation = 0, "MONOCHROME2"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(ts)
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    t = UID(ts)
    if not t.is_transfer_syntax or t.is_encapsulated:
        ds.PixelData = encapsulate([bytes(range(32))])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    else:
        ds.PixelData = bytes(range(32))
        ds["PixelData"].VR = "OW"
    path = tmp / "f.dcm"
    if t.is_transfer_syntax:
        ds.save_as(path, enforce_file_format=True)
    else:  # pydicom cannot write a syntax it does not know: the dataset as explicit VR LE, the meta says ts
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_file_meta_info

        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        ds.save_as(path, enforce_file_format=True)
        raw = path.read_bytes()
        body = raw[144 + int.from_bytes(raw[140:144], "little"):]
        meta = FileMetaDataset(ds.file_meta)
        meta.TransferSyntaxUID = UID(ts)
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        write_file_meta_info(fp, meta, enforce_standard=True)
        path.write_bytes(b"\0" * 128 + b"DICM" + fp.getvalue() + body)
    return path


@pytest.mark.parametrize("ts", [str(t) for t in pydicom.uid.AllTransferSyntaxes] + ["1.2.840.10008.1.2.8.1"])
def test_every_transfer_syntax_is_handled_or_refused_by_name(tmp_path, ts):
    from bids_deid.dicom.syntax import name

    (tmp_path / "src").mkdir()
    src = _encapsulated(ts, tmp_path / "src")
    rc, out, err, out_dir = _run(tmp_path / "run", src)
    assert "Traceback" not in err
    n = _counts(out)
    if n["written"]:
        o = pydicom.dcmread(next(out_dir.rglob("*.dcm")))
        assert o.PixelData == pydicom.dcmread(src).PixelData
        assert b"CANARY" not in next(out_dir.rglob("*.dcm")).read_bytes()
        assert str(o.file_meta.TransferSyntaxUID) == ts
    else:
        assert rc == 1 and n["withheld"] == 1
        assert ts in err and name(ts) in err and name(ts) != "unknown"
    if ts == "1.2.840.10008.1.2.8.1":
        assert not n["written"]


def test_deflate_bomb_is_refused(tmp_path, monkeypatch):
    """A deflated dataset that would unpack beyond the ceiling is withheld, not inflated."""
    import zlib

    from bids_deid.dicom import integrity, reader

    src = Path(_local("image_dfl.dcm")).read_bytes()
    start, _meta = integrity.dataset_start(src)
    z = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    bomb = z.compress(b"\x08\x00\x10\x00UN\x00\x00\xff\xff\xff\x7f") + z.compress(b"\0" * (8 << 20)) + z.flush()
    monkeypatch.setattr(reader, "INFLATE_MAX", 1 << 20)
    assert "beyond" in integrity.file_defect(src[:start] + bomb)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "bomb.dcm").write_bytes(src[:start] + bomb)
    rc, out, err, _ = _run(tmp_path / "run", tmp_path / "b" / "bomb.dcm")
    assert rc == 1 and _counts(out)["withheld"] == 1 and "beyond" in err


def test_no_traceback_for_hostile_structures(tmp_path):
    """Nested sequences 10 000 deep, lying lengths and stray delimiters: withheld in one line."""
    meta = pydicom.dcmread(_local("MR_small.dcm")).file_meta
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_file_meta_info(fp, meta, enforce_standard=True)
    head = b"\0" * 128 + b"DICM" + fp.getvalue()
    sop = b"\x08\x00\x16\x00UI\x1a\x00" + b"1.2.840.10008.5.1.4.1.1.4\0"
    deep = (b"\x08\x00\x15\x11SQ\0\0\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff") * 10_000
    cases = {
        "deep": head + sop + deep,
        "lying": head + sop + b"\x10\x00\x10\x00PN\xff\x7fCANARY",
        "stray": head + sop + b"\xfe\xff\xdd\xe0\0\0\0\0",
    }
    for label, data in cases.items():
        src = tmp_path / f"{label}.dcm"
        src.write_bytes(data)
        rc, out, err, out_dir = _run(tmp_path / label, src)
        assert rc == 1 and _counts(out)["withheld"] == 1, (label, out, err)
        assert "Traceback" not in err and not list(out_dir.rglob("*.dcm"))


def test_compile_plan_cache_is_bounded_and_shared_by_equal_profiles():
    """Issue 14: 200 per-file copies of a profile (``dataclasses.replace``) used to leave 200 plans."""
    from dataclasses import replace

    from bids_deid.profiles import load_profile
    from bids_deid.scrub import dicom_table

    base = load_profile("basic")
    first = dicom_table.compile_plan(replace(base, dicom_burned_in="keep"))
    for _ in range(200):
        assert dicom_table.compile_plan(replace(base, dicom_burned_in="keep")) is first
    for i in range(20):
        dicom_table.compile_plan(replace(base, name=f"p{i}"))
    assert len(dicom_table._PLANS) <= dicom_table.PLANS_MAX
    assert dicom_table.compile_plan(base) is dicom_table.compile_plan(base)
