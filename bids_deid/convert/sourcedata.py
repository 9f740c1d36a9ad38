"""What stays raw: DICOM series linked under ``sourcedata/dicom``, twix under ``sourcedata/twix``,
whole-slide images placed in ``micr``, and Analyze/MINC/PAR/TIFF files found next to the DICOM.

Only links (to the input) and private sidecars are made here; the pipeline scrubs the
linked files when it writes the output.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

from ..errors import InputError
from ..formats.twix import read_twix_identifiers, twix_layout
from ..pseudonym import Pseudonymizer
from .classify import Guess, bids_name
from .detect import other_format
from .place import symlink, write_sidecar
from .series import Series


def other_files(records: list[dict]) -> set[str]:
    """Paths of the 'other' records that are Analyze/MINC/PAR/slide files or their data halves."""
    out: set[str] = set()
    for r in records:
        path = Path(r["path"])
        if r["kind"] == "other" and other_format(path):
            out.add(str(path))
            out.update(str(path.with_suffix(e)) for e in _COMPANIONS)
    return out


_COMPANIONS = (".img", ".IMG", ".mat", ".REC", ".rec")


def stage_other_formats(records: list[dict], raw_dir: Path, staging: Path, pseudo: Pseudonymizer,
                        subjects: dict[str, str], by_folder: dict[str, set[str]], wanted,
                        sourcedata: str = "dicom") -> list[dict]:
    """Place Analyze/MINC/PAR files in the staging BIDS tree where they can be classified; link the rest.

    Classified images (see :mod:`.rawformats`) are linked under ``sub-X/<datatype>/`` with a
    BIDS name (and a staged sidecar when BIDS needs one); they also go to sourcedata only
    with ``sourcedata="dicom"``. Everything else is linked under ``sourcedata/<format>/sub-X``.
    The subject is the one patient whose DICOM share the folder, else a keyed pseudonym of
    the file's top-level folder under the raw input. The pipeline scrubs them there.
    """
    from .micr import micr_sidecar, micr_stem, slide_pixel_size_um
    from .rawformats import guess_other

    staged = []
    for r in records:
        path = Path(r["path"])
        kind = other_format(path) if r["kind"] == "other" else None
        if kind is None:
            continue
        pids = {p for fo, ps in by_folder.items() if is_within(r["folder"], fo, str(raw_dir)) for p in ps}
        if len(pids) == 1:
            pid = next(iter(pids))
        else:
            top = path.relative_to(raw_dir).parts[0] if len(path.relative_to(raw_dir).parts) > 1 else path.stem
            pid = f"folder:{top}"
        label = subjects.get(pid) or pseudo.subject(pid)
        if wanted is not None and label not in wanted and pid not in wanted:
            continue
        subjects.setdefault(pid, label)
        token = pseudo.text_token("otherfmt", str(path.resolve()))
        parts = [path, *(path.with_suffix(e) for e in _COMPANIONS if kind in ("analyze", "parrec"))]
        parts = [p for p in parts if p.is_file()]
        guess, extra = guess_other(path, kind) if kind in ("analyze", "minc", "parrec") else (None, {})
        entry = {"subject": label, "session": None, "series_token": token, "modality": kind, "n_files": 1,
                 "action": "sourcedata", "bids_name": "", "reason": f"{kind} file: scrubbed into sourcedata"}
        size = slide_pixel_size_um(path) if kind == "tiff" else None
        if size is not None:  # a slide with a known pixel size: BIDS microscopy
            rel = f"sub-{label}/micr/{micr_stem(label, None, token)}"
            symlink(path, staging / f"{rel}{path.suffix}")
            write_sidecar(staging / f"{rel}.json", micr_sidecar(size))
            entry.update(action="bids", bids_name=f"{rel}.ome.tif", reason="whole-slide image: BIDS micr (OME-TIFF)")
        elif guess is not None:
            rel = _free_bids_rel(staging, label, guess)
            for p in parts:
                symlink(p, staging / f"{rel}{p.suffix}")
            if extra:
                write_sidecar(staging / f"{rel}.json", extra)
            entry.update(action="bids", bids_name=f"{rel}.nii.gz", reason=f"{kind} file: {guess.reason}")
        if entry["action"] != "bids" or (sourcedata == "dicom" and kind != "tiff"):  # a slide: its OME-TIFF only
            folder = staging / "sourcedata" / ("microscopy" if kind == "tiff" else kind) / f"sub-{label}"
            for p in parts:
                symlink(p, folder / f"{token}{p.suffix}")
        staged.append(entry)
    return staged


def _free_bids_rel(staging: Path, label: str, guess: Guess) -> str:
    """``sub-X/<datatype>/<name>`` (no extension) not yet used in the staging tree (run-2, run-3 ... if needed)."""
    for run in (None, *range(2, 1000)):
        rel = f"sub-{label}/{guess.datatype}/{bids_name(label, None, guess, run=run)}"
        if not list((staging / rel).parent.glob(Path(rel).name + ".*")):
            return rel
    raise InputError("too many images with the same BIDS name")


def is_within(path: str, folder: str, root: str) -> bool:
    """True when ``folder`` is ``path``'s folder or an ancestor below ``root``."""
    p, f = Path(path), Path(folder)
    return p == f or f in p.parents and Path(root) != f


