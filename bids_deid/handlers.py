"""The per-file handlers of a subject's run: ``handle(task, ctx) -> Outcome``.

A handler reads its input file, asks the file's format module (:mod:`bids_deid.formats`)
what to write and returns an :class:`~bids_deid.formats.base.Outcome`: files to write,
audit records, identifiers met, the fates of files it does not write, the dry-run line.
It writes nothing into the output; the participant stage (:mod:`bids_deid.participant`)
carries out every outcome through :mod:`bids_deid.atomic`.

What a handler may know of the run is in :class:`RunContext` (read-only: the settings,
the subject's labels and date shift, the fates recorded so far).

Two steps keep writers of their own, each an engine with its own ordering rules: the DICOM
engine (:mod:`bids_deid.scrub.dicom`, which writes each file whole and checked) and the
defacing of anatomical images (:meth:`bids_deid.participant.SubjectRun.deface_image`, which
records its result privately before the image is published, for resuming).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .config import Settings
from .dataset import FileTask
from .errors import InputError
from .formats.base import Context, Outcome, ScrubLog, audit_lines
from .formats.sidecar import dump_json, load_json
from .private import ensure_dir
from .pseudonym import Pseudonymizer


@dataclass(frozen=True)
class RunContext:
    """What a handler may know about one subject's run.

    ``subject`` is the original label (used only inside keyed tokens, never written), ``new``
    the output label, ``offset`` the date shift in days, ``relabel`` maps a value holding
    original labels to its new form, ``status`` gives the fate recorded so far of an output
    path (or None).
    """

    s: Settings
    pseudo: Pseudonymizer
    subject: str
    new: str
    offset: int
    relabel: Callable[[str], str]
    status: Callable[[str], str | None]

    @property
    def dry_run(self) -> bool:
        return self.s.dry_run

    def out(self, rel: str) -> Path:
        """Where an output-relative path is in the public output (for existence checks)."""
        return self.s.output_dir / rel

    def scratch(self, *parts: str) -> Path:
        """A folder of this subject's private scratch (0700), created."""
        return ensure_dir(self.s.work_dir.joinpath(f"sub-{self.new}", *parts))

    def context(self, rel_out: str, **extra) -> Context:
        """The format modules' :class:`~bids_deid.formats.base.Context` for a file written to ``rel_out``."""
        return Context(rel_out=rel_out, offset_days=self.offset, relabel=self.relabel, subject=self.new, **extra)

    def source_rel(self, rel_src: str, folder: str, ext: str, kind: str = "srcfile") -> str:
        """Output path of a file from ``sourcedata/``: a keyed name (source names may hold anything)."""
        token = self.pseudo.text_token(kind, f"{self.subject}/{rel_src}")
        return f"sourcedata/{folder}/sub-{self.new}/{token}{ext}"

    def source_dicom_rel(self, rel_src: str, folder: str) -> str:
        """Output path of a de-identified sourcedata DICOM: keyed folder and file names only."""
        parent = self.pseudo.text_token("srcdir", f"{self.subject}/{Path(rel_src).parent.as_posix()}")
        name = self.pseudo.text_token("srcfile", f"{self.subject}/{rel_src}") + ".dcm"
        return f"sourcedata/{folder}/sub-{self.new}/{parent}/{name}"


def scrubbed(ctx: RunContext, rel: str, data: bytes, log: ScrubLog) -> Outcome:
    """A scrubbed text file (sidecar, table) to write, with its dry-run line."""
    res = Outcome(writes={rel: data}, log=log, audit_rel=rel)
    if ctx.dry_run:
        removed = [c["field"] for c in log.changes if c["action"] == "remove"]
        res.plan.append(f"  scrub    {rel}" + (f"  (removes: {', '.join(removed)})" if removed else ""))
    return res


