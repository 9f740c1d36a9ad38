"""Is a folder raw scanner data? And the one walk over its files that discovery uses too.

Kept light on purpose (no pydicom, numpy or format registry at import): the App asks this
before it imports the rest of itself, so that dcm2niix can start early (see
:func:`bids_deid.raw_participant.prestart`).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..dicom.sniff import has_preamble, is_dicom

WORK_DIR_NAME = ".bids-deid-work"
UNPACK_DIR_NAME = ".bids-deid-unpacked"  # gzip-compressed DICOM, unpacked (the staging tree links to them)


def is_raw_input(path: Path) -> bool:
    """True when ``path`` is not a BIDS dataset but holds DICOM or twix files.

    Parameters
    ----------
    path : Path
        Input directory.

    Returns
    -------
    bool
        False when ``dataset_description.json`` exists at the top or nothing raw is found.
    """
    path = Path(path)
    if not path.is_dir() or (path / "dataset_description.json").exists():
        return False
    for i, f in enumerate(walk(path)):  # a preamble first: cheap, and no pydicom import (see the module doc)
        if i > 2000:
            break
        try:
            with open(f, "rb") as fh:
                if has_preamble(fh.read(132)):
                    return True
        except OSError:
            continue
    checked = 0
    for f in walk(path):
        if f.suffix.lower() == ".dat":
            from ..formats.twix import is_twix  # the format registry is heavy: only for .dat files

            if is_twix(f):
                return True
        if is_dicom(f):
            return True
        if other_format(f):
            return True
        checked += 1
        if checked > 2000:  # a tree this size with no DICOM in the first 2000 files is not raw input
            break
    return False


def other_format(path: Path) -> str | None:
    """Analyze / MINC / PAR / TIFF slide (see :mod:`.formats`), or None."""
    if path.suffix.lower() not in (".hdr", ".mnc", ".par", ".svs", ".tif", ".tiff", ".ndpi", ".scn", ".bif"):
        return None
    from .formats import format_of

    return format_of(path)


def walk(root: Path):
    """Files under ``root`` in sorted order; follows folder symlinks once (no loops)."""
    seen: set[str] = set()
    for dirpath, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if d not in (WORK_DIR_NAME, UNPACK_DIR_NAME))
        for name in sorted(files):
            yield Path(dirpath) / name
