"""A dataset with every shape at once, through ``bids-deid`` (both levels, real validator):
EEG (BrainVision) and MEG (FIF) with an empty-room reference across subjects, inherited
top-level files, column dictionaries, spec participants columns, stimuli/, code/, a
nested derivative dataset, and a recording no module can scrub (withheld with its sidecar
and scans row). Planted identifiers must be gone; spec-defined content must be kept."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import canary_hits

from bids_deid.cli import main

mne = pytest.importorskip("mne")
pybv = pytest.importorskip("pybv")


def _j(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))


def _t(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _fif(path: Path) -> None:
    info = mne.create_info(["MEG 0111", "MEG 0112"], 200.0, ["mag", "grad"])
    raw = mne.io.RawArray(np.random.default_rng(1).normal(0, 1e-12, (2, 400)), info, verbose="error")
    with raw.info._unlock():
        raw.info["subject_info"] = {"his_id": "canary-his", "last_name": "canarySmith"}
        raw.info["experimenter"] = "canary operator"
    raw.set_meas_date(dt.datetime(2019, 3, 14, 9, tzinfo=dt.UTC))
    path.parent.mkdir(parents=True, exist_ok=True)
    raw.save(path, verbose="error")


def _dataset(root: Path) -> Path:
    _j(root / "dataset_description.json", {
        "Name": "shapes", "BIDSVersion": "1.10.0", "DatasetType": "raw", "HEDVersion": "8.2.0",
        "DatasetLinks": {"atlas": "https://example.org/atlas"}, "License": "CC0",
        "GeneratedBy": [{"Name": "heudiconv", "Version": "1.0"}], "SourceDatasets": [{"DOI": "doi:10.1/xyz"}]})
    _t(root / "README", "Shapes test dataset. Ask about sub-01.\n")
    _t(root / "participants.tsv", "participant_id\tspecies\tstrain\tage\tname\n"
       "sub-01\tmus musculus\tC57BL/6J\t12\tcanaryJane\nsub-emptyroom\tn/a\tn/a\tn/a\tn/a\n")
    _j(root / "participants.json", {"species": {"Description": "species"}, "name": {"Description": "name"}})
    _t(root / ".bidsignore", "sub-01/extra_*\n")
    _j(root / "task-rest_events.json", {"trial_type": {"Description": "what", "Levels": {"go": "go trial"},
                                                       "HED": {"go": "Sensory-event"}},
                                        "response_time": {"Description": "RT", "Units": "s"}})
    _t(root / "task-rest_channels.tsv", "name\ttype\tunits\nFz\tEEG\tuV\nCz\tEEG\tuV\n")
    _t(root / "stimuli" / "cue.txt", "press the button\n")
    exif = b"Exif\x00\x00" + b"Artist=canary photographer"
    (root / "stimuli" / "face.jpg").write_bytes(b"\xff\xd8" + b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif
                                              + b"\xff\xda\x00\x02PIXELS\xff\xd9")
    _t(root / "code" / "convert.py", "# converted sub-01 by hand\n")
    deriv = root / "derivatives" / "pipe"
    _j(deriv / "dataset_description.json", {"Name": "pipe", "BIDSVersion": "1.10.0", "DatasetType": "derivative",
                                            "GeneratedBy": [{"Name": "mypipe", "Version": "2.0"}]})
    _t(deriv / "sub-01" / "eeg" / "sub-01_task-rest_desc-clean_channels.tsv", "name\ttype\tunits\nFz\tEEG\tuV\n")
    eeg = root / "sub-01" / "eeg"
    eeg.mkdir(parents=True)
    pybv.write_brainvision(data=np.random.default_rng(2).normal(0, 1e-5, (2, 500)), sfreq=250,
                           ch_names=["Fz", "Cz"], fname_base="sub-01_task-rest_eeg", folder_out=eeg,
                           events=np.array([[10, 1]]), meas_date=dt.datetime(2019, 3, 14, tzinfo=dt.UTC))
    vhdr = eeg / "sub-01_task-rest_eeg.vhdr"
    vhdr.write_text(vhdr.read_text(encoding="utf-8").replace("[Comment]", "[Comment]\ncanary nurse"),
                    encoding="utf-8")
    _j(eeg / "sub-01_task-rest_eeg.json", {"TaskName": "rest", "SamplingFrequency": 250, "EEGReference": "Cz",
                                           "PowerLineFrequency": 50, "SoftwareFilters": "n/a"})
    _t(eeg / "sub-01_task-rest_events.tsv", "onset\tduration\ttrial_type\tresponse_time\n0.04\t0\tgo\t0.5\n")
    # a MEF3 recording (binary headers bids-deid does not rewrite): withheld with its sidecar and scans row
    mef = root / "sub-01" / "ieeg" / "sub-01_task-rest_ieeg.mefd"
    _t(mef / "ch1.timd" / "ch1-000000.segd" / "ch1-000000.tmet", "canary patient header")
    _j(root / "sub-01" / "ieeg" / "sub-01_task-rest_ieeg.json", {"TaskName": "rest", "SamplingFrequency": 1000,
                                                                 "PowerLineFrequency": 50, "SoftwareFilters": "n/a",
                                                                 "iEEGReference": "avg"})
    _t(root / "sub-01" / "ieeg" / "sub-01_task-rest_channels.tsv",
       "name\ttype\tunits\tlow_cutoff\thigh_cutoff\nch1\tSEEG\tuV\tn/a\tn/a\n")
    meg = root / "sub-01" / "meg"
    _fif(meg / "sub-01_task-rest_meg.fif")
    room = "sub-emptyroom/ses-20190314/meg/sub-emptyroom_ses-20190314_task-noise_meg.fif"
    _j(meg / "sub-01_task-rest_meg.json", {"TaskName": "rest", "SamplingFrequency": 200, "PowerLineFrequency": 50,
                                           "DewarPosition": "upright", "SoftwareFilters": "n/a",
                                           "DigitizedLandmarks": False, "DigitizedHeadPoints": False,
                                           "AssociatedEmptyRoom": f"bids::{room}"})
    _t(meg / "sub-01_task-rest_channels.tsv", "name\ttype\tunits\nMEG 0111\tMEGMAG\tT\nMEG 0112\tMEGGRADPLANAR\tT/m\n")
    _fif(root / room)
    _j((root / room).with_suffix(".json"), {"TaskName": "noise", "SamplingFrequency": 200, "PowerLineFrequency": 50,
                                            "DewarPosition": "upright", "SoftwareFilters": "n/a",
                                            "DigitizedLandmarks": False, "DigitizedHeadPoints": False})
    _t(root / "sub-01" / "sub-01_scans.tsv", "filename\tacq_time\neeg/sub-01_task-rest_eeg.vhdr\t2019-03-14T09:00:00\n"
       "ieeg/sub-01_task-rest_ieeg.mefd\t2019-03-14T10:00:00\nmeg/sub-01_task-rest_meg.fif\t2019-03-14T11:00:00\n")
    return root


def _validator_codes(report: dict) -> set[str]:
    return {i["code"] for i in report["issues"]["issues"] if i.get("severity") == "error"}


def test_every_shape_scrubbed_carried_or_withheld_with_reason(tmp_path, key_file, capsys):
    from bids_deid.validate import run_validator

    ds = _dataset(tmp_path / "in")
    out, priv = tmp_path / "out", tmp_path / "priv"
    args = ["--key-file", str(key_file), "--private-dir", str(priv), "--deface-method", "none"]
    assert main([str(ds), str(out), "participant", "--skip-bids-validation", *args]) == 0
    text = capsys.readouterr().out
    assert "withheld:" in text and "ieeg.mefd" in text and "MEF3" in text  # listed with its reason
    rc = main([str(ds), str(out), "group", *args])
    before = _validator_codes(run_validator(ds).report)
    after = _validator_codes(json.loads((priv / "validator-output.json").read_text()))
    assert after <= before, after - before
    assert rc in (0, 4)
    assert canary_hits(out) == [], canary_hits(out)
    new = next(p.name for p in out.glob("sub-*") if (p / "eeg").is_dir())
    room = "sub-emptyroom"  # the specification's label: kept (it names no one)
    assert sorted(p.name for p in out.glob("sub-*")) == sorted([new, room])
    assert not (out / room / "ses-20190314").exists()  # its date-named session is not
    # the withheld recording took its sidecar, its channels and its scans row with it
    assert not list(out.rglob("*ieeg*"))
    scans = (out / new / f"{new}_scans.tsv").read_text()
    assert "ieeg" not in scans and "eeg/" in scans and "meg/" in scans
    # cross-subject reference relabelled, and it resolves
    side = json.loads((out / new / "meg" / f"{new}_task-rest_meg.json").read_text())
    target = side["AssociatedEmptyRoom"]
    assert target.startswith(f"bids::{room}/") and (out / target[len("bids::"):]).is_file()
    # spec-defined content kept
    dd = json.loads((out / "dataset_description.json").read_text())
    assert dd["HEDVersion"] == "8.2.0" and dd["DatasetLinks"] and dd["SourceDatasets"] == [{"DOI": "doi:10.1/xyz"}]
    assert [g["Name"] for g in dd["GeneratedBy"]] == ["heudiconv", "bids-deid"]
    header = (out / "participants.tsv").read_text().splitlines()[0].split("\t")
    assert header == ["participant_id", "species", "strain", "age"]
    assert json.loads((out / "participants.json").read_text()) == {"species": {"Description": "species"}}
    ev = json.loads((out / "task-rest_events.json").read_text())
    assert ev["trial_type"]["HED"] == {"go": "Sensory-event"} and ev["response_time"]["Units"] == "s"
    assert (out / "task-rest_channels.tsv").is_file() and (out / "stimuli" / "cue.txt").is_file()
    assert (out / "stimuli" / "face.jpg").read_bytes() == b"\xff\xd8\xff\xda\x00\x02PIXELS\xff\xd9"
    assert f"converted {new} by hand" in (out / "code" / "convert.py").read_text()
    assert (out / ".bidsignore").read_text() == f"{new}/extra_*\n"
    ddd = json.loads((out / "derivatives" / "pipe" / "dataset_description.json").read_text())
    assert ddd["DatasetType"] == "derivative" and [g["Name"] for g in ddd["GeneratedBy"]] == ["mypipe", "bids-deid"]
    assert (out / "derivatives" / "pipe" / new / "eeg" / f"{new}_task-rest_desc-clean_channels.tsv").is_file()
    # signals: MNE reads both recordings back, data equal
    a = mne.io.read_raw_brainvision(ds / "sub-01" / "eeg" / "sub-01_task-rest_eeg.vhdr", verbose="error")
    b = mne.io.read_raw_brainvision(out / new / "eeg" / f"{new}_task-rest_eeg.vhdr", verbose="error")
    assert np.array_equal(a.get_data(), b.get_data())
    a = mne.io.read_raw_fif(ds / "sub-01" / "meg" / "sub-01_task-rest_meg.fif", verbose="error")
    b = mne.io.read_raw_fif(out / new / "meg" / f"{new}_task-rest_meg.fif", verbose="error")
    assert np.array_equal(a.get_data(), b.get_data())


def test_subject_column_dictionaries_keep_described_columns(tmp_path):
    from bids_deid.formats.base import ScrubLog
    from bids_deid.formats.sidecar import scrub_column_dictionary, table_columns
    from bids_deid.profiles import load_profile

    tsv = tmp_path / "sub-01_task-x_events.tsv"
    tsv.write_text("onset\tduration\ttrial_type\tstim_file\n1\t0\tgo\tface.png\n")
    side = tmp_path / "sub-01_task-x_events.json"
    obj = {"trial_type": {"LongName": "Event", "Levels": {"go": "Go"}, "HED": {"go": "Sensory-event"},
                          "Note": "asked Jane canary"},
           "stim_file": {"Description": "stimulus"},
           "OperatorName": "Dr canary",  # not a column and not a BIDS field: removed
           "StimulusPresentation": {"SoftwareName": "PsychoPy"}}  # a BIDS field: kept
    side.write_text(json.dumps(obj))
    log = ScrubLog()
    out = scrub_column_dictionary(obj, table_columns(side), load_profile("basic"), 0, log)
    assert out == {"trial_type": {"LongName": "Event", "Levels": {"go": "Go"}, "HED": {"go": "Sensory-event"}},
                   "stim_file": {"Description": "stimulus"}, "StimulusPresentation": {"SoftwareName": "PsychoPy"}}
    assert ("coldict:trial_type.Note", "asked Jane canary") in log.identifiers


@pytest.mark.parametrize("shape", [(8, 8, 8), (256, 256, 1)])
def test_tiny_or_flat_anatomical_withheld_from_defacing_not_a_crash(tmp_path, canary_ds, key_file, capsys, shape):
    import nibabel as nib

    t1 = next(canary_ds.rglob("sub-canary01*_T1w.nii.gz"))
    nib.save(nib.Nifti1Image(np.ones(shape, dtype=np.int16), np.eye(4)), t1)
    out = tmp_path / "out"
    rc = main([str(canary_ds), str(out), "participant", "--key-file", str(key_file), "--skip-bids-validation",
               "--participant-label", "canary01"])
    assert rc == 0
    held = [ln for ln in capsys.readouterr().out.splitlines() if "withheld:" in ln and "_T1w.nii.gz" in ln]
    tiny = [ln for ln in held if "too thin or small to deface" in ln]
    assert len(tiny) == 1 and "x".join(map(str, shape)) in tiny[0], held
    assert not list(out.rglob("*_T1w.*"))  # the withheld image took its sidecar with it


def test_sourcedata_edf_scrubbed_under_a_keyed_name(tmp_path, canary_ds, key_file):
    edfio = pytest.importorskip("edfio")
    src = canary_ds / "sourcedata" / "sub-canary01" / "eeg" / "canary_Jane_night.edf"
    src.parent.mkdir(parents=True)
    edfio.Edf([edfio.EdfSignal(np.zeros(256), 256, label="EEG Fz")],
              patient=edfio.Patient(code="MRN-CANARY-1", name="Jane_canary"),
              recording=edfio.Recording(startdate=dt.date(2019, 3, 14))).write(src)
    out = tmp_path / "out"
    assert main([str(canary_ds), str(out), "participant", "--key-file", str(key_file), "--skip-bids-validation",
                 "--participant-label", "canary01", "--deface-method", "none"]) == 0
    written = list(out.glob("sourcedata/edf/sub-*/*.edf"))
    assert len(written) == 1 and canary_hits(out / "sourcedata") == []
    assert edfio.read_edf(written[0]).signals[0].label == "EEG Fz"
