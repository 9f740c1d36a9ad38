"""Nothing is written into the input, by any command or option (the input tree is hashed before and after)."""

from __future__ import annotations

import pytest
from conftest import tree_digest

from bids_deid.audit_cli import main as audit_main
from bids_deid.cli import main
from bids_deid.dicom_cli import main as dicom_main


def test_no_command_writes_into_the_input(tmp_path, canary_ds, key_file, capsys):
    ds, out, k = str(canary_ds), str(tmp_path / "out"), str(key_file)
    before = tree_digest(canary_ds)
    refused = [  # each names the input and writes nothing
        [ds, out, "participant", "--key-file", k, "--slurm-script", str(canary_ds / "x.sbatch")],
        [ds, out, "participant", "--key-file", k, "--slurm-script", str(canary_ds / "code" / "jobs" / "x.sbatch")],
        [ds, out, "participant", "--generate-key", str(canary_ds / "new.key")],
        [ds, out, "participant", "--key-file", k, "-w", str(canary_ds / "work")],
        [ds, out, "participant", "--key-file", k, "--private-dir", str(canary_ds / "private")],
        [ds, str(canary_ds / "derivatives" / "deid"), "participant", "--key-file", k],
    ]
    for argv in refused:
        assert main(argv) != 0, argv
        err = capsys.readouterr().err
        assert "input" in err, (argv, err)
        assert tree_digest(canary_ds) == before, argv
    ran = [
        [ds, out, "participant", "--key-file", k, "--deface-method", "none", "--dry-run"],
        [ds, out, "participant", "--key-file", k, "--deface-method", "none"],
        [ds, out, "group", "--key-file", k, "--dry-run"],
        [ds, out, "group", "--key-file", k],
        [ds, out, "participant", "--key-file", k, "--slurm-script", str(tmp_path / "jobs" / "x.sbatch")],
    ]
    for argv in ran:
        assert main(argv) == 0, argv
        assert tree_digest(canary_ds) == before, argv
    assert audit_main([out, "--key-file", k]) == 0
    assert dicom_main([str(canary_ds / "sourcedata"), str(tmp_path / "dcm"), "--key-file", k]) in (0, 1)
    assert tree_digest(canary_ds) == before


@pytest.mark.parametrize("inside", ["input", "output"])
def test_generate_key_not_into_input_or_output(tmp_path, canary_ds, capsys, inside):
    out = tmp_path / "out"
    out.mkdir()
    where = (canary_ds if inside == "input" else out) / "k.key"
    assert main([str(canary_ds), str(out), "participant", "--generate-key", str(where)]) == 1
    assert not where.exists() and "inside the" in capsys.readouterr().err


def test_bids_tree_without_dataset_description_is_not_taken_for_raw(tmp_path, canary_ds, key_file, capsys):
    """It used to be converted as raw scanner data (its sourcedata DICOM) with --deface-method none, silently."""
    (canary_ds / "dataset_description.json").unlink()
    before = tree_digest(canary_ds)
    rc = main([str(canary_ds), str(tmp_path / "out"), "participant", "--key-file", str(key_file),
               "--deface-method", "none"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 1 and len(err) == 1 and "no dataset_description.json" in err[0] and "--input-type raw" in err[0]
    assert not list((tmp_path / "out").rglob("*.nii.gz"))
    assert tree_digest(canary_ds) == before
