"""Burned-in text: OCR finds it, the cleaner blacks it out, OCR finds nothing after (slow-ish: OCR per frame)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from conftest import SHARED, canary_hits, needs_shared

from bids_deid.profiles import load_profile
from bids_deid.pseudonym import Pseudonymizer
from bids_deid.scrub import pixels

pytestmark = pytest.mark.skipif(not pixels.ocr_available(), reason="OCR extra (rapidocr) not installed")
TEXT = ("DOE^JANE", "MRN1234567")


def _frame_with_text(rows=160, cols=420, lines=TEXT) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    im = Image.new("L", (cols, rows), 0)
    d = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=26)
    for i, t in enumerate(lines):
        d.text((12, 14 + 40 * i), t, fill=230, font=font)
    d.ellipse((250, 60, 380, 150), fill=120)  # some "anatomy" that is not text
    return np.array(im)


def _ocr_all(ds) -> str:
    arr = np.array(ds.pixel_array)
    frames = arr if int(ds.get("NumberOfFrames", 1) or 1) > 1 else arr[None]
    lut = pixels._lut(ds)
    return " ".join(b.text for f in frames for b in pixels.find_text(pixels.to_display(f, ds.PhotometricInterpretation,
                                                                                        lut)))


def _sc_dataset(frames: np.ndarray) -> pydicom.Dataset:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "OT"
    ds.PatientName, ds.PatientID = "DOE^JANE", "MRN1234567"
    ds.set_pixel_data(frames, "MONOCHROME2", 8, generate_instance_uid=False)
    return ds


def test_synthetic_multiframe_text_removed(tmp_path):
    frames = np.stack([_frame_with_text(), _frame_with_text(lines=("ST MARYS HOSP", "2024-01-01"))])
    ds = _sc_dataset(frames)
    src = tmp_path / "in.dcm"
    ds.save_as(src, enforce_file_format=True)
    assert "MRN1234567" in _ocr_all(pydicom.dcmread(src)).replace(" ", "")  # the detector sees it
    out = tmp_path / "out" / "x.dcm"
    res, pres = pixels.deidentify_file_clean_pixels(src, out, load_profile("basic"), Pseudonymizer(b"k" * 32),
                                                    subject="abc")
    assert res.status == "written", res.reason
    assert pres.boxes >= 4 and pres.before_png and pres.after_png
    got = pydicom.dcmread(out)
    assert got.BurnedInAnnotation == "NO" and got.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert got.pixel_array.shape == frames.shape
    assert _ocr_all(got) == ""
    assert canary_hits(tmp_path / "out", (b"DOE^JANE", b"MRN1234567", b"ST MARYS")) == []
    # the non-text part of the image is untouched
    assert np.array_equal(got.pixel_array[:, 100:, 300:], frames[:, 100:, 300:])


def test_text_left_is_refused(tmp_path, monkeypatch):
    ds = _sc_dataset(_frame_with_text())
    monkeypatch.setattr(pixels, "fill_boxes", lambda *a, **k: None)  # a cleaner that does nothing
    with pytest.raises(pixels.LeakError):
        pixels.clean_dataset_pixels(ds, max_passes=1, thumbnails=False)


@needs_shared
@pytest.mark.parametrize("rel", ["dicom/us_rgb_burnedin/US1_UNCR.dcm", "dicom/us_palette_burnedin/OBXXXX1A.dcm"])
def test_ultrasound_burned_in_cleaned(tmp_path, rel):
    src = SHARED / rel
    before = _ocr_all(pydicom.dcmread(src))
    assert before  # there is text to find
    out = tmp_path / "out" / "us.dcm"
    res, pres = pixels.deidentify_file_clean_pixels(src, out, load_profile("basic"), Pseudonymizer(b"k" * 32),
                                                    subject="abc")
    assert res.status == "written", res.reason
    got = pydicom.dcmread(out)
    assert got.BurnedInAnnotation == "NO"
    # the method says the pixels were cleaned (PS3.16 CID 7050), beside the basic profile
    codes = [(i.CodeValue, i.CodingSchemeDesignator) for i in got.DeidentificationMethodCodeSequence]
    assert ("113101", "DCM") in codes and ("113100", "DCM") in codes and len(codes) == len(set(codes))
    assert got.PhotometricInterpretation == pydicom.dcmread(src).PhotometricInterpretation
    assert _ocr_all(got) == ""
    maker = str(got.get("Manufacturer", "")).lower()  # the header keeps the manufacturer (profile choice)
    words = [w for w in before.split() if len(w) >= 6 and w.isalpha() and w.lower() not in maker]
    assert canary_hits(tmp_path / "out", tuple(w.encode() for w in words)) == []


@needs_shared
def test_dicom_cli_clean_pixels(tmp_path, key_file):
    import shutil

    from bids_deid.dicom_cli import main

    (tmp_path / "in").mkdir()
    shutil.copy(SHARED / "dicom/us_rgb_burnedin/US1_UNCR.dcm", tmp_path / "in" / "us.dcm")
    assert main([str(tmp_path / "in"), str(tmp_path / "out"), "--key-file", str(key_file), "--clean-pixels"]) == 0
    files = list((tmp_path / "out").rglob("*.dcm"))
    assert len(files) == 1 and pydicom.dcmread(files[0]).BurnedInAnnotation == "NO"
    assert (tmp_path / "out-private" / "pixels-qc.html").is_file()
    assert canary_hits(tmp_path / "out", (b"BAPTIST",)) == []
