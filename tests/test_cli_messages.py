"""What a data steward reads: the next-step command, and one clear line (and exit code) per misuse."""

from __future__ import annotations

import json
import shlex
import shutil

import pytest
from conftest import SHARED, needs_shared, tree_digest

from bids_deid.cli import main


def _err_line(capsys) -> tuple[str, str]:
    cap = capsys.readouterr()
    lines = [ln for ln in cap.err.splitlines() if ln.strip()]
    assert len(lines) == 1, cap.err  # one line, no traceback
    return lines[0], cap.out


def test_next_step_command_is_complete_and_runs(tmp_path, canary_ds, key_file, capsys, monkeypatch):
    out, private, work = tmp_path / "deid out", tmp_path / "my private", tmp_path / "scratch"
    argv = [str(canary_ds), str(out), "participant", "--key-file", str(key_file), "--private-dir", str(private),
            "-w", str(work), "--deface-method", "none", "--participant-label", "canary01", "--license", "CC0",
            "--authors", "Ada Lovelace", "Alan Turing"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    cmd = next(ln.strip() for ln in text.splitlines() if ln.strip().startswith("bids-deid "))
    args = shlex.split(cmd)  # quoted so that spaces in paths survive a copy-paste
    assert args[:4] == ["bids-deid", str(canary_ds), str(out), "group"]
    for opt, value in (("--key-file", str(key_file)), ("--private-dir", str(private)), ("--work-dir", str(work)),
                       ("--deface-method", "none"), ("--license", "CC0")):
        assert args[args.index(opt) + 1] == value, cmd
    assert args[args.index("--authors") + 1: args.index("--authors") + 3] == ["Ada Lovelace", "Alan Turing"]
    assert "--participant-label" not in args  # the group level covers every participant
    # the printed command is the one that works: run it as printed
    assert main(args[1:]) == 0, capsys.readouterr()
    dd = json.loads((out / "dataset_description.json").read_text())
    assert dd["License"] == "CC0" and dd["Authors"] == ["Ada Lovelace", "Alan Turing"]


def test_group_before_participant_says_run_participant_first(tmp_path, canary_ds, key_file, capsys):
    out = tmp_path / "out"
    rc = main([str(canary_ds), str(out), "group", "--key-file", str(key_file)])
    line, _ = _err_line(capsys)
    assert rc == 1
    assert "run the participant level first" in line
    assert f"bids-deid {canary_ds} {out} participant --key-file {key_file}" in line
    assert not out.exists()


def test_group_with_another_private_dir_is_refused(tmp_path, canary_ds, key_file, capsys):
    out = tmp_path / "out"
    assert main([str(canary_ds), str(out), "participant", "--key-file", str(key_file), "--deface-method", "none",
                 "--private-dir", str(tmp_path / "p1")]) == 0
    capsys.readouterr()
    # a bids-deid output but an empty, other private dir: the participant records are not there
    (tmp_path / "p2" / "state").mkdir(parents=True)
    (tmp_path / "p2" / "key-fingerprint").write_text("x")
    rc = main([str(canary_ds), str(out), "group", "--key-file", str(key_file), "--private-dir", str(tmp_path / "p2")])
    line, _ = _err_line(capsys)
    assert rc == 1 and "holds no participant record" in line and "--private-dir" in line


def test_foreign_nonempty_output_refused_at_once(tmp_path, canary_ds, key_file, capsys):
    out = tmp_path / "not-mine"
    (out / "thesis").mkdir(parents=True)
    (out / "thesis" / "chapter1.tex").write_text("precious")
    (out / "notes.txt").write_text("keep me")
    before = tree_digest(out)
    rc = main([str(canary_ds), str(out), "participant", "--key-file", str(key_file)])
    line, _ = _err_line(capsys)
    assert rc == 1
    assert "is not empty" in line and "not written by bids-deid" in line and "notes.txt" in line
    assert tree_digest(out) == before
    assert not (tmp_path / "not-mine-private").exists()  # refused before anything was written


def test_another_bids_dataset_as_output_refused(tmp_path, canary_ds, key_file, capsys):
    out = tmp_path / "other"
    shutil.copytree(canary_ds, out)  # someone's (identifiable) BIDS dataset
    rc = main([str(canary_ds), str(out), "participant", "--key-file", str(key_file)])
    line, _ = _err_line(capsys)
    assert rc == 1 and "not written by bids-deid" in line


def test_own_output_accepted_again(tmp_path, canary_ds, key_file, capsys):
    out = tmp_path / "out"
    opts = ["--key-file", str(key_file), "--deface-method", "none"]
    assert main([str(canary_ds), str(out), "participant", *opts, "--participant-label", "canary01"]) == 0
    # a later job of the same run (other participant) into the now non-empty output
    assert main([str(canary_ds), str(out), "participant", *opts, "--participant-label", "canary02"]) == 0
    assert len(list(out.glob("sub-*"))) == 2


def test_unknown_participant_label_lists_existing(tmp_path, canary_ds, key_file, capsys):
    rc = main([str(canary_ds), str(tmp_path / "out"), "participant", "--key-file", str(key_file),
               "--participant-label", "sub-canary99", "canary01"])
    line, _ = _err_line(capsys)
    assert rc == 1
    assert "not found in the input: canary99" in line
    assert "the input has: canary01 canary02" in line


@needs_shared
def test_unknown_participant_label_raw_lists_pseudonyms(tmp_path, key_file, capsys):
    from bids_deid.pseudonym import Pseudonymizer, load_key

    raw = tmp_path / "raw"
    shutil.copytree(SHARED / "dicom" / "mr_small_pydicom", raw / "a")
    shutil.copytree(SHARED / "dicom" / "ct_small_pydicom", raw / "b")
    rc = main([str(raw), str(tmp_path / "out"), "participant", "--key-file", str(key_file),
               "--participant-label", "nobody"])
    line, _ = _err_line(capsys)
    assert rc == 1 and "not found in the raw input: nobody" in line
    import pydicom

    pseudo = Pseudonymizer(load_key(key_file))
    for f in (raw / "a" / "MR_small.dcm", raw / "b" / "CT_small.dcm"):
        pid = str(pydicom.dcmread(f, stop_before_pixels=True).PatientID)
        assert pseudo.subject(pid) in line  # pseudonymous labels, never the PatientID
        assert pid not in line


@pytest.mark.parametrize("argv,needle", [
    (["--n-cpus", "0"], "must be at least 1"),
    (["--dataset-type", "weird"], "invalid choice"),
])
def test_usage_errors(tmp_path, canary_ds, argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(canary_ds), str(tmp_path / "o"), "participant", *argv])
    assert exc.value.code == 2 and needle in capsys.readouterr().err


