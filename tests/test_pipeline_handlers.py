"""Handlers return outcomes and write nothing; the participant stage carries every outcome out.

Also the shape rules of the package: no private name imported from another bids_deid module,
nothing outside ``cli.py`` imports ``cli``.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import bids_deid
from bids_deid.dataset import plan_subject
from bids_deid.handlers import HANDLERS
from bids_deid.participant import SubjectRun
from bids_deid.profiles import load_profile
from bids_deid.pseudonym import generate_key, load_key
from bids_deid.settings import Settings

PACKAGE = Path(bids_deid.__file__).parent


def _dataset(root: Path) -> Path:
    anat, func = root / "sub-DOE/anat", root / "sub-DOE/func"
    anat.mkdir(parents=True)
    func.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.10.0"}))
    (root / "participants.tsv").write_text("participant_id\nsub-DOE\n")
    img = nib.AnalyzeImage(np.arange(16 ** 3, dtype=np.int16).reshape(16, 16, 16), np.eye(4) * 4)
    img.header["descrip"] = b"DOE^JANE"
    nib.save(img, str(anat / "sub-DOE_T1w.hdr"))
    (func / "sub-DOE_task-x_bold.json").write_text(json.dumps({"RepetitionTime": 2, "InstitutionName": "DOE clinic",
                                                               "TaskName": "x"}))
    (func / "sub-DOE_task-x_events.tsv").write_text("onset\tduration\tstim_file\n1\t1\tsub-DOE_a.wav\n")
    (root / "sub-DOE/sub-DOE_scans.tsv").write_text("filename\tacq_time\nanat/sub-DOE_T1w.nii.gz\t2020-01-01T10:00:00\n")
    src = root / "sourcedata/sub-DOE"
    src.mkdir(parents=True)
    nib.save(img, str(src / "t1.hdr"))
    return root


def _settings(tmp_path: Path, ds: Path, **kw) -> Settings:
    key = generate_key(tmp_path / "k.key")
    out = tmp_path / "out"
    return Settings(bids_dir=ds, output_dir=out, private_dir=tmp_path / "priv", work_dir=tmp_path / "work",
                    analysis_level="participant", profile=load_profile("basic"), key=load_key(key),
                    deface_method="none", skip_validation=True, progress=False, **kw)


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.parametrize("dry_run", [False, True])
def test_handlers_write_nothing_and_apply_writes_it_all(tmp_path, dry_run):
    ds = _dataset(tmp_path / "in")
    s = _settings(tmp_path, ds, dry_run=dry_run)
    run = SubjectRun(s, "DOE")
    tasks = plan_subject(ds, "DOE", run.new, run.sessions, None, deface=False)
    kinds = {t.kind for t in tasks}
    assert {"convert", "sidecar", "copy", "dated_tsv", "source"} <= kinds
    outcomes = []
    for t in tasks:
        if t.kind in HANDLERS:
            outcomes.append((t, HANDLERS[t.kind](t, run.context())))
    assert _files(s.output_dir) == []  # no handler wrote into the output
    assert not run.records and not run.audit  # nor into the run's state
    by_kind = {t.kind: res for t, res in outcomes}
    if dry_run:
        assert all(not res.then for res in by_kind.values()) and by_kind["convert"].plan
        return
    conv = by_kind["convert"]
    assert [f.kind for f in conv.then] == ["nifti"] and conv.then[0].rel_out.endswith("_T1w.nii.gz")
    assert conv.log.identifiers  # the Analyze header's text, seen on the private side
    src = [res for t, res in outcomes if t.kind == "source" and res.writes]  # the .img goes with its .hdr
    assert len(src) == 1 and {Path(r).suffix for r in src[0].writes} == {".hdr", ".img"}
    assert src[0].written == [src[0].audit_rel]
    for _t, res in outcomes:
        run.apply(res)
    names = _files(s.output_dir)
    new = f"sub-{run.new}"
    assert f"{new}/anat/{new}_T1w.nii.gz" in names  # the converted image, through the NIfTI stage
    assert f"{new}/func/{new}_task-x_events.tsv" in names
    assert any(n.startswith(f"sourcedata/analyze/{new}/") and n.endswith(".img") for n in names)
    events = (s.output_dir / f"{new}/func/{new}_task-x_events.tsv").read_text()
    assert f"{new}_a.wav" in events and "DOE" not in events
    for n in names:
        assert b"DOE" not in (s.output_dir / n).read_bytes(), n
    assert not list((s.work_dir / new).rglob("*.nii.gz"))  # the conversion's scratch is removed


def test_apply_records_a_stream_error_when_the_outcome_says_so(tmp_path):
    from bids_deid.errors import InputError
    from bids_deid.formats.base import Outcome

    ds = _dataset(tmp_path / "in")
    run = SubjectRun(_settings(tmp_path, ds), "DOE")

    def broken(out) -> None:
        out.write(b"half")
        raise InputError("bad bytes")

    run.apply(Outcome(writes={"x/y.dat": broken}, audit_rel="x/y.dat", error_status="error"))
    assert run.records["x/y.dat"]["status"] == "error" and "bad bytes" in run.records["x/y.dat"]["reason"]
    assert _files(run.s.output_dir) == []  # the one writer left no half file
    with pytest.raises(InputError):  # without error_status the task's own error handling applies
        run.apply(Outcome(writes={"x/z.dat": broken}))


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            ours = node.level > 0 or (node.module or "").split(".")[0] == "bids_deid"
            if ours:
                yield node


def test_no_private_name_crosses_a_module_and_nothing_imports_cli():
    private, cli = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for node in _imports(path):
            mod = node.module or ""
            private += [f"{rel}: {mod}.{a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
            if rel != "cli.py" and (mod == "cli" or mod.endswith(".cli") or any(a.name == "cli" for a in node.names)):
                cli.append(rel)
    assert private == []
    assert cli == []
