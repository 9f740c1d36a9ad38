"""Group level: dataset files, merged mapping, validator, leak audit, report."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from . import __version__
from .atomic import atomic_write_bytes, cleanup_temps
from .checks import check_locations
from .config import Settings
from .dataset import check_bids_input, list_subjects
from .errors import InputError
from .formats.base import ScrubLog
from .formats.sidecar import dump_json
from .formats.tabular import scrub_participants, write_tsv
from .labels import dataset_relabel, pseudonym_for
from .participant import run_subject
from .private import check_key, read_json, write_json, write_private
from .pseudonym import Pseudonymizer
from .record import check_group

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ group level
DD_KEEP = ("Name", "BIDSVersion", "License", "Authors", "Acknowledgements", "HowToAcknowledge", "Funding",
           "EthicsApprovals", "ReferencesAndLinks", "DatasetDOI", "Keywords")


def dataset_description(s: Settings, original: dict) -> dict:
    """The output's dataset_description.json: the schema's fields of the input, GeneratedBy appended.

    A derivative input stays a derivative; its GeneratedBy and SourceDatasets are kept.
    """
    from .openneuro import bids_version, publication_fields
    from .schema import dataset_description_fields, metadata_fields

    keep = [*DD_KEEP, *dataset_description_fields(), *(["Genetics"] if "Genetics" in metadata_fields() else [])]
    dd = {k: original[k] for k in dict.fromkeys(keep) if k in original}
    dd.setdefault("Name", "De-identified dataset")
    dd["BIDSVersion"] = bids_version(original.get("BIDSVersion"))
    dd.update(publication_fields(s.license, s.authors, original)[0])  # --license/--authors win
    dd["DatasetType"] = "derivative" if original.get("DatasetType") == "derivative" else s.dataset_type
    gen = {"Name": "bids-deid", "Version": __version__,
           "Description": f"De-identified with profile '{s.profile.name}'"}
    container = _container()
    if container:
        gen["Container"] = container
    before = [g for g in original.get("GeneratedBy") or [] if isinstance(g, dict) and g.get("Name") != "bids-deid"]
    dd["GeneratedBy"] = [*before, gen]
    if dd["DatasetType"] == "derivative" and not dd.get("SourceDatasets"):
        dd["SourceDatasets"] = [{"URL": "n/a (withheld: original data are identifiable)"}]
    return dd


def _nested_dataset(s: Settings, child: Path, rel: str) -> dict[str, dict]:
    """A dataset nested in ``derivatives/``: its subjects and its dataset files, like the top one.

    Its private records go to ``PRIVATE/nested/<token>/``; what the leak audit needs (the
    identifiers met) is copied into the top private dir, and its file records are
    returned under their path in the output.
    """
    from dataclasses import replace

    from .dataset_files import DatasetFiles

    pseudo = Pseudonymizer(s.key)
    token = pseudo.text_token("nested", rel)
    priv = s.private_dir / "nested" / token
    inner = replace(s, bids_dir=child, output_dir=s.output_dir / rel, private_dir=priv, work_dir=s.work_dir / token,
                    participants=None, dataset_type="derivative", progress=False)
    try:
        original = check_bids_input(child)
    except InputError as exc:
        return {rel + "/": {"status": "withheld", "reason": str(exc), "original": True}}
    records: dict[str, dict] = {}
    subjects = list_subjects(child)
    for subj in subjects:
        res = run_subject(inner, subj)
        st = read_json(priv / "state" / f"sub-{res['subject']}.json", {}) or {}
        records.update({f"{rel}/{k}": v for k, v in (st.get("records") or {}).items()})
    done = {f"sub-{x}": f"sub-{pseudonym_for(s, pseudo, x)}" for x in subjects}
    files = DatasetFiles(inner, dataset_relabel(inner, pseudo), done, lambda dd: dataset_description(inner, dd),
                         nested=lambda c, r: _nested_dataset(inner, c, r))
    records.update({f"{rel}/{k}": v for k, v in files.run(original).items()})
    idents = list(files.slog.identifiers)
    for f in sorted((priv / "identifiers").glob("*.json")):
        idents += [tuple(x) for x in read_json(f, []) or []]
    write_json(s.private_dir / "identifiers" / f"_nested-{token}.json", [list(x) for x in sorted(set(idents))])
    return records


def _container() -> dict | None:
    if os.environ.get("BIDS_DEID_CONTAINER_TAG"):
        kind = "singularity" if os.environ.get("SINGULARITY_NAME") or os.environ.get("APPTAINER_NAME") else "docker"
        return {"Type": kind, "Tag": os.environ["BIDS_DEID_CONTAINER_TAG"]}
    return None


def _raw_dataset_files(s: Settings) -> tuple[dict, list[str]]:
    """dataset_description, participants.tsv and README for a dataset converted from raw data."""
    subjects = sorted(p.name for p in s.output_dir.glob("sub-*") if p.is_dir())
    demo = {x: read_json(s.private_dir / "participants" / f"{x}.json", {}) or {} for x in subjects}
    cols = ["participant_id"] + [c for c in ("age", "sex") if any(c in d for d in demo.values())]
    rows = [[x] + [str(demo[x].get(c, "n/a")) for c in cols[1:]] for x in subjects]
    header, rows, _removed = scrub_participants(cols, rows, s.profile, {x: x for x in subjects}, ScrubLog())
    atomic_write_bytes(s.output_dir / "participants.tsv", write_tsv(header, rows))
    described = {"age": {"Description": "age of the participant at the first scan, in whole years"
                                        f" (ages above {s.profile.age_cap} are given as {s.profile.age_cap})",
                         "Units": "year"},
                 "sex": {"Description": "sex of the participant as recorded by the scanner (PatientSex)",
                         "Levels": {"M": "male", "F": "female", "O": "other"}}}
    if len(header) > 1:
        atomic_write_bytes(s.output_dir / "participants.json", dump_json({c: described[c] for c in header[1:]}))
    else:
        (s.output_dir / "participants.json").unlink(missing_ok=True)
    atomic_write_bytes(s.output_dir / "README", (
        b"This dataset was converted to BIDS from raw scanner data (DICOM/twix) with dcm2niix and bids-deid.\n"
        b"Describe the study here before publishing it.\n"))
    return {"Name": "De-identified dataset converted from raw scanner data"}, subjects


def run_group(s: Settings, raw: bool = False) -> dict:
    """Group level: dataset files, merged mapping, validator, leak audit, report."""
    from .audit import audit_output
    from .report.html import write_run_report
    from .validate import run_validator

    if not raw:
        original_dd = check_bids_input(s.bids_dir)
    if s.dry_run:  # nothing written: say what the leak audit would search, by class (no values)
        from .audit import make_plan

        plan = make_plan(s.private_dir, s.output_dir, s.key)
        return {"audit_plan": {"by_class": plan.by_class(), "not_searched": plan.not_by_reason()}}
    check_locations(s)
    pseudo = Pseudonymizer(s.key)
    check_key(s.private_dir, pseudo.fingerprint)
    s = check_group(s)  # every subject complete, under the recorded settings and key
    cleanup_temps(s.output_dir)  # group level runs after every participant job: all leftovers go
    slog = ScrubLog()
    records: dict[str, dict] = {}
    if raw:
        original_dd, done = _raw_dataset_files(s)
        subjects = done
        atomic_write_bytes(s.output_dir / "dataset_description.json", dump_json(dataset_description(s, original_dd)))
    else:
        subjects = list_subjects(s.bids_dir)
        relabel = {f"sub-{subj}": f"sub-{pseudonym_for(s, pseudo, subj)}" for subj in subjects}
        done = {r for r in relabel if (s.output_dir / relabel[r]).is_dir()}
        relabel_done = {k: v for k, v in relabel.items() if k in done}
        from .dataset_files import DatasetFiles

        files = DatasetFiles(s, dataset_relabel(s, pseudo), relabel_done, lambda dd: dataset_description(s, dd),
                             nested=lambda child, rel: _nested_dataset(s, child, rel))
        records.update(files.run(original_dd))
        slog = files.slog
    records.update(_publication_notes(s))
    idents = sorted({(k, v) for k, v in slog.identifiers})
    write_json(s.private_dir / "identifiers" / "_dataset.json", [list(x) for x in idents])
    from .convert.micr import write_samples_tsv  # required by BIDS as soon as there are micr images

    if write_samples_tsv(s.output_dir) is not None:
        records["samples.tsv"] = records["samples.json"] = {"status": "written", "reason": ""}
    write_json(s.private_dir / "state" / "_dataset.json", {"records": records})
    _merge_mapping(s)
    validation = None
    res = run_validator(s.output_dir, config=s.bids_validator_config)
    write_json(s.private_dir / "validator-output.json", res.report)
    validation = {"errors": res.errors, "warnings": res.warnings, "codes": res.codes}
    write_json(s.private_dir / "audit-settings.json", {"free_text": s.profile.audit_free_text})
    audit = audit_output(s.output_dir, s.private_dir, key=s.key, n_cpus=s.n_cpus, free_text=s.profile.audit_free_text)
    from .report.html import collect_records

    # For OpenNeuro's "affirm defaced" step: every public image whose face was removed.
    defaced = sorted(k for k, v in collect_records(s.private_dir).items() if v.get("status") == "defaced")
    from .openneuro import dwi_volume_problems, publication_fields

    summary = {"validation": validation, "audit": {**audit.summary(), "open": audit.public_lines()},
               "subjects_done": len(done),
               "subjects_in_input": len(subjects), "defaced_images": defaced,
               "openneuro": publication_fields(s.license, s.authors, original_dd)[1] + dwi_volume_problems(s.output_dir)}
    report = write_run_report(s, summary)
    summary["report"] = str(report)
    return summary


def _publication_notes(s: Settings) -> dict[str, dict]:
    """README gets a de-identification statement (which images were defaced, by public name), CHANGES an entry."""
    import datetime as dt

    from .openneuro import changes_entry, statement
    from .report.html import collect_records

    records = collect_records(s.private_dir)
    defaced = sorted(k for k, v in records.items() if v.get("status") == "defaced")
    withheld = sum(1 for v in records.values() if v.get("status") == "withheld")
    readme = next((s.output_dir / n for n in ("README", "README.md", "README.txt", "README.rst")
                   if (s.output_dir / n).is_file()), s.output_dir / "README")
    old = readme.read_text(encoding="utf-8", errors="replace") if readme.is_file() else ""
    note = statement(__version__, s.profile.name, s.deface_method, defaced, withheld)
    atomic_write_bytes(readme, ((old.rstrip() + "\n\n" if old.strip() else "") + note).encode())
    changes = s.output_dir / "CHANGES"
    old = changes.read_text(encoding="utf-8", errors="replace") if changes.is_file() else ""
    old = re.sub(r"\A\s*\S+ \S+\n  - De-identified with bids-deid[^\n]*\n", "", old)  # ours, from a rerun
    top = re.match(r"\s*(\d+)\.(\d+)\.(\d+)", old)
    version = f"{top[1]}.{top[2]}.{int(top[3]) + 1}" if top else "1.0.0"
    entry = changes_entry(version, dt.date.today().isoformat(), len(defaced))
    atomic_write_bytes(changes, (entry + ("\n" + old.lstrip("\n") if old.strip() else "")).encode())
    return {readme.name: {"status": "written", "reason": ""}, "CHANGES": {"status": "written", "reason": ""}}


def _merge_mapping(s: Settings) -> None:
    rows = ["original\tpseudonym\tdate_offset_days\tsessions\n"]
    for frag in sorted((s.private_dir / "mapping").glob("sub-*.tsv")):
        rows.append(frag.read_text(encoding="utf-8"))
    write_private(s.private_dir / "mapping.tsv", "".join(rows))


