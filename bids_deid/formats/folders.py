"""Formats stored as folders: CTF MEG ``.ds``, OME-Zarr ``.ome.zarr``, MEF3 ``.mefd``.

The folder is one unit: it is carried or withheld as a whole, its file names relabelled.

* OME-Zarr: chunk files are carried byte for byte; the JSON metadata (``.zattrs``,
  ``.zgroup``, ``.zarray``, ``zarr.json``) keeps its structure, with the free-text
  ``name``/``label``/``description`` values removed (axis names are kept).
* CTF ``.ds`` and MEF3 ``.mefd``: their binary headers hold subject fields that bids-deid
  does not rewrite yet, so a folder with any non-empty file is withheld (empty
  placeholder folders are carried).
"""

from __future__ import annotations

import json
from pathlib import Path

from .base import Context, Outcome, ScrubLog
from .sidecar import dump_json

NAME = "folder"
SUFFIXES = (".ds", ".ome.zarr", ".zarr", ".mefd")
_ZARR_META = {".zattrs", ".zgroup", ".zarray", "zarr.json", ".zmetadata"}
_FREE = {"name", "label", "description"}


def folder_suffix(name: str) -> str | None:
    low = name.lower()
    return next((s for s in SUFFIXES if low.endswith(s)), None)


def sniff(path: Path) -> bool:
    return path.is_dir() and folder_suffix(path.name) is not None


def companions(path: Path) -> list[Path]:
    return []


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _clean_zarr_json(obj, log: ScrubLog, under_axes: bool = False):
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in _FREE and isinstance(v, str) and not under_axes:
                log.met(f"zarr:{k}", v)
                log.change(k, "remove", "OME-Zarr free text")
                continue
            out[k] = _clean_zarr_json(v, log, under_axes or k == "axes")
        return out
    if isinstance(obj, list):
        return [_clean_zarr_json(v, log, under_axes) for v in obj]
    return obj


def scrub(src: Path, profile, ctx: Context) -> Outcome:
    log = ScrubLog()
    files = _files(src)
    kind = folder_suffix(src.name)
    out = Outcome(log=log)

    def rel(f: Path) -> str:
        inner = f.relative_to(src).as_posix()
        return ctx.rel_out + "/" + "/".join(ctx.relabel(p) for p in inner.split("/"))

    if kind in (".ds", ".mefd"):
        if any(f.stat().st_size for f in files):
            what = "CTF .ds" if kind == ".ds" else "MEF3 .mefd"
            return Outcome.withhold(f"{what} folder: its binary headers hold subject fields bids-deid cannot "
                                    "rewrite yet")
        out.writes.update({rel(f): b"" for f in files})
        return out
    for f in files:
        if f.name in _ZARR_META and f.stat().st_size:
            try:
                obj = json.loads(f.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                return Outcome.withhold(f"OME-Zarr metadata {f.name} is not JSON")
            out.writes[rel(f)] = dump_json(_clean_zarr_json(obj, log))
        else:
            out.writes[rel(f)] = f
    if not files:
        out.writes[ctx.rel_out + "/.zgroup"] = b'{"zarr_format": 2}\n'
    return out