# ------------------------------------------------------------------ subject folders
def handle_nifti(t: FileTask, ctx: RunContext) -> Outcome:
    """A NIfTI image that is not defaced (or any image in a dry run): header scrubbed, voxels streamed
    (:mod:`bids_deid.formats.nifti`). Images to deface are the participant stage's defacing step."""
    from .formats import nifti

    if ctx.dry_run:
        log = ScrubLog()
        nifti.scrub_nifti_file(t.src, None, ctx.s.profile, log)
        what = "deface  " if t.deface else "header  "
        return Outcome(log=log, audit_rel=t.rel_out,
                       plan=[f"  {what} {t.rel_out}  ({len(log.changes)} header changes)"])
    res = nifti.scrub(t.src, ctx.s.profile, ctx.context(t.rel_out))
    res.audit_rel = t.rel_out
    return res


def handle_sidecar(t: FileTask, ctx: RunContext) -> Outcome:
    """A JSON sidecar (or a column dictionary of a table): :mod:`bids_deid.formats.sidecar`."""
    from .formats.sidecar import scrub_object
    from .limits import ResourceLimitError

    log = ScrubLog()
    try:
        obj = load_json(t.src.read_bytes(), t.src.name)
    except ResourceLimitError as exc:  # withheld, the rest goes on
        return Outcome().record(t.rel_out, "withheld", str(exc))
    obj = scrub_object(obj, t.src, ctx.s.profile, ctx.context(t.rel_out), log)
    stem = str(t.src)[: -len(".json")]
    if ctx.s.dataset_type == "derivative" and "SkullStripped" not in obj and (
        Path(stem + ".nii.gz").exists() or Path(stem + ".nii").exists()
    ):
        # Required by BIDS-Derivatives for images; true only where the brain was extracted.
        obj["SkullStripped"] = ctx.s.deface_method == "skullstrip" and "/anat/" in t.rel_out
    return scrubbed(ctx, t.rel_out, dump_json(obj), log)


def handle_coldict(t: FileTask, ctx: RunContext) -> Outcome:
    """``scans.json`` / ``sessions.json``: the entries of kept columns (:mod:`bids_deid.formats.sidecar`)."""
    from .formats.sidecar import scrub_table_dictionary

    log = ScrubLog()
    keep = scrub_table_dictionary(load_json(t.src.read_bytes(), t.src.name), ctx.s.profile, log)
    return scrubbed(ctx, t.rel_out, dump_json(keep), log)


def handle_dated_tsv(t: FileTask, ctx: RunContext) -> Outcome:
    """``*_scans.tsv`` / ``*_sessions.tsv`` (:mod:`bids_deid.formats.tabular`). Images run first: a scans row
    whose file was withheld or left out goes too."""
    from .formats import tabular

    def in_output(rel: str) -> bool:
        return ctx.dry_run or ctx.status(rel) in ("written", "defaced") or ctx.out(rel).exists()

    res = tabular.scrub(t.src, ctx.s.profile, ctx.context(t.rel_out, in_output=in_output))
    return scrubbed(ctx, t.rel_out, res.writes[t.rel_out], res.log)


def handle_copy(t: FileTask, ctx: RunContext) -> Outcome:
    """Tables and gradient files carried: ``.tsv`` relabelled, ``.tsv.gz`` re-compressed with a bare
    gzip header (it may hold the original file name, a timestamp, a comment), others as they are."""
    if ctx.dry_run:
        return Outcome(plan=[f"  copy     {t.rel_out}"])
    if t.src.name.endswith((".tsv", ".gz")):
        from .formats import tabular

        return tabular.scrub(t.src, ctx.s.profile, ctx.context(t.rel_out))
    return Outcome(writes={t.rel_out: t.src})


