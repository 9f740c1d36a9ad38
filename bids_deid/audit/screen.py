"""Kept free text screened for identifier-shaped strings, for a person to review.

Text the run keeps by design (README, CHANGES, free-text sidecar fields such as
TaskDescription or Instructions, string cells of events and other tables, entity labels
other than ``sub``/``ses`` in file names) can hold an identifier no scrubber ever met: a
date, a record number, an e-mail address, a phone number. Values that the run did meet are
already searched everywhere by the audit; this screen lists the shapes. Each match is a
review item with an id, settled by a reviewed acceptance like any hit; a profile with
``audit: {free_text: require}`` makes open items fail the run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from . import accept as acc
from .needles import DATE_IN_TEXT, EMAIL_RE, PHONE_RE, parse_date

_LONG_DIGITS = re.compile(r"(?<![\d.,/])\d{7,}(?![\d.,])")
_URL = re.compile(r"(?:https?://|doi:|www\.)\S+|\b10\.\d{4,9}/\S+", re.I)
# Fields that are dates/times, paths or codes by the BIDS schema: their values are not free text.
_NOT_FREE = re.compile(r"Date|Time|^IntendedFor$|^Sources$|^RawSources$|^AssociatedEmptyRoom$|URL|DOI|ID$|"
                       r"^BIDSVersion$|^DatasetType$|^License$|^GeneratedBy$|^HEDVersion$|Version$")
_TABLE_SKIP = {"participant_id", "session_id", "filename", "acq_time", "onset", "duration", "sample_id"}
_RELEASE = re.compile(r"^\s*v?\d+(?:\.\d+){1,3}\S*\s+\(?\d{4}-\d{2}-\d{2}\)?")
_ENTITY = re.compile(r"(?:^|_)([a-zA-Z]+)-([a-zA-Z0-9]+)")


def _shapes(text: str) -> list[tuple[str, str]]:
    """``(shape, matched text)`` of identifier-shaped strings in ``text``."""
    out = []
    masked = _URL.sub(lambda m: " " * len(m.group()), text)
    for m in DATE_IN_TEXT.finditer(masked):
        if parse_date(m.group()) or not m.group().isdigit():
            out.append(("date", m.group()))
    for m in EMAIL_RE.finditer(masked):
        out.append(("e-mail address", m.group()))
    for m in PHONE_RE.finditer(masked):
        digits = re.sub(r"\D", "", m.group())
        if len(digits) >= 9 and not DATE_IN_TEXT.fullmatch(m.group()) and re.search(r"[ ()+-]", m.group()):
            out.append(("phone number", m.group()))
    for m in _LONG_DIGITS.finditer(masked):
        if not any(m.group() in o[1] for o in out):
            out.append(("long digit run", m.group()))
    return out


def _json_strings(obj, path: str):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, str) and _NOT_FREE.search(k):
                continue
            yield from _json_strings(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _json_strings(v, f"{path}[{i}]")
    elif isinstance(obj, str):
        yield path, obj


def _items(path: Path, rel: str):
    """``(location, text)`` pairs of kept free text in one output file."""
    name = path.name
    for m in _ENTITY.finditer(name.split(".")[0]):
        if m.group(1) not in ("sub", "ses"):
            yield f"file name, entity {m.group(1)}-", m.group(2)
    if name in ("README", "CHANGES") or name.startswith(("README.", "CHANGES.")):
        text = path.read_bytes().decode("utf-8", "replace")
        for i, line in enumerate(text.splitlines(), 1):
            if name.startswith("CHANGES"):  # "1.0.0 2024-01-01": a release date, as BIDS asks for
                line = _RELEASE.sub(" ", line)
            yield f"line {i}", line
    elif name.endswith(".json") and name != "dataset_description.json":
        try:
            obj = json.loads(path.read_bytes().decode("utf-8-sig"))
        except (ValueError, UnicodeDecodeError):
            return
        for p, s in _json_strings(obj, "$"):
            yield f"JSON {p}", s
    elif name.endswith(".tsv") and "_scans" not in name and "_sessions" not in name:
        lines = path.read_bytes().decode("utf-8", "replace").splitlines()
        if not lines:
            return
        header = lines[0].split("\t")
        for r, line in enumerate(lines[1:], 1):
            for c, cell in enumerate(line.split("\t")):
                col = header[c] if c < len(header) else f"#{c + 1}"
                if col in _TABLE_SKIP or not cell or cell == "n/a" or re.fullmatch(r"[-+.\deE]+", cell):
                    continue
                yield f"TSV row {r}, column {col!r}", cell


def screen_free_text(output_dir: Path, salt: bytes, plan=None) -> list[dict]:
    """Review items: identifier-shaped strings in the kept free text of ``output_dir``."""
    out: dict[str, dict] = {}
    for path in sorted(output_dir.rglob("*")):
        if not path.is_file() or path.is_symlink() or "sourcedata" in path.relative_to(output_dir).parts[:1]:
            continue
        rel = path.relative_to(output_dir).as_posix()
        try:
            items = list(_items(path, rel))
        except OSError:
            continue
        for loc, text in items:
            for shape, found in _shapes(text):
                hid = acc.hit_id(salt, rel, f"review:{shape}", found, "free text")
                item = out.get(hid)
                if item is None:
                    item = out[hid] = {"id": hid, "file": rel, "where": "free text", "class": shape,
                                       "kind": "kept free text", "value": found, "context": text[:120],
                                       "count": 0, "locations": [], "status": "open"}
                item["count"] += 1
                if len(item["locations"]) < 20:
                    item["locations"].append(loc)
    return sorted(out.values(), key=lambda r: (r["file"], r["id"]))
