"""The README demo: build a small BIDS dataset full of fake identifiers and de-identify it.

``bids-deid-demo OUT`` writes ``OUT/input`` (a synthetic dataset whose every field,
header, extension, column, date and file name carries a fake identifier containing
the word "canary"), a key, and runs ``participant`` + ``group`` into ``OUT/output``
with the private side in ``OUT/output-private``. The same builder makes the test data.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

CANARY = "canary"  # every planted identifier contains this word (any case)
FAKE = {
    "PatientName": "CANARYSMITH^JANE^Q",
    "PatientID": "MRN-CANARY-778812",
    "PatientBirthDate": "1961-07-04",
    "InstitutionName": "Canary Memorial Hospital",
    "InstitutionAddress": "12 Canary Wharf Road, Springfield",
    "InstitutionalDepartmentName": "Canary Neuroradiology",
    "StationName": "CANARYSTATION7",
    "DeviceSerialNumber": "CANARY-SN-40211",
    "ImageComments": "patient canary jane smith, claustrophobic",
    "OperatorsName": "CANARYTECH^BOB",
    "PerformingPhysicianName": "DR^CANARYWHO",
    "ProcedureStepDescription": "Canary research brain protocol",
    "ReferringPhysicianName": "CANARYREFERRER^ANN",
    "AccessionNumber": "ACC-CANARY-99",
}
ACQ_DATETIME = "2019-03-14T09:26:53"
SUBJECTS = ("canary01", "canary02")


def _synthetic_head(shape=(48, 56, 48), zoom=4.0) -> nib.Nifti1Image:
    """A small ellipsoid 'head' (fast; used where defacing is not under test)."""
    ii, jj, kk = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r = ii**2 / 0.8**2 + jj**2 / 0.9**2 + kk**2 / 0.85**2
    data = np.where(r < 1, 400 + 300 * (r < 0.7), 0).astype(np.int16)
    aff = np.diag([zoom, zoom, zoom, 1.0])
    aff[:3, 3] = -np.array(shape) * zoom / 2
    return nib.Nifti1Image(data, aff)


def _plant_header(img: nib.Nifti1Image, tag: str) -> nib.Nifti1Image:
    h = img.header
    h["descrip"] = f"{FAKE['PatientName']} {tag}".encode()[:79]
    h["aux_file"] = b"canary_aux.txt"
    h["intent_name"] = b"CANARYintent"
    h["db_name"] = b"CANARYdb"
    h.set_xyzt_units("mm", "sec")
    h.extensions.append(nib.nifti1.Nifti1Extension(6, f"comment {FAKE['InstitutionName']}".encode("utf-16-le")))
    h.extensions.append(nib.nifti1.Nifti1Extension(4, f"<afni>{FAKE['PatientID']}</afni>".encode()))
    return img


def _sidecar(extra: dict) -> dict:
    d = {
        "Manufacturer": "Siemens",
        "ManufacturersModelName": "Prisma",
        "MagneticFieldStrength": 3,
        "AcquisitionDateTime": ACQ_DATETIME,
        "ScanDate": "2019-03-14",
        "SeriesDescription": "canary_series_mprage",
        **FAKE,
    }
    d.update(extra)
    return d


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def _write_dicom(path: Path, subject: str) -> None:
    """One small MR DICOM file with fake identifiers in the usual places."""
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[subject, "sop"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[subject, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[subject, "series"])
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[subject, "for"])
    ds.Modality = "MR"
    ds.PatientName = FAKE["PatientName"]
    ds.PatientID = FAKE["PatientID"] + subject
    ds.PatientBirthDate = FAKE["PatientBirthDate"].replace("-", "")
    ds.PatientSex = "F"
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = "20190314"
    ds.StudyTime = "092653"
    ds.InstitutionName = FAKE["InstitutionName"]
    ds.StationName = FAKE["StationName"]
    ds.DeviceSerialNumber = FAKE["DeviceSerialNumber"]
    ds.ReferringPhysicianName = FAKE["ReferringPhysicianName"]
    ds.OperatorsName = FAKE["OperatorsName"]
    ds.AccessionNumber = FAKE["AccessionNumber"]
    ds.StudyDescription = FAKE["ProcedureStepDescription"]
    ds.ImageComments = FAKE["ImageComments"]
    item = Dataset()
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    item.PatientName = FAKE["OperatorsName"]
    ds.ReferencedImageSequence = Sequence([item])
    block = ds.private_block(0x0029, "CANARY PRIVATE CREATOR", create=True)
    block.add_new(0x10, "LO", "canary private value")
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelSpacing = [1, 1]
    ds.ImagePositionPatient = [0, 0, 0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceThickness = 1
    ds.InstanceNumber = 1
    ds.PixelData = np.arange(64, dtype=np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def build_demo_dataset(root: Path, head: nib.Nifti1Image | None = None, dicom: bool = True) -> Path:
    """Write the synthetic dataset under ``root`` and return it.

    Parameters
    ----------
    root : Path
        Folder to create (must not exist or be empty).
    head : nibabel image, optional
        Anatomical head to use for T1w; a small synthetic ellipsoid if None.
    dicom : bool
        Also put a DICOM file with fake identifiers under sourcedata/.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _write_json(root / "dataset_description.json", {
        "Name": "bids-deid demo study", "BIDSVersion": "1.9.0", "License": "CC0",
        "Authors": ["Demo Author"], "ContactEmail": "jane.canary@example.org",
        "DatasetType": "raw",
    })
    (root / "README").write_text("A synthetic dataset for the bids-deid demo. All identifiers are fake.\n")
    (root / ".bidsignore").write_text("**/notes_*\n")
    (root / "CHANGES").write_text("1.0.0 2024-01-01\n  - initial synthetic release\n")
    rows = ["participant_id\tage\tsex\thandedness\tpatient_name\tmrn\tbirth_date"]
    for i, subj in enumerate(SUBJECTS):
        rows.append(f"sub-{subj}\t{34 if i == 0 else 93}\tF\tR\t{FAKE['PatientName']}\t{FAKE['PatientID']}{i}"
                    f"\t{FAKE['PatientBirthDate']}")
    (root / "participants.tsv").write_text("\n".join(rows) + "\n")
    _write_json(root / "participants.json", {
        "age": {"Description": "age in years", "Units": "year"},
        "patient_name": {"Description": "name of the canary patient"},
        "mrn": {"Description": "hospital record number"},
    })
    _write_json(root / "task-rest_bold.json", {"TaskName": "rest", "InstitutionName": FAKE["InstitutionName"]})
    head = head if head is not None else _synthetic_head()
    rng = np.random.default_rng(0)
    for n, subj in enumerate(SUBJECTS):
        ses = root / f"sub-{subj}" / "ses-01"
        stem = f"sub-{subj}_ses-01"
        anat = nib.Nifti1Image(np.asanyarray(head.dataobj), head.affine, head.header.copy())
        (ses / "anat").mkdir(parents=True, exist_ok=True)
        nib.save(_plant_header(anat, subj), ses / "anat" / f"{stem}_T1w.nii.gz")
        _write_json(ses / "anat" / f"{stem}_T1w.json", _sidecar({"RepetitionTime": 2.3, "EchoTime": 0.00226,
                                                                 "InversionTime": 0.9, "FlipAngle": 8}))
        bold = rng.integers(0, 1000, size=(16, 16, 10, 12)).astype(np.int16)
        aff = np.diag([3.0, 3.0, 3.5, 1.0])
        img = _plant_header(nib.Nifti1Image(bold, aff), subj)
        img.header.set_zooms((3.0, 3.0, 3.5, 2.0))
        (ses / "func").mkdir(parents=True, exist_ok=True)
        nib.save(img, ses / "func" / f"{stem}_task-rest_bold.nii.gz")
        _write_json(ses / "func" / f"{stem}_task-rest_bold.json",
                    _sidecar({"RepetitionTime": 2.0, "TaskName": "rest", "EchoTime": 0.03,
                              "SliceTiming": [i * 0.2 for i in range(10)]}))
        (ses / "func" / f"{stem}_task-rest_events.tsv").write_text(
            "onset\tduration\ttrial_type\n0\t10\trest\n12\t10\tcue\n")
        (ses / f"{stem}_scans.tsv").write_text(
            "filename\tacq_time\toperator\n"
            f"anat/{stem}_T1w.nii.gz\t{ACQ_DATETIME}\t{FAKE['OperatorsName']}\n"
            f"func/{stem}_task-rest_bold.nii.gz\t2019-03-14T09:40:11\t{FAKE['OperatorsName']}\n")
        (root / f"sub-{subj}" / f"sub-{subj}_sessions.tsv").write_text(
            f"session_id\tacq_time\tsite\nses-01\t{ACQ_DATETIME}\t{FAKE['InstitutionName']}\n")
        (ses / "anat" / f"notes_{subj}_canary.txt").write_text(f"scan notes for {FAKE['PatientName']}\n")
        if dicom:
            _write_dicom(root / "sourcedata" / f"sub-{subj}" / "ses-01" / f"{FAKE['PatientID']}_{n}.dcm", subj)
    return root


