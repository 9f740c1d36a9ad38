"""The leak audit through the App: real leaks in kept free text fail the run (exit 3) and name the
file; a reviewed acceptance lets the group step pass and is re-opened when the file changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_both, run_level

from bids_deid.audit_cli import main as audit_main
from bids_deid.demo import build_demo_dataset

SUB = "sub-canary01"
SES = f"{SUB}/ses-01"


_run, _both = run_level, run_both


@pytest.fixture
def ds(tmp_path: Path) -> Path:
    return build_demo_dataset(tmp_path / "input", dicom=False)


def _task_json(ds: Path) -> Path:
    return ds / SES / "func" / f"{SUB}_ses-01_task-rest_bold.json"


@pytest.mark.parametrize(("plant", "file", "cls"), [
    ("readme_name", "README", "person name"),
    ("task_institution", "task-rest_bold.json", "place/institution"),
    ("events_id", "_events.tsv", "ID"),
    ("changes_date", "CHANGES", "date"),
])
def test_real_leak_in_kept_text_fails_and_names_the_file(tmp_path, ds, key_file, capsys, plant, file, cls):
    if plant == "readme_name":
        (ds / "README").write_text("Thanks to our first volunteer, Jane Canarysmith.\n")
    elif plant == "task_institution":
        obj = json.loads(_task_json(ds).read_text())
        obj["TaskDescription"] = "Rest with eyes open, as done at Canary Memorial Hospital."
        _task_json(ds).write_text(json.dumps(obj))
    elif plant == "events_id":
        ev = ds / SES / "func" / f"{SUB}_ses-01_task-rest_events.tsv"
        ev.write_text("onset\tduration\ttrial_type\tnote\n0\t10\trest\tfile MRN-CANARY-778812 ok\n")
    else:
        (ds / "CHANGES").write_text("1.0.0 2020-01-01\n  - first release; scans of 14.03.2019 added\n")
    assert _both(ds, tmp_path / "out", key_file) == 3
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("LEAK") and file in ln)
    assert cls in line
    assert "Canary" not in line and "778812" not in line and "2019" not in line  # no values on the terminal


def test_accepted_hit_passes_group_and_reopens_on_change(tmp_path, ds, key_file, capsys):
    (ds / "README").write_text("The task follows Jane Canarysmith, a character of the story.\n")
    out, priv = tmp_path / "out", tmp_path / "out-private"
    assert _both(ds, out, key_file) == 3
    hits = json.loads((priv / "leak-audit.json").read_text())["hits"]
    ids = [h["id"] for h in hits if h["file"] == "README"]
    assert ids and all(h["file"] == "README" for h in hits)
    args = [str(out), "--private-dir", str(priv), "--key-file", str(key_file)]
    assert audit_main([*args, *sum((["--accept", i] for i in ids), []), "--reason", "fictional story character"]) == 0
    capsys.readouterr()
    assert _run(ds, out, key_file, "group") == 0
    text = capsys.readouterr().out
    assert "accepted after review" in text and "fictional story character" in text
    report = (priv / "report.html").read_text()
    assert "fictional story character" in report
    (ds / "README").write_text("The task follows Jane Canarysmith, a character of the story. Jane Canarysmith!\n")
    assert _run(ds, out, key_file, "group") == 3
    assert "re-opened" in capsys.readouterr().out


def test_key_copied_into_output_is_caught(tmp_path, ds, key_file):
    (ds / "README").write_bytes(b"our key: " + key_file.read_bytes())
    assert _both(ds, tmp_path / "out", key_file) == 3
    hits = json.loads((tmp_path / "out-private" / "leak-audit.json").read_text())["hits"]
    assert [h["class"] for h in hits] == ["key"]
    assert key_file.read_text().strip() not in json.dumps(hits)


def test_profile_requires_free_text_to_pass(tmp_path, ds, key_file):
    obj = json.loads(_task_json(ds).read_text())
    obj["Instructions"] = "Call us at +1 555 123 4567 if unwell."
    _task_json(ds).write_text(json.dumps(obj))
    prof = tmp_path / "strict.yaml"
    prof.write_text("name: strict\nextends: basic\naudit:\n  free_text: require\n")
    assert _both(ds, tmp_path / "out", key_file) == 0  # default: listed for review
    review = json.loads((tmp_path / "out-private" / "leak-audit.json").read_text())["review"]
    assert [r["class"] for r in review] == ["phone number"]
    assert _both(ds, tmp_path / "out2", key_file, "--profile", str(prof)) == 3


def test_group_dry_run_lists_classes_and_writes_nothing(tmp_path, ds, key_file, capsys):
    out = tmp_path / "out"
    assert _run(ds, out, key_file, "participant") == 0
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    capsys.readouterr()
    assert _run(ds, out, key_file, "group", "--dry-run") == 0
    text = capsys.readouterr().out
    assert "person name" in text and "place/institution" in text and "date" in text
    assert "canary" not in text.lower()
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before
    assert not (tmp_path / "out-private" / "leak-audit.json").exists()