def handle_format(t: FileTask, ctx: RunContext) -> Outcome:
    """A file (or folder recording) of any other format: through the format registry."""
    from .formats import handler_for

    mod = handler_for(t.src)
    if mod is None:
        what = "".join(Path(t.src.name).suffixes[-2:]) or t.src.name
        res = Outcome().record(t.rel_out, "withheld", f"no format module reads '{what}' files (unknown may identify)")
        if ctx.dry_run:
            res.plan.append(f"  WITHHOLD {t.rel_out} (unknown file type)")
        return res
    res = mod.scrub(t.src, ctx.s.profile, ctx.context(t.rel_out, keep_photos=ctx.s.profile.keep_photos))
    res.audit_rel = t.rel_out
    if res.withheld:
        res.record(t.rel_out, "withheld", res.withheld)
        for comp in mod.companions(t.src):
            res.record(t.rel_out.rpartition("/")[0] + "/" + ctx.relabel(comp.name), "withheld",
                       "goes with a withheld file")
        if ctx.dry_run:
            res.plan.append(f"  WITHHOLD {t.rel_out} ({res.withheld})")
        return res
    if ctx.dry_run:
        res.plan.append(f"  {mod.NAME:8} {t.rel_out}")
    else:
        res.record(t.rel_out, "written")
    return res


def handle_convert(t: FileTask, ctx: RunContext) -> Outcome:
    """Analyze / MINC / PAR -> NIfTI (+ sidecar), or a slide -> OME-TIFF (:mod:`bids_deid.convert.formats`)."""
    from .convert.formats import convert_task

    return convert_task(t, ctx)


def handle_companion(t: FileTask, ctx: RunContext) -> Outcome:
    """``.img``/``.mat``/``.REC``: written with their header, else left out."""
    from .convert.formats import companion_task

    return companion_task(t, ctx)


# ------------------------------------------------------------------ sourcedata
def handle_source(t: FileTask, ctx: RunContext) -> Outcome:
    """A file under ``sourcedata/``: twix, the older image formats and slides, DICOM, one-file recordings."""
    from .convert.formats import source_task
    from .scrub.dicom import is_dicom

    s = ctx.s
    rel_src = t.src.relative_to(s.bids_dir / "sourcedata").as_posix()
    if s.sourcedata == "none":
        return Outcome().record(f"sourcedata/{rel_src}", "left out", "--sourcedata none", original=True)
    if t.src.suffix.lower() == ".dat":
        return _twix(t, ctx, rel_src)
    res = source_task(t, ctx, rel_src)  # Analyze/MINC/PAR/slides, whole-slide DICOM, --clean-pixels
    if res is not None:
        return res
    if not is_dicom(t.src):
        res = _source_by_format(t, ctx, rel_src)
        if res is None:
            res = Outcome().record(f"sourcedata/{rel_src}", "left out", "not DICOM: unknown files may identify",
                                   original=True)
        return res
    return _source_dicom(t, ctx, rel_src)


def _source_dicom(t: FileTask, ctx: RunContext, rel_src: str) -> Outcome:
    from .scrub.dicom import deidentify_file

    face = ctx.s.deface_method != "none" and face_in_pixels(t.src)
    if face:
        return Outcome().record(f"sourcedata/{rel_src}", "withheld", face, original=True)
    rel = ctx.source_dicom_rel(rel_src, "dicom")
    if ctx.dry_run:
        return Outcome(plan=[f"  dicom    {rel}"])
    # The DICOM engine writes the file itself (whole and checked), without an fsync per file: the run
    # syncs the output once after the subject's files. A resumed file is de-identified again into
    # scratch (then dropped): its audit record and the identifiers the leak audit searches are
    # those of an uninterrupted run.
    dst = ctx.out(rel) if not ctx.out(rel).exists() else ctx.scratch("recheck") / Path(rel).name
    dres = deidentify_file(t.src, dst, ctx.s.profile, ctx.pseudo, subject=ctx.new, offset_days=ctx.offset,
                           fsync=False)
    if dst != ctx.out(rel):
        dst.unlink(missing_ok=True)
    res = Outcome(audit=audit_lines(rel, dres.changes_json()))
    res.log.identifiers += list(dres.identifiers)
    if dres.status in ("written", "exists"):
        return res.record(rel, "written")
    return res.record(rel, dres.status, dres.reason)