def main(argv: list[str] | None = None) -> int:
    """``bids-deid-demo OUT``: build the demo dataset and run both levels on it."""
    from .pseudonym import generate_key

    p = argparse.ArgumentParser(prog="bids-deid-demo", description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="folder for the demo (input, output, private side)")
    p.add_argument("--n-cpus", default="1")
    args = p.parse_args(argv)
    out = args.out.absolute()
    if out.exists() and any(out.iterdir()) and not (out / "input").exists():
        print(f"bids-deid-demo: error: {out} exists and is not an earlier demo folder", file=sys.stderr)
        return 2
    head = None
    try:
        from .deface import demo_head

        head = demo_head()
    except ImportError:  # pragma: no cover - defacing extra not importable
        pass
    if not (out / "input").exists():
        build_demo_dataset(out / "input", head=head)
    key = out / "demo.key"
    if not key.exists():
        generate_key(key)
    common = [str(out / "input"), str(out / "output")]
    opts = ["--key-file", str(key), "--private-dir", str(out / "output-private"), "--n-cpus", args.n_cpus]
    for level in ("participant", "group"):
        print(f"== bids-deid {level}")
        # the demo runs the App as a user does: its own command, in its own process
        sys.stdout.flush()
        rc = subprocess.run([sys.executable, "-m", "bids_deid.cli", *common, level, *opts], check=False).returncode
        if rc:
            return rc
    print(f"\nDone. Public, shareable output: {out / 'output'}")
    print(f"Private side (mapping, audit log, report with pictures): {out / 'output-private' / 'report.html'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
