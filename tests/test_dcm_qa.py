"""dcm2niix's own QA collections (real GE, Philips, Siemens series) through the App, judged by their references.

Each folder of ``../shared/data/dcm_qa`` holds DICOM input and, where the upstream repository has one,
``Ref/`` with the maintainers' reference NIfTI/JSON. Every reference image must appear in the BIDS
tree with identical voxels (a 3D reference may come back as a one-volume 4D time series, which BIDS
requires for BOLD), every spec field of its JSON with the same value; the validator reports no error
and the private record of the run accounts for every series of the input. Folders without ``Ref/``
(Philips DTI stored as ``.gz``, Agfa-archived Siemens) are judged against plain dcm2niix run here.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pydicom
import pytest
from conftest import SHARED, needs_shared

from bids_deid.cli import main

QA = SHARED / "dcm_qa"
SPEC_FIELDS = ("RepetitionTime", "EchoTime", "EchoTime1", "EchoTime2", "PhaseEncodingDirection", "SliceTiming",
               "MagneticFieldStrength", "Units", "EffectiveEchoSpacing", "TotalReadoutTime", "FlipAngle",
               "InversionTime", "SliceEncodingDirection", "PhaseEncodingAxis", "Manufacturer",
               "MultibandAccelerationFactor", "ParallelReductionFactorInPlane")
# kept for pipelines; its exact value depends on the dcm2niix version that wrote Ref/ (SeriesDescription and
# ProtocolName are kept too, but go when they hold the patient's name, as the NIH GE protocol does)
PRESENT_FIELDS = ("ImageType",)
FOLDERS = [
    pytest.param("ts", id="ts"),
    pytest.param("12bit", id="12bit"),
    pytest.param("agfa", id="agfa"),
    pytest.param("nih", id="nih", marks=pytest.mark.slow),
    pytest.param("philips_dwi", id="philips_dwi", marks=pytest.mark.slow),
]


def _input(name: str):
    return QA / name / "In" if (QA / name / "In").is_dir() else QA / name


def _read(path):
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    try:
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001 - not DICOM
        return None


def _series_in(folder) -> set[tuple]:
    """(SeriesInstanceUID, SeriesNumber, SOPClassUID) of every DICOM object of the input, read with pydicom."""
    out = set()
    for f in folder.rglob("*"):
        if f.is_file() and f.name != "DICOMDIR":
            ds = _read(f)
            if ds is not None and ds.get("SOPClassUID") and ds.get("SeriesInstanceUID"):
                out.add((str(ds.SeriesInstanceUID), str(ds.get("SeriesNumber", "")), str(ds.SOPClassUID)))
    return out


def _references(name: str, tmp_path):
    """Reference (nii, json) pairs: the upstream Ref/ folder, else plain dcm2niix run now on an unpacked copy."""
    ref = QA / name / "Ref"
    if not ref.is_dir():
        import dcm2niix

        src = tmp_path / "plain-in"
        for f in _input(name).rglob("*"):
            if f.is_file():
                data = f.read_bytes()
                dest = src / f.relative_to(_input(name))
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
        ref = tmp_path / "plain-out"
        ref.mkdir()
        subprocess.run([dcm2niix.bin, "-b", "y", "-z", "n", "-f", "%s_%d", "-o", str(ref), str(src)],
                       check=True, capture_output=True)
    return [(n, n.with_suffix(".json")) for n in sorted(ref.glob("*.nii"))]


@needs_shared
@pytest.mark.parametrize("name", FOLDERS)
def test_every_reference_image_in_bids(tmp_path, key_file, name, capsys):
    out = tmp_path / "out"
    private = tmp_path / "private"
    opts = ["--key-file", str(key_file), "--private-dir", str(private), "--deface-method", "none",
            "-w", str(tmp_path / "work")]
    if name not in ("philips_dwi", "nih"):
        opts += ["--sourcedata", "none"]
    assert main([str(_input(name)), str(out), "participant", *opts]) == 0
    rc = main([str(_input(name)), str(out), "group", *opts])
    summary = json.loads((private / "run-summary.json").read_text())
    assert summary["validation"]["errors"] == 0, summary["validation"]
    audit = json.loads((private / "leak-audit.json").read_text())
    # identifiers in what the conversion writes (names, sidecars, tables) would be ours; a short value matched
    # by chance inside compressed voxel bytes is the audit matcher's business
    assert [h for h in audit["hits"] if not h["file"].endswith(".nii.gz")] == []
    assert rc == 0 or all(h["file"].endswith(".nii.gz") for h in audit["hits"]), capsys.readouterr()

    images = {p: np.asanyarray(nib.load(p).dataobj) for p in out.rglob("sub-*/**/*.nii.gz")}
    used = set()
    for nii, js in _references(name, tmp_path):
        want = np.asanyarray(nib.load(nii).dataobj)
        hit = next((p for p, a in images.items() if p not in used
                    and a.shape in (want.shape, (*want.shape, 1)) and np.array_equal(a.reshape(want.shape), want)),
                   None)
        assert hit is not None, f"{nii.name} {want.shape} has no identical image in the BIDS tree"
        used.add(hit)
        ref_side = json.loads(js.read_text())
        side = json.loads(hit.with_name(hit.name.replace(".nii.gz", ".json")).read_text())
        for field in SPEC_FIELDS:
            if field in ref_side:
                assert side.get(field) == ref_side[field], (nii.name, field)
        for field in PRESENT_FIELDS:
            if field in ref_side:
                assert field in side, (nii.name, field)
        if len(want.shape) == 4:
            assert len(nib.load(hit).shape) == 4

    states = list((private / "state").glob("_raw-*.json"))
    records = {k: v for f in states for k, v in json.loads(f.read_text())["records"].items()}
    statuses = [v["status"] for v in records.values()]
    assert len(statuses) == len(_series_in(_input(name)))
    assert set(statuses) <= {"converted", "sourcedata", "left out"}
    assert statuses.count("converted") >= 1


@needs_shared
def test_gz_dicom_without_plain_copy_is_read(tmp_path):
    """A folder of gzip-compressed DICOM only (dcm2niix itself finds nothing there) is converted."""
    from bids_deid.convert.raw import stage_raw
    from bids_deid.pseudonym import Pseudonymizer

    src = tmp_path / "in"
    src.mkdir()
    for f in sorted((SHARED / "dicom" / "mr_siemens_epi_nih").glob("*.dcm")):
        (src / (f.name + ".gz")).write_bytes(gzip.compress(f.read_bytes()))
    shutil.copy(SHARED / "dicom" / "mr_siemens_epi_nih" / "README-Study.txt", src / "README-Study.txt")
    res = stage_raw(src, tmp_path / "staging", Pseudonymizer(b"k" * 32))
    names = [s["bids_name"] for s in res.series if s["action"] == "bids"]
    assert len(names) == 1 and names[0].endswith("_bold.nii.gz")
    img = nib.load(tmp_path / "staging" / names[0][: -len(".gz")])  # staged uncompressed
    assert img.shape[-1] > 1
