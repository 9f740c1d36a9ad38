"""Handlers for the other image formats (Analyze, MINC, PAR/REC, whole-slide, burned-in text).

Each handler takes the run's :class:`~bids_deid.handlers.RunContext` and a task and returns an
:class:`~bids_deid.formats.base.Outcome`; the work is the format modules' (:mod:`bids_deid.formats`):

* :func:`format_of` names the format of a file from its content (used by the raw-input staging);
* :func:`convert_task` handles an Analyze/MINC/PAR image found in a BIDS subject
  folder: converted to NIfTI in the private scratch, then handed on as a NIfTI task (scrubbed,
  and defaced where it applies), with a scrubbed sidecar for PAR/REC;
* :func:`source_task` handles a file under ``sourcedata/`` that is not plain DICOM or
  twix (scrubbed Analyze/MINC/PAR/TIFF slide), or a DICOM that needs the whole-slide
  rules or ``--clean-pixels``. It returns None when the caller's own handling applies.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..dataset import FileTask, classify
from ..formats import CONVERTIBLE as CONVERTIBLE_MODULES
from ..formats import by_name, companion_suffixes, image_format
from ..formats.base import Outcome, ScrubLog, audit_lines
from ..formats.sidecar import dump_json, load_json

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


def convert_task(t: FileTask, ctx) -> Outcome:
    """An Analyze/MINC/PAR image (or a slide under ``micr/``) in a BIDS subject folder."""
    from ..errors import InputError
    from .micr import is_micr_rel, micr_task

    s = ctx.s
    if is_micr_rel(t.rel_out):
        return micr_task(t, ctx)
    kind = format_of(t.src)
    if kind not in CONVERTIBLE:
        return Outcome().record(t.src.relative_to(s.bids_dir).as_posix(), "left out",
                                "not a readable Analyze/MINC/PAR file", original=True)
    rel = nifti_name(t.rel_out)
    deface = classify(rel)[1] and s.deface_method != "none"
    if ctx.dry_run:
        return Outcome(plan=[f"  convert  {rel}  ({kind} -> NIfTI{', deface' if deface else ''})"])
    if ctx.out(rel).exists():
        return Outcome().record(rel, ctx.status(rel) or "written")
    tmp = ctx.scratch("convert", *Path(rel).parent.parts) / Path(rel).name
    slog = ScrubLog()
    try:
        nii, side = convert_to_nifti(kind, t.src, tmp, s.profile, ctx.offset, slog)
    except InputError as exc:
        return Outcome().record(rel, "error", str(exc))
    res = Outcome(log=slog, audit_rel=rel, then=[FileTask(nii, rel, "nifti", deface)], cleanup=[nii])
    if side is not None:
        # The input's own sidecar (if any) wins over the converted values; its task then finds the file written.
        given = Path(str(t.src)[: -len(t.src.suffix)] + ".json")
        if given.exists():
            merged = ctx.scratch("convert", "given") / given.name
            merged.write_bytes(dump_json({**_load_obj(side), **_load_obj(given)}))
            res.cleanup.append(merged)
            side_task = merged
        else:
            side_task = side
        res.then.append(FileTask(side_task, rel[: -len(".nii.gz")] + ".json", "sidecar"))
        res.cleanup.append(side)
    return res


def header_of(path: Path) -> Path | None:
    """The header a data file belongs to (``.hdr`` of an ``.img``/``.mat``, ``.PAR`` of a ``.REC``), or None."""
    path = Path(path)
    exts = (".PAR", ".par") if path.suffix.lower() == ".rec" else (".hdr", ".HDR")
    return next((path.with_suffix(e) for e in exts if path.with_suffix(e).is_file()), None)


def companion_task(t: FileTask, ctx) -> Outcome:
    """``.img``/``.mat``/``.REC`` in a subject folder.

    They are read through their header by :func:`convert_task`; one without a readable
    header is listed as left out (never dropped silently).
    """
    head = header_of(t.src)
    if head is not None and format_of(head) in CONVERTIBLE:
        return Outcome()
    rel = t.src.relative_to(ctx.s.bids_dir).as_posix()
    why = "data file without its header (.hdr/.PAR)" if head is None else "its header is not a readable Analyze/PAR"
    res = Outcome().record(rel, "left out", why, original=True)
    if ctx.dry_run:
        res.plan.append(f"  LEAVE OUT {rel} ({why})")
    return res


def _load_obj(path: Path) -> dict:
    obj = load_json(Path(path).read_bytes(), Path(path).name)
    return obj if isinstance(obj, dict) else {}


def source_task(t: FileTask, ctx, rel_src: str) -> Outcome | None:
    """A ``sourcedata/`` file handled here, or None when the caller's own handling applies."""
    kind = format_of(t.src)
    if kind is None and is_companion(t.src):
        return Outcome()  # written together with its header
    if kind is not None:
        return _source_other(t, ctx, rel_src, kind)
    return _source_dicom(t, ctx, rel_src)


