"""``bids-deid-dicom`` resumes: the private side (audit lines, mapping rows) of files already written.

A rerun finds files an earlier run wrote and reports them as ``exists``, without their
changes or identifiers. For such a file the audit line of the earlier run is kept when it is
there; when it is not (the earlier run was killed before its audit file was complete) the
file is de-identified again into private scratch and dropped, so its changes and the
PatientID for the mapping are those of an uninterrupted run.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

from .private import ensure_dir


class Resumer:
    """Completes ``exists`` results; read the old audit before the new one is opened for writing."""

    def __init__(self, audit_path: Path, in_dir: Path, out_dir: Path, profile, pseudo, scratch: Path):
        self.in_dir, self.out_dir, self.profile, self.pseudo, self.scratch = in_dir, out_dir, profile, pseudo, scratch
        self.old: dict[str, dict] = {}
        try:
            with open(audit_path, encoding="utf-8") as fh:
                for line in fh:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if rec.get("status") in ("written", "exists") and rec.get("changes"):
                        self.old[rec["src"]] = rec
        except FileNotFoundError:
            pass
        shutil.rmtree(scratch, ignore_errors=True)  # leftovers of a killed run

    def complete(self, r):
        """``r`` with the changes and identifiers of the file (for an ``exists`` result), else ``r``."""
        if r.status != "exists":
            return r
        rel = str(r.src.relative_to(self.in_dir))
        old = self.old.get(rel)
        if old is not None and r.dst is not None and old.get("dst") == str(r.dst.relative_to(self.out_dir)):
            return replace(r, changes=old["changes"])
        from .scrub.dicom import deidentify_file

        tmp = ensure_dir(self.scratch) / "recheck.dcm"
        try:
            again = deidentify_file(r.src, tmp, self.profile, self.pseudo, overwrite=True, fsync=False)
        finally:
            tmp.unlink(missing_ok=True)
        if again.status != "written":
            return r
        return replace(r, changes=again.changes, identifiers=again.identifiers, subject=again.subject or r.subject)

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)