def test_missing_license_and_authors_warned(tmp_path, key_file, capsys):
    from bids_deid.demo import build_demo_dataset

    ds = build_demo_dataset(tmp_path / "in", dicom=False)
    dd = json.loads((ds / "dataset_description.json").read_text())
    del dd["License"], dd["Authors"]
    (ds / "dataset_description.json").write_text(json.dumps(dd))
    opts = ["--key-file", str(key_file), "--deface-method", "none"]
    out = tmp_path / "out"
    assert main([str(ds), str(out), "participant", *opts]) == 0
    main([str(ds), str(out), "group", *opts])
    text = capsys.readouterr().out
    assert "OpenNeuro: no License: pass --license" in text
    assert "OpenNeuro: no Authors: pass --authors" in text
    got = json.loads((out / "dataset_description.json").read_text())
    assert "License" not in got and "Authors" not in got
    report = (tmp_path / "out-private" / "report.html").read_text()
    assert "no License" in report


def test_slurm_jobs_carry_license_and_authors(tmp_path, canary_ds, key_file, capsys):
    script = tmp_path / "jobs" / "deid.sbatch"
    assert main([str(canary_ds), str(tmp_path / "out"), "participant", "--key-file", str(key_file),
                 "--slurm-script", str(script), "--license", "CC0", "--authors", "Ada Lovelace"]) == 0
    settings = script.with_name("deid-settings.json")
    rec = json.loads(settings.read_text())
    assert rec["license"] == "CC0" and rec["authors"] == ["Ada Lovelace"]
    for job in (script, script.with_name("deid-group.sbatch")):
        assert f"--settings {settings}" in job.read_text(), job.name


def test_next_step_with_key_from_environment(tmp_path, canary_ds, key_file, capsys, monkeypatch):
    monkeypatch.setenv("BIDS_DEID_KEY", key_file.read_text().strip())
    assert main([str(canary_ds), str(tmp_path / "out"), "participant", "--deface-method", "none",
                 "--participant-label", "canary01"]) == 0
    lines = capsys.readouterr().out.splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.startswith("participant level done"))
    assert "$BIDS_DEID_KEY" in lines[i]
    assert shlex.split(lines[i + 1])[:4] == ["bids-deid", str(canary_ds), str(tmp_path / "out"), "group"]
    assert "--key-file" not in lines[i + 1] and "(" not in lines[i + 1]
