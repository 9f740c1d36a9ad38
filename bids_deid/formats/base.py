"""The interface every format module follows, and the records it deals in.

A format module is a plain module with these names:

``NAME``
    a short word for reports (``"edf"``, ``"brainvision"``, ``"nifti"``).
``sniff(path) -> bool``
    True when the module handles this file (from its name and, cheaply, its first bytes).
``companions(path) -> list[Path]``
    files that belong to this one and go (or are withheld) with it, e.g. the ``.eeg`` of
    a ``.vhdr``; they are not handed to any other module. ``COMPANION_SUFFIXES`` lists
    their extensions (the registry gathers them in one place).
``scrub(src, profile, ctx) -> Outcome``
    pure: reads ``src`` and returns what to write; it never writes into the output
    itself. Only the run writes, through :mod:`bids_deid.atomic` (:func:`write_outcome`).

Image formats that become NIfTI also have ``to_nifti(src, dst, profile, ctx, log)`` and
``nifti_name(rel)`` (the BIDS name of the converted image).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ScrubLog:
    """What a scrubber did: audit entries (no values) and identifiers met (private)."""

    changes: list[dict] = field(default_factory=list)
    identifiers: list[tuple[str, str]] = field(default_factory=list)

    def change(self, where: str, action: str, why: str) -> None:
        self.changes.append({"field": where, "action": action, "why": why})

    def extend(self, other: ScrubLog) -> None:
        """Take over ``other``'s audit entries and identifiers."""
        self.changes += other.changes
        self.identifiers += other.identifiers

    def met(self, kind: str, value: Any) -> None:
        if isinstance(value, str) and value.strip():
            self.identifiers.append((kind, value.strip()))
        elif isinstance(value, list | tuple):
            for v in value:
                self.met(kind, v)
        elif isinstance(value, dict):
            for v in value.values():
                self.met(kind, v)


@dataclass(frozen=True)
class Context:
    """What a scrubber may know about the file's place in the run.

    ``rel_out`` is the output path (new labels) of the file handed in; ``relabel`` maps a
    path or file name that holds original labels to its new form; ``offset_days`` is the
    subject's date shift (None at dataset level: dates are removed there); ``subject`` the
    new subject label.
    """

    rel_out: str
    offset_days: int | None = None
    relabel: Callable[[str], str] = lambda s: s
    subject: str | None = None
    keep_photos: bool = False
    #: whether an output path (output-relative) is written: a scans table keeps only those rows
    in_output: Callable[[str], bool] = lambda rel: True


#: content written by streaming into an open atomic file (its ``tmp_path`` names the temp file):
#: for files too large to hold in memory (images, raw data); it may raise InputError
Stream = Callable[[Any], None]


@dataclass
class Outcome:
    """What a handler decided, for the run to carry out.

    ``writes``
        files to write (output-relative path -> bytes, a source path to copy unchanged, or a
        :data:`Stream`); each is recorded as written.
    ``log``
        audit entries (no values) and identifiers met, for the file ``audit_rel`` (default:
        the first file written); a stream may add to it while it writes.
    ``withheld``
        a reason to withhold the file with its companions (nothing is written).
    ``records``
        other fates: output- or input-relative path -> ``{"status", "reason", ...}``.
    ``audit``
        audit entries naming their own file (defacing, withholding); an entry may be one
        already-encoded JSON line (:func:`audit_lines`: a DICOM file's whole list of changes).
    ``plan``
        the dry-run lines (nothing is written in a dry run).
    ``then``
        tasks to handle next (a converted image and its sidecar); ``cleanup`` the scratch
        files to remove after them.
    ``error_status``
        when set, an InputError raised while writing records ``audit_rel`` with this status
        and the error's text instead of stopping the file's task.
    """

    writes: dict[str, bytes | Path | Stream] = field(default_factory=dict)
    log: ScrubLog = field(default_factory=ScrubLog)
    withheld: str = ""
    records: dict[str, dict] = field(default_factory=dict)
    audit: list[dict | str] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)
    then: list = field(default_factory=list)
    cleanup: list[Path] = field(default_factory=list)
    audit_rel: str = ""
    error_status: str = ""
    #: the written paths recorded as written (None: every path of ``writes``)
    written: list[str] | None = None

    @classmethod
    def withhold(cls, reason: str, log: ScrubLog | None = None) -> Outcome:
        return cls(withheld=reason, log=log or ScrubLog())

    def record(self, rel: str, status: str, reason: str = "", **extra) -> Outcome:
        """Add the fate of ``rel``; returns the outcome (for one-line handlers)."""
        self.records[rel] = {"status": status, "reason": reason, **extra}
        return self


def sibling(path: Path, ext: str) -> Path:
    """``path`` with its (last) extension replaced by ``ext``."""
    return path.with_name(path.name[: len(path.name) - len(path.suffix)] + ext)


def out_sibling(rel_out: str, src: Path, companion: Path) -> str:
    """Output path of ``companion``: same folder as ``rel_out``, the same renaming applied."""
    head, _, name = rel_out.rpartition("/")
    old_stem = src.name[: len(src.name) - len(src.suffix)]
    new_stem = name[: len(name) - len(src.suffix)]
    cname = companion.name
    new = new_stem + cname[len(old_stem):] if cname.startswith(old_stem) else cname
    return (head + "/" if head else "") + new


def write_outcome(root: Path, res: Outcome, perm: int = 0o644, skip_existing: bool = True) -> list[str]:
    """Write every file of ``res`` under ``root`` through :mod:`bids_deid.atomic`; the paths written.

    A file already there is left as it is (a resumed run) unless ``skip_existing`` is False.
    """
    from ..atomic import write_content

    done = []
    for rel, data in res.writes.items():
        path = root / rel
        if not (skip_existing and path.exists()):
            write_content(path, data, perm)
        done.append(rel)
    return done


def scrub_to(scrub: Callable[[Path, Any, Context], Outcome], src: Path, dst: Path,
             slog: ScrubLog | None = None) -> list[Path]:
    """``scrub`` on ``src`` written at once next to ``dst`` (named like it); the files written.

    The one-call form of a module's :func:`scrub` for callers outside a run (``src`` is never modified).
    """
    dst = Path(dst)
    res = scrub(Path(src), None, Context(rel_out=dst.name))
    if slog is not None:
        slog.extend(res.log)
    return [dst.parent / r for r in write_outcome(dst.parent, res, skip_existing=False)]


def audit_lines(rel: str, changes_json: str) -> list[str]:
    """The audit entries of a file whose changes are already a JSON array (the DICOM engine makes
    that text once per distinct list): one line ``{"file": rel, "changes": [...]}``, none for no
    change. The readers of the audit log (:func:`bids_deid.report.removed.audit_entries`) take
    it as one entry per change."""
    if changes_json == "[]":
        return []
    import json

    return [f'{{"file": {json.dumps(rel)}, "changes": {changes_json}}}']
