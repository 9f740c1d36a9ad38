"""ASL through the App on real EPI DICOM renamed as a PCASL run and its M0 scan."""

from __future__ import annotations

import json

from conftest import SHARED, needs_shared
from pydicom.uid import generate_uid
from test_convert_fieldmaps import rewrite

from bids_deid.cli import main
from bids_deid.convert.asl import complete_asl

ASL_FIELDS = ("ArterialSpinLabelingType", "PostLabelingDelay", "BackgroundSuppression", "M0Type",
              "TotalAcquiredPairs", "RepetitionTimePreparation", "LabelingDuration", "BolusCutOffFlag",
              "IntendedFor", "M0Estimate")


def _session(tmp_path):
    raw, study = tmp_path / "raw", generate_uid()
    nih = SHARED / "dcm_qa" / "nih" / "In" / "20180918Si"
    rewrite(nih / "mr_0003", raw / "asl", study=study, series_number=3, description="pcasl_2d", patient="ASL1")
    rewrite(nih / "mr_0004", raw / "m0", study=study, series_number=4, description="pcasl_2d_M0", patient="ASL1")
    rewrite(nih / "mr_0005", raw / "bold", study=study, series_number=5, description="fMRI_rest", patient="ASL1")
    return raw


def _run(tmp_path, raw, key_file, *extra):
    out, private = tmp_path / "out", tmp_path / "private"
    opts = ["--key-file", str(key_file), "--private-dir", str(private), "--deface-method", "none",
            "--sourcedata", "none", "-w", str(tmp_path / "w"), *extra]
    assert main([str(raw), str(out), "participant", *opts]) == 0
    main([str(raw), str(out), "group", *opts])
    issues = json.loads((private / "validator-output.json").read_text())["issues"]["issues"]
    return out, private, issues


def test_required_fields_are_filled_only_from_what_is_known():
    side = {"RepetitionTime": 4.0, "ProtocolName": "pcasl_2d"}
    out, context, missing = complete_asl(side, 4, has_m0scan=True)
    assert out["ArterialSpinLabelingType"] == "PCASL" and out["RepetitionTimePreparation"] == 4.0
    assert context is None and "volume order (aslcontext)" in missing and "PostLabelingDelay" in missing
    out, context, missing = complete_asl(side, 4, has_m0scan=True, pattern=["control", "label"],
                                         metadata={"PostLabelingDelay": 1.8, "LabelingDuration": 1.5,
                                                   "BackgroundSuppression": False})
    assert missing == [] and context == ["control", "label", "control", "label"]
    assert (out["M0Type"], out["TotalAcquiredPairs"]) == ("Separate", 2)


@needs_shared
def test_asl_without_labeling_parameters_is_kept_in_sourcedata(tmp_path, key_file):
    out, private, issues = _run(tmp_path, _session(tmp_path), key_file)
    assert not list(out.rglob("sub-*/perf/*"))
    assert [i for i in issues if i["severity"] == "error"] == []
    (state,) = (private / "state").glob("_raw-*.json")
    records = json.loads(state.read_text())["records"].values()
    reasons = sorted(r["reason"] for r in records)
    assert any("ASL run without" in r and "PostLabelingDelay" in r for r in reasons), reasons
    assert any("M0 scan without an ASL run" in r for r in reasons), reasons


@needs_shared
def test_asl_with_rule_metadata_validates_with_context_and_m0(tmp_path, key_file):
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - match: {SeriesDescription: pcasl_2d}\n"
        "    set: {datatype: perf, suffix: asl}\n"
        "    aslcontext: [control, label]\n"
        "    metadata: {PostLabelingDelay: 1.8, LabelingDuration: 1.5, BackgroundSuppression: false}\n")
    out, private, issues = _run(tmp_path, _session(tmp_path), key_file, "--heuristic", str(rules))
    assert [i for i in issues if i["severity"] == "error"] == [], issues
    assert [i for i in issues if i.get("subCode") in ASL_FIELDS or "ASL" in i["code"] or "M0" in i["code"]] == []
    (asl,) = out.rglob("sub-*/perf/*_asl.nii.gz")
    (m0,) = out.rglob("sub-*/perf/*_m0scan.nii.gz")
    side = json.loads(asl.with_name(asl.name.replace(".nii.gz", ".json")).read_text())
    assert (side["M0Type"], side["TotalAcquiredPairs"], side["ArterialSpinLabelingType"]) == ("Separate", 1, "PCASL")
    context = asl.with_name(asl.name.replace("_asl.nii.gz", "_aslcontext.tsv")).read_text()
    assert context == "volume_type\ncontrol\nlabel\n"
    m0side = json.loads(m0.with_name(m0.name.replace(".nii.gz", ".json")).read_text())
    assert m0side["IntendedFor"] == [f"bids::{asl.relative_to(out).as_posix()}"]