def _source_other(t: FileTask, ctx, rel_src: str, kind: str) -> Outcome:
    from ..errors import InputError

    mod = by_name(kind)
    ext = t.src.suffix.lower() if kind == "tiff" else {"analyze": ".hdr", "minc": ".mnc", "parrec": ".PAR"}[kind]
    rel = ctx.source_rel(rel_src, {"tiff": "microscopy"}.get(kind, kind), ext)
    if ctx.dry_run:
        return Outcome(plan=[f"  {kind:8} {rel}"])
    if ctx.out(rel).exists():
        return Outcome().record(rel, "written")
    try:
        res = mod.scrub(t.src, ctx.s.profile, ctx.context(rel))
    except InputError as exc:
        return Outcome().record(rel, "error", str(exc))
    res.audit_rel, res.error_status, res.written = rel, "error", [rel]  # the header stands for its pair
    return res


_SOURCE_KEYWORDS = ((0x00080016, "SOPClassUID"), (0x00080060, "Modality"), (0x00280301, "BurnedInAnnotation"))
_WSI_TAGS = frozenset({0x00080016, 0x00080060})


def _as_dataset(head):
    """A pydicom Dataset of the values read without pydicom (a dict), or ``head`` itself."""
    if not isinstance(head, dict):
        return head
    import pydicom

    ds = pydicom.Dataset()
    for keyword, value in head.items():
        setattr(ds, keyword, value)
    return ds


def _source_dicom(t: FileTask, ctx, rel_src: str) -> Outcome | None:
    """A whole-slide DICOM, or one whose burned-in text ``--clean-pixels`` removes; None for other DICOM.

    The DICOM engine writes the file itself (whole and checked); the outcome carries its audit
    rows, identifiers and fate.
    """
    from ..dicom.header import peek, source_header
    from ..dicom.sniff import is_dicom
    from ..formats.wsi import deidentify_wsi_dicom, is_dicom_wsi

    s = ctx.s
    if not is_dicom(t.src):
        return None
    # only what is_dicom_wsi (and, with --clean-pixels, burned_in_reason) look at: the engine
    # parses the file itself. Without --clean-pixels two early tags tell (read only that far).
    clean_pixels = getattr(s, "clean_pixels", False)
    values = source_header(t.src) if clean_pixels else peek(t.src, _WSI_TAGS)  # None: ask pydicom
    if values is not None:
        head = {keyword: (values[tag][0] if len(values[tag]) == 1 else (values[tag] or ""))
                for tag, keyword in _SOURCE_KEYWORDS if tag in values}
    else:
        import pydicom

        try:
            head = pydicom.dcmread(t.src, stop_before_pixels=True, force=True,
                                   specific_tags=["SOPClassUID", "Modality", "BurnedInAnnotation"])
        except Exception:  # noqa: BLE001 - the engine reports unreadable files
            return None
    wsi = is_dicom_wsi(head)
    if not wsi and not clean_pixels:
        return None
    from ..scrub.dicom import burned_in_reason

    if not wsi and not burned_in_reason(_as_dataset(head), s.profile):
        return None
    rel = ctx.source_dicom_rel(rel_src, "microscopy" if wsi else "dicom")
    if ctx.dry_run:
        return Outcome(plan=[f"  {'wsi' if wsi else 'pixels':8} {rel}"])
    pres = None
    if wsi:
        dres = deidentify_wsi_dicom(t.src, ctx.out(rel), s.profile, ctx.pseudo, subject=ctx.new,
                                    offset_days=ctx.offset)
    else:
        from ..scrub.pixels import deidentify_file_clean_pixels

        dres, pres = deidentify_file_clean_pixels(t.src, ctx.out(rel), s.profile, ctx.pseudo, subject=ctx.new,
                                                  offset_days=ctx.offset)
    res = Outcome(audit=audit_lines(rel, dres.changes_json()))
    res.log.identifiers += list(dres.identifiers)
    if dres.status in ("written", "exists"):
        res.record(rel, "written", dres.reason if pres else "")
    else:
        res.record(rel, dres.status, dres.reason, original=dres.status != "written")
    if pres is not None and pres.before_png:
        add_pixels_qc(s.private_dir / "qc" / f"sub-{ctx.new}", rel, pres)
    return res


def add_pixels_qc(qc_dir: Path, rel: str, pres) -> None:
    """Append one before/after entry to the private pixels QC page of a subject (private side)."""
    import json

    from ..private import write_private
    from ..scrub.pixels import data_uri, write_pixels_qc

    index = qc_dir / "pixels-qc.json"
    items = json.loads(index.read_text()) if index.exists() else []
    items = [i for i in items if i["file"] != rel]
    items.append({"file": rel, "boxes": pres.boxes, "passes": pres.passes,
                  "before": data_uri(pres.before_png), "after": data_uri(pres.after_png)})
    write_private(index, json.dumps(items))
    write_pixels_qc(qc_dir / "pixels-qc.html", items)
