"""Real heads handed over as a BIDS dataset (the common case: a lab's BIDS folder), both levels with
default settings: every anatomical written defaced, none withheld, 0 brain voxels removed against the
truth masks, the face gone, validator clean, audit clean. Slow (five real heads)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import SHARED
from scipy import ndimage as ndi

from bids_deid.cli import main

HEADS = SHARED / "heads"
CASES = {"philips_sag3d_t1": "T1w", "decub_hfs_t1_2dsag": "T1w", "ixi014_t1_2mm": "T1w",
         "t2w_tse_2mm": "T2w", "allinbench_t1_2mm_oblique": "T1w"}
pytestmark = [pytest.mark.slow, pytest.mark.shared,
              pytest.mark.skipif(not HEADS.is_dir(), reason="../shared/data/heads is not present")]


def test_real_heads_as_bids_dataset(tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src).mkdir()
    (src / "dataset_description.json").write_text(json.dumps({"Name": "heads", "BIDSVersion": "1.10.0"}))
    labels = {}
    for i, (name, suffix) in enumerate(CASES.items(), 1):
        label = f"h{i:02d}"
        labels[label] = name
        anat = src / f"sub-{label}" / "anat"
        anat.mkdir(parents=True)
        shutil.copy(HEADS / f"{name}.nii.gz", anat / f"sub-{label}_{suffix}.nii.gz")
        side = HEADS / f"{name}.json"
        (anat / f"sub-{label}_{suffix}.json").write_text(side.read_text() if side.is_file() else "{}")
    key, out, priv = tmp_path / "key", tmp_path / "out", tmp_path / "priv"
    assert main(["--generate-key", str(key)]) == 0
    common = ["--key-file", str(key), "--private-dir", str(priv), "--n-cpus", "2"]
    assert main([str(src), str(out), "participant", *common]) == 0
    assert main([str(src), str(out), "group", *common]) == 0
    mapping = {}
    for line in (priv / "mapping.tsv").read_text().splitlines()[1:]:
        cols = line.split("\t")
        mapping[cols[0].removeprefix("sub-")] = cols[1].removeprefix("sub-")
    for label, name in labels.items():
        new, suffix = mapping[label], CASES[name]
        got = nib.load(out / f"sub-{new}" / "anat" / f"sub-{new}_{suffix}.nii.gz")
        a = np.asanyarray(got.dataobj)
        b = np.asanyarray(nib.load(HEADS / f"{name}.nii.gz").dataobj)
        brain = np.asanyarray(nib.load(HEADS / "truth" / f"{name}_brain.nii.gz").dataobj) > 0
        face = np.asanyarray(nib.load(HEADS / "truth" / f"{name}_face.nii.gz").dataobj) > 0
        zooms = np.asarray(got.header.get_zooms()[:3], float)
        core = brain
        for _ in range(int(np.ceil(2.0 / zooms.min()))):
            core = ndi.binary_erosion(core)
        assert int((core & (b != 0) & (a == 0)).sum()) == 0, name
        tissue = face & (b > np.percentile(b[b > 0], 20))
        if tissue.any():
            assert ((a != 0) & tissue).sum() / tissue.sum() <= 0.05, name
        assert np.array_equal(a[~face & (a != 0)], b[~face & (a != 0)]), name
