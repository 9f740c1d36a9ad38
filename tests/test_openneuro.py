"""Ready for OpenNeuro: a BIDSVersion the validator knows, License/Authors, diffusion files that
count alike (checked with OpenNeuro's legacy validator too, npm bids-validator 1.x)."""

from __future__ import annotations

import json
import shutil
import subprocess

import nibabel as nib
import pytest
from conftest import SHARED, needs_shared

from bids_deid.cli import main
from bids_deid.openneuro import bids_version, dwi_volume_problems, publication_fields, validator_bids_versions
from bids_deid.schema import bids_version as schema_version

LEGACY = "bids-validator@1.15.0"  # OpenNeuro's legacy (Node.js) validator


def test_bids_version_is_one_the_validator_knows():
    known = validator_bids_versions()
    assert known and all(v.count(".") == 2 for v in known)  # read from the validator's bundled schema
    v = bids_version(None)
    assert v in known
    # the installed schema may be newer than the validator's (1.11.2 vs 1.11.1 today): never newer than both
    assert v == schema_version() or schema_version() not in known
    assert bids_version("1.9.0") == "1.9.0"  # a known input version stays
    assert bids_version("1.99.0") in known  # an unknown one does not


def test_publication_fields_prefer_command_line():
    got, warnings = publication_fields("CC0", ("A B",), {"License": "PDDL", "Authors": ["X"]})
    assert got == {"License": "CC0", "Authors": ["A B"]} and warnings == []
    got, warnings = publication_fields(None, None, {})
    assert got == {} and len(warnings) == 2
    got, warnings = publication_fields("my licence", None, {"Authors": "One Author"})
    assert got["Authors"] == ["One Author"] and "not one OpenNeuro lists" in warnings[0]


@pytest.fixture(scope="module")
def mosaic_dwi(tmp_path_factory):
    """The shared Siemens mosaic (a single-volume DWI) converted from raw DICOM, then the group level."""
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present")
    from bids_deid.pseudonym import generate_key

    tmp = tmp_path_factory.mktemp("dwi")
    raw = tmp / "raw"
    shutil.copytree(SHARED / "dicom" / "mr_siemens_mosaic_nibabel", raw / "s")
    key = generate_key(tmp / "k.key")
    out = tmp / "out"
    opts = ["--key-file", str(key), "--license", "CC0", "--authors", "Test Author"]
    assert main([str(raw), str(out), "participant", *opts]) == 0
    assert main([str(raw), str(out), "group", *opts]) == 0
    return out


@needs_shared
def test_converted_dwi_counts_its_volumes(mosaic_dwi):
    dwi = sorted(mosaic_dwi.glob("sub-*/dwi/*_dwi.nii.gz"))
    assert dwi
    for img in dwi:
        hdr = nib.load(img).header
        n = int(hdr["dim"][4])
        assert int(hdr["dim"][0]) == 4
        bval = img.with_name(img.name.replace(".nii.gz", ".bval")).read_text().split()
        assert len(bval) == n
    assert dwi_volume_problems(mosaic_dwi) == []
    dd = json.loads((mosaic_dwi / "dataset_description.json").read_text())
    assert dd["BIDSVersion"] in validator_bids_versions()
    assert dd["License"] == "CC0" and dd["Authors"] == ["Test Author"]
    report = json.loads((mosaic_dwi.parent / "out-private" / "validator-output.json").read_text())
    codes = {i["code"] for i in report["issues"]["issues"]}
    assert not codes & {"UNKNOWN_BIDS_VERSION", "NO_AUTHORS", "VOLUME_COUNT_MISMATCH"}, codes
    assert "De-identification" in (mosaic_dwi / "README").read_text()
    assert (mosaic_dwi / "CHANGES").read_text().startswith("1.0.0 ")


def test_volume_problems_found(tmp_path):
    import numpy as np

    d = tmp_path / "sub-a" / "dwi"
    d.mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 3), np.int16), np.eye(4)), d / "sub-a_dwi.nii.gz")
    (d / "sub-a_dwi.bval").write_text("0 1000\n")
    (d / "sub-a_dwi.bvec").write_text("1 0 0\n0 1 0\n0 0 1\n")
    problems = dwi_volume_problems(tmp_path)
    assert len(problems) == 1 and ".bval" in problems[0] and "3 volume(s)" in problems[0]


@pytest.mark.slow
@needs_shared
def test_legacy_openneuro_validator_passes(mosaic_dwi, tmp_path_factory):
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed")
    where = tmp_path_factory.mktemp("npm")
    inst = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(where), LEGACY],
                          capture_output=True, text=True, timeout=600)
    if inst.returncode != 0:
        pytest.skip(f"npm could not install {LEGACY}: {inst.stderr.strip().splitlines()[-1:]}")
    res = subprocess.run([str(where / "node_modules" / ".bin" / "bids-validator"), str(mosaic_dwi), "--json"],
                         capture_output=True, text=True, timeout=600)
    report = json.loads(res.stdout)
    errors = [i["key"] for i in report["issues"]["errors"]]
    warnings = [i["key"] for i in report["issues"]["warnings"]]
    assert errors == [], errors
    assert "NO_AUTHORS" not in warnings
