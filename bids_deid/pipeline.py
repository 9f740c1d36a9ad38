"""The two levels of a run: participant (one subject = one unit) and group."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor

from .checks import check_deface_method, check_locations, input_kind, validate_input
from .config import Settings
from .dataset import check_bids_input
from .errors import BidsDeidError
from .group import run_group
from .labels import selected_subjects
from .participant import cleanup_subject_temps, run_subject
from .private import check_key
from .progress import Bar
from .progress import wanted as progress_wanted
from .pseudonym import Pseudonymizer
from .raw_participant import run_raw_participant
from .record import ensure as ensure_record

log = logging.getLogger(__name__)


def run_participant(s: Settings) -> list[dict]:
    """Participant level: each selected subject is processed independently."""
    check_bids_input(s.bids_dir)
    check_deface_method(s)
    subjects = selected_subjects(s)
    if not s.dry_run:
        check_locations(s)
        check_key(s.private_dir, Pseudonymizer(s.key).fingerprint)
        s = ensure_record(s)
        cleanup_subject_temps(s, subjects)
        if not s.skip_validation:
            validate_input(s)
    results = []
    if s.n_cpus > 1 and len(subjects) > 1:
        from concurrent.futures import as_completed
        from dataclasses import replace

        # One bar of participants in this process; workers draw none (their lines would interleave).
        from .private import die_with_parent

        with ProcessPoolExecutor(max_workers=min(s.n_cpus, len(subjects)), initializer=die_with_parent,
                                 initargs=(os.getpid(),)) as ex, \
                Bar("participants", len(subjects), show=progress_wanted(s.progress) and not s.dry_run,
                    unit="participant") as bar:
            futures = [ex.submit(run_subject, replace(s, progress=False), subj) for subj in subjects]
            for _done in as_completed(futures):
                bar.step()
            results = [f.result() for f in futures]
    else:
        results = [run_subject(s, subj) for subj in subjects]
    return results



def run(s: Settings) -> dict:
    """Run the level asked for; raise BidsDeidError on any expected failure."""
    kind = input_kind(s)
    if s.analysis_level == "participant":
        return {"participants": run_raw_participant(s) if kind == "raw" else run_participant(s)}
    if s.analysis_level == "group":
        return run_group(s, raw=kind == "raw")
    raise BidsDeidError(f"unknown analysis level {s.analysis_level}")
