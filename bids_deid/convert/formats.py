"""Glue between the pipeline and the other formats (Analyze, MINC, PAR/REC, whole-slide, burned-in text).

Three entry points, each a thin layer over the format modules:

* :func:`format_of` names the format of a file from its content (used by
  :func:`bids_deid.dataset.classify` callers and the raw-input staging);
* :func:`convert_task` handles an Analyze/MINC/PAR image found in a BIDS subject
  folder: convert to NIfTI in the work dir, then scrub (and deface) it like any NIfTI,
  with a scrubbed sidecar for PAR/REC;
* :func:`source_task` handles a file under ``sourcedata/`` that is not plain DICOM or
  twix (scrubbed Analyze/MINC/PAR/TIFF slide), or a DICOM that needs the whole-slide
  rules or ``--clean-pixels``. It returns False when the caller's own handling applies.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..dataset import FileTask, classify
from ..formats import CONVERTIBLE as CONVERTIBLE_MODULES
from ..formats import by_name, companion_suffixes, image_format
from ..formats.base import ScrubLog, write_outcome

log = logging.getLogger(__name__)

CONVERTIBLE = {m.NAME for m in CONVERTIBLE_MODULES}


def format_of(path: Path) -> str | None:
    """'analyze', 'minc', 'parrec', 'tiff' (whole-slide) or None, from the file's content (the registry's
    :data:`~bids_deid.formats.IMAGES`)."""
    mod = image_format(Path(path))
    return mod.NAME if mod is not None else None


def is_companion(path: Path) -> bool:
    """True for the data half of a pair (.img of an Analyze .hdr, .REC of a .PAR, SPM .mat)."""
    path = Path(path)
    if path.suffix.lower() not in companion_suffixes():
        return False
    heads = [path.with_suffix(e) for e in (".hdr", ".HDR", ".PAR", ".par")]
    return any(h.is_file() for h in heads)


def nifti_name(rel: str) -> str:
    """``.../name.hdr`` / ``.mnc`` / ``.PAR`` -> ``.../name.nii.gz``."""
    head, _, name = rel.rpartition("/")
    stem = name.rsplit(".", 1)[0]
    return (head + "/" if head else "") + stem + ".nii.gz"


def convert_to_nifti(kind: str, src: Path, dst: Path, profile=None, offset_days: int | None = None,
                     slog: ScrubLog | None = None) -> tuple[Path, Path | None]:
    """Convert one Analyze/MINC/PAR file to a clean ``.nii.gz`` (+ sidecar for PAR/REC): its module's ``to_nifti``."""
    mod = by_name(kind)
    if mod not in CONVERTIBLE_MODULES:
        raise ValueError(f"not a convertible kind: {kind}")
    return mod.to_nifti(src, dst, profile, offset_days, slog)


def convert_task(run, t: FileTask) -> None:
    """Pipeline handler for an Analyze/MINC/PAR image in a BIDS subject folder (``SubjectRun``)."""
    from ..errors import InputError

    s = run.s
    from .micr import is_micr_rel, micr_task

    if is_micr_rel(t.rel_out):
        micr_task(run, t)
        return
    kind = format_of(t.src)
    if kind not in CONVERTIBLE:
        run._record(t.src.relative_to(s.bids_dir).as_posix(), "left out", "not a readable Analyze/MINC/PAR file",
                    original=True)
        return
    rel = nifti_name(t.rel_out)
    deface = classify(rel)[1] and s.deface_method != "none"
    if s.dry_run:
        run.plan_lines.append(f"  convert  {rel}  ({kind} -> NIfTI{', deface' if deface else ''})")
        return
    if run.out(rel).exists():
        run._record(rel, run.records.get(rel, {}).get("status", "written"))
        return
    tmp = s.work_dir / f"sub-{run.new}" / "convert" / rel
    slog = ScrubLog()
    try:
        nii, side = convert_to_nifti(kind, t.src, tmp, s.profile, run.offset, slog)
    except InputError as exc:
        run._record(rel, "error", str(exc))
        return
    run._log(rel, slog)
    run.do_nifti(FileTask(nii, rel, "nifti", deface))
    stem = str(t.src)[: -len(t.src.suffix)]
    if side is not None:
        # The input's own sidecar (if any) wins over the converted values; its task then finds the file written.
        given = Path(stem + ".json")
        data = {**_load_obj(side), **(_load_obj(given) if given.exists() else {})}
        run.do_sidecar(FileTask(given if given.exists() else side, rel[: -len(".nii.gz")] + ".json", "sidecar"),
                       data=data)
    for p in (nii, side):
        if p is not None:
            Path(p).unlink(missing_ok=True)


def header_of(path: Path) -> Path | None:
    """The header a data file belongs to (``.hdr`` of an ``.img``/``.mat``, ``.PAR`` of a ``.REC``), or None."""
    path = Path(path)
    exts = (".PAR", ".par") if path.suffix.lower() == ".rec" else (".hdr", ".HDR")
    return next((path.with_suffix(e) for e in exts if path.with_suffix(e).is_file()), None)