def face_in_pixels(path: Path) -> str | None:
    """Why a DICOM's pixels may show a face (so it is withheld while defacing is on), or None.

    MR/CT images are withheld unless they are EPI (fMRI, diffusion, EPI fieldmaps: low
    resolution, no usable face surface); their defaced NIfTI is in the dataset instead.
    The few values are read without pydicom when the file allows it (the same reader gave the
    formats dispatch its values, so the file is read once); else pydicom reads them.
    """
    from .dicom.header import source_header

    values = source_header(path)
    if values is not None:
        modalities = {v.strip().upper() for v in values.get(0x00080060, [])}
        scanning = {v.upper() for v in values.get(0x00180020, [])}
        image_type = {v.upper() for v in values.get(0x00080008, [])}
    else:
        import pydicom

        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True,
                                 specific_tags=["Modality", "ScanningSequence", "SequenceName", "ImageType"])
        except Exception:  # unreadable here: the DICOM engine reports it
            return None

        def words(name: str) -> set[str]:
            v = ds.get(name, "")
            vals = list(v) if isinstance(v, list | tuple) or hasattr(v, "__iter__") and not isinstance(v, str) else [v]
            return {str(x).upper() for x in vals}

        modalities, scanning, image_type = words("Modality"), words("ScanningSequence"), words("ImageType")
    # any listed modality counts (a multi-valued Modality is invalid; privacy first)
    modality = next((m for m in ("MR", "CT", "PT", "NM") if m in modalities), None)
    if modality is None:
        return None
    if modality == "MR" and ("EP" in scanning or "EPI" in image_type):
        return None
    return f"{modality} image whose pixels may show the face: withheld while defacing is on"


def _source_by_format(t: FileTask, ctx: RunContext, rel_src: str) -> Outcome | None:
    """A one-file recording under sourcedata/ (EDF/BDF, FIF, SNIRF/NWB, PNG): scrubbed by its format
    module and written under a keyed name (source names are not BIDS and may hold anything)."""
    from .formats import edf, fif, handler_for, hdf5, png

    mod = handler_for(t.src)
    if mod not in (edf, fif, hdf5, png):
        return None
    ext = "".join(Path(t.src.name).suffixes[-2:]) if t.src.name.lower().endswith(".gz") else t.src.suffix
    rel = ctx.source_rel(rel_src, mod.NAME, ext.lower())
    res = mod.scrub(t.src, ctx.s.profile, ctx.context(rel))
    res.audit_rel = rel
    if res.withheld:
        res.writes.clear()
        return res.record(f"sourcedata/{rel_src}", "withheld", res.withheld, original=True)
    if ctx.dry_run:
        res.plan.append(f"  {mod.NAME:8} {rel}")
    return res


def _twix(t: FileTask, ctx: RunContext, rel_src: str) -> Outcome:
    from .formats import twix

    if not twix.is_twix(t.src):
        return Outcome().record(f"sourcedata/{rel_src}", "left out", "a .dat file that is not Siemens twix",
                                original=True)
    rel = ctx.source_rel(rel_src, "twix", ".dat", kind="twix")
    if ctx.dry_run:
        return Outcome(plan=[f"  twix     {rel}"])
    # the audit rows and identifiers come from reading the header: a resumed file is not rewritten
    try:
        res = twix.scrub(t.src, ctx.s.profile, ctx.context(rel))
    except InputError as exc:
        return Outcome().record(rel, "error", str(exc))
    res.audit_rel, res.error_status = rel, "error"
    return res


#: the handler of each task kind (an image to deface is the participant stage's defacing step)
HANDLERS: dict[str, Callable[[FileTask, RunContext], Outcome]] = {
    "nifti": handle_nifti, "sidecar": handle_sidecar, "coldict": handle_coldict, "dated_tsv": handle_dated_tsv, "copy": handle_copy,
    "format": handle_format, "convert": handle_convert, "companion": handle_companion, "source": handle_source,
}
