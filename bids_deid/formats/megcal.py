"""Neuromag/MEGIN fine-calibration files (``*_acq-calibration_meg.dat``).

BIDS keeps them beside the MEG recordings: Maxwell filtering needs them. The file is plain
text, one line per sensor: a channel name and 13 (magnetometer) or 14-16 (gradiometer
imbalance) numbers; it describes the device, not the person. It is carried byte for byte
only when every line has exactly that shape, so nothing else (a comment, a name) can ride
along; anything else is withheld.
"""

from __future__ import annotations

import re
from pathlib import Path

from .base import Context, Outcome, ScrubLog

NAME = "megcal"
COMPANION_SUFFIXES: tuple[str, ...] = ()
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_LINE = re.compile(rf"(?:MEG ?\d{{3,4}})(?:\s+{_NUMBER}){{13,16}}\s*")
_MAX_BYTES = 1 << 20  # a 306-channel file is ~40 kB


def sniff(path: Path) -> bool:
    return path.is_file() and path.name.endswith("_acq-calibration_meg.dat")


def companions(path: Path) -> list[Path]:
    return []


def scrub(src: Path, profile, ctx: Context) -> Outcome:
    if src.stat().st_size > _MAX_BYTES:
        return Outcome.withhold("calibration file larger than any MEG system's")
    try:
        text = src.read_bytes().decode("ascii")
    except UnicodeDecodeError:
        return Outcome.withhold("calibration file that is not plain text")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    bad = next((i for i, ln in enumerate(lines, 1) if not _LINE.fullmatch(ln.strip())), None)
    if not lines or bad is not None:
        return Outcome.withhold(f"calibration file with a line that is not a sensor's numbers (line {bad or 1})")
    log = ScrubLog()
    log.change("calibration", "keep", f"{len(lines)} sensor lines: channel names and numbers only")
    return Outcome(writes={ctx.rel_out: src}, log=log)
