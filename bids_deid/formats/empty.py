"""Empty files (0 bytes, or only NUL bytes): nothing in them can identify anyone, so they are
carried as they are.

The BIDS example suite ships every data file as a 0-byte placeholder; a dataset under
construction may do the same.
"""

from __future__ import annotations

from pathlib import Path

from .base import Context, Outcome

NAME = "empty"


_MOST = 1 << 16  # longer all-NUL files are read no further: they are treated as data


def sniff(path: Path) -> bool:
    try:
        if not path.is_file():
            return False
        size = path.stat().st_size
        if size == 0:
            return True
        if size > _MOST:
            return False
        return path.read_bytes().count(0) == size
    except OSError:
        return False


def companions(path: Path) -> list[Path]:
    return []


def scrub(src: Path, profile, ctx: Context) -> Outcome:
    return Outcome(writes={ctx.rel_out: bytes(src.stat().st_size)})
