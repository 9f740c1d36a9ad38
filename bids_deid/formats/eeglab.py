"""EEGLAB ``.set`` (MATLAB v5 file): the EEG structure's free-text fields are emptied and its
file names point at the new names; the ``.fdt`` data file is carried byte for byte.

Kept: what a reader needs (sizes, rate, channel locations, events, epochs, ICA). Every
other text field of the structure (setname, subject, group, condition, session,
comments, history, notes, etc, saved paths) goes. MATLAB v7.3 files (HDF5) are withheld.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .base import Context, Outcome, ScrubLog

NAME = "eeglab"
#: fields a reader uses; any other field of EEG is dropped or emptied
_KEEP = {"nbchan", "trials", "pnts", "srate", "xmin", "xmax", "times", "data", "icaact", "icawinv", "icasphere",
         "icaweights", "icachansind", "chanlocs", "urchanlocs", "chaninfo", "ref", "event", "urevent",
         "eventdescription", "epoch", "epochdescription", "reject", "stats", "specdata", "specicaact",
         "splinefile", "icasplinefile", "dipfit", "run", "roi"}
_EMPTY = {"setname", "filename", "filepath", "subject", "group", "condition", "session", "comments", "history",
          "saved", "etc", "datfile"}


def sniff(path: Path) -> bool:
    return path.suffix.lower() == ".set" and path.is_file()


def companions(path: Path) -> list[Path]:
    fdt = path.with_suffix(".fdt")
    return [fdt] if fdt.is_file() else []


def _texts(value, log: ScrubLog, where: str) -> None:
    if isinstance(value, str):
        log.met(where, value)
    elif isinstance(value, np.ndarray) and value.dtype.kind in "UO":
        for v in value.ravel():
            _texts(v, log, where)


def scrub(src: Path, profile, ctx: Context) -> Outcome:
    from scipy.io import loadmat, savemat

    log = ScrubLog()
    with open(src, "rb") as fh:
        if fh.read(128)[:19] == b"MATLAB 7.3 MAT-file" or src.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n":
            return Outcome.withhold("EEGLAB .set saved as MATLAB v7.3 (HDF5): not rewritten yet")
    try:
        mat = loadmat(src, squeeze_me=False, struct_as_record=True, appendmat=False)
    except Exception as exc:  # scipy raises many kinds for a damaged file
        return Outcome.withhold(f"EEGLAB .set does not load: {exc.__class__.__name__}")
    head = ctx.rel_out.rpartition("/")[0]
    fdt = src.with_suffix(".fdt")
    fdt_name = ctx.relabel(fdt.name) if fdt.is_file() else ""
    out = Outcome(log=log)
    new_name = ctx.rel_out.rpartition("/")[2]

    def fix(fields: dict) -> dict:
        kept = {}
        for k, v in fields.items():
            if k in _KEEP:
                kept[k] = v
            elif k == "datfile":
                kept[k] = fdt_name
            elif k == "filename":
                kept[k] = new_name
            elif k in _EMPTY or True:
                _texts(v, log, f"eeglab:{k}")
                log.change(k, "remove" if k not in _EMPTY else "empty", "EEGLAB field that may hold free text")
                if k in ("setname", "subject", "group", "condition", "session", "comments", "filepath"):
                    kept[k] = ""
        return kept

    if "EEG" in mat and mat["EEG"].dtype.names:
        rec = mat["EEG"][0, 0]
        fields = {n: rec[n] for n in rec.dtype.names}
        fixed = fix(fields)
        buf = io.BytesIO()
        savemat(buf, {"EEG": fixed}, format="5", long_field_names=True, do_compression=False)
    else:
        fields = {k: v for k, v in mat.items() if not k.startswith("__")}
        fixed = fix(fields)
        buf = io.BytesIO()
        savemat(buf, fixed, format="5", long_field_names=True, do_compression=False)
    out.writes[ctx.rel_out] = buf.getvalue()
    if fdt.is_file():
        out.writes[(head + "/" if head else "") + fdt_name] = fdt
    return out
