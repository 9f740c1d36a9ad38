"""Empty files: nothing in them can identify anyone, so they are carried as they are.

The BIDS example suite ships every data file as a 0-byte placeholder; a dataset under
construction may do the same.
"""

from __future__ import annotations

from pathlib import Path

from .base import Context, Outcome

NAME = "empty"


def sniff(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size == 0
    except OSError:
        return False


def companions(path: Path) -> list[Path]:
    return []


def scrub(src: Path, profile, ctx: Context) -> Outcome:
    return Outcome(writes={ctx.rel_out: b""})
