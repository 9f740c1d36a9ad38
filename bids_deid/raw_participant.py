"""Participant level for raw DICOM/twix input: convert into a private staging BIDS tree, then scrub it."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
from pathlib import Path

from .checks import check_deface_method, check_locations
from .config import Settings
from .convert.batch import Begun, begin
from .dataset import list_subjects
from .errors import BidsDeidError, InputError
from .labels import label_list
from .private import check_key, claim_job_dir, read_json, write_json, write_private
from .progress import Bar
from .progress import wanted as progress_wanted
from .pseudonym import Pseudonymizer
from .record import ensure as ensure_record

log = logging.getLogger(__name__)

#: a job folder and dcm2niix run started by :func:`prestart`, waiting for :func:`run_raw_participant`
_started: list[tuple[Settings, Path, int, Begun]] = []


def prestart(s: Settings) -> None:
    """Start dcm2niix on a raw input before the App imports the rest of itself (about 0.3 s of imports).

    Only for the case :func:`run_raw_participant` converts the whole folder anyway (participant
    level, every patient, not a dry run) and only after the checks that run does first (defacing
    method, locations, key): the job folder and the dcm2niix run are exactly the ones it would
    make, a moment earlier. It takes them over; if it never does (an error before it), they are
    removed at exit. Nothing is started when a check fails: the run reports it as before.

    The overlap is the one staging always had (dcm2niix converts while Python reads the headers),
    started earlier: with ``--n-cpus 1`` it is still one dcm2niix process next to the App's own.
    """
    if s.analysis_level != "participant" or s.dry_run or s.participants:
        return
    try:
        from .checks import input_kind

        if input_kind(s) != "raw":
            return
        check_deface_method(s)
        check_locations(s)
        check_key(s.private_dir, Pseudonymizer(s.key).fingerprint)
        s.work_dir.mkdir(parents=True, exist_ok=True)
        job, lock = claim_job_dir(s.work_dir, "raw-")
    except (BidsDeidError, OSError):
        return
    try:
        begun = begin(s.bids_dir, job / "staging")
    except BidsDeidError:  # no dcm2niix: the run says so
        shutil.rmtree(job, ignore_errors=True)
        os.close(lock)
        return
    _started.append((s, job, lock, begun))
    atexit.register(_drop_started)


def _drop_started() -> None:
    while _started:
        _s, job, lock, begun = _started.pop()
        begun.stop()
        shutil.rmtree(job, ignore_errors=True)
        os.close(lock)


def _take_started(s: Settings) -> tuple[Path, int, Begun] | None:
    """The start :func:`prestart` made for this input and work dir (whole input wanted), else None."""
    while _started:
        old, job, lock, begun = _started.pop()
        if (old.bids_dir, old.work_dir) == (s.bids_dir, s.work_dir) and not s.participants:
            return job, lock, begun
        begun.stop()
        shutil.rmtree(job, ignore_errors=True)
        os.close(lock)
    return None


def run_raw_participant(s: Settings) -> list[dict]:
    """Raw DICOM/twix: convert into a private staging BIDS tree, then scrub it like any input."""
    from dataclasses import replace

    from .convert.raw import stage_raw
    from .formats.sidecar_keep import keep_rules
    from .participant import cleanup_subject_temps, run_subject

    pseudo = Pseudonymizer(s.key)
    check_deface_method(s)
    if not s.dry_run:
        check_locations(s)
        check_key(s.private_dir, pseudo.fingerprint)
        s = ensure_record(s)
        # temp files of earlier runs are removed at group level (other jobs may be writing now)
    started = None if s.dry_run else _take_started(s)
    if started is not None:  # the same job folder and dcm2niix run as below, made before the imports
        job, lock, begun = started
    else:
        s.work_dir.mkdir(parents=True, exist_ok=True)
        job, lock = claim_job_dir(s.work_dir, "raw-")  # one per job: jobs may share -w; dead jobs' removed
        begun = None
    try:
        # While defacing, series that became BIDS images keep their (facial) DICOM out of sourcedata.
        sourcedata = s.sourcedata if s.deface_method == "none" else "non-bids-only"
        with Bar("raw input", None, show=progress_wanted(s.progress)) as bar:
            bar.stage("reading headers, converting series (dcm2niix)")
            res = stage_raw(s.bids_dir, job / "staging", pseudo, participants=set(s.participants or ()) or None,
                            heuristic=s.heuristic, n_cpus=s.n_cpus, dry_run=s.dry_run, sourcedata=sourcedata,
                            skip_policy=s.skip_series_policy, begun=begun)
        if s.participants:  # a label matches a patient's pseudonym or PatientID
            found = set(res.subjects.values()) | set(res.subjects)
            missing = [p for p in s.participants if p not in found]
            if missing:
                raise InputError(f"participant(s) not found in the raw input: {', '.join(missing)}; "
                                 f"its participants are: {label_list(res.available)}")
        if s.dry_run:
            return [{"subject": "(raw input)", "original": "(raw input)",
                     "plan": [f"  {r.get('action', '?'):10} {r.get('bids_name') or r.get('series_token')}"
                              f"  [{r.get('modality', '')}, {r.get('n_files', '?')} files] {r.get('reason', '')}"
                              for r in res.series] + [f"  PROBLEM  {p}" for p in res.problems]}]
        for original, label in res.subjects.items():
            write_private(s.private_dir / "mapping" / f"sub-{label}.tsv",
                          f"{original}\tsub-{label}\t{pseudo.date_offset_days(label)}\t\n")
        for label, demo in res.demographics.items():  # participants.tsv is written at group level
            write_json(s.private_dir / "participants" / f"sub-{label}.json", demo)
        for label, idents in res.identifiers.items():
            write_json(s.private_dir / "identifiers" / f"sub-{label}.raw.json", sorted({tuple(x) for x in idents}))
        batch = pseudo.text_token("rawbatch", ",".join(sorted(res.subjects.values())))
        records = {f"raw series {r.get('series_token')}": _series_record(r, s.sourcedata) for r in res.series}
        counts = {k: sum(1 for v in records.values() if v["status"] == k) for k in ("converted", "sourcedata",
                                                                                     "left out")}
        write_json(s.private_dir / "state" / f"_raw-{batch}.json", {"records": records, "problems": res.problems,
                                                                    "series_counts": counts})
        staging = job / "staging"
        if not list(staging.glob("sub-*")) and not list(staging.glob("sourcedata/*/sub-*")):
            raise InputError("no participant could be converted from the raw input; see the problems in the report")
        inner = replace(s, bids_dir=staging, work_dir=job / "work", participants=None, sessions=s.sessions,
                        profile=replace(s.profile, subjects="keep", sessions="keep",
                                        sidecar_rules=keep_rules() + tuple(s.profile.sidecar_rules)),
                        labels_pseudonymized=True, gzip_images=True,
                        skip_validation=True)
        subjects = set(list_subjects(staging))  # and those with only sourcedata (CT, twix, ...)
        subjects |= {p.name[4:] for p in staging.glob("sourcedata/*/sub-*") if p.is_dir()}
        cleanup_subject_temps(inner, sorted(subjects))  # half-files of a killed run of these subjects
        results = [run_subject(inner, subj) for subj in sorted(subjects)]
        _forget_kept_names(s.private_dir, sorted(subjects))
        return results
    finally:
        if not s.dry_run:
            shutil.rmtree(job, ignore_errors=True)
        os.close(lock)


def _series_record(r: dict, sourcedata: str) -> dict:
    """Private record of one raw series: converted, kept in sourcedata, or left out (with why)."""
    action = r.get("action")
    status = {"bids": "converted", "sourcedata": "sourcedata"}.get(str(action), "left out")
    reason = str(r.get("reason", ""))
    if status == "sourcedata" and sourcedata == "none":
        status, reason = "left out", f"{reason} (not written: --sourcedata none)"
    rec = {"status": status, "reason": reason, "bids_name": r.get("bids_name")}
    for k in ("series_number", "description", "images", "partial"):
        if r.get(k) not in (None, ""):
            rec[k] = r[k]
    return rec


def _forget_kept_names(private_dir: Path, subjects: list[str]) -> None:
    """Series/protocol names the raw conversion kept (already clean of every identifier) are no audit needles."""
    from .formats.sidecar_keep import FREE_TEXT, clean_text

    for subj in subjects:
        path = private_dir / "identifiers" / f"sub-{subj}.json"
        idents = read_json(path, None)
        if not idents:
            continue
        values = [v for k, v in idents if k.split(":")[-1] not in FREE_TEXT and ":" not in k
                  and not k.endswith("Time") and k not in ("uid", "date")]
        kept = [[k, v] for k, v in idents
                if not (k.split(":")[-1] in FREE_TEXT and clean_text(v, values) == v.strip())]
        if len(kept) != len(idents):
            write_json(path, kept)

