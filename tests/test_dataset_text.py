"""Prose files BIDS defines outside the subjects (README, CHANGES, LICENSE, CITATION.cff, and the README of
a derivative folder) are carried with labels replaced, never dropped as an unknown type."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_both, run_level


def _t(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_citation_and_derivative_readme_carried(tmp_path: Path, key_file: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    _t(src / "dataset_description.json", json.dumps({"Name": "t", "BIDSVersion": "1.10.0"}))
    _t(src / "CITATION.cff", "cff-version: 1.2.0\ntitle: t\nmessage: cite sub-ab12cd\nauthors:\n  - family-names: Doe\n")
    _t(src / "LICENSE", "CC0\n")
    _t(src / "derivatives" / "fs" / "README", "FreeSurfer run of sub-ab12cd\n")
    _t(src / "sub-ab12cd" / "beh" / "sub-ab12cd_task-x_events.tsv", "onset\tduration\n1\t1\n")
    assert run_both(src, out, key_file) == 0
    cff = (out / "CITATION.cff").read_text()
    assert cff.startswith("cff-version: 1.2.0") and "ab12cd" not in cff and "cite sub-" in cff
    assert (out / "LICENSE").read_text() == "CC0\n"
    readme = (out / "derivatives" / "fs" / "README").read_text()
    assert readme.startswith("FreeSurfer run of sub-") and "ab12cd" not in readme


def _jpeg_with_exif(text: bytes) -> bytes:
    exif = b"Exif\x00\x00" + text
    return b"\xff\xd8" + b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif + b"\xff\xda\x00\x02PIXELS\xff\xd9"


def test_asl_labeling_capture_withheld_unless_kept(tmp_path: Path, key_file: Path) -> None:
    """A labeling-plane capture is usually a photo of the scanner console: withheld by default with
    a reason that says so; kept (metadata stripped) when the profile keeps photos."""
    src = tmp_path / "in"
    _t(src / "dataset_description.json", json.dumps({"Name": "t", "BIDSVersion": "1.10.0"}))
    perf = src / "sub-ab12cd" / "perf"
    perf.mkdir(parents=True)
    (perf / "sub-ab12cd_asllabeling.jpg").write_bytes(_jpeg_with_exif(b"Artist=canary tech"))
    _t(perf / "sub-ab12cd_asl.json", json.dumps({"RepetitionTimePreparation": 4.0}))
    out = tmp_path / "out"
    assert run_level(src, out, key_file, "participant") == 0  # (no ASL image: the validator would object)
    assert not list(out.rglob("*asllabeling*"))
    state = "\n".join(p.read_text() for p in (tmp_path / "out-private" / "state").glob("sub-*.json"))
    assert "scanner console" in state

    profile = tmp_path / "keep.yaml"
    profile.write_text("extends: basic\nfiles:\n  keep_photos: true\n")
    out2 = tmp_path / "out2"
    assert run_level(src, out2, key_file, "participant", "--profile", str(profile),
                     "--private-dir", str(tmp_path / "p2")) == 0
    got = list(out2.rglob("*_asllabeling.jpg"))
    assert len(got) == 1 and b"canary" not in got[0].read_bytes() and got[0].read_bytes().endswith(b"PIXELS\xff\xd9")


def test_recording_in_a_derivative_folder_keeps_its_companions(tmp_path: Path, key_file: Path) -> None:
    import datetime as dt

    import numpy as np
    import pytest

    pybv = pytest.importorskip("pybv")
    src, out = tmp_path / "in", tmp_path / "out"
    _t(src / "dataset_description.json", json.dumps({"Name": "t", "BIDSVersion": "1.10.0"}))
    _t(src / "sub-ab12cd" / "beh" / "sub-ab12cd_task-x_events.tsv", "onset\tduration\n1\t1\n")
    eeg = src / "derivatives" / "sub-ab12cd" / "eeg"
    eeg.mkdir(parents=True)
    pybv.write_brainvision(data=np.zeros((2, 100)), sfreq=100, ch_names=["Fz", "Cz"],
                           fname_base="sub-ab12cd_task-rest_eeg", folder_out=eeg, events=np.array([[10, 1]]),
                           meas_date=dt.datetime(2019, 3, 14, tzinfo=dt.UTC))
    assert run_both(src, out, key_file) == 0
    got = sorted(p.name.rsplit("_", 1)[-1] for p in (out / "derivatives").rglob("*_eeg.*"))
    assert got == ["eeg.eeg", "eeg.vhdr", "eeg.vmrk"], got
    state = json.loads((tmp_path / "out-private" / "state" / "_dataset.json").read_text())
    held = [r for r, v in state["records"].items() if v.get("status") != "written" and "_eeg." in r]
    assert held == [], held  # the report must not call the companions withheld
