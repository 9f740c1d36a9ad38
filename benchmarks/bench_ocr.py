"""OCR burned-in text cleaning: seconds per frame (RapidOCR, CPU), and format conversions.

Usage: python benchmarks/bench_ocr.py [--repeat N]
Writes nothing; prints a Markdown table (copy it into docs/benchmarks-formats.md).
Uses ../shared/data when present (ultrasound frames, Analyze, MINC, PAR/REC).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _synthetic(rows: int, cols: int) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    im = Image.new("RGB", (cols, rows), (0, 0, 0))
    d = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=22)
    for i in range(4):
        d.text((10, 10 + 30 * i), f"DOE^JANE MRN{1234567 + i} 2024-01-0{i + 1}", fill=(230, 230, 230), font=font)
    return np.array(im)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    import pydicom

    from bids_deid.scrub import pixels

    t = time.perf_counter()
    pixels.get_engine()
    init = time.perf_counter() - t
    rows = [("OCR engine start (load ONNX models)", f"{init:.2f} s", "once per process")]
    pixels.find_text(_synthetic(64, 64))  # warm-up
    for r, c in ((480, 640), (600, 800), (1024, 1024)):
        img = _synthetic(r, c)
        ts = _timed(lambda img=img: pixels.find_text(img), a.repeat)
        rows.append((f"find_text, synthetic {r}x{c} RGB, 4 lines", f"{statistics.median(ts):.2f} s", "per frame"))
    for rel in ("dicom/us_rgb_burnedin/US1_UNCR.dcm", "dicom/us_palette_burnedin/OBXXXX1A.dcm"):
        src = SHARED / rel
        if not src.exists():
            continue

        def clean(src=src):
            pixels.clean_dataset_pixels(pydicom.dcmread(src), thumbnails=False)

        ts = _timed(clean, a.repeat)
        ds = pydicom.dcmread(src)
        rows.append((f"clean_dataset_pixels {src.name} ({ds.PhotometricInterpretation}, {ds.Rows}x{ds.Columns})",
                     f"{statistics.median(ts):.2f} s", "per frame, OCR + blackout + verify passes"))
    if SHARED.is_dir():
        from bids_deid.formats.analyze import analyze_to_nifti
        from bids_deid.formats.minc import minc_to_nifti
        from bids_deid.formats.parrec import parrec_to_nifti

        with tempfile.TemporaryDirectory() as tmp:
            jobs = [
                ("analyze_to_nifti (33x41x25 int16)", lambda: analyze_to_nifti(
                    SHARED / "analyze/synthetic_phi_anatomical.hdr", Path(tmp) / "a.nii.gz")),
                ("minc_to_nifti minc2_4d (2x10x20x20)", lambda: minc_to_nifti(
                    SHARED / "minc/minc2_4d.mnc", Path(tmp) / "m.nii.gz")),
                ("parrec_to_nifti EPI (64x64x9x3)", lambda: parrec_to_nifti(
                    SHARED / "parrec/phantom_EPI_asc_CLEAR_2_1.PAR", Path(tmp) / "p.nii.gz")),
            ]
            for name, fn in jobs:
                ts = _timed(fn, a.repeat)
                rows.append((name, f"{statistics.median(ts) * 1000:.0f} ms", "per file"))
    print(f"cores: {os.cpu_count()}, repeat: {a.repeat} (median)\n")
    print("| job | time | unit |\n|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")


if __name__ == "__main__":
    main()