def companion_task(run, t: FileTask) -> None:
    """Pipeline handler for ``.img``/``.mat``/``.REC`` in a subject folder.

    They are read through their header by :func:`convert_task`; one without a readable
    header is listed as left out (never dropped silently).
    """
    head = header_of(t.src)
    if head is not None and format_of(head) in CONVERTIBLE:
        return
    rel = t.src.relative_to(run.s.bids_dir).as_posix()
    why = "data file without its header (.hdr/.PAR)" if head is None else "its header is not a readable Analyze/PAR"
    run._record(rel, "left out", why, original=True)
    if run.s.dry_run:
        run.plan_lines.append(f"  LEAVE OUT {rel} ({why})")


def _load_obj(path: Path) -> dict:
    from ..formats.sidecar import load_json

    obj = load_json(Path(path).read_bytes(), Path(path).name)
    return obj if isinstance(obj, dict) else {}


def source_task(run, t: FileTask, rel_src: str) -> bool:
    """Pipeline hook for ``sourcedata/`` files; True when handled here."""
    kind = format_of(t.src)
    if kind is None and is_companion(t.src):
        return True  # written together with its header
    if kind is not None:
        _source_other(run, t, rel_src, kind)
        return True
    return _source_dicom(run, t, rel_src)


def _token_rel(run, rel_src: str, folder: str, ext: str) -> str:
    token = run.pseudo.text_token("srcfile", f"{run.subject}/{rel_src}")
    return f"sourcedata/{folder}/sub-{run.new}/{token}{ext}"


def _source_other(run, t: FileTask, rel_src: str, kind: str) -> None:
    from ..errors import InputError
    from ..formats.base import Context

    mod = by_name(kind)
    ext = t.src.suffix.lower() if kind == "tiff" else {"analyze": ".hdr", "minc": ".mnc", "parrec": ".PAR"}[kind]
    folder = {"tiff": "microscopy"}.get(kind, kind)
    rel = _token_rel(run, rel_src, folder, ext)
    if run.s.dry_run:
        run.plan_lines.append(f"  {kind:8} {rel}")
        return
    if run.out(rel).exists():
        run._record(rel, "written")
        return
    try:
        res = mod.scrub(t.src, run.s.profile, Context(rel_out=rel, offset_days=run.offset, subject=run.new))
        write_outcome(run.s.output_dir, res, skip_existing=False)
    except InputError as exc:
        run._record(rel, "error", str(exc))
        return
    run._log(rel, res.log)
    run._record(rel, "written")


def _source_dicom(run, t: FileTask, rel_src: str) -> bool:
    import pydicom

    from ..formats.wsi import deidentify_wsi_dicom, is_dicom_wsi
    from ..scrub.dicom import burned_in_reason, is_dicom
    from ..scrub.dicom_lean import source_header

    s = run.s
    if not is_dicom(t.src):
        return False
    # only what is_dicom_wsi and burned_in_reason look at: the engine parses the file itself
    values = source_header(t.src)  # read without pydicom when the file is a usual one
    if values is not None:
        head = pydicom.Dataset()
        for tag, keyword in ((0x00080016, "SOPClassUID"), (0x00080060, "Modality"),
                             (0x00280301, "BurnedInAnnotation")):
            if tag in values:
                vals = values[tag]
                setattr(head, keyword, vals[0] if len(vals) == 1 else (vals or ""))
    else:
        try:
            head = pydicom.dcmread(t.src, stop_before_pixels=True, force=True,
                                   specific_tags=["SOPClassUID", "Modality", "BurnedInAnnotation"])
        except Exception:  # noqa: BLE001 - the engine reports unreadable files
            return False
    wsi = is_dicom_wsi(head)
    clean = getattr(s, "clean_pixels", False) and not wsi and burned_in_reason(head, s.profile)
    if not wsi and not clean:
        return False
    rel = run.source_dicom_rel(rel_src, "microscopy" if wsi else "dicom")
    if s.dry_run:
        run.plan_lines.append(f"  {'wsi' if wsi else 'pixels':8} {rel}")
        return True
    pres = None
    if wsi:
        res = deidentify_wsi_dicom(t.src, run.out(rel), s.profile, run.pseudo, subject=run.new,
                                   offset_days=run.offset)
    else:
        from ..scrub.pixels import deidentify_file_clean_pixels

        res, pres = deidentify_file_clean_pixels(t.src, run.out(rel), s.profile, run.pseudo, subject=run.new,
                                                 offset_days=run.offset)
    for c in res.changes:
        run.audit.append({"file": rel, **c})
    run.identifiers += list(res.identifiers)
    if res.status in ("written", "exists"):
        run._record(rel, "written", res.reason if pres else "")
    else:
        run._record(rel, res.status, res.reason, original=res.status != "written")
    if pres is not None and pres.before_png:
        _add_pixels_qc(run, rel, pres)
    return True


def _add_pixels_qc(run, rel: str, pres) -> None:
    """Append one before/after entry to the private pixels QC page of this subject."""
    import json

    from ..private import write_private
    from ..scrub.pixels import data_uri, write_pixels_qc

    qc_dir = run.s.private_dir / "qc" / f"sub-{run.new}"
    index = qc_dir / "pixels-qc.json"
    items = json.loads(index.read_text()) if index.exists() else []
    items = [i for i in items if i["file"] != rel]
    items.append({"file": rel, "boxes": pres.boxes, "passes": pres.passes,
                  "before": data_uri(pres.before_png), "after": data_uri(pres.after_png)})
    write_private(index, json.dumps(items))
    write_pixels_qc(qc_dir / "pixels-qc.html", items)
