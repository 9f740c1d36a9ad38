"""Raw DICOM/twix -> staging BIDS tree: shared scanner data, canary study, bad input."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from bids_deid.convert.raw import is_raw_input, stage_raw
from bids_deid.pseudonym import Pseudonymizer

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not (SHARED / "dicom").is_dir(), reason="shared test data absent")
SERIES = [
    "mr_siemens_epi_nih",
    "mr_ge_epi_nih",
    "mr_ge_irspgr_refaced_deident",
    "mr_siemens_mosaic_nibabel",
    "ct_small_pydicom",
    "us_rgb_burnedin",
]
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"

CANARY = {
    "PatientName": "CANARYSURNAME^CANARYGIVEN",
    "PatientID": "CANARYID7788",
    "PatientBirthDate": "19430517",
    "InstitutionName": "CANARY GENERAL HOSPITAL",
    "StationName": "CANARYSTATION",
    "DeviceSerialNumber": "CANARYSN991",
    "ReferringPhysicianName": "CANARYDOC^ALICE",
    "OperatorsName": "CANARYOP^BOB",
    "AccessionNumber": "CANARYACC55",
    "StudyDescription": "CANARY brain study",
}


@pytest.fixture
def pseudo():
    return Pseudonymizer(b"test-key-for-convert-raw-0123456789")


def write_series(
    folder: Path,
    *,
    n=4,
    patient=None,
    description="t1_mprage_sag",
    series_uid=None,
    study_uid=None,
    instance_numbers=None,
    name_fmt="IM{:04d}.dcm",
    study_date="20200102",
    modality="MR",
    rows=16,
    extra=None,
):
    """Write ``n`` small axial MR slices (a tiny 3D T1w-like volume) with pydicom."""
    folder.mkdir(parents=True, exist_ok=True)
    patient = dict(CANARY if patient is None else patient)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = generate_uid()
    paths = []
    for i, inst in enumerate(instance_numbers or range(1, n + 1)):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MR_IMAGE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / name_fmt.format(inst)
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        for k, v in patient.items():
            setattr(ds, k, v)
        ds.SOPClassUID = MR_IMAGE
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = modality
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = study_date
        ds.StudyTime = ds.SeriesTime = "101010"
        ds.SeriesNumber = 3
        ds.InstanceNumber = inst
        ds.SeriesDescription = ds.ProtocolName = description
        ds.Manufacturer = "SIEMENS"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.ScanningSequence = ["GR", "IR"]
        ds.SequenceVariant = ["SP", "MP"]
        ds.MRAcquisitionType = "3D"
        ds.EchoTime = "2.5"
        ds.RepetitionTime = "2300"
        ds.InversionTime = "900"
        ds.FlipAngle = "9"
        ds.MagneticFieldStrength = "3"
        ds.ImagePositionPatient = [0.0, 0.0, float(inst)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = "1"
        ds.Rows = ds.Columns = rows
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        for k, v in (extra or {}).items():
            setattr(ds, k, v)
        ds.PixelData = (np.arange(rows * rows, dtype=np.uint16) * (i + 1)).tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def staged_names(root: Path) -> list[str]:
    """Staged paths under their published names: dcm2niix stages images uncompressed
    (``.nii``), the participant stage writes them as ``.nii.gz``."""
    return [str(p.relative_to(root)) + (".gz" if p.name.endswith(".nii") else "") for p in root.rglob("*")]


def staged_file(root: Path, name: str) -> Path:
    """The staged file of a published name (``x.nii.gz`` is staged as ``x.nii``)."""
    path = root / name
    return path.with_name(path.name[: -len(".gz")]) if name.endswith(".nii.gz") else path


# ---------------------------------------------------------------- shared scanner data
@pytest.fixture(scope="module")
def shared_stage(tmp_path_factory):
    if not (SHARED / "dicom").is_dir():
        pytest.skip("shared test data absent")
    raw = tmp_path_factory.mktemp("raw")
    for s in SERIES:
        os.symlink(SHARED / "dicom" / s, raw / s)
    stage = tmp_path_factory.mktemp("stage")
    res = stage_raw(raw, stage, Pseudonymizer(b"shared-stage-key-0123456789"), n_cpus=2)
    return raw, stage, res


@needs_shared
def test_shared_staging_layout(shared_stage):
    raw, stage, res = shared_stage
    assert is_raw_input(raw)
    names = staged_names(stage)
    assert any(n.endswith("_T1w.nii.gz") and "/anat/" in n for n in names)
    bold = [n for n in names if n.endswith("_bold.nii.gz")]
    assert len(bold) == 2
    for b in bold:
        side = json.loads((stage / b.replace(".nii.gz", ".json")).read_text())
        assert side["TaskName"] == "unknown"
    assert any(n.endswith("_dwi.bval") for n in names)
    actions = {(r["modality"], r["action"]) for r in res.series}
    assert ("CT", "sourcedata") in actions and ("US", "sourcedata") in actions
    # CT/US are linked under sourcedata with keyed tokens only
    links = [p for p in (stage / "sourcedata" / "dicom").rglob("*.dcm")]
    assert links and all(p.is_symlink() for p in links)
    # every series (sourcedata="dicom") is linked under its subject/session/token with all its instances
    for r in res.series:
        folder = stage / "sourcedata" / "dicom" / f"sub-{r['subject']}" / (f"ses-{r['session']}" if r["session"] else "")
        assert len(list((folder / r["series_token"]).glob("*.dcm"))) == r["n_files"], r
    # every subject folder is a pseudonym; no original identifier in any name
    subs = {p.name for p in stage.glob("sub-*")} | {p.name for p in stage.glob("sourcedata/dicom/sub-*")}
    assert subs == {f"sub-{v}" for v in res.subjects.values()}
    for pid, label in res.subjects.items():
        for n in names:
            assert pid not in n.split("/")[-1].replace(f"sub-{label}", "")
    # EPI images carry dir- from PhaseEncodingDirection (j- with a +y voxel axis: A->P)
    assert all("_dir-AP_" in b for b in bold)
    assert any("_dir-AP_dwi.nii.gz" in n for n in names)
    # DEV patient has two studies -> two sessions in date/time order
    dev = res.subjects["DEV"]
    assert (stage / f"sub-{dev}" / "ses-01").is_dir() and (stage / f"sub-{dev}" / "ses-02").is_dir()
    assert ("InstitutionName", "NIH FMRIF") in res.identifiers[dev]
    assert "4 non-DICOM file(s) ignored" in " ".join(res.problems)  # the README.txt of each series
    assert not (stage / ".bids-deid-work").exists()


@needs_shared
def test_shared_staging_validates(shared_stage, tmp_path):
    from bids_deid.validate import _binary

    exe = _binary()  # a core dependency: its absence is a failure, not a skip
    _raw, stage, _res = shared_stage
    # minimal test-only cleanup standing in for the lead's scrubber: drop identity fields
    copy = tmp_path / "clean"
    shutil.copytree(stage, copy, symlinks=True, ignore=shutil.ignore_patterns("sourcedata"))
    for nii in copy.rglob("sub-*/**/*.nii"):  # staged uncompressed; published as .nii.gz
        nii.with_name(nii.name + ".gz").write_bytes(gzip.compress(nii.read_bytes(), compresslevel=1))
        nii.unlink()
    for js in copy.rglob("sub-*/**/*.json"):
        d = json.loads(js.read_text())
        for k in ("InstitutionName", "InstitutionAddress", "StationName", "DeviceSerialNumber", "AcquisitionDateTime"):
            d.pop(k, None)
        js.write_text(json.dumps(d))
    proc = subprocess.run([exe, str(copy), "--json"], capture_output=True, text=True, check=False)
    report = json.loads(proc.stdout)
    errors = [i for i in report["issues"]["issues"] if i.get("severity") == "error"]
    assert errors == [], errors[:3]


@needs_shared
def test_dry_run_writes_nothing(tmp_path, pseudo):
    raw = tmp_path / "raw"
    raw.mkdir()
    os.symlink(SHARED / "dicom" / "mr_ge_irspgr_refaced_deident", raw / "t1")
    stage = tmp_path / "stage"
    res = stage_raw(raw, stage, pseudo, dry_run=True)
    assert not stage.exists()
    label = pseudo.subject("FRUIT")
    assert [r["bids_name"] for r in res.series] == [f"sub-{label}/anat/sub-{label}_T1w.nii.gz"]


@needs_shared
def test_dry_run_names_equal_real_names(shared_stage, tmp_path):
    raw, _stage, res = shared_stage
    plan = stage_raw(raw, tmp_path / "plan", Pseudonymizer(b"shared-stage-key-0123456789"), dry_run=True)
    assert not (tmp_path / "plan").exists()
    real = sorted((r["series_token"], r["action"], r["bids_name"]) for r in res.series)
    assert sorted((r["series_token"], r["action"], r["bids_name"]) for r in plan.series) == real
    assert any(name.endswith("_bold.nii.gz") for _t, _a, name in real)


@needs_shared
def test_batched_link_conversion_matches_whole_folder(shared_stage, tmp_path):
    """With --participant-label the raw folder is not converted whole: links, batched by CPU."""
    raw, stage, res = shared_stage
    pseudo = Pseudonymizer(b"shared-stage-key-0123456789")
    dev = res.subjects["DEV"]
    sub = stage_raw(raw, tmp_path / "s", pseudo, participants={"DEV"}, n_cpus=2)
    assert set(sub.subjects) == {"DEV"}
    want = sorted(r["bids_name"] for r in res.series if r["subject"] == dev)
    assert sorted(r["bids_name"] for r in sub.series) == want
    for name in want:
        assert staged_file(tmp_path / "s", name).is_file()
        assert staged_file(tmp_path / "s", name).stat().st_size == staged_file(stage, name).stat().st_size


# ---------------------------------------------------------------- canary study
def test_canary_identifiers_listed_and_never_in_names(tmp_path, pseudo):
    raw = tmp_path / "raw"
    pat_dir = raw / f"{CANARY['PatientName']}_{CANARY['PatientID']}" / "CANARY brain study 19430517"
    study = generate_uid()
    write_series(pat_dir / "t1_mprage_CANARYID7788", name_fmt="CANARYID7788_{:04d}.dcm", study_uid=study)
    epi = {"ScanningSequence": "EP", "SequenceVariant": "SK", "MRAcquisitionType": "2D", "EchoTime": "30"}
    write_series(
        pat_dir / "fMRI_rest", description="fMRI_rest", n=3, name_fmt="CANARY_{:03d}", study_uid=study, extra=epi
    )
    stage = tmp_path / "stage"
    res = stage_raw(raw, stage, pseudo)
    label = pseudo.subject(CANARY["PatientID"])
    assert res.subjects == {CANARY["PatientID"]: label}
    found = dict(res.identifiers[label])
    for kind, value in CANARY.items():
        assert found.get(kind) == value, kind
    assert ("StudyDate", "20200102") in res.identifiers[label]
    names = staged_names(stage)
    assert any(n.endswith(f"sub-{label}_T1w.nii.gz") for n in names)
    assert any(n.endswith(f"sub-{label}_task-rest_bold.nii.gz") for n in names)
    for n in names:
        assert "canary" not in n.lower()
        assert "19430517" not in n
    # sourcedata: every instance linked (converted series too, sourcedata="dicom")
    links = list((stage / "sourcedata" / "dicom" / f"sub-{label}").rglob("*.dcm"))
    assert len(links) == 7 and all(p.is_symlink() for p in links)
    for row in res.series:
        assert "canary" not in json.dumps(row).lower()
    assert not any("canary" in p.lower() for p in res.problems)


def test_participants_filter_and_sourcedata_off(tmp_path, pseudo):
    raw = tmp_path / "raw"
    write_series(raw / "a", patient={"PatientID": "PAT_A", "PatientName": "A^A"})
    write_series(raw / "b", patient={"PatientID": "PAT_B", "PatientName": "B^B"})
    stage = tmp_path / "stage"
    la = pseudo.subject("PAT_A")
    res = stage_raw(raw, stage, pseudo, participants={f"sub-{la}"}, sourcedata="none")
    assert res.subjects == {"PAT_A": la}
    assert (stage / f"sub-{la}" / "anat").is_dir()
    assert not (stage / f"sub-{pseudo.subject('PAT_B')}").exists()
    assert not (stage / "sourcedata").exists()
    res2 = stage_raw(raw, tmp_path / "stage2", pseudo, participants={"PAT_B"}, dry_run=True)
    assert set(res2.subjects) == {"PAT_B"}


def test_repeated_series_get_runs(tmp_path, pseudo):
    raw = tmp_path / "raw"
    study = generate_uid()
    pat = {"PatientID": "RUNS1", "PatientName": "R^R"}
    write_series(raw / "s1", patient=pat, study_uid=study)
    write_series(raw / "s2", patient=pat, study_uid=study)
    stage = tmp_path / "stage"
    stage_raw(raw, stage, pseudo)
    anat = sorted(p.name for p in (stage / f"sub-{pseudo.subject('RUNS1')}" / "anat").glob("*.nii"))
    assert [n.split("_")[1] for n in anat] == ["run-1", "run-2"]


# ---------------------------------------------------------------- bad input
def test_bad_input_reports_problems_without_crashing(tmp_path, pseudo):
    raw = tmp_path / "raw"
    good = write_series(raw / "good", patient={"PatientID": "BAD1", "PatientName": "B^1"})
    (raw / "notes.txt").write_text("not a dicom file")
    (raw / "good" / ".DS_Store").write_bytes(b"\x00\x01junk")
    # truncated copy of a good file (half its pixel data cut)
    data = good[0].read_bytes()
    (raw / "good" / "trunc.dcm").write_bytes(data[: len(data) - 200])
    # a header-only fragment
    (raw / "good" / "frag.dcm").write_bytes(data[:300])
    # duplicate instance under another name
    shutil.copy(good[1], raw / "good" / "dup_copy.dcm")
    # missing slice: instance numbers 1, 2, 4
    write_series(raw / "gap", patient={"PatientID": "BAD1", "PatientName": "B^1"}, instance_numbers=[1, 2, 4])
    # two patients in one folder
    write_series(raw / "mixed", patient={"PatientID": "MIX_A"}, n=2, name_fmt="a{:02d}.dcm")
    write_series(raw / "mixed", patient={"PatientID": "MIX_B"}, n=2, name_fmt="b{:02d}.dcm")
    # twix files: unknown version and garbage
    (raw / "meas_bad.dat").write_bytes(struct.pack("<II", 0, 900) + b"\x00" * 64)
    (raw / "meas_junk.dat").write_bytes(b"\x07" * 50)
    stage = tmp_path / "stage"
    res = stage_raw(raw, stage, pseudo)
    text = "\n".join(res.problems)
    assert "non-DICOM" in text
    assert "corrupt or truncated" in text and "2 corrupt" in text
    assert "duplicate" in text
    assert "missing" in text
    assert "more than one patient" in text
    assert "not readable twix" in text
    assert {"MIX_A", "MIX_B", "BAD1"} <= set(res.subjects)
    assert all("\n" not in p for p in res.problems)
    assert (stage / "dataset_description.json").exists()


def test_is_raw_input(tmp_path):
    assert not is_raw_input(tmp_path / "missing")
    (tmp_path / "a.txt").write_text("x")
    assert not is_raw_input(tmp_path)
    write_series(tmp_path / "d", n=1)
    assert is_raw_input(tmp_path)
    (tmp_path / "dataset_description.json").write_text("{}")
    assert not is_raw_input(tmp_path)


def test_dicom_without_preamble_is_found(tmp_path, pseudo):
    p = write_series(tmp_path / "raw", n=2, patient={"PatientID": "NOPRE"})
    for f in p:
        ds = pydicom.dcmread(f)
        f.unlink()
        ds.preamble = None  # bare dataset: no preamble, no file meta
        del ds.file_meta
        ds.save_as(f.with_suffix(""), enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert is_raw_input(tmp_path / "raw")
    res = stage_raw(tmp_path / "raw", tmp_path / "stage", pseudo, dry_run=True)
    assert "NOPRE" in res.subjects


@needs_shared
def test_duplicate_and_out_of_order_instances_are_reported_and_converted_once(tmp_path):
    """GE EPI slices stored in reverse order under new names, one slice twice: one 4D image, both reported."""
    import nibabel as nib
    import numpy as np

    src = SHARED / "dicom" / "mr_ge_epi_nih"
    raw = tmp_path / "raw"
    raw.mkdir()
    files = sorted(src.glob("*.dcm"))
    for i, f in enumerate(reversed(files)):
        shutil.copy(f, raw / f"im{i:04d}.dcm")
    shutil.copy(files[3], raw / "zz_copy.dcm")
    res = stage_raw(raw, tmp_path / "staging", Pseudonymizer(b"k" * 32))
    text = " ".join(res.problems)
    assert "1 duplicate instance(s)" in text and "not stored in instance-number order" in text
    (name,) = [s["bids_name"] for s in res.series if s["action"] == "bids"]
    ref = SHARED / "dcm_qa" / "nih" / "Ref" / "DCM2NIIX_regression_test_4.nii"
    assert np.array_equal(np.asanyarray(nib.load(staged_file(tmp_path / "staging", name)).dataobj),
                          np.asanyarray(nib.load(ref).dataobj))
