"""EDF, EDF+ and BDF: patient and recording fields cleared, start date shifted, annotation
texts removed; the signal bytes are left exactly as they are.

The header is fixed-width ASCII (256 bytes, then 256 per signal), so it is rewritten in
place: every offset, the data records and the file length stay the same.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from .base import Context, Outcome, ScrubLog

NAME = "edf"
SUFFIXES = (".edf", ".bdf")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def sniff(path: Path) -> bool:
    if path.suffix.lower() not in SUFFIXES or not path.is_file():
        return False
    with open(path, "rb") as fh:
        head = fh.read(8)
    return head == b"0       " or head == b"\xffBIOSEMI"


def companions(path: Path) -> list[Path]:
    return []


def _field(text: str, width: int) -> bytes:
    return text.encode("ascii", "replace")[:width].ljust(width, b" ")


def _shift_date(ddmmyy: str, offset: int | None) -> tuple[str, dt.date | None]:
    """EDF start date ``dd.mm.yy`` moved by ``offset`` days (years 1985-2084, as EDF reads them)."""
    m = re.fullmatch(r"(\d\d)\.(\d\d)\.(\d\d)", ddmmyy.strip())
    if not m or offset is None:
        return "01.01.85", None
    yy = int(m[3])
    try:
        day = dt.date(1900 + yy if yy >= 85 else 2000 + yy, int(m[2]), int(m[1]))
    except ValueError:
        return "01.01.85", None
    new = day + dt.timedelta(days=offset)
    if not 1985 <= new.year <= 2084:
        return "01.01.85", None
    return new.strftime("%d.%m.%y"), new


def scrub_bytes(data: bytes, offset_days: int | None, log: ScrubLog) -> bytes:
    """The scrubbed file, same length; raises ValueError when the header does not parse."""
    if len(data) < 256:
        raise ValueError("shorter than an EDF header")
    buf = bytearray(data)
    bdf = data[:1] == b"\xff"
    head = data[:256].decode("latin-1")
    plus = head[192:197] in ("EDF+C", "EDF+D") or head[192:197] in ("BDF+C", "BDF+D")
    try:
        ns = int(head[252:256])
        nrec = int(head[236:244])
    except ValueError as exc:
        raise ValueError("the header's signal or record count does not parse") from exc
    if 256 + 256 * ns > len(data):
        raise ValueError("the signal headers are cut off")
    log.met("edf:patient", head[8:88].strip())
    log.met("edf:recording", head[88:168].strip())
    for word in head[8:88].split() + head[88:168].split()[2:]:
        if len(word) > 2 and word.upper() != "X":
            log.met("edf:name part", word.replace("_", " "))
    date, day = _shift_date(head[168:176], offset_days)
    log.met("edf:startdate", head[168:176].strip())
    buf[8:88] = _field("X X X X" if plus else "X", 80)
    if plus:
        when = f"{day.day:02d}-{_MONTHS[day.month - 1]}-{day.year}" if day else "X"
        buf[88:168] = _field(f"Startdate {when} X X X", 80)
    else:
        buf[88:168] = _field("X", 80)
    buf[168:176] = date.encode()
    log.change("patient", "replace", "EDF patient field")
    log.change("recording", "replace", "EDF recording field")
    log.change("startdate", "shift_date" if day else "replace", "EDF start date")
    sig = data[256:256 + 256 * ns].decode("latin-1")
    labels = [sig[i * 16:(i + 1) * 16].strip() for i in range(ns)]
    off = 256 + ns * 224  # per-signal "reserved" (32 bytes each) is free text
    for i in range(ns):
        buf[off + 32 * i: off + 32 * (i + 1)] = b" " * 32
    try:
        nsamp = [int(sig[ns * 216 + 8 * i: ns * 216 + 8 * (i + 1)]) for i in range(ns)]
    except ValueError as exc:
        raise ValueError("a signal's sample count does not parse") from exc
    width = 3 if bdf else 2
    annot = [i for i, lab in enumerate(labels) if lab in ("EDF Annotations", "BDF Annotations")]
    if annot and nrec > 0:
        rec_len = sum(nsamp) * width
        start = 256 + 256 * ns
        removed = 0
        for r in range(nrec):
            base = start + r * rec_len
            for i in annot:
                a = base + sum(nsamp[:i]) * width
                block = bytes(buf[a: a + nsamp[i] * width])
                new, n = _clear_tals(block)
                removed += n
                buf[a: a + len(new)] = new
        if removed:
            log.change("annotations", "remove", f"{removed} EDF+ annotation text(s) removed (onsets kept)")
    return bytes(buf)


def _clear_tals(block: bytes) -> tuple[bytes, int]:
    """Each TAL keeps its onset and duration; its texts go. Same length (NUL padded)."""
    out, n = bytearray(), 0
    for tal in block.split(b"\x00"):
        if not tal:
            continue
        parts = tal.split(b"\x14")
        n += sum(1 for p in parts[1:] if p)
        out += parts[0] + b"\x14\x14\x00"
    return bytes(out[: len(block)].ljust(len(block), b"\x00")), n


def scrub(src: Path, profile, ctx: Context) -> Outcome:
    log = ScrubLog()
    try:
        data = scrub_bytes(src.read_bytes(), ctx.offset_days, log)
    except ValueError as exc:
        return Outcome.withhold(f"EDF/BDF header unreadable: {exc}", log)
    return Outcome(writes={ctx.rel_out: data}, log=log)
