"""End-to-end through main(): leaks, validator, input untouched, resume, one-line errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import CANARY_DATES, canary_hits, tree_bytes, tree_digest

from bids_deid.cli import main


def _run(ds: Path, out: Path, key: Path, level: str, *extra: str) -> int:
    return main([str(ds), str(out), level, "--key-file", str(key), "--deface-method", "none", *extra])


def _both(ds, out, key, *extra):
    assert _run(ds, out, key, "participant", *extra) == 0
    return _run(ds, out, key, "group", *extra)


@pytest.fixture
def done(tmp_path, canary_ds, key_file, capsys):
    before = tree_digest(canary_ds)
    out = tmp_path / "out"
    rc = _both(canary_ds, out, key_file)
    captured = capsys.readouterr()
    return {"rc": rc, "out": out, "before": before, "ds": canary_ds, "key": key_file, "stdout": captured.out,
            "private": tmp_path / "out-private"}


def test_no_canary_survives_and_validator_clean(done):
    assert done["rc"] == 0, done["stdout"]
    out = done["out"]
    assert canary_hits(out) == []
    assert canary_hits(out, CANARY_DATES) == []
    assert "0 errors" in done["stdout"] and "0 hits" in done["stdout"]
    dd = json.loads((out / "dataset_description.json").read_text())
    assert dd["DatasetType"] == "raw" and dd["GeneratedBy"][0]["Name"] == "bids-deid"
    assert "ContactEmail" not in dd
    # anatomy, func, events and scans went through; the unknown notes file did not
    names = [p.name for p in out.rglob("*")]
    assert sum(n.endswith("_T1w.nii.gz") for n in names) == 2
    assert sum(n.endswith("_events.tsv") for n in names) == 2
    assert not any(n.endswith(".txt") for n in names)


def test_input_untouched(done):
    assert tree_digest(done["ds"]) == done["before"]


def test_private_side(done):
    priv = done["private"]
    assert priv.stat().st_mode & 0o777 == 0o700
    mapping = (priv / "mapping.tsv").read_text()
    assert "sub-canary01" in mapping and "sub-canary02" in mapping
    assert (priv / "mapping.tsv").stat().st_mode & 0o777 == 0o600
    assert (priv / "report.html").is_file()
    from bids_deid.report.removed import audit_entries

    audit = list(audit_entries(priv))
    assert any(a["field"] == "InstitutionName" and a["action"] == "remove" for a in audit)
    assert all("canary" not in json.dumps(a).lower().replace("canary01", "").replace("canary02", "")
               or a["file"] for a in audit)
    # nothing private in the public output
    assert not any(p.name in ("mapping.tsv", "key-fingerprint") for p in done["out"].rglob("*"))


def test_rerun_is_byte_identical_and_skips(done, tmp_path):
    first = tree_bytes(done["out"])
    assert _both(done["ds"], done["out"], done["key"]) == 0
    assert tree_bytes(done["out"]) == first
    # a fresh output with the same key is byte-identical too
    other = tmp_path / "again"
    assert _both(done["ds"], other, done["key"]) == 0
    assert tree_bytes(other) == first


def test_interrupted_run_resumes(tmp_path, canary_ds, key_file, monkeypatch):
    import bids_deid.formats.nifti as pl

    out = tmp_path / "out"
    real = pl.scrub
    calls = {"n": 0}

    def dies_on_third(src, profile, ctx):
        res = real(src, profile, ctx)
        calls["n"] += 1
        if calls["n"] == 3:  # interrupted in the middle of writing the third image

            def half(fh):
                fh.write(b"\x1f\x8b half an image")
                raise KeyboardInterrupt

            res.writes[ctx.rel_out] = half
        return res

    monkeypatch.setattr(pl, "scrub", dies_on_third)
    assert _run(canary_ds, out, key_file, "participant") == 130
    assert calls["n"] == 3
    assert not [p for p in out.rglob("*") if p.name.startswith(".bids-deid-tmp")]
    monkeypatch.setattr(pl, "scrub", real)
    assert _both(canary_ds, out, key_file) == 0
    ref = tmp_path / "ref"
    assert _both(canary_ds, ref, key_file) == 0
    assert tree_bytes(out) == tree_bytes(ref)


def test_planted_scrubber_bug_is_caught_by_audit(tmp_path, canary_ds, key_file, monkeypatch, capsys):
    import bids_deid.formats.sidecar as pl

    real = pl.scrub_sidecar

    def leaky(data, profile, offset, log):
        out = real(data, profile, offset, log)
        if "StationName" in data:
            out["StationName"] = data["StationName"]  # the bug: an identifier slips through
        return out

    monkeypatch.setattr(pl, "scrub_sidecar", leaky)
    out = tmp_path / "out"
    assert _run(canary_ds, out, key_file, "participant") == 0
    assert _run(canary_ds, out, key_file, "group") == 3
    err = capsys.readouterr().err
    assert "leak audit found" in err and err.count("\n") == 1
    hits = json.loads((tmp_path / "out-private" / "leak-audit.json").read_text())["hits"]
    assert any(h["kind"] == "sidecar:StationName" for h in hits)


def test_participant_selection_and_parallel(tmp_path, canary_ds, key_file):
    out = tmp_path / "out"
    assert _run(canary_ds, out, key_file, "participant", "--participant_label", "sub-canary01") == 0
    assert len(list(out.glob("sub-*"))) == 1
    assert _run(canary_ds, out, key_file, "participant", "--participant-label", "canary02", "--n-cpus", "2") == 0
    assert _run(canary_ds, out, key_file, "group") == 0
    assert len(list(out.glob("sub-*"))) == 2
    assert len((out / "participants.tsv").read_text().splitlines()) == 3


def test_dry_run_writes_nothing(tmp_path, canary_ds, key_file, capsys):
    out = tmp_path / "out"
    assert _run(canary_ds, out, key_file, "participant", "--dry-run") == 0
    text = capsys.readouterr().out
    assert "sub-canary01 ->" in text and "InstitutionName" in text and "LEAVE OUT" in text
    assert not out.exists()


def test_derivative_dataset_type(tmp_path, canary_ds, key_file):
    out = tmp_path / "out"
    assert _both(canary_ds, out, key_file, "--dataset-type", "derivative") == 0
    dd = json.loads((out / "dataset_description.json").read_text())
    assert dd["DatasetType"] == "derivative" and "SourceDatasets" in dd


def _one_line_error(capsys, rc, match):
    err = capsys.readouterr().err
    assert rc != 0
    assert err.startswith("bids-deid: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert match in err, err


def test_error_not_bids(tmp_path, key_file, capsys):
    (tmp_path / "empty").mkdir()
    _one_line_error(capsys, _run(tmp_path / "empty", tmp_path / "o", key_file, "participant"), "neither a BIDS dataset")


def test_error_missing_key(tmp_path, canary_ds, capsys):
    rc = main([str(canary_ds), str(tmp_path / "o"), "participant"])
    _one_line_error(capsys, rc, "--generate-key")


def test_error_output_inside_input(canary_ds, key_file, capsys):
    _one_line_error(capsys, _run(canary_ds, canary_ds / "derivatives" / "x", key_file, "participant"),
                    "inside the input")
    assert not (canary_ds / "derivatives").exists()


def test_error_different_key(done, tmp_path, capsys):
    from bids_deid.pseudonym import generate_key

    other = generate_key(tmp_path / "other.key")
    _one_line_error(capsys, _run(done["ds"], done["out"], other, "participant"), "different key")


@pytest.mark.parametrize("damage", ["json", "nifti", "gzip"])
def test_error_corrupt_file_and_no_partial(tmp_path, canary_ds, key_file, capsys, damage):
    f = next(canary_ds.rglob("sub-*_bold.json" if damage == "json" else "sub-*_bold.nii.gz"))
    if damage == "json":
        f.write_text("{broken")
    elif damage == "nifti":
        f.write_bytes(__import__("gzip").compress(b"x" * 400))
    else:
        f.write_bytes(f.read_bytes()[:300])
    out = tmp_path / "o"
    rc = _run(canary_ds, out, key_file, "participant", "--skip-bids-validation")
    # One bad file never stops the run: it is withheld, with its sidecar, and listed with a reason.
    assert rc == 0
    text = capsys.readouterr().out
    held = [ln for ln in text.splitlines() if ln.strip().startswith("withheld:") and "_bold." + f.name.split(".", 1)[1]
            in ln]
    assert held and ("corrupt" in held[0] or "truncated" in held[0] or "NIfTI" in held[0]), text
    assert "canary01" not in held[0]  # the reason names the new labels only
    stem = f.name.split(".")[0].split("_", 1)[1]
    per_subject = sorted(sorted(p.name.split(".", 1)[1] for p in d.rglob(f"*_{stem}.*")) for d in out.glob("sub-*"))
    # the damaged subject: a damaged image takes its sidecar with it; a damaged sidecar goes alone
    assert per_subject == ([["json", "nii.gz"], ["nii.gz"]] if damage == "json" else [[], ["json", "nii.gz"]])
    assert not [p for p in out.rglob("*") if p.name.startswith(".bids-deid-tmp")]


def test_error_unwritable_output(tmp_path, canary_ds, key_file, capsys):
    if os.geteuid() == 0:
        ro = Path("/proc/bids-deid-cannot-write")
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
    _one_line_error(capsys, main([str(canary_ds), str(ro / "out"), "participant", "--key-file", str(key_file),
                                  "--private-dir", str(tmp_path / "p")]), "cannot write")


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["a", "b", "everything"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["a", "b", "participant", "--n-cpus", "0"])
    assert e.value.code == 2


def test_audit_cli_rechecks_and_catches_planted_leak(done, capsys):
    from bids_deid.audit_cli import main as audit_main

    assert audit_main([str(done["out"]), "--private-dir", str(done["private"])]) == 0
    assert "0 hits" in capsys.readouterr().out
    # plant a leak in a gzip'd image (UTF-16) and in a file name
    victim = next(done["out"].rglob("*_events.tsv"))
    victim.write_bytes(victim.read_bytes() + "Canary Memorial Hospital".encode("utf-16-le"))
    (done["out"] / "README_CANARYSTATION7").write_text("x")
    assert audit_main([str(done["out"]), "--private-dir", str(done["private"])]) == 3
    text = capsys.readouterr().out
    assert "_events.tsv" in text and "(content)" in text and "file name" in text


def test_withheld_image_leaves_no_trace(tmp_path, canary_ds, key_file, capsys):
    """The synthetic ellipsoid 'head' has no face: the registration gate must withhold it,
    with its sidecar and its scans.tsv row, and the dataset must still validate."""
    out = tmp_path / "out"
    base = [str(canary_ds), str(out)]
    opts = ["--key-file", str(key_file), "--participant-label", "canary01"]
    assert main(base + ["participant", *opts]) == 0
    assert main(base + ["group", *opts]) == 0, capsys.readouterr().err
    assert not list(out.rglob("*_T1w.*"))
    scans = next(out.rglob("*_scans.tsv")).read_text()
    assert "_T1w" not in scans and "_bold" in scans
    state = json.loads(next((tmp_path / "out-private" / "state").glob("sub-*.json")).read_text())
    withheld = [k for k, v in state["records"].items() if v["status"] == "withheld"]
    assert any(k.endswith("_T1w.nii.gz") for k in withheld)
    assert (tmp_path / "out-private" / "report.html").read_text().count("withheld") >= 1


def test_defaced_images_listed_for_upload(tmp_path, key_file):
    """The demo head is defaced; the run summary lists it (for OpenNeuro's affirm-defaced step)."""
    from bids_deid.deface import demo_head
    from bids_deid.demo import build_demo_dataset

    ds = build_demo_dataset(tmp_path / "in", head=demo_head(), dicom=False)
    out = tmp_path / "out"
    opts = ["--key-file", str(key_file), "--participant-label", "canary01", "--write-defacemask"]
    assert main([str(ds), str(out), "participant", *opts]) == 0
    assert main([str(ds), str(out), "group", *opts]) == 0
    summary = json.loads((tmp_path / "out-private" / "run-summary.json").read_text())
    assert len(summary["defaced_images"]) == 1 and summary["defaced_images"][0].endswith("_T1w.nii.gz")
    assert summary["validation"]["errors"] == 0
    assert len(list(out.rglob("*_mod-T1w_defacemask.nii.gz"))) == 1