def twix_patient_id(path: Path) -> str | None:
    """The PatientID stored in a twix header (None when empty or already anonymized)."""
    _v, _names, buffers = twix_layout(path)
    rx = re.compile(rb'<ParamString\."PatientID">\s*\{\s*(?:<[A-Za-z]+>\s*"[^"]*"\s*)*"([^"]*)"')
    with open(path, "rb") as fh:
        for _name, off, length in buffers:
            fh.seek(off)
            m = rx.search(fh.read(length))
            if m:
                v = m.group(1).decode("latin-1").strip()
                if v and v.strip("x"):
                    return v
    return None


def sourcedata_folder(staging: Path, s: Series) -> Path:
    folder = staging / "sourcedata" / "dicom" / f"sub-{s.subject}"
    if s.session:
        folder = folder / f"ses-{s.session}"
    return folder / s.token


def stage_sourcedata(series: list[Series], staging: Path, sourcedata: str) -> dict[str, Path]:
    """Link series under sourcedata/dicom; return {series token: folder} of what was linked."""
    linked: dict[str, Path] = {}
    for s in series:
        if s.action != "sourcedata" and sourcedata != "dicom" or s.outputs and "micr" in s.outputs[0]:
            continue  # a whole-slide series placed in micr: its OME-TIFF only
        folder = sourcedata_folder(staging, s)
        folder.mkdir(parents=True, exist_ok=True)
        for i, r in enumerate(s.records, 1):
            link = folder / f"{i:05d}.dcm"
            try:
                os.symlink(os.path.abspath(r["path"]), link)  # a new link appears whole: atomic already
            except FileExistsError:
                symlink(Path(r["path"]), link)
        linked[s.token] = folder
    return linked


def plan_micr(s: Series) -> None:
    """A whole-slide DICOM series goes to BIDS micr (its largest VOLUME instance) when its pixel size is known."""
    from .micr import MAX_DICOM_PIXELS, dicom_wsi_info, micr_stem

    best = None
    for r in s.records:
        it = r["fields"].get("ImageType") or []
        if isinstance(it, list) and len(it) >= 3 and str(it[2]).upper() == "VOLUME":
            info = dicom_wsi_info(Path(r["path"]))
            if info and info[1] <= MAX_DICOM_PIXELS and (best is None or info[1] > best[1][1]):
                best = (r, info)
    if best is None:
        return
    prefix = f"sub-{s.subject}/" + (f"ses-{s.session}/" if s.session else "")
    s.action, s.reason = "bids", "whole-slide VOLUME image: BIDS micr (OME-TIFF)"
    s.outputs = [{"micr": best[0]["path"], "size": best[1][0],
                  "rel": f"{prefix}micr/{micr_stem(s.subject, s.session, s.token)}"}]
    s.names.append(s.outputs[0]["rel"] + ".ome.tif")


def stage_micr(series: list[Series], staging: Path) -> None:
    from .micr import micr_sidecar

    for s in series:
        if s.action == "bids" and s.outputs and "micr" in s.outputs[0]:
            o = s.outputs[0]
            symlink(Path(o["micr"]), staging / f"{o['rel']}.dcm")
            write_sidecar(staging / f"{o['rel']}.json", micr_sidecar(o["size"]))


def stage_twix(twix_by_pid, subjects: dict[str, str], sessions_of, staging: Path, pseudo: Pseudonymizer) -> None:
    for pid, items in twix_by_pid.items():
        label = subjects.get(pid)
        if label is None:
            continue
        sessions = sessions_of.get(label) or []
        for r, ids in items:
            ses = None
            if len(sessions) > 1:
                dates = {re.sub(r"\D", "", v) for k, v in ids if k == "StudyDate"}
                hits = [sl for sl, d in sessions if d and any(d in x for x in dates)]
                ses = hits[0] if len(hits) == 1 else None
            elif sessions:
                ses = sessions[0][0]
            folder = staging / "sourcedata" / "twix" / f"sub-{label}"
            if ses:
                folder = folder / f"ses-{ses}"
            token = pseudo.text_token("twix", str(Path(r["path"]).resolve()))
            symlink(Path(r["path"]), folder / f"{token}.dat")


def twix_patients(twix_recs: list[dict], by_folder: dict[str, set[str]], raw_dir: Path,
                  problems: list[str]) -> dict[str, list[tuple[dict, list[tuple[str, str]]]]]:
    """{patient ID: [(twix record, its identifiers)]}; a twix file without a PatientID takes its folder's patient."""
    twix_by_pid: dict[str, list[tuple[dict, list[tuple[str, str]]]]] = defaultdict(list)
    for r in twix_recs:
        try:
            ids = read_twix_identifiers(Path(r["path"]))
            pid = twix_patient_id(Path(r["path"]))
        except Exception:  # noqa: BLE001 - reported, never raised
            problems.append("a twix file could not be parsed (unknown header version or corrupt)")
            continue
        if not pid:
            folder_pids = {p for fo, ps in by_folder.items() if is_within(r["folder"], fo, str(raw_dir)) for p in ps}
            pid = next(iter(folder_pids)) if len(folder_pids) == 1 else "unknown-twix-patient"
            if pid == "unknown-twix-patient":
                problems.append("a twix file has no usable PatientID; staged under its own subject")
        twix_by_pid[pid].append((r, ids))
    return twix_by_pid


def twix_row(label: str, r: dict, pseudo: Pseudonymizer) -> dict:
    """The private report's entry of one twix file."""
    return {
        "subject": label,
        "session": None,
        "series_token": pseudo.text_token("twix", str(Path(r["path"]).resolve())),
        "modality": "MR",
        "n_files": 1,
        "action": "sourcedata",
        "bids_name": "",
        "reason": "Siemens twix raw data",
    }
