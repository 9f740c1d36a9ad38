"""Series classification and user heuristics."""

from __future__ import annotations

from pathlib import Path

import pytest

from bids_deid.convert.classify import Guess, bids_name, classify, load_heuristic, task_label
from bids_deid.errors import ProfileError

REPO = Path(__file__).resolve().parents[1]


def f(**kw):
    base = {"Modality": "MR", "ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"]}
    base.update(kw)
    return base


@pytest.mark.parametrize(
    ("fields", "datatype", "suffix"),
    [
        (
            f(SeriesDescription="t1_mprage_sag", ScanningSequence="GR\\IR", EchoTime=0.003, InversionTime=0.9),
            "anat",
            "T1w",
        ),
        (f(SeriesDescription="t2_spc_sag", ScanningSequence="SE", EchoTime=0.4), "anat", "T2w"),
        (f(SeriesDescription="t2_flair_tra", ScanningSequence="SE\\IR", EchoTime=0.09), "anat", "FLAIR"),
        (f(SeriesDescription="pd_tse_cor", ScanningSequence="SE", EchoTime=0.012), "anat", "PDw"),
        (f(SeriesDescription="swi_tra", ScanningSequence="GR", EchoTime=0.02), "anat", "T2starw"),
        (f(SeriesDescription="fMRI_rest", ScanningSequence="EP", EchoTime=0.03), "func", "bold"),
        (f(SeriesDescription="fMRI_rest_SBRef", ScanningSequence="EP"), "func", "sbref"),
        (
            f(
                SeriesDescription="ep2d_diff_mddw",
                ScanningSequence="EP",
                ImageType=["ORIGINAL", "PRIMARY", "DIFFUSION"],
            ),
            "dwi",
            "dwi",
        ),
        (f(SeriesDescription="pcasl_3d", ScanningSequence="GR"), "perf", "asl"),
        (f(SeriesDescription="se_epi_fmap_PA", ScanningSequence="EP"), "fmap", "epi"),
        (f(SeriesDescription="gre_field_mapping", ScanningSequence="GR", EchoNumber=1), "fmap", "magnitude1"),
        (f(SeriesDescription="gre_field_mapping", ScanningSequence="GR", EchoNumber=2), "fmap", "magnitude2"),
        (
            f(
                SeriesDescription="gre_field_mapping",
                ScanningSequence="GR",
                ImageType=["ORIGINAL", "PRIMARY", "P", "ND"],
            ),
            "fmap",
            "phasediff",
        ),
        # parameters only, no telling names
        (f(SeriesDescription="series 5", ScanningSequence="GR\\IR", EchoTime=0.003, InversionTime=0.9), "anat", "T1w"),
    ],
)
def test_rules(fields, datatype, suffix):
    g = classify(fields)
    assert (g.datatype, g.suffix) == (datatype, suffix), g


@pytest.mark.parametrize(
    "fields",
    [
        f(SeriesDescription="localizer"),
        f(SeriesDescription="AAHScout_MPR_sag"),
        f(SeriesDescription="t1_mprage", ImageType=["DERIVED", "PRIMARY", "MPR"]),
        f(SeriesDescription="ep2d_bold_moco", ImageType=["ORIGINAL", "PRIMARY", "MOCO"]),
        f(SeriesDescription="diff_ADC", ImageType=["DERIVED", "PRIMARY", "ADC"]),
        f(SeriesDescription="series 7", BidsGuess=["derived", "_run-1"]),  # no rule knows it: the guess decides
        {"Modality": "CT", "SeriesDescription": "head"},
        f(SeriesDescription="mystery series"),
    ],
)
def test_skipped(fields):
    g = classify(fields)
    assert g.skipped and g.reason


def test_rules_win_over_bidsguess_and_both_are_reported():
    # an EPI time series (XA30 BOLD) that dcm2niix guessed as dwi: no b-values, 200 volumes
    g = classify(f(SeriesDescription="cmrr_mbep2d_bold", ScanningSequence="EP", _n_vols=200,
                   BidsGuess=["dwi", "_acq-cmrr_dwi"]))
    assert (g.datatype, g.suffix) == ("func", "bold")
    assert "dcm2niix guessed dwi/dwi" in g.reason
    # an ORIGINAL diffusion series with b-values that dcm2niix called derived
    g = classify(f(SeriesDescription="DTI 30dir", ScanningSequence="EP", _has_bval=True, _bmax=1000.0,
                   BidsGuess=["derived", "_dwi"]))
    assert (g.datatype, g.suffix) == ("dwi", "dwi")
    # a GE/Philips B0 map in Hz is a direct field map
    g = classify(f(SeriesDescription="B0 map", ScanningSequence="GR", Units="Hz"))
    assert (g.datatype, g.suffix) == ("fmap", "fieldmap")


