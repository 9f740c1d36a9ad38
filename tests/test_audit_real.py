"""The leak audit on real data: shared scanner folders and bids-examples complete without false alarms,
while the tests' own canary scanner (not the audit) finds no identifier in their outputs.

These runs take minutes: they are marked slow (CI runs them).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import SHARED, canary_hits, needs_shared

from bids_deid.cli import main

EXAMPLES = SHARED / "bids-examples"
# An institution field that holds the scanner maker's name (test phantoms do) names no site: the
# maker is kept on purpose (Manufacturer).
MAKERS = {b"toshiba", b"siemens", b"philips", b"ge medical systems", b"canon"}


def fill_empty_images(root: Path) -> int:
    """Give every placeholder (0-byte or few-byte) NIfTI of a bids-examples copy a small valid image (4D for time series)."""
    n = 0
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.stat().st_size < 64 and p.name.endswith((".nii", ".nii.gz")):  # placeholders
            four_d = any(p.name.split(".")[0].endswith(s) for s in ("_bold", "_dwi", "_sbref", "_asl", "_cbv"))
            shape = (6, 6, 5, 4) if four_d else (6, 6, 5)
            data = (np.arange(np.prod(shape)) % 97).reshape(shape).astype(np.int16)
            img = nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.0, 1.0]))
            img.header.set_xyzt_units("mm", "sec")
            if four_d:
                img.header.set_zooms((3.0, 3.0, 3.0, 2.0))
            nib.save(img, p)
            n += 1
    return n


def _identifier_values(private: Path) -> set[bytes]:
    """Long identifying values the run met (names, IDs, places): the canaries for the independent scan."""
    from bids_deid.audit.needles import DEVICE, ID, NAME, PLACE, classify

    out = set()
    for f in (private / "identifiers").glob("*.json"):
        for kind, value in json.loads(f.read_text()):
            v = str(value).strip()
            if classify(kind, v) in (NAME, ID, PLACE, DEVICE) and len(v) >= 6 and not v.replace(".", "").isdigit():
                out.add(v.encode())
    return {v for v in out if v.lower() not in MAKERS}


def _run(src: Path, out: Path, key: Path, *extra: str) -> tuple[int, int]:
    common = [str(src), str(out), "--key-file", str(key), *extra]
    rc = main([common[0], common[1], "participant", *common[2:]])
    return rc, (main([common[0], common[1], "group", *common[2:]]) if rc == 0 else -1)


@pytest.mark.slow
@needs_shared
@pytest.mark.parametrize("name", ["motion_dualtask", "ds000246", "genetics_ukbb"])
def test_bids_examples_without_false_alarm(tmp_path, key_file, name, capsys):
    src = tmp_path / name
    shutil.copytree(EXAMPLES / name, src, symlinks=True)
    fill_empty_images(src)
    out = tmp_path / "out"
    rc_p, rc_g = _run(src, out, key_file, "--skip-bids-validation", "--deface-method", "none")
    text = capsys.readouterr()
    assert rc_p == 0, text
    report = json.loads((tmp_path / "out-private" / "leak-audit.json").read_text())
    assert report["summary"]["hits"] == 0, [(h["file"], h["class"], h["value"]) for h in report["hits"]]
    assert rc_g in (0, 4), text  # 4: validator errors of the example itself (0-byte data files), not the audit
    assert canary_hits(out, tuple(_identifier_values(tmp_path / "out-private"))) == []


@pytest.mark.slow
@needs_shared
def test_raw_dicom_and_twix_folder_without_false_alarm(tmp_path, key_file, capsys):
    raw = tmp_path / "raw"
    for d in sorted((SHARED / "dicom").iterdir()):
        if d.is_dir():
            shutil.copytree(d, raw / d.name)
    for f in (SHARED / "twix").glob("*.dat"):
        shutil.copy(f, raw / f.name)
    out = tmp_path / "out"
    rc_p, rc_g = _run(raw, out, key_file, "--deface-method", "none")
    text = capsys.readouterr()
    assert (rc_p, rc_g) == (0, 0), text
    assert "leak audit: 0 hits" in text.out
    values = _identifier_values(tmp_path / "out-private")
    assert len(values) >= 10  # the run met real identifiers: the scan below has canaries to look for
    assert canary_hits(out, tuple(values)) == []


@pytest.mark.slow
@needs_shared
def test_raw_minc_analyze_parrec_slides_without_false_alarm(tmp_path, key_file, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    for sub in ("minc", "analyze", "parrec", "wsi"):
        for f in sorted((SHARED / sub).iterdir()):
            if f.is_file() and not f.name.startswith(("LICENSE", "README")):
                (raw / sub).mkdir(exist_ok=True)
                shutil.copy(f, raw / sub / f.name)
    out = tmp_path / "out"
    rc_p, rc_g = _run(raw, out, key_file, "--deface-method", "none")
    text = capsys.readouterr()
    assert rc_p == 0, text
    report = json.loads((tmp_path / "out-private" / "leak-audit.json").read_text())
    assert report["summary"]["hits"] == 0, [(h["file"], h["class"], h["value"]) for h in report["hits"]]
    assert rc_g == 0, text
    assert canary_hits(out, tuple(_identifier_values(tmp_path / "out-private")) + (b"DOE^JANE", b"MRN1234567")) == []
