"""What a run did and with which settings: the run record, per-subject completeness, the group gate.

* ``PRIVATE/run-settings.json`` is written by the first participant run into an output (the
  settings, the profile's hash, the defacing method, the key's fingerprint, the tool version);
  every later participant run into that output must have the same output-changing settings,
  else it refuses in one line (existing files are skipped on a rerun, so mixing settings would
  publish files made under the old ones).
* ``PRIVATE/state/sub-<label>.json`` says ``"complete": false`` while the subject runs and
  ``true`` with the settings id once its last private file is written; every file record in
  it carries that settings id.
* ``group`` refuses unless every subject it would publish is complete under the recorded
  settings and key, and names the subject that is not.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from .errors import OutputError
from .private import create_once, read_json
from .settings import Settings, differences, to_record

RECORD = "run-settings.json"


def record_path(private_dir: Path) -> Path:
    return Path(private_dir) / RECORD


def _prior_outputs(s: Settings) -> bool:
    """Does the output or the private dir already hold participant results?"""
    out = s.output_dir
    return (any(p.is_dir() for p in out.glob("sub-*")) or any(out.glob("sourcedata/*/sub-*"))
            or any((s.private_dir / "state").glob("sub-*.json")))


def ensure(s: Settings) -> Settings:
    """Record the settings on the first participant run; refuse other output-changing settings later.

    Returns ``s`` with ``run_id`` set to the recorded settings id.
    """
    path = record_path(s.private_dir)
    new = to_record(s)
    old = read_json(path)
    if old is None:
        if _prior_outputs(s):
            raise OutputError(f"{s.output_dir} holds results but {s.private_dir} has no run record ({RECORD}): "
                              "it was made with another private dir or an older bids-deid; use a new output "
                              "folder (or the --private-dir of the run that made it)")
        create_once(path, (json.dumps(new, indent=1, sort_keys=True) + "\n").encode())
        old = read_json(path)
    diffs = differences(old, new)
    if diffs:
        raise OutputError(f"{s.output_dir} was made with other settings ({'; '.join(diffs)}): rerun with the "
                          f"recorded ones (--settings {path}) or use a new output and private dir")
    return replace(s, run_id=old["settings_id"])


def subject_started(s: Settings, new: str, original: str, records: dict) -> None:
    """Mark a subject as running (incomplete) before its first file is written."""
    from .private import write_json

    write_json(s.private_dir / "state" / f"sub-{new}.json",
               {"subject": new, "original": original, "complete": False, "settings": s.run_id, "records": records})


def check_group(s: Settings) -> Settings:
    """Refuse a group level over subjects that are incomplete or were made with other settings or keys.

    Returns ``s`` with the recorded ``run_id``.
    """
    path = record_path(s.private_dir)
    rec = read_json(path)
    if rec is None:
        raise OutputError(f"the private dir {s.private_dir} holds no participant record for {s.output_dir} "
                          f"(no {RECORD}); pass the --private-dir that the participant level used")
    diffs = differences(rec, to_record(s))
    if diffs:
        raise OutputError(f"the participant level ran with other settings ({'; '.join(diffs)}); run group with "
                          f"the recorded ones (--settings {path})")
    sid = rec["settings_id"]
    states = {p.name[: -len(".json")]: p for p in (s.private_dir / "state").glob("sub-*.json")}
    published = {p.name for p in s.output_dir.glob("sub-*") if p.is_dir()}
    published |= {p.name for p in s.output_dir.glob("sourcedata/*/sub-*") if p.is_dir()}
    bad: list[str] = []
    for label in sorted(published | set(states)):
        st = read_json(states[label]) if label in states else None
        if not isinstance(st, dict):
            bad.append(f"{label} has files in the output but no participant record")
            continue
        who = label + (f" (input sub-{st['original']})" if st.get("original") and st["original"] != label[4:]
                       else "")
        if not st.get("complete"):
            bad.append(f"{who} is incomplete (its participant run did not finish)")
        elif st.get("settings") != sid:
            bad.append(f"{who} was made with other settings")
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise OutputError(f"group refused: {'; '.join(bad[:3])}{more}; rerun the participant level for it with "
                          f"the same settings and key")
    return replace(s, run_id=sid)


# ------------------------------------------------------------------ per-file journal (resumes)
def _journal_path(s: Settings, new: str, rel: str) -> Path:
    import hashlib

    return s.private_dir / "journal" / f"sub-{new}" / (hashlib.sha256(rel.encode()).hexdigest()[:24] + ".json")


def journal_write(s: Settings, new: str, rel: str, entry: dict) -> None:
    """Keep what cannot be recomputed cheaply for one output file (defacing result, QC names).

    Written before the public file is renamed into place: a public file then always has its
    private record, whatever the moment of a kill.
    """
    from .private import write_json

    write_json(_journal_path(s, new, rel), {"file": rel, "settings": s.run_id, **entry})


def journal_read(s: Settings, new: str, rel: str) -> dict | None:
    """The journal entry of ``rel`` made under the current settings, or None."""
    entry = read_json(_journal_path(s, new, rel))
    if not isinstance(entry, dict) or entry.get("file") != rel or entry.get("settings") != s.run_id:
        return None
    return entry
