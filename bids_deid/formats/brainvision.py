"""BrainVision: the ``.vhdr`` header and ``.vmrk`` markers are rewritten, the binary ``.eeg``
is carried byte for byte.

Kept: the sections the format defines for reading the data (Common, Binary and ASCII
infos, channels, coordinates); the free-text ``[Comment]`` section and ``;`` comment
lines go. ``DataFile``/``MarkerFile`` name the new files. Marker dates (the 20-digit
``New Segment`` time stamp) are shifted with the subject's offset; ``Comment`` markers
lose their text.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from .base import Context, Outcome, ScrubLog

NAME = "brainvision"
_KEEP = {"common infos", "binary infos", "ascii infos", "channel infos", "coordinates", "marker infos"}
_MARKER_TYPES = {"new segment", "stimulus", "response", "time 0", "dc correction", "syncstatus", "bad interval",
                 "marker", "event", "sync on", "userdefined"}


def sniff(path: Path) -> bool:
    return path.suffix.lower() == ".vhdr" and path.is_file()


def _refs(text: str) -> dict[str, str]:
    found = {}
    for key in ("DataFile", "MarkerFile"):
        m = re.search(rf"^{key}=(.*?)\s*$", text, re.M)
        if m:
            found[key] = m[1]
    return found


def _read(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def companions(path: Path) -> list[Path]:
    refs = _refs(_read(path))
    out = [path.parent / Path(v.replace("\\", "/")).name for v in refs.values() if v]
    for ext in (".eeg", ".vmrk"):  # BIDS names them after the header; list them even if the header does not
        p = path.with_suffix(ext)
        if p not in out and p.exists():
            out.append(p)
    return [p for p in out if p.exists()]


def _sections(text: str, log: ScrubLog, what: str) -> list[str]:
    lines = text.splitlines()
    out, keep, section = lines[:1], False, ""
    for ln in lines[1:]:
        s = ln.strip()
        if s.startswith("[") and s.endswith("]"):
            section = s[1:-1].strip().lower()
            keep = section in _KEEP
            if not keep:
                log.change(f"{what} [{s[1:-1]}]", "remove", "free-text section")
            else:
                out.append(ln)
            continue
        if not keep:
            if s:
                log.met(f"{what}:comment", s)
            continue
        if s.startswith(";"):
            continue
        out.append(ln)
    return out


def _shift_stamp(stamp: str, offset: int | None) -> str:
    """``YYYYMMDDhhmmssuuuuuu`` moved by ``offset`` days; without an offset: all zeros."""
    if offset is None or not re.fullmatch(r"\d{20}", stamp):
        return "0" * 20 if stamp.strip() else stamp
    try:
        day = dt.date(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8])) + dt.timedelta(days=offset)
    except ValueError:
        return "0" * 20
    return day.strftime("%Y%m%d") + stamp[8:]


def scrub_vmrk(text: str, data_name: str, offset: int | None, log: ScrubLog) -> str:
    out = []
    for ln in _sections(text, log, "vmrk"):
        m = re.match(r"^(Mk\d+=)(.*)$", ln)
        if m:
            parts = m[2].split(",")
            if parts and parts[0].strip().lower() not in _MARKER_TYPES:
                log.met("vmrk:marker", m[2])
                parts[1:2] = [""] if len(parts) > 1 else []
                log.change("marker", "empty", f"text of a '{parts[0]}' marker")
            if len(parts) >= 6 and parts[5].strip():
                log.met("vmrk:date", parts[5].strip())
                parts[5] = _shift_stamp(parts[5].strip(), offset)
            ln = m[1] + ",".join(parts)
        elif ln.startswith("DataFile="):
            ln = "DataFile=" + data_name
        out.append(ln)
    return "\n".join(out) + "\n"


def scrub_vhdr(text: str, names: dict[str, str], log: ScrubLog) -> str:
    out = []
    for ln in _sections(text, log, "vhdr"):
        key = ln.split("=", 1)[0]
        if key in names:
            ln = f"{key}={names[key]}"
        out.append(ln)
    return "\n".join(out) + "\n"


def scrub(src: Path, profile, ctx: Context) -> Outcome:
    log = ScrubLog()
    text = _read(src)
    if not text.startswith("Brain Vision") and "BrainVision" not in text.splitlines()[0]:
        return Outcome.withhold("not a BrainVision header")
    head = ctx.rel_out.rpartition("/")[0]
    refs = _refs(text)
    out = Outcome(log=log)
    names = {}
    for key, ext in (("DataFile", ".eeg"), ("MarkerFile", ".vmrk")):
        comp = src.parent / Path(refs.get(key, "").replace("\\", "/")).name if refs.get(key) else src.with_suffix(ext)
        if not comp.is_file() and src.with_suffix(ext).is_file():
            comp = src.with_suffix(ext)  # the header names a file that is not there; BIDS names it after the header
        if not comp.is_file():
            if key == "DataFile":
                return Outcome.withhold("BrainVision data file named in the header is missing")
            continue
        new = ctx.relabel(comp.name)
        names[key] = new
        rel = (head + "/" if head else "") + new
        if key == "DataFile":
            out.writes[rel] = comp
        else:
            out.writes[rel] = scrub_vmrk(_read(comp), names["DataFile"], ctx.offset_days, log).encode("utf-8")
    out.writes[ctx.rel_out] = scrub_vhdr(text, names, log).encode("utf-8")
    return out
