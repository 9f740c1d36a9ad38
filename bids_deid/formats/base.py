"""The interface every format module follows, and the two records it deals in.

A format module is a plain module with four names:

``NAME``
    a short word for reports (``"edf"``, ``"brainvision"``).
``sniff(path) -> bool``
    True when the module handles this file (from its name and, cheaply, its first bytes).
``companions(path) -> list[Path]``
    files that belong to this one and go (or are withheld) with it, e.g. the ``.eeg`` of
    a ``.vhdr``; they are not handed to any other module.
``scrub(src, profile, ctx) -> Outcome``
    pure: reads ``src`` (a path, or bytes where the module says so) and returns what to
    write; it never writes into the output itself. Only the pipeline writes, through
    :mod:`bids_deid.atomic`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..scrub.sidecar import ScrubLog


@dataclass(frozen=True)
class Context:
    """What a scrubber may know about the file's place in the run.

    ``rel_out`` is the output path (new labels) of the file handed in; ``relabel`` maps a
    path or file name that holds original labels to its new form; ``offset_days`` is the
    subject's date shift (None at dataset level: dates are removed there).
    """

    rel_out: str
    offset_days: int | None = None
    relabel: Callable[[str], str] = lambda s: s
    subject: str | None = None
    keep_photos: bool = False


@dataclass
class Outcome:
    """What a scrubber decided: files to write (output-relative path -> bytes or a source
    path to copy unchanged), audit records and identifiers met (in ``log``), or a reason
    to withhold the file with its companions."""

    writes: dict[str, bytes | Path] = field(default_factory=dict)
    log: ScrubLog = field(default_factory=ScrubLog)
    withheld: str = ""

    @classmethod
    def withhold(cls, reason: str, log: ScrubLog | None = None) -> Outcome:
        return cls(withheld=reason, log=log or ScrubLog())


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