def test_bidsguess_used_and_run_acq_dropped():
    g = classify(f(BidsGuess=["func", "_acq-epfid2_dir-AP_run-3_bold"], ProtocolName="fMRI_nback"))
    assert (g.datatype, g.suffix) == ("func", "bold")
    assert g.entities == {"dir": "AP", "task": "nback"}
    assert bids_name("abc", "01", g, run=2) == "sub-abc_ses-01_task-nback_dir-AP_run-2_bold"


def test_megre_echoes_and_phase_parts():
    g = classify(f(SeriesDescription="gre_me_t2star", ScanningSequence="GR", EchoNumber=3, _n_echoes=4))
    assert g.suffix == "MEGRE" and g.entities["echo"] == "3"
    assert bids_name("s", None, g) == "sub-s_echo-3_MEGRE"
    ph = classify(f(SeriesDescription="fMRI_task-motor", ScanningSequence="EP", ImageType=["ORIGINAL", "PRIMARY", "P"]))
    assert ph.entities.get("part") == "phase" and ph.entities["task"] == "motor"


def test_fmap_drops_entities_it_cannot_carry():
    g = classify(f(SeriesDescription="gre_field_mapping", ScanningSequence="GR", EchoNumber=2, _n_echoes=2))
    assert g.suffix == "magnitude2" and "echo" not in g.entities


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("fMRI_rest", "rest"),
        ("task-nBack_run1", "nback"),
        ("bold_motor", "motor"),
        ("EPI (I to S)", "unknown"),
        (None, "unknown"),
        ("fMRI_Resting-State", "rest"),
    ],
)
def test_task_label(text, label):
    assert task_label(text) == label


def test_heuristic_overrides(tmp_path):
    rules = load_heuristic(REPO / "docs" / "example-heuristic.yaml")
    assert rules
    h = tmp_path / "h.yaml"
    h.write_text(
        "rules:\n"
        "  - match: {SeriesDescription: 're:(?i)^my_epi', EchoTime: 0.03}\n"
        "    set: {datatype: func, suffix: bold, task: 'n-back!', acq: mb4}\n"
        "  - match: {ImageType: 'DERIVED', SeriesDescription: ['keepme', 'keepme2']}\n"
        "    set: {datatype: anat, suffix: T1w, acq: derived}\n"
        "  - match: {SeriesDescription: 're:junk'}\n"
        "    skip: true\n"
    )
    rules = load_heuristic(h)
    g = classify(f(SeriesDescription="my_epi_1", EchoTime=0.03), rules)
    assert (g.datatype, g.suffix, g.entities) == ("func", "bold", {"task": "nback", "acq": "mb4"})
    g2 = classify(f(SeriesDescription="keepme2", ImageType=["DERIVED", "PRIMARY"]), rules)
    assert (g2.datatype, g2.suffix, g2.entities) == ("anat", "T1w", {"acq": "derived"})
    assert classify(f(SeriesDescription="t1_junk"), rules).skipped
    # no rule matches: normal guess
    assert classify(f(SeriesDescription="t1_mprage"), rules).suffix == "T1w"


@pytest.mark.parametrize(
    "text",
    [
        "not: [a list",
        "rules: {}\n",
        "rules:\n  - set: {datatype: anat, suffix: T1w}\n",
        "rules:\n  - match: {SeriesDescription: x}\n    set: {datatype: pet, suffix: pet}\n",
        "rules:\n  - match: {SeriesDescription: x}\n    set: {datatype: anat, suffix: T1w, sub: x}\n",
        "rules:\n  - match: {SeriesDescription: 're:(('}\n    set: {datatype: anat, suffix: T1w}\n",
        "rules:\n  - match: {SeriesDescription: x}\n",
    ],
)
def test_bad_heuristics(tmp_path, text):
    h = tmp_path / "bad.yaml"
    h.write_text(text)
    with pytest.raises(ProfileError):
        load_heuristic(h)


def test_guess_dataclass():
    assert Guess(None, None).skipped
    assert not Guess("anat", "T1w").skipped
