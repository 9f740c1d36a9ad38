"""dir- labels from PhaseEncodingDirection and field-map IntendedFor matching."""

from __future__ import annotations

import numpy as np
import pytest

from bids_deid.convert.classify import classify, load_heuristic, phase_dir_label
from bids_deid.convert.fmap import intended_for

AXIAL = np.diag([-3.0, 3.0, 3.0, 1.0])  # LAS: i toward left, j toward anterior, k toward superior
SAGITTAL = np.array([[0, 0, 1.0, 0], [1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])  # i->A, j->S, k->R


@pytest.mark.parametrize(
    ("ped", "affine", "label"),
    [
        ("j-", AXIAL, "AP"),
        ("j", AXIAL, "PA"),
        ("i", AXIAL, "RL"),  # toward -x (left): right to left
        ("i-", AXIAL, "LR"),
        ("k", AXIAL, "IS"),
        ("k-", AXIAL, "SI"),
        ("i", SAGITTAL, "PA"),
        ("k-", SAGITTAL, "RL"),
        ("j-", None, "jneg"),  # no geometry: the voxel axis
        ("i", None, "ipos"),
        ("j", [[1, 0, 0, 0], [0, 0.7, 0.7, 0], [0, -0.7, 0.7, 0], [0, 0, 0, 1]], "jpos"),  # 45 degrees: unsure
        (None, AXIAL, None),
        ("x", AXIAL, None),
    ],
)
def test_phase_dir_label(ped, affine, label):
    assert phase_dir_label(ped, affine) == label


def test_dir_from_phase_wins_over_dcm2niix_and_loses_to_heuristic(tmp_path):
    fields = {"Modality": "MR", "BidsGuess": ["func", "_dir-AP_bold"], "ProtocolName": "fMRI_rest",
              "ImageType": ["ORIGINAL", "PRIMARY", "M"], "_dir": "PA"}
    g = classify(fields)
    assert (g.suffix, g.entities["dir"], g.entities["task"]) == ("bold", "PA", "rest")
    rules = tmp_path / "h.yaml"
    rules.write_text("rules:\n  - match: {ProtocolName: fMRI_rest}\n"
                     "    set: {datatype: func, suffix: bold, task: rest, dir: LR}\n")
    assert classify(fields, load_heuristic(rules)).entities["dir"] == "LR"
    t1 = classify({"Modality": "MR", "SeriesDescription": "t1_mprage", "_dir": "AP"})
    assert "dir" not in t1.entities  # anatomical images carry no dir-


def _out(name, ped=None, shape=(64, 64, 30), affine=AXIAL, shim=None):
    fields = {"PhaseEncodingDirection": ped} if ped else {}
    if shim is not None:
        fields["ShimSetting"] = shim
    return {"rel": name, "fields": fields, "shape": shape, "affine": affine}


def test_epi_fieldmap_matches_axis_then_geometry():
    bold = _out("bold", "j-")
    dwi = _out("dwi", "j-", shape=(96, 96, 60), affine=np.diag([-2.0, 2, 2, 1]))
    bold_lr = _out("bold_lr", "i")
    targets = [bold, dwi, bold_lr]
    fm_bold = _out("fm", "j")  # reversed blip of the bold grid
    assert [t["rel"] for t in intended_for(fm_bold, "epi", targets)] == ["bold"]
    fm_dwi = _out("fm2", "j", shape=(96, 96, 60), affine=np.diag([-2.0, 2, 2, 1]))
    assert [t["rel"] for t in intended_for(fm_dwi, "epi", targets)] == ["dwi"]
    fm_other = _out("fm3", "j", shape=(10, 10, 10))  # no grid matches: every target on its axis
    assert [t["rel"] for t in intended_for(fm_other, "epi", targets)] == ["bold", "dwi"]
    fm_k = _out("fm4", "k", shape=(10, 10, 10))  # nothing on its axis or grid: all func/dwi of the session
    assert len(intended_for(fm_k, "epi", targets)) == 3
    fm_k_grid = _out("fm5", "k")  # nothing on its axis, but the bold grid: the bold images
    assert [t["rel"] for t in intended_for(fm_k_grid, "epi", targets)] == ["bold", "bold_lr"]


def test_shim_narrows_and_gre_fieldmaps_take_all():
    a, b = _out("a", "j-", shim=[1, 2, 3]), _out("b", "j-", shim=[4, 5, 6])
    assert [t["rel"] for t in intended_for(_out("pd", shim=[4, 5, 6]), "phasediff", [a, b])] == ["b"]
    assert [t["rel"] for t in intended_for(_out("pd"), "phasediff", [a, b])] == ["a", "b"]
    assert [t["rel"] for t in intended_for(_out("pd", shim=[9]), "phasediff", [a, b])] == ["a", "b"]
    assert intended_for(_out("pd"), "phasediff", []) == []
