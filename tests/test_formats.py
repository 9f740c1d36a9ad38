"""Analyze, MINC, PAR/REC and whole-slide images: scrubbed per profile, proven by raw-byte leak scans."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from conftest import SHARED, canary_hits, needs_shared, tree_digest

from bids_deid.convert.formats import format_of
from bids_deid.errors import InputError, ProfileError
from bids_deid.formats.analyze import analyze_to_nifti, scrub_analyze
from bids_deid.formats.base import ScrubLog
from bids_deid.formats.minc import minc_to_nifti, scrub_minc
from bids_deid.formats.parrec import parrec_to_nifti, scrub_parrec
from bids_deid.formats.wsi import deidentify_wsi_dicom, scrub_tiff_wsi
from bids_deid.profiles import load_profile
from bids_deid.pseudonym import Pseudonymizer

ANALYZE_PHI = (b"DOE^JANE", b"MRN1234567", b"Jane Doe", b"jdoe_t1", b"SYNTH", b"S0001", b"20240101", b"101500",
               b"19700101")
PAR_PHI = (b"phantom", b"Konvertertest", b"EPI_asc CLEAR", b"2014.02.14", b"09:00:57", b"\\Export")
SVS_PHI = (b"DOE^JANE", b"MRN1234567", b"jdoe", b"SS1302", b"07/02/15", b"10:30:55", b"LABELTEXT", b"2015:07:02")


# ------------------------------------------------------------------ Analyze
@needs_shared
def test_analyze_pair_scrubbed_and_data_kept(tmp_path):
    src = SHARED / "analyze" / "synthetic_phi_anatomical.hdr"
    slog = ScrubLog()
    written = scrub_analyze(src, tmp_path / "out" / "x.hdr", slog)
    assert {p.suffix for p in written} == {".hdr", ".img", ".mat"}
    assert canary_hits(tmp_path / "out", ANALYZE_PHI) == []
    assert ("Analyze patient_id", "MRN1234567") in slog.identifiers  # the private side saw it
    a, b = nib.load(str(src)), nib.load(str(tmp_path / "out" / "x.hdr"))
    assert np.array_equal(a.get_fdata(), b.get_fdata()) and np.allclose(a.affine, b.affine)
    from scipy.io import loadmat

    assert {k for k in loadmat(tmp_path / "out" / "x.mat") if not k.startswith("__")} == {"M", "mat"}


@needs_shared
def test_analyze_to_nifti(tmp_path):
    src = SHARED / "analyze" / "synthetic_phi_anatomical.hdr"
    out = analyze_to_nifti(src, tmp_path / "sub-x_T1w.nii.gz")
    assert canary_hits(tmp_path, ANALYZE_PHI) == []
    a, b = nib.load(str(src)), nib.load(str(out))
    assert np.array_equal(a.get_fdata(), b.get_fdata()) and np.allclose(a.affine, b.affine)
    assert b.header["descrip"].tobytes().strip(b"\x00") == b""


def test_analyze_truncated_image_is_an_error(tmp_path):
    img = nib.AnalyzeImage(np.zeros((4, 4, 4), np.int16), np.eye(4))
    nib.save(img, str(tmp_path / "a.hdr"))
    (tmp_path / "a.img").write_bytes((tmp_path / "a.img").read_bytes()[:10])
    with pytest.raises(InputError, match="truncated"):
        scrub_analyze(tmp_path / "a.hdr", tmp_path / "o" / "a.hdr")
    assert not (tmp_path / "o" / "a.hdr").exists()


# ------------------------------------------------------------------ MINC
@needs_shared
@pytest.mark.parametrize("name", ["minc1_1_scale.mnc", "minc1_4d.mnc", "minc2_1_scale.mnc", "minc2_4d.mnc",
                                  "small.mnc", "tiny.mnc"])
def test_minc_scrub_and_convert(tmp_path, name):
    src = SHARED / "minc" / name
    assert b"history" in src.read_bytes() or b"ident" in src.read_bytes()
    out = scrub_minc(src, tmp_path / name)
    nii = minc_to_nifti(src, tmp_path / "x.nii.gz")
    assert canary_hits(tmp_path, (b"history", b"mb312", b"actman", b"rawtominc", b"2013")) == []
    a = nib.load(str(src))
    for other in (nib.load(str(out)), nib.load(str(nii))):
        assert np.allclose(a.get_fdata(), other.get_fdata(), atol=1e-4)
        assert np.allclose(a.affine, other.affine)


# ------------------------------------------------------------------ PAR/REC
@needs_shared
def test_parrec_scrub_and_convert(tmp_path):
    src = SHARED / "parrec" / "phantom_EPI_asc_CLEAR_2_1.PAR"
    written = scrub_parrec(src, tmp_path / "s" / "x.PAR")
    assert [p.suffix for p in written] == [".PAR", ".REC"]
    nii, side = parrec_to_nifti(src, tmp_path / "n" / "sub-x_task-rest_bold.nii.gz")
    assert canary_hits(tmp_path, PAR_PHI) == []
    a = nib.load(str(src))
    assert np.allclose(a.get_fdata(), nib.load(str(tmp_path / "s" / "x.PAR")).get_fdata())
    assert np.allclose(a.get_fdata(), nib.load(str(nii)).get_fdata(), atol=1e-3)
    meta = json.loads(side.read_text())
    assert meta["RepetitionTime"] == pytest.approx(2.0) and meta["EchoTime"] == pytest.approx(0.03)


# ------------------------------------------------------------------ whole-slide
def _svs(path: Path) -> np.ndarray:
    import tifffile

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)
    desc = ("Aperio Image Library v12.0.15 \r\n512x512 [0,0 512x512] (256x256) JPEG/RGB Q=70|AppMag = 20|"
            "ScanScope ID = SS1302|Filename = DOE^JANE_MRN1234567|Date = 07/02/15|Time = 10:30:55|User = jdoe|"
            "MPP = 0.499")
    with tifffile.TiffWriter(path) as tw:
        tw.write(base, tile=(256, 256), compression="zlib", photometric="rgb", description=desc, metadata=None,
                 software="Aperio", datetime="2015:07:02 10:30:55", extratags=[(315, "s", 0, "DOE^JANE", True)])
        tw.write(base[::4, ::4], compression="zlib", photometric="rgb", metadata=None,
                 description="Aperio Image Library v12.0.15 \r\n128x128 -> 128x128 JPEG/RGB Q=70")
        tw.write(base[::2, ::2], tile=(256, 256), compression="zlib", photometric="rgb", subfiletype=1,
                 metadata=None, description="Aperio Image Library v12.0.15 \r\n256x256 (256x256) JPEG/RGB Q=70")
        label = np.zeros((64, 128, 3), np.uint8)
        label[:, :, 0] = 7
        tw.write(label, compression="zlib", photometric="rgb", subfiletype=1, metadata=None,
                 description="Aperio Image Library v12.0.15\nlabel 128x64 LABELTEXT")
        tw.write(label[:, :100], compression="zlib", photometric="rgb", subfiletype=9, metadata=None,
                 description="Aperio Image Library v12.0.15\nmacro 100x64 LABELTEXT")
    return base


def test_svs_label_macro_removed_pyramid_intact(tmp_path):
    import tifffile

    base = _svs(tmp_path / "in" / "slide.svs") if (tmp_path / "in").mkdir() is None else None
    assert format_of(tmp_path / "in" / "slide.svs") == "tiff"
    res = scrub_tiff_wsi(tmp_path / "in" / "slide.svs", tmp_path / "out" / "slide.svs")
    assert res.kept == 3 and sorted(res.dropped) == ["label", "macro"]
    assert canary_hits(tmp_path / "out", SVS_PHI) == []
    with tifffile.TiffFile(tmp_path / "out" / "slide.svs") as t:
        assert len(t.pages) == 3
        assert np.array_equal(t.pages[0].asarray(), base)
        assert np.array_equal(t.pages[2].asarray(), base[::2, ::2])
        assert "AppMag = 20" in t.pages[0].description and "MPP = 0.499" in t.pages[0].description
        assert all(int(p.asarray()[..., 0].max()) != 7 or p.shape[0] != 64 for p in t.pages)


@needs_shared
def test_dicom_wsi_volume_deidentified_label_withheld(tmp_path):
    src = SHARED / "wsi" / "cptac-brca_911f6cbd_SM.dcm"
    pseudo = Pseudonymizer(b"k" * 32)
    profile = load_profile("basic")
    res = deidentify_wsi_dicom(src, tmp_path / "out" / "v.dcm", profile, pseudo, subject="abc")
    assert res.status == "written", res.reason
    assert canary_hits(tmp_path / "out", (b"15BR001",)) == []
    a, b = pydicom.dcmread(src), pydicom.dcmread(tmp_path / "out" / "v.dcm")
    assert np.array_equal(a.pixel_array, b.pixel_array)
    ds = pydicom.dcmread(src)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LABEL", "NONE"]
    ds.save_as(tmp_path / "label.dcm")
    res = deidentify_wsi_dicom(tmp_path / "label.dcm", tmp_path / "out" / "l.dcm", profile, pseudo, subject="abc")
    assert res.status == "withheld" and not (tmp_path / "out" / "l.dcm").exists()


# ------------------------------------------------------------------ profile key
def test_pixel_regions_profile_key(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("extends: basic\ndicom:\n  pixel_regions:\n    - {modality: US, boxes: [[0, 0, 640, 60]]}\n")
    assert load_profile(str(good)).dicom_pixel_regions[0]["boxes"] == ((0, 0, 640, 60),)
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: basic\ndicom:\n  pixel_regions:\n    - {modality: US, boxes: [[10, 0, 5, 60]]}\n")
    with pytest.raises(ProfileError, match="pixel_regions"):
        load_profile(str(bad))


# ------------------------------------------------------------------ through the pipeline
@needs_shared
def test_bids_subject_with_analyze_minc_parrec_and_slide(tmp_path, key_file):
    from bids_deid.cli import main

    ds = tmp_path / "in"
    (ds / "sub-DOE/anat").mkdir(parents=True)
    (ds / "sub-DOE/func").mkdir(parents=True)
    (ds / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.10.0"}))
    (ds / "participants.tsv").write_text("participant_id\nsub-DOE\n")
    for ext in (".hdr", ".img", ".mat"):
        shutil.copy(SHARED / "analyze" / f"synthetic_phi_anatomical{ext}", ds / f"sub-DOE/anat/sub-DOE_T1w{ext}")
    shutil.copy(SHARED / "minc" / "minc2_1_scale.mnc", ds / "sub-DOE/anat/sub-DOE_T2w.mnc")
    for ext in (".PAR", ".REC"):
        shutil.copy(SHARED / "parrec" / f"phantom_EPI_asc_CLEAR_2_1{ext}", ds / f"sub-DOE/func/sub-DOE_task-rest_bold{ext}")
    (ds / "sourcedata/sub-DOE").mkdir(parents=True)
    _svs(ds / "sourcedata/sub-DOE/slide.svs")
    shutil.copy(SHARED / "minc" / "minc1_4d.mnc", ds / "sourcedata/sub-DOE/raw4d.mnc")
    before = tree_digest(ds)
    out = tmp_path / "out"
    args = ["--key-file", str(key_file), "--deface-method", "none", "--skip-bids-validation"]
    assert main([str(ds), str(out), "participant", *args]) == 0
    assert tree_digest(ds) == before
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert sum(n.endswith("_T1w.nii.gz") for n in names) == 1
    assert sum(n.endswith("_T2w.nii.gz") for n in names) == 1
    assert sum(n.endswith("_task-rest_bold.nii.gz") for n in names) == 1
    assert sum(n.endswith("_task-rest_bold.json") for n in names) == 1
    assert any(n.startswith("sourcedata/microscopy/") and n.endswith(".svs") for n in names)
    assert any(n.startswith("sourcedata/minc/") and n.endswith(".mnc") for n in names)
    assert not any(n.endswith((".hdr", ".img", ".PAR", ".REC")) for n in names)
    # the slide's TIFF DateTime is shifted with its time of day kept (as acq_time in scans.tsv)
    svs_phi = tuple(c for c in SVS_PHI if c != b"10:30:55")
    assert canary_hits(out, ANALYZE_PHI + PAR_PHI + svs_phi + (b"sub-DOE", b"mb312")) == []
    t1 = next(out.rglob("*_T1w.nii.gz"))
    src = nib.load(str(SHARED / "analyze" / "synthetic_phi_anatomical.hdr"))
    assert np.array_equal(nib.load(str(t1)).get_fdata(), src.get_fdata())


@needs_shared
def test_raw_folder_with_analyze_and_minc(tmp_path, key_file):
    from bids_deid.cli import main
    from bids_deid.convert.raw import is_raw_input

    raw = tmp_path / "raw" / "patA"
    raw.mkdir(parents=True)
    for ext in (".hdr", ".img", ".mat"):
        shutil.copy(SHARED / "analyze" / f"synthetic_phi_anatomical{ext}", raw / f"scan{ext}")
    shutil.copy(SHARED / "minc" / "minc2_4d.mnc", raw / "x.mnc")
    assert is_raw_input(tmp_path / "raw")
    out = tmp_path / "out"
    assert main([str(tmp_path / "raw"), str(out), "participant", "--key-file", str(key_file),
                 "--deface-method", "none"]) == 0
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert sum(n.startswith("sourcedata/analyze/") for n in names) == 3
    assert sum(n.startswith("sourcedata/minc/") for n in names) == 1
    assert canary_hits(out, ANALYZE_PHI + (b"patA", b"mb312")) == []


# ------------------------------------------------------------------ companions, withheld conversions, report links
def _tiny_bids(root: Path) -> Path:
    (root / "sub-DOE/anat").mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.10.0"}))
    (root / "participants.tsv").write_text("participant_id\nsub-DOE\n")
    return root


def test_orphan_companions_left_out_and_withheld_conversion_withholds_sidecar(tmp_path, key_file, monkeypatch):
    import bids_deid.deface as deface_mod
    from bids_deid.cli import main
    from bids_deid.deface import DefaceResult

    ds = _tiny_bids(tmp_path / "in")
    nib.save(nib.AnalyzeImage(np.ones((8, 8, 8), np.int16), np.eye(4)), str(ds / "sub-DOE/anat/sub-DOE_T1w.hdr"))
    (ds / "sub-DOE/anat/sub-DOE_T1w.json").write_text(json.dumps({"RepetitionTime": 2.3}))
    (ds / "sub-DOE/anat/lonely.img").write_bytes(b"\0" * 64)
    (ds / "sub-DOE/anat/lonely.mat").write_bytes(b"\0" * 64)
    (ds / "sub-DOE/anat/scan.REC").write_bytes(b"\0" * 64)

    def refuse(src, dst, **kw):
        return DefaceResult(passed=False, reason="registration off (test)", metrics={}, qc_images={})

    monkeypatch.setattr(deface_mod, "deface_file", refuse)
    out = tmp_path / "out"
    assert main([str(ds), str(out), "participant", "--key-file", str(key_file), "--skip-bids-validation",
                 "--deface-method", "template"]) == 0
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert not any("_T1w" in n for n in names), names  # neither the image nor its input sidecar
    state = json.loads(next((tmp_path / "out-private" / "state").glob("sub-*.json")).read_text())["records"]
    assert any(k.endswith("_T1w.json") and v["status"] == "withheld" for k, v in state.items())
    left = {k.rsplit("/", 1)[-1]: v for k, v in state.items() if v["status"] == "left out"}
    assert set(left) >= {"lonely.img", "lonely.mat", "scan.REC"}
    assert "without its header" in left["scan.REC"]["reason"]


def test_run_report_links_pixels_qc(tmp_path):
    from types import SimpleNamespace

    from bids_deid.report.html import pixels_qc_pages, write_run_report

    priv = tmp_path / "priv"
    (priv / "qc" / "sub-abc").mkdir(parents=True)
    (priv / "qc" / "sub-abc" / "pixels-qc.html").write_text("<html></html>")
    (priv / "pixels-qc.html").write_text("<html></html>")
    assert pixels_qc_pages(priv) == ["pixels-qc.html", "qc/sub-abc/pixels-qc.html"]
    s = SimpleNamespace(private_dir=priv, profile=SimpleNamespace(source="basic"))
    summary = {"validation": {"errors": 0, "warnings": 0, "codes": []},
               "audit": {"hits": 0, "checked_values": 0, "files": 0}, "subjects_done": 1, "subjects_in_input": 1}
    html = write_run_report(s, summary).read_text()
    assert 'href="qc/sub-abc/pixels-qc.html"' in html and 'href="pixels-qc.html"' in html


@needs_shared
def test_raw_par_and_hires_analyze_become_bids_images(tmp_path, key_file, capsys):
    from bids_deid.cli import main

    raw = tmp_path / "raw" / "patB"
    raw.mkdir(parents=True)
    for ext in (".PAR", ".REC"):
        shutil.copy(SHARED / "parrec" / f"phantom_EPI_asc_CLEAR_2_1{ext}", raw / f"series7{ext}")
    t1 = np.zeros((128, 128, 128), np.uint8)
    t1[20:108, 20:108, 20:108] = 200
    nib.save(nib.AnalyzeImage(t1, np.diag([1.0, 1.0, 1.0, 1.0])), str(raw / "vol.hdr"))
    (raw / "notes.txt").write_text("DOE^JANE scanned\n")
    out = tmp_path / "out"
    opts = ["--key-file", str(key_file), "--deface-method", "none"]
    assert main([str(tmp_path / "raw"), str(out), "participant", *opts]) == 0
    assert main([str(tmp_path / "raw"), str(out), "group", *opts]) == 0
    text = capsys.readouterr().out
    assert "validator: 0 errors" in text, text
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    bold = [n for n in names if n.endswith("_task-unknown_bold.nii.gz") and "/func/" in n]
    assert len(bold) == 1 and sum(n.endswith("/anat/" + n.rsplit("/", 1)[-1]) and n.endswith("_T1w.nii.gz")
                                  for n in names) == 1, names
    side = json.loads((out / bold[0].replace(".nii.gz", ".json")).read_text())
    assert side["TaskName"] == "unknown" and side["RepetitionTime"] == pytest.approx(2.0) and "EchoTime" in side
    assert any(n.startswith("sourcedata/parrec/") for n in names)  # --sourcedata dicom (default): sources too
    assert canary_hits(out, PAR_PHI + (b"patB", b"DOE^JANE")) == []
    problems = json.loads(next((tmp_path / "out-private" / "state").glob("_raw-*.json")).read_text())["problems"]
    assert any(p.startswith("1 non-DICOM file(s) ignored") for p in problems), problems


# ------------------------------------------------------------------ whole-slide images in BIDS micr
@needs_shared
def test_raw_slides_to_bids_micr_valid(tmp_path, key_file, capsys):
    import tifffile

    from bids_deid.cli import main

    raw = tmp_path / "raw"
    (raw / "slides").mkdir(parents=True)
    (raw / "caseA").mkdir()
    base = _svs(raw / "slides" / "DOE_JANE.svs")
    shutil.copy(SHARED / "wsi" / "cptac-brca_911f6cbd_SM.dcm", raw / "caseA" / "wsi.dcm")
    out = tmp_path / "out"
    opts = ["--key-file", str(key_file), "--deface-method", "none"]
    assert main([str(raw), str(out), "participant", *opts]) == 0
    assert main([str(raw), str(out), "group", *opts]) == 0
    text = capsys.readouterr().out
    assert "validator: 0 errors" in text and "leak audit: 0 hits" in text, text
    omes = sorted(out.glob("sub-*/micr/sub-*_sample-*_BF.ome.tif"))
    assert len(omes) == 2
    samples = (out / "samples.tsv").read_text().splitlines()
    assert samples[0] == "sample_id\tparticipant_id\tsample_type" and len(samples) == 3
    assert canary_hits(out, SVS_PHI + (b"15BR001", b"DOE_JANE", b"caseA")) == []
    sizes = {}
    for p in omes:
        side = json.loads(p.with_name(p.name.replace(".ome.tif", ".json")).read_text())
        assert side["PixelSizeUnits"] == "um"
        with tifffile.TiffFile(p) as t:
            assert t.is_ome and "PixelMed" not in (t.ome_metadata or "")
            levels = t.series[0].levels
            assert len(levels) == 2
            full = levels[0].asarray()
            sizes[full.shape] = (full, side["PixelSize"])
    svs_img, svs_px = sizes[(512, 512, 3)]
    assert np.array_equal(svs_img, base) and svs_px == [0.499, 0.499]  # tiles copied, label/macro left out
    wsi, wsi_px = sizes[(1547, 1680, 3)]
    assert np.array_equal(wsi[:240, :240], pydicom.dcmread(SHARED / "wsi" / "cptac-brca_911f6cbd_SM.dcm").pixel_array[0])
    assert wsi_px[0] == pytest.approx(15.8212, abs=1e-3)


def test_slide_without_pixel_size_stays_in_sourcedata(tmp_path):
    import tifffile

    from bids_deid.convert.micr import slide_pixel_size_um, tiff_pixel_size_um

    with tifffile.TiffWriter(tmp_path / "a.tif") as tw:
        tw.write(np.zeros((64, 64), np.uint8), tile=(32, 32), metadata=None)
    assert slide_pixel_size_um(tmp_path / "a.tif") is None
    with tifffile.TiffWriter(tmp_path / "b.tif") as tw:
        tw.write(np.zeros((64, 64), np.uint8), tile=(32, 32), metadata=None, resolution=(20000, 20000),
                 resolutionunit=3)
    assert tiff_pixel_size_um(tmp_path / "b.tif") == pytest.approx((0.5, 0.5))


# ------------------------------------------------------------------ MINC acquisition attributes -> sidecar
MINC_ACQ = {"repetition_time": 2.3, "echo_time": 0.00298, "inversion_time": 0.9, "flip_angle": 9.0,
            "imaging_frequency": 123250000.0, "scanning_sequence": b"GR\\IR", "protocol_name": b"t1_mprage_sag"}
MINC_STUDY = {"manufacturer": b"SIEMENS", "model": b"Prisma", "field_value": 2.89362, "serial_no": b"166038",
              "institution": b"Clinic of Springfield", "station_id": b"MRC35113", "software_version": b"syngo MR E11"}


def _minc_with_acquisition(src: Path, dst: Path) -> Path:
    """A copy of MINC file ``src`` whose acquisition/study information holds scanner attributes."""
    version = dst.suffix and open(src, "rb").read(3) == b"CDF"
    if not version:  # MINC 2 (HDF5)
        import h5py

        shutil.copy(src, dst)
        with h5py.File(dst, "a") as f:
            info = f["minc-2.0"].require_group("info")
            for name, attrs in (("acquisition", MINC_ACQ), ("study", MINC_STUDY)):
                g = info[name] if name in info else info.create_group(name)  # MINC 2 stores a dataset
                for k, v in attrs.items():
                    g.attrs[k] = np.bytes_(v) if isinstance(v, bytes) else np.float64(v)
        return dst
    from scipy.io import netcdf_file

    with netcdf_file(src, "r", mmap=False) as fin, netcdf_file(dst, "w", version=fin.version_byte) as fout:
        for k, v in fin._attributes.items():
            setattr(fout, k, v)
        for d, n in fin.dimensions.items():
            fout.createDimension(d, n)
        for name, var in fin.variables.items():
            out = fout.createVariable(name, var.data.dtype if var.data is not None else var.typecode(),
                                      var.dimensions)
            if var.shape:
                out[:] = var[:]
            elif var.data is not None and var.data.size and out.data is not None:
                out.data[()] = np.asarray(var.data).reshape(())
            for k, a in var._attributes.items():
                setattr(out, k, a)
            extra = {"acquisition": MINC_ACQ, "study": MINC_STUDY}.get(name, {})
            for k, v in extra.items():
                setattr(out, k, v if isinstance(v, bytes) else np.float64(v))
    return dst


@needs_shared
@pytest.mark.parametrize("name", ["minc1_1_scale.mnc", "minc2_1_scale.mnc"])
def test_minc_conversion_sidecar_follows_the_profile(tmp_path, name):
    from bids_deid.formats import minc

    src = _minc_with_acquisition(SHARED / "minc" / name, tmp_path / name)
    slog = ScrubLog()
    nii, side_path = minc.to_nifti(src, tmp_path / "out" / "x.nii.gz", load_profile("basic"), 12, slog)
    side = json.loads(side_path.read_text())
    # the science: BIDS names and units (seconds, degrees, MHz, tesla)
    assert side["RepetitionTime"] == pytest.approx(2.3)
    assert side["EchoTime"] == pytest.approx(0.00298)
    assert side["InversionTime"] == pytest.approx(0.9)
    assert side["FlipAngle"] == pytest.approx(9.0)
    assert side["ImagingFrequency"] == pytest.approx(123.25)
    assert side["MagneticFieldStrength"] == pytest.approx(2.89362)
    assert side["Manufacturer"] == "SIEMENS" and side["ManufacturersModelName"] == "Prisma"
    assert side["ScanningSequence"] == "GR\\IR"
    # the basic profile's sidecar rules remove institution and device identity, as for DICOM's sidecars
    for gone in ("InstitutionName", "StationName", "DeviceSerialNumber"):
        assert gone not in side
    assert canary_hits(tmp_path / "out", (b"Springfield", b"MRC35113", b"166038")) == []
    assert np.allclose(nib.load(str(nii)).get_fdata(), nib.load(str(SHARED / "minc" / name)).get_fdata(), atol=1e-6)
    # a profile that keeps the institution gets it
    keep = tmp_path / "keep.yaml"
    keep.write_text("extends: basic\nsidecar:\n  rules:\n    - {field: InstitutionName, action: keep}\n")
    _nii, side_path = minc.to_nifti(src, tmp_path / "out2" / "x.nii.gz", load_profile(str(keep)), 12, ScrubLog())
    assert json.loads(side_path.read_text())["InstitutionName"] == "Clinic of Springfield"


@needs_shared
def test_minc_without_acquisition_attributes_has_no_sidecar(tmp_path):
    from bids_deid.formats import minc

    _nii, side = minc.to_nifti(SHARED / "minc" / "minc1_4d.mnc", tmp_path / "x.nii.gz", None, None, ScrubLog())
    assert side is None and not list(tmp_path.glob("*.json"))


@needs_shared
def test_bids_minc_image_gets_its_sidecar(tmp_path, key_file):
    from bids_deid.cli import main

    ds = _tiny_bids(tmp_path / "in")
    _minc_with_acquisition(SHARED / "minc" / "minc1_1_scale.mnc", ds / "sub-DOE/anat/sub-DOE_T1w.mnc")
    out = tmp_path / "out"
    assert main([str(ds), str(out), "participant", "--key-file", str(key_file), "--deface-method", "none",
                 "--skip-bids-validation"]) == 0
    sides = list(out.glob("sub-*/anat/*_T1w.json"))
    assert len(sides) == 1 and json.loads(sides[0].read_text())["RepetitionTime"] == pytest.approx(2.3)
    assert canary_hits(out, (b"Springfield", b"MRC35113", b"166038", b"sub-DOE")) == []


def test_svs_scanner_and_date_tags_follow_the_profile(tmp_path):
    import tifffile

    from bids_deid.formats import wsi
    from bids_deid.formats.base import Context, write_outcome

    (tmp_path / "in").mkdir()
    base = _svs(tmp_path / "in" / "slide.svs")
    with tifffile.TiffWriter(tmp_path / "in" / "scanner.tif") as tw:
        tw.write(base, tile=(256, 256), compression="zlib", photometric="rgb", metadata=None, software="ScanScope 12",
                 datetime="2015:07:02 10:30:55", extratags=[(271, "s", 0, "Aperio", True), (272, "s", 0, "AT2", True),
                                                            (316, "s", 0, "LAB-PC-7", True)])

    def run(profile, offset, name):
        out = wsi.scrub(tmp_path / "in" / "scanner.tif", profile, Context(rel_out=name, offset_days=offset))
        write_outcome(tmp_path / "out", out, skip_existing=False)
        with tifffile.TiffFile(tmp_path / "out" / name) as t:
            page = t.pages[0]
            assert np.array_equal(page.asarray(), base)
            return {code: page.tags[code].value for code in (271, 272, 305, 306, 316) if code in page.tags}

    tags = run(load_profile("basic"), 10, "basic.tif")
    # scanner make/model/software are BIDS sidecar fields basic keeps; the date is shifted by the offset
    assert tags[271] == "Aperio" and tags[272] == "AT2" and tags[305] == "ScanScope 12"
    assert tags[306] == "2015:07:12 10:30:55"
    assert 316 not in tags  # the host computer has no sidecar field: always removed
    # at dataset level (no offset) a date is removed, as in a sidecar
    assert 306 not in run(load_profile("basic"), None, "nooffset.tif")
    strict = tmp_path / "strict.yaml"
    strict.write_text("extends: basic\ndates: remove\nsidecar:\n  rules:\n"
                      "    - {field: ManufacturersModelName, action: remove}\n")
    tags = run(load_profile(str(strict)), 10, "strict.tif")
    assert 306 not in tags and 272 not in tags and tags[271] == "Aperio"
    # without a profile (the raw slide path's fixed rules) every one of them is removed
    res = wsi.scrub_tiff_wsi(tmp_path / "in" / "scanner.tif", tmp_path / "out" / "fixed.tif")
    assert res.kept == 1
    with tifffile.TiffFile(tmp_path / "out" / "fixed.tif") as t:
        assert not {271, 272, 305, 306, 316} & set(t.pages[0].tags.keys())
