"""Electrophysiology and optical formats: real files written by the field's own libraries with
planted identifiers; every planted value must be gone from the output bytes (our own scanner)
and the signal must read back equal (MNE-Python, edfio, h5py)."""

from __future__ import annotations

import datetime as dt
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import canary_hits

from bids_deid.formats import handler_for
from bids_deid.formats.base import Context
from bids_deid.profiles import load_profile

mne = pytest.importorskip("mne")
NEEDLES = (b"canary", b"MRN-4711", b"Smithers", b"HOSP-77", b"1961", b"2019-03-14", b"14.03.19", b"20190314",
           b"14-MAR-2019")
OFFSET = -400  # days: the subject's shift


def _materialise(out_dir: Path, res) -> None:
    assert not res.withheld, res.withheld
    for rel, data in res.writes.items():
        dst = out_dir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(data.read_bytes() if isinstance(data, Path) else data)


def _scrub(src: Path, out_dir: Path, rel_out: str, subject: str = "new01"):
    mod = handler_for(src)
    assert mod is not None, src
    ctx = Context(rel_out=rel_out, offset_days=OFFSET, relabel=lambda s: s.replace("sub-01", f"sub-{subject}"),
                  subject=subject)
    res = mod.scrub(src, load_profile("basic"), ctx)
    _materialise(out_dir, res)
    return mod, res


def _signals(n: int = 3, samples: int = 512) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.normal(0, 20e-6, (n, samples))


# ------------------------------------------------------------------ EDF+ / BDF
@pytest.mark.parametrize("kind", ["edf", "bdf"])
def test_edf_bdf_header_cleared_signal_bytes_identical(tmp_path, kind):
    edfio = pytest.importorskip("edfio")
    data = _signals() * 1e6
    sig_cls = edfio.EdfSignal if kind == "edf" else edfio.BdfSignal
    signals = [sig_cls(data[i], 256, label=f"EEG{i}", physical_range=(-200, 200)) for i in range(3)]
    cls = edfio.Edf if kind == "edf" else edfio.Bdf
    rec = cls(signals,
              patient=edfio.Patient(code="MRN-4711", sex="F", birthdate=dt.date(1961, 7, 4), name="Jane_canarySmithers"),
              recording=edfio.Recording(startdate=dt.date(2019, 3, 14), hospital_administration_code="HOSP-77",
                                        investigator_technician_code="Dr_canary", equipment_code="canaryEQ"),
              annotations=[edfio.EdfAnnotation(0.5, None, "Jane canarySmithers fell asleep")])
    src = tmp_path / "in" / f"sub-01_task-rest_eeg.{kind}"
    src.parent.mkdir()
    rec.write(src)
    mod, res = _scrub(src, tmp_path / "out", f"sub-new01_task-rest_eeg.{kind}")
    assert mod.NAME == "edf"
    out = tmp_path / "out" / f"sub-new01_task-rest_eeg.{kind}"
    assert canary_hits(tmp_path / "out", NEEDLES) == []
    assert out.stat().st_size == src.stat().st_size
    back = (edfio.read_edf if kind == "edf" else edfio.read_bdf)(out)
    for i in range(3):
        assert np.array_equal(back.signals[i].digital, rec.signals[i].digital)
    assert back.startdate == dt.date(2019, 3, 14) + dt.timedelta(days=OFFSET)
    assert [a.text for a in back.annotations] in ([""], [])  # onset kept, text gone
    raw = mne.io.read_raw_bdf(out) if kind == "bdf" else mne.io.read_raw_edf(out)
    assert raw.get_data().shape[0] >= 3
    assert ("edf:patient", "MRN-4711 F 04-JUL-1961 Jane_canarySmithers") in res.log.identifiers


