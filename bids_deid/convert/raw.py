"""Raw scanner data (DICOM folders, Siemens twix) to a *staging* BIDS tree.

Steps, one module each: discover files (headers only, :mod:`.discovery`), group them
patient -> study -> series (:mod:`.series`), collect the patient's identifiers
(:mod:`.identity`), convert with dcm2niix into a work dir (:mod:`.batch`), classify and join
its outputs (:mod:`.outputs`), name them (:mod:`.naming`), then place the images under
pseudonymous BIDS names (:mod:`.place`). Non-MR and skipped series are linked (symlinks,
never copies of identifying names) under ``sourcedata/`` (:mod:`.sourcedata`).

Sessions: a patient with one study gets no ``ses-`` level; with several studies they
become ``ses-01``, ``ses-02``, ... in (StudyDate, StudyTime) order.

The staging tree is private: its contents are not scrubbed yet. Only its *names*
are safe (pseudonymous labels and keyed tokens).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..openneuro import bids_version
from ..pseudonym import Pseudonymizer
from .batch import Begun, begin, convert_all
from .classify import load_heuristic, sanitize_label
from .detect import UNPACK_DIR_NAME, WORK_DIR_NAME, is_raw_input
from .discovery import discover, sop_name
from .identity import demographics, patient_identifiers
from .naming import name_outputs, reproin_sessions
from .outputs import classify_outputs, drop_copies, merge_split_volumes
from .place import place_outputs, write_sidecar
from .series import Series, ordered_studies, patient_series, patients_by_folder, report_row, series_tree
from .sourcedata import (
    other_files,
    plan_micr,
    sourcedata_folder,
    stage_micr,
    stage_other_formats,
    stage_sourcedata,
    stage_twix,
    twix_patients,
    twix_row,
)

__all__ = ["StageResult", "is_raw_input", "stage_raw"]

log = logging.getLogger(__name__)


@dataclass
class StageResult:
    """What :func:`stage_raw` did. ``subjects`` and ``identifiers`` are PRIVATE."""

    subjects: dict[str, str] = field(default_factory=dict)
    identifiers: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    series: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    available: list[str] = field(default_factory=list)  # pseudonymous labels of every patient found
    demographics: dict[str, dict[str, object]] = field(default_factory=dict)  # label -> sex/age (PRIVATE)


def stage_raw(
    raw_dir: Path,
    staging_dir: Path,
    pseudo: Pseudonymizer,
    *,
    participants: set[str] | None = None,
    heuristic: Path | None = None,
    n_cpus: int = 1,
    dry_run: bool = False,
    sourcedata: str = "dicom",
    skip_policy: str = "sourcedata",
    begun: Begun | None = None,
) -> StageResult:
    """Discover, group, classify and convert raw scanner data into a staging BIDS tree.

    Parameters
    ----------
    raw_dir : Path
        Input folder with DICOM files (any layout) and/or twix ``.dat`` files. Never modified.
    staging_dir : Path
        Private work folder that becomes a BIDS dataset with pseudonymous names
        (contents not yet scrubbed).
    pseudo : Pseudonymizer
        Keyed pseudonyms: subjects ``pseudo.subject(PatientID)``, series tokens.
    participants : set of str, optional
        Only these patients (pseudonymous label, with or without ``sub-``, or PatientID).
    heuristic : Path, optional
        YAML rules file overriding the classification (see ``docs/heuristics.md``).
    n_cpus : int
        Parallel header readers and dcm2niix processes.
    dry_run : bool
        Plan only: series are converted into a temporary folder and classified exactly
        like a real run (so the names are the real run's names); nothing is written
        under ``staging_dir``.
    sourcedata : str
        ``"dicom"`` links every series under ``sourcedata/dicom``; anything else links
        only the series that do not become BIDS images.
    skip_policy : str
        ``"sourcedata"``: an MR series that gets no BIDS name (localizer, derived,
        unclassified, a field-map image without its partner) is kept in ``sourcedata/dicom``;
        ``"drop"``: it is left out, and listed (private) with its reason.
    begun : Begun, optional
        The work folder and whole-folder dcm2niix run that :func:`.batch.begin` started for
        this input and staging folder (before the App's imports); started here when None.

    Returns
    -------
    StageResult
    """
    raw_dir, staging_dir = Path(raw_dir), Path(staging_dir)
    if not raw_dir.is_dir():
        raise InputError(f"raw input {raw_dir} is not a directory")
    if begun is not None and not begun.fits(raw_dir, staging_dir, participants, dry_run):
        begun.stop()
        begun = None
    if begun is None:
        begun = begin(raw_dir, staging_dir, participants=participants, dry_run=dry_run)
    work = begun.work
    try:
        return _stage_raw(raw_dir, staging_dir, pseudo, participants=participants, heuristic=heuristic,
                          n_cpus=n_cpus, dry_run=dry_run, sourcedata=sourcedata, skip_policy=skip_policy,
                          _work=work, _exe=begun.exe, _early=begun.early,
                          _unpack=work / "unpacked" if dry_run else staging_dir / UNPACK_DIR_NAME)
    finally:
        begun.stop()
        shutil.rmtree(work, ignore_errors=True)
        if not dry_run:
            with contextlib.suppress(OSError):
                (staging_dir / WORK_DIR_NAME).rmdir()


def _stage_raw(
    raw_dir: Path,
    staging_dir: Path,
    pseudo: Pseudonymizer,
    *,
    participants: set[str] | None,
    heuristic: Path | None,
    n_cpus: int,
    dry_run: bool,
    sourcedata: str,
    skip_policy: str,
    _work: Path,
    _exe: str,
    _early,
    _unpack: Path,
) -> StageResult:
    """:func:`stage_raw` inside its work folder (``_early``: the background whole-folder dcm2niix or None)."""
    reproin = heuristic is not None and str(heuristic).lower() == "reproin" and not Path(heuristic).is_file()
    rules = load_heuristic(heuristic) if heuristic and not reproin else None
    n_cpus = max(1, int(n_cpus or 1))
    result = StageResult()
    records = discover(raw_dir, n_cpus, unpack_dir=_unpack)

    kinds = Counter(r["kind"] for r in records)
    handled_other = other_files(records)  # Analyze/MINC/PAR/slides and their data halves are not ignored
    ignored = [r for r in records if r["kind"] == "other" and r["path"] not in handled_other]
    if ignored:
        exts = sorted({sanitize_label(Path(r["path"]).suffix.lower())[:8] or "none" for r in ignored})
        result.problems.append(f"{len(ignored)} non-DICOM file(s) ignored (extensions: {', '.join(exts[:6])})")
    if kinds["corrupt"]:
        result.problems.append(f"{kinds['corrupt']} corrupt or truncated DICOM file(s) skipped")
    if kinds["twix-bad"]:
        result.problems.append(
            f"{kinds['twix-bad']} .dat file(s) are not readable twix (unknown header version or corrupt)"
        )

    # group: patient -> study (session) -> series
    dicoms = [r for r in records if r["kind"] == "dicom"]
    by_folder = patients_by_folder(dicoms, result.problems)
    tree = series_tree(dicoms)
    twix_by_pid = twix_patients([r for r in records if r["kind"] == "twix"], by_folder, raw_dir, result.problems)

    wanted = None
    if participants:
        wanted = {p[4:] if p.startswith("sub-") else p for p in participants}
    all_pids = sorted(set(tree) | set(twix_by_pid))
    result.available = sorted({pseudo.subject(pid) for pid in all_pids})
    series_list: list[Series] = []
    sessions_of: dict[str, list[tuple[str | None, str]]] = {}
    for pid in all_pids:
        label = pseudo.subject(pid)
        if wanted is not None and label not in wanted and pid not in wanted:
            continue
        result.subjects[pid] = label
        ordered = ordered_studies(tree.get(pid, {}))
        series, sessions_of[label] = patient_series(label, ordered, pseudo)
        series_list += series
        if ordered:
            result.demographics[label] = demographics(next(iter(ordered[0][1].values()))[0]["fields"])
        result.identifiers[label] = patient_identifiers(ordered, [ids for _r, ids in twix_by_pid.get(pid, [])])

    # plan: which series are converted
    to_convert: list[Series] = []
    for s in series_list:
        if s.modality != "MR":
            s.action, s.reason = "sourcedata", f"modality {s.modality} is not converted to BIDS"
        elif s.kind not in ("image", "enhanced"):
            s.action, s.reason = "sourcedata", f"non-image MR object ({sop_name(s.kind)})"
        else:
            to_convert.append(s)
        if s.modality == "SM":
            plan_micr(s)

    if not dry_run:  # links need no conversion result: made while dcm2niix runs
        stage_sourcedata(series_list, staging_dir, sourcedata)
    convert_all(to_convert, records, raw_dir, _work, _exe, _early, n_cpus)
    for s in to_convert:
        classify_outputs(s, rules, reproin)
        merge_split_volumes(s, _work)
    drop_copies(to_convert)
    if reproin:
        reproin_sessions(to_convert)
    by_ses = name_outputs(to_convert)
    for s in to_convert:  # nothing disappears: what got no BIDS name is kept in sourcedata (or listed as dropped)
        if s.action == "skipped":
            if skip_policy == "drop":
                s.action, s.reason = "dropped", f"{s.reason}; dropped (--skip-series-policy drop)"
            else:
                s.action, s.reason = "sourcedata", f"{s.reason}; DICOM kept in sourcedata"
    if not dry_run:
        late = [s for s in to_convert if sourcedata != "dicom" and (s.action == "sourcedata" or s.partial)]
        stage_sourcedata(late, staging_dir, "dicom")
        for s in to_convert:
            if s.action == "dropped":
                shutil.rmtree(sourcedata_folder(staging_dir, s), ignore_errors=True)
        stage_micr(series_list, staging_dir)
        place_outputs(by_ses, staging_dir, result.identifiers)
        stage_twix(twix_by_pid, result.subjects, sessions_of, staging_dir, pseudo)
        result.series += stage_other_formats(records, raw_dir, staging_dir, pseudo, result.subjects, by_folder,
                                             wanted, sourcedata)
        desc = {
            "Name": "bids-deid staging",
            "BIDSVersion": bids_version(),
            "DatasetType": "raw",
            "GeneratedBy": [{"Name": "bids-deid", "Description": "staging of raw scanner data (dcm2niix)"}],
        }
        write_sidecar(staging_dir / "dataset_description.json", desc)

    for s in series_list:
        result.problems.extend(s.problems)
        result.series.append(report_row(s))
    for pid, items in twix_by_pid.items():
        if pid in result.subjects:
            for r, _ids in items:
                result.series.append(twix_row(result.subjects[pid], r, pseudo))
    return result
