"""Prose files BIDS defines outside the subjects (README, CHANGES, LICENSE, CITATION.cff, and the README of
a derivative folder) are carried with labels replaced, never dropped as an unknown type."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_both


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