# ------------------------------------------------------------------ BrainVision
def test_brainvision_comments_dates_and_names(tmp_path):
    pybv = pytest.importorskip("pybv")
    data = _signals()
    folder = tmp_path / "in"
    pybv.write_brainvision(data=data, sfreq=250, ch_names=["Fz", "Cz", "Pz"], fname_base="sub-01_task-rest_eeg",
                           folder_out=folder, events=np.array([[10, 1], [100, 2]]),
                           meas_date=dt.datetime(2019, 3, 14, 10, 30, tzinfo=dt.UTC), fmt="binary_float32")
    vhdr = folder / "sub-01_task-rest_eeg.vhdr"
    text = vhdr.read_text(encoding="utf-8")
    assert "[Comment]" in text
    vhdr.write_text(text.replace("[Comment]", "[Comment]\nPatient: Jane canarySmithers, MRN-4711"), encoding="utf-8")
    vmrk = folder / "sub-01_task-rest_eeg.vmrk"
    vmrk.write_text(vmrk.read_text() + "Mk9=Comment,Jane canarySmithers moved,20,1,0\n")
    mod, res = _scrub(vhdr, tmp_path / "out", "sub-new01_task-rest_eeg.vhdr")
    assert mod.NAME == "brainvision"
    assert set(mod.companions(vhdr)) == {folder / "sub-01_task-rest_eeg.eeg", vmrk}
    assert canary_hits(tmp_path / "out", NEEDLES) == []
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [f"sub-new01_task-rest_eeg.{e}" for e in ("eeg", "vhdr", "vmrk")]
    assert (out / "sub-new01_task-rest_eeg.eeg").read_bytes() == (folder / "sub-01_task-rest_eeg.eeg").read_bytes()
    a = mne.io.read_raw_brainvision(vhdr, preload=True, verbose="error")
    b = mne.io.read_raw_brainvision(out / "sub-new01_task-rest_eeg.vhdr", preload=True, verbose="error")
    assert np.array_equal(a.get_data(), b.get_data()) and a.ch_names == b.ch_names
    assert b.info["meas_date"].date() == dt.date(2019, 3, 14) + dt.timedelta(days=OFFSET)
    assert len(b.annotations) >= 2  # stimulus markers kept


# ------------------------------------------------------------------ EEGLAB
def test_eeglab_set_free_text_gone_data_equal(tmp_path):
    eeglabio = pytest.importorskip("eeglabio.raw")
    from scipy.io import loadmat, savemat

    data = _signals()
    src = tmp_path / "in" / "sub-01_task-rest_eeg.set"
    src.parent.mkdir()
    eeglabio.export_set(str(src), data, 250, ["Fz", "Cz", "Pz"])
    mat = loadmat(src, appendmat=False)
    fields = {k: v for k, v in mat.items() if not k.startswith("__")}
    if "EEG" in fields:
        rec = fields["EEG"][0, 0]
        fields = {n: rec[n] for n in rec.dtype.names}
    fields.update(subject="Jane canarySmithers", comments="MRN-4711 seen at HOSP-77", setname="canary session")
    savemat(src, fields, appendmat=False)
    mod, _res = _scrub(src, tmp_path / "out", "sub-new01_task-rest_eeg.set")
    assert mod.NAME == "eeglab"
    assert canary_hits(tmp_path / "out", NEEDLES) == []
    out = next((tmp_path / "out").glob("*.set"))
    a = mne.io.read_raw_eeglab(src, preload=True, verbose="error")
    b = mne.io.read_raw_eeglab(out, preload=True, verbose="error")
    assert np.array_equal(a.get_data(), b.get_data()) and a.ch_names == b.ch_names


# ------------------------------------------------------------------ FIF
def test_fif_measurement_info_anonymized_data_equal(tmp_path):
    info = mne.create_info(["MEG 0111", "MEG 0112", "EEG 001"], 300.0, ["mag", "grad", "eeg"])
    raw = mne.io.RawArray(_signals(), info, verbose="error")
    with raw.info._unlock():
        raw.info["subject_info"] = {"his_id": "MRN-4711", "last_name": "canarySmithers", "first_name": "Jane",
                                    "birthday": dt.date(1961, 7, 4), "sex": 2}
        raw.info["experimenter"] = "Dr canary"
        raw.info["description"] = "canary session at HOSP-77"
        raw.info["proj_name"] = "canaryProject"
    raw.set_meas_date(dt.datetime(2019, 3, 14, 10, 30, tzinfo=dt.UTC))
    src = tmp_path / "in" / "sub-01_task-rest_meg.fif"
    src.parent.mkdir()
    raw.save(src, verbose="error")
    mod, res = _scrub(src, tmp_path / "out", "sub-new01_task-rest_meg.fif")
    assert mod.NAME == "fif"
    assert canary_hits(tmp_path / "out", (b"canary", b"MRN-4711", b"Smithers", b"HOSP-77")) == []
    out = tmp_path / "out" / "sub-new01_task-rest_meg.fif"
    back = mne.io.read_raw_fif(out, preload=True, verbose="error")
    orig = mne.io.read_raw_fif(src, preload=True, verbose="error")
    assert np.array_equal(back.get_data(), orig.get_data())
    assert back.info["meas_date"].date() == dt.date(2019, 3, 14) + dt.timedelta(days=OFFSET)
    si = back.info.get("subject_info") or {}
    assert "his_id" not in si and "last_name" not in si and "birthday" not in si
    assert not back.info["experimenter"] and not back.info["description"]
    assert ("fif:subject_info.his_id", "MRN-4711") in res.log.identifiers


