"""Labels of a run: the new subject and session labels, and which participants are selected."""

from __future__ import annotations

import logging

from .config import Settings
from .dataset import list_subjects, subject_sessions
from .errors import InputError
from .pseudonym import Pseudonymizer

log = logging.getLogger(__name__)


#: subject labels the BIDS specification gives a meaning (they name no one): kept
SPEC_SUBJECTS = ("emptyroom",)


def pseudonym_for(s: Settings, pseudo: Pseudonymizer, subject: str) -> str:
    if subject in SPEC_SUBJECTS:
        return subject  # MEG empty-room recordings: sub-emptyroom by the specification
    return pseudo.subject(subject) if s.profile.subjects == "pseudonymize" else subject


def session_map(s: Settings, pseudo: Pseudonymizer, subject: str) -> dict[str, str]:
    """Original -> new session labels; a label holding a date is pseudonymized whatever the profile says."""
    from .dataset import date_like_label

    sessions = subject_sessions(s.bids_dir, subject)
    if s.profile.sessions == "pseudonymize":
        return {ses: pseudo.session(subject, ses) for ses in sessions}
    if s.labels_pseudonymized:
        return {}
    return {ses: pseudo.session(subject, ses) for ses in sessions if date_like_label(ses)}


_RELABELS: dict[tuple, object] = {}


def dataset_relabel(s: Settings, pseudo: Pseudonymizer):
    """The input's :class:`~bids_deid.dataset.Relabel` (every subject and session label), cached per process."""
    from .dataset import Relabel, stimulus_renames

    key = (str(s.bids_dir), pseudo.fingerprint, s.profile.subjects, s.profile.sessions, s.labels_pseudonymized)
    if key not in _RELABELS:
        subjects = {x: pseudonym_for(s, pseudo, x) for x in list_subjects(s.bids_dir)}
        _RELABELS[key] = Relabel(subjects, {x: session_map(s, pseudo, x) for x in subjects},
                                 stimulus_renames(s.bids_dir, subjects))
    return _RELABELS[key]


def selected_subjects(s: Settings) -> list[str]:
    subjects = list_subjects(s.bids_dir)
    if not subjects:
        return []  # atlas / template datasets: everything is dataset level (the group step)
    if s.participants:
        missing = [p for p in s.participants if p not in subjects]
        if missing:
            raise InputError(f"participant(s) not found in the input: {', '.join(missing)}; "
                             f"the input has: {label_list(subjects)}")
        return [p for p in subjects if p in s.participants]
    return subjects


def label_list(labels: list[str], most: int = 30) -> str:
    """``labels`` for a one-line message, cut after ``most``."""
    more = f" ... ({len(labels)} in all)" if len(labels) > most else ""
    return " ".join(labels[:most]) + more


