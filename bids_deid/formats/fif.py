"""Neuromag/Elekta/MEGIN FIF: read and written again by MNE-Python with the measurement
info anonymized (subject, experimenter, description, project, measurement and file-id
dates, device and helium info); the data arrays are unchanged.

MNE-Python is an optional dependency (``pip install mne``); without it FIF files are
withheld with that reason. Files MNE cannot read as raw data (evoked, epochs, forward
solutions) are withheld too.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from .base import Context, Outcome, ScrubLog

NAME = "fif"
log_ = logging.getLogger(__name__)


def sniff(path: Path) -> bool:
    return path.name.lower().endswith((".fif", ".fif.gz")) and path.is_file()


def companions(path: Path) -> list[Path]:
    return []


def _met(info, log: ScrubLog) -> None:
    si = info.get("subject_info") or {}
    for k in ("his_id", "last_name", "first_name", "middle_name", "birthday"):
        if si.get(k) is not None:
            log.met(f"fif:subject_info.{k}", str(si[k]))
    for k in ("experimenter", "description", "proj_name"):
        if info.get(k):
            log.met(f"fif:{k}", str(info[k]))
    if info.get("meas_date") is not None:
        log.met("fif:meas_date", info["meas_date"].strftime("%Y-%m-%d"))
        log.met("fif:meas_date", info["meas_date"].strftime("%Y%m%d"))
    dev = info.get("device_info") or {}
    for k in ("serial", "site", "model", "type"):
        if dev.get(k):
            log.met(f"fif:device_info.{k}", str(dev[k]))


def scrub(src: Path, profile, ctx: Context) -> Outcome:
    try:
        import mne
    except ImportError:
        return Outcome.withhold("FIF needs MNE-Python to be rewritten (pip install mne)")
    log = ScrubLog()
    mne.set_log_level("ERROR")
    try:
        raw = mne.io.read_raw_fif(src, preload=True, allow_maxshield=True, verbose="error")
    except Exception as exc:
        return Outcome.withhold(f"FIF that MNE cannot read as raw data ({exc.__class__.__name__})")
    _met(raw.info, log)
    offset = ctx.offset_days
    # daysback moves the dates back; a subject offset of +n days is daysback=-n
    raw.anonymize(daysback=None if offset is None else -offset, keep_his=False, verbose="error")
    with raw.info._unlock():
        raw.info["description"] = None
        raw.info["proj_name"] = None
        raw.info["proj_id"] = None
        raw.info["experimenter"] = None
        if raw.info.get("device_info"):
            raw.info["device_info"] = {k: v for k, v in raw.info["device_info"].items() if k == "type"} or None
        if raw.info.get("subject_info") is not None:
            raw.info["subject_info"] = {k: v for k, v in raw.info["subject_info"].items() if k in ("sex", "hand")}
    for k in ("subject_info", "experimenter", "description", "proj_name", "meas_date", "device_info",
              "helium_info", "file_id", "meas_id"):
        log.change(k, "replace", "FIF measurement info (MNE anonymize)")
    fmt = {"short": "short", "int": "int", "single": "single", "double": "double"}.get(raw.orig_format, "single")
    with tempfile.TemporaryDirectory(prefix="bids-deid-fif-") as tmp:
        dst = Path(tmp) / ("x_raw.fif.gz" if src.name.lower().endswith(".gz") else "x_raw.fif")
        raw.save(dst, fmt=fmt, overwrite=True, split_size="2GB", verbose="error")
        parts = sorted(Path(tmp).glob("x_raw*.fif*"))
        if len(parts) != 1:
            return Outcome.withhold("FIF larger than one split file: not rewritten yet")
        data = parts[0].read_bytes()
    return Outcome(writes={ctx.rel_out: data}, log=log)