# ------------------------------------------------------------------ SNIRF (HDF5)
def test_snirf_metadata_tags_scrubbed_data_equal(tmp_path):
    import h5py

    src = tmp_path / "in" / "sub-01_task-tap_nirs.snirf"
    src.parent.mkdir()
    series = np.arange(60, dtype=float).reshape(20, 3)
    with h5py.File(src, "w") as f:
        f["formatVersion"] = "1.1"
        tags = f.create_group("nirs/metaDataTags")
        for k, v in {"SubjectID": "canary01", "MeasurementDate": "2019-03-14", "MeasurementTime": "10:30:00",
                     "LengthUnit": "mm", "TimeUnit": "s", "FrequencyUnit": "Hz", "PatientName": "Jane canarySmithers",
                     "InstitutionName": "HOSP-77"}.items():
            tags[k] = v
        f["nirs/data1/dataTimeSeries"] = series
        f["nirs/data1/time"] = np.arange(20) / 10
    # a tag deleted in place leaves its bytes behind: the output must be a new file
    mod, _res = _scrub(src, tmp_path / "out", "sub-new01_task-tap_nirs.snirf")
    assert mod.NAME == "hdf5"
    assert canary_hits(tmp_path / "out", NEEDLES) == []
    with h5py.File(tmp_path / "out" / "sub-new01_task-tap_nirs.snirf") as f:
        assert np.array_equal(f["nirs/data1/dataTimeSeries"][()], series)
        tags = f["nirs/metaDataTags"]
        assert tags["SubjectID"][()].decode() == "new01"
        assert tags["MeasurementDate"][()].decode() == str(dt.date(2019, 3, 14) + dt.timedelta(days=OFFSET))
        assert "PatientName" not in tags and tags["LengthUnit"][()] == b"mm"


# ------------------------------------------------------------------ PNG
def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def test_png_text_chunks_removed_pixels_kept(tmp_path):
    ihdr = struct.pack(">IIBBBBB", 4, 4, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"".join(b"\x00" + bytes(range(i * 4, i * 4 + 4)) for i in range(4)))
    png = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"tEXt", b"Author\x00Jane canarySmithers")
           + _chunk(b"pHYs", struct.pack(">IIB", 1000, 1000, 1)) + _chunk(b"IDAT", idat)
           + _chunk(b"tIME", b"\x07\xe3\x03\x0e\x0a\x1e\x00") + _chunk(b"IEND", b""))
    src = tmp_path / "in" / "sub-01_sample-A_SEM.png"
    src.parent.mkdir()
    src.write_bytes(png)
    _scrub(src, tmp_path / "out", "sub-new01_sample-A_SEM.png")
    out = (tmp_path / "out" / "sub-new01_sample-A_SEM.png").read_bytes()
    assert canary_hits(tmp_path / "out", NEEDLES) == [] and b"tIME" not in out
    assert _chunk(b"IDAT", idat) in out and b"pHYs" in out


def test_nwb_general_and_times_scrubbed_data_equal(tmp_path):
    import h5py

    src = tmp_path / "in" / "sub-01_task-rest_ieeg.nwb"
    src.parent.mkdir()
    series = np.arange(40, dtype=np.float32).reshape(10, 4)
    with h5py.File(src, "w") as f:
        f.attrs["nwb_version"] = "2.5.0"
        f["identifier"] = "canary-MRN-4711"
        f["session_description"] = "Jane canarySmithers, morning"
        f["session_start_time"] = "2019-03-14T10:30:00+01:00"
        f["timestamps_reference_time"] = "2019-03-14T10:30:00+01:00"
        f["file_create_date"] = ["2019-03-14T11:00:00+01:00"]
        f["general/subject/subject_id"] = "canary01"
        f["general/subject/species"] = "Homo sapiens"
        f["general/subject/date_of_birth"] = "1961-07-04"
        f["general/experimenter"] = ["Dr canary"]
        f["general/institution"] = "HOSP-77"
        f.create_group("general/devices/amp").attrs["description"] = "amplifier"
        f["acquisition/ieeg/data"] = series
    mod, _res = _scrub(src, tmp_path / "out", "sub-new01_task-rest_ieeg.nwb")
    assert mod.NAME == "hdf5"
    assert canary_hits(tmp_path / "out", NEEDLES) == []
    with h5py.File(tmp_path / "out" / "sub-new01_task-rest_ieeg.nwb") as f:
        assert np.array_equal(f["acquisition/ieeg/data"][()], series)
        assert f["general/subject/species"][()] == b"Homo sapiens"
        assert f["general/subject/subject_id"][()] == b"new01" and "devices" in f["general"]
        assert f["session_start_time"][()].decode().startswith(str(dt.date(2019, 3, 14) + dt.timedelta(days=OFFSET)))
