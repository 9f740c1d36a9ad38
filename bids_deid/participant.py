"""One subject's run at participant level: its tasks handled in order, their outcomes written.

:class:`SubjectRun` plans the subject's tasks (:func:`bids_deid.dataset.plan_subject`), hands each
to its handler (:mod:`bids_deid.handlers`) and carries out the outcome (:meth:`SubjectRun.apply`:
the one place a handler's files are written, through :mod:`bids_deid.atomic`). Its own steps are
the order of the tasks (data files first, so a withheld one takes its sidecars with it), the
defacing of anatomical images (:meth:`SubjectRun.deface_image`) and the private records that
make a killed run resumable (:meth:`SubjectRun.finish` writes the subject's state last).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from .atomic import cleanup_temps, publish
from .config import Settings
from .dataset import FileTask, plan_subject
from .errors import InputError, OutputError
from .formats.base import ScrubLog
from .formats.nifti import scrub_nifti_file
from .labels import dataset_relabel, pseudonym_for, session_map
from .private import ensure_dir, read_json, write_json, write_private
from .progress import STAGES, Bar
from .progress import wanted as progress_wanted
from .pseudonym import Pseudonymizer
from .record import journal_read, journal_write

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ participant level
class SubjectRun:
    """State of one subject's run: labels, date shift, audit entries, identifiers met, the fate of every file."""

    def __init__(self, s: Settings, subject: str):
        self.s = s
        self.subject = subject
        self.pseudo = Pseudonymizer(s.key)
        self.new = pseudonym_for(s, self.pseudo, subject)
        self.sessions = session_map(s, self.pseudo, subject)
        self.offset = self.pseudo.date_offset_days(self.new)
        self.audit: list[dict] = []
        self.identifiers: list[tuple[str, str]] = []
        if not s.labels_pseudonymized and self.new != subject:
            self.identifiers += [("subject label", subject), ("subject label", f"sub-{subject}")]
            self.identifiers += [("session label", f"ses-{ses}") for ses in self.sessions]
        self.state = read_json(s.private_dir / "state" / f"sub-{self.new}.json", {}) or {}
        self.records: dict[str, dict] = self.state.get("records", {})
        self.plan_lines: list[str] = []
        self._relabel = None
        self._ctx = None

    # -- helpers
    def _log(self, rel: str, slog: ScrubLog) -> None:
        for c in slog.changes:
            self.audit.append({"file": rel, **c})
        self.identifiers += slog.identifiers

    def _record(self, rel: str, status: str, reason: str = "", **extra) -> None:
        self.records[rel] = {"status": status, "reason": reason, **extra, "settings": self.s.run_id}

    def out(self, rel: str) -> Path:
        return self.s.output_dir / rel

    def relabel_value(self, value: str) -> str:
        """Every subject/session label in ``value`` (this subject's and other subjects') relabelled."""
        if self._relabel is None:
            self._relabel = dataset_relabel(self.s, self.pseudo)
        return self._relabel(value, self.subject)

    def context(self):
        """What a handler may know of this run (:class:`~bids_deid.handlers.RunContext`)."""
        from .handlers import RunContext

        if self._ctx is None:
            self._ctx = RunContext(self.s, self.pseudo, self.subject, self.new, self.offset, self.relabel_value,
                                   lambda rel: self.records.get(rel, {}).get("status"))
        return self._ctx

    def handle(self, t: FileTask) -> None:
        """Handle one task: its handler's outcome carried out; an image to deface goes to the defacing step."""
        if t.kind == "nifti" and t.deface and not self.s.dry_run:
            self.deface_image(t)
            return
        from .handlers import HANDLERS

        self.apply(HANDLERS[t.kind](t, self.context()))

    def apply(self, res) -> None:
        """Carry out an :class:`~bids_deid.formats.base.Outcome`: the one place a handler's files are written
        (through :mod:`bids_deid.atomic`; a file already there from an interrupted run is kept), its audit
        entries, identifiers and fates recorded, then the tasks it hands on, then its scratch removed."""
        from .formats.base import write_outcome

        try:
            rel = res.audit_rel or next(iter(res.writes), "")
            if res.writes and not self.s.dry_run:
                try:
                    write_outcome(self.s.output_dir, res)
                except InputError as exc:
                    if not res.error_status:
                        raise
                    self.audit += res.audit
                    self.identifiers += res.log.identifiers
                    self._record(rel, res.error_status, str(exc))
                    return
                for w in res.writes if res.written is None else res.written:
                    self._record(w, "written")
            self.audit += res.audit
            if res.log.changes or res.log.identifiers:
                self._log(rel, res.log)
            for r, rec in res.records.items():
                self._record(r, **rec)
            self.plan_lines += res.plan
            for follow in res.then:
                self.handle(follow)
        finally:
            for p in res.cleanup:
                Path(p).unlink(missing_ok=True)

    def deface_image(self, t: FileTask) -> None:
        """An anatomical image: header scrubbed into the private scratch, defaced there, recorded privately
        (journal), then published. A public image without its private record is redone; one with it is
        resumed with the result first recorded."""
        slog = ScrubLog()
        dst = self.out(t.rel_out)
        resumed = journal_read(self.s, self.new, t.rel_out) if dst.exists() else None
        if dst.exists() and resumed is None:
            dst.unlink()  # a public image without its private record is not known to be defaced: redone
        if dst.exists():
            scrub_nifti_file(t.src, None, self.s.profile, slog)
            self._log(t.rel_out, slog)
            # the defacing result, QC names and audit entry, as first recorded
            self._record(t.rel_out, **resumed["record"])
            self.audit.append(resumed["audit"])
            return
        if not self._fits_deface(t):
            return
        tmp = ensure_dir(self.s.work_dir / f"sub-{self.new}" / Path(t.rel_out).parent) / Path(t.rel_out).name
        scrub_nifti_file(t.src, tmp, self.s.profile, slog, perm=0o600)  # not yet defaced: private
        self._log(t.rel_out, slog)
        why = _not_defaceable(tmp)
        if why:
            tmp.unlink(missing_ok=True)
            self._record(t.rel_out, "withheld", why)
            self.audit.append({"file": t.rel_out, "field": "voxels", "action": "withhold", "why": why})
            return
        self._deface(tmp, dst, t.rel_out)
        tmp.unlink(missing_ok=True)

    def _fits_deface(self, t: FileTask) -> bool:
        """Size and packing ratio from the header alone, before anything is unpacked (bids_deid.limits)."""
        from .formats.nifti import data_size, voxel_count
        from .limits import ResourceLimitError, check_image_for_deface

        h = scrub_nifti_file(t.src, None, self.s.profile, ScrubLog())
        try:
            check_image_for_deface(t.src, voxel_count(h), data_size(h, t.src.name))
        except ResourceLimitError as exc:
            self._record(t.rel_out, "withheld", str(exc))
            self.audit.append({"file": t.rel_out, "field": "voxels", "action": "withhold", "why": str(exc)})
            return False
        return True

    def _deface(self, src: Path, dst: Path, rel: str) -> None:
        from .deface import deface_file

        mask = None
        if self.s.write_defacemask or self.s.profile.write_defacemask:
            entities, suffix = dst.name.split(".")[0].rsplit("_", 1)
            mask = dst.with_name(f"{entities}_mod-{suffix}_defacemask.nii.gz")
        # written in the private scratch first; public only after its private record (resumes)
        scratch = ensure_dir(self.s.work_dir / f"sub-{self.new}" / "defaced")
        tmp_dst, tmp_mask = scratch / dst.name, scratch / mask.name if mask is not None else None
        if self.s.deface_method == "skullstrip":
            from .deface.skullstrip import skullstrip_file

            res = skullstrip_file(src, tmp_dst, qc=True)
        else:
            res = deface_file(src, tmp_dst, template=self.s.template, defacemask_path=tmp_mask, qc=True)
        qc_dir = self.s.private_dir / "qc" / f"sub-{self.new}"
        qc_names = {}
        for name, png in (res.qc_images or {}).items():
            fname = f"{Path(rel).name.split('.')[0]}_{name}.png"
            write_private(qc_dir / fname, png)
            qc_names[name] = f"qc/sub-{self.new}/{fname}"
        metrics = {k: v for k, v in res.metrics.items() if isinstance(v, int | float | str | bool)}
        status = "defaced" if res.passed else "withheld"
        record = {"status": status, "reason": res.reason, "metrics": metrics, "qc": qc_names,
                  "faces_before": res.faces_before, "faces_after": res.faces_after}
        entry = {"file": rel, "field": "voxels", "action": "deface" if res.passed else "withhold", "why": res.reason}
        journal_write(self.s, self.new, rel, {"record": record, "audit": entry})
        for tmp, final in ((tmp_mask, mask), (tmp_dst, dst)):  # the image last: it marks the file done
            if res.passed and tmp is not None and tmp.exists():
                publish(tmp, final)
            if tmp is not None:
                tmp.unlink(missing_ok=True)
        self._record(rel, **record)
        self.audit.append(entry)

    def run(self) -> dict:
        s = self.s
        tasks = plan_subject(s.bids_dir, self.subject, self.new, self.sessions, s.sessions,
                             deface=s.deface_method != "none", follow_links=s.labels_pseudonymized,
                             gzip_images=s.gzip_images)
        if not s.dry_run:  # incomplete until finish() (the group level refuses incomplete subjects)
            from .record import subject_started

            subject_started(s, self.new, self.subject, self.records)
        claimed = _claimed_companions(tasks)
        withheld_images: set[str] = set()
        data_dirs: set[str] = set()  # folders where at least one data file was written
        data_fates: list[tuple[str, bool]] = []  # (output path, written) of every data file
        # Data files first, so a withheld one also withholds its sidecars; scans.tsv last (its rows follow).
        ordered = sorted(tasks, key=lambda t: (t.kind not in DATA_KINDS, t.kind == "dated_tsv"))
        bar = Bar(f"sub-{self.new}", len(ordered), show=progress_wanted(s.progress) and not s.dry_run)
        for t in bar.each(ordered, _stage_text):
            if t.kind == "unknown":
                rel = t.src.relative_to(s.bids_dir).as_posix()
                self._record(rel, "left out", t.note or "unknown file type: unknown means identifying", original=True)
                if s.dry_run:
                    self.plan_lines.append(f"  LEAVE OUT {rel} (unknown file type)")
                continue
            if t.src in claimed:
                continue  # written (or withheld) with the file it belongs to
            if t.kind not in DATA_KINDS and t.kind != "source" and _goes_with_withheld(t.rel_out, withheld_images,
                                                                                        data_dirs):
                self._record(t.rel_out, "withheld", "its data file was withheld")
                continue
            if t.kind == "sidecar" and _inherited_by_withheld_only(t.rel_out, data_fates):
                self._record(t.rel_out, "withheld", "every file it applies to was withheld")
                continue
            try:
                self.handle(t)
            except (OutputError, KeyboardInterrupt):
                raise
            except Exception as exc:  # one bad file never stops the run: withheld with a one-line reason
                rel = t.rel_out or t.src.relative_to(s.bids_dir).as_posix()
                log.info("withheld %s", rel, exc_info=s.verbose)
                self._record(rel, "withheld", self.relabel_value(_one_line(exc)))  # reasons name new labels only
            outs = (t.rel_out, t.src.relative_to(s.bids_dir).as_posix(),
                    *(_stem(t.rel_out or "") + e for e in (".nii.gz", ".ome.tif")))  # converted too
            if t.kind in DATA_KINDS:
                fates = {self.records.get(o, {}).get("status") for o in outs}
                held = bool(fates & {"withheld", "left out", "error"} and not fates & {"written", "defaced"})
                if held:
                    withheld_images.add(_stem(t.rel_out))
                else:
                    data_dirs.add(t.rel_out.rpartition("/")[0])
                data_fates.append((t.rel_out, not held))
        bar.close()
        if not s.dry_run and any(t.kind == "source" for t in tasks):  # the DICOM engine wrote without fsync
            from .atomic import sync_tree

            sync_tree(self.s.output_dir)
        return self.finish()

    def finish(self) -> dict:
        s, p = self.s, self.s.private_dir
        # Only this subject's scratch: other jobs may share the work dir.
        shutil.rmtree(s.work_dir / f"sub-{self.new}", ignore_errors=True)
        if s.dry_run:
            return {"subject": self.new, "original": self.subject, "plan": self.plan_lines}
        encode = json.JSONEncoder(sort_keys=True).encode  # one encoder for every record
        # a DICOM file's changes come as one line already encoded (formats.base.audit_lines)
        write_private(p / "audit" / f"sub-{self.new}.jsonl",
                      "\n".join(a if isinstance(a, str) else encode(a) for a in self.audit) +
                      ("\n" if self.audit else ""))
        uniq = sorted({(k, v) for k, v in self.identifiers})
        write_json(p / "identifiers" / f"sub-{self.new}.json", [list(x) for x in uniq])
        if not s.labels_pseudonymized:
            sessions = ";".join(f"{a}>{b}" for a, b in self.sessions.items())
            write_private(p / "mapping" / f"sub-{self.new}.tsv",
                          f"sub-{self.subject}\tsub-{self.new}\t{self.offset}\t{sessions}\n")
        # last: the state says complete only once every private file of the subject is written
        write_json(p / "state" / f"sub-{self.new}.json", {"subject": self.new, "original": self.subject,
                                                           "complete": True, "settings": s.run_id,
                                                           "records": self.records})
        return {"subject": self.new, "original": self.subject, "counts": _count(self.records),
                "not_written": sorted([rel, r["status"], r.get("reason", "")] for rel, r in self.records.items()
                                      if r["status"] not in ("written", "defaced"))}


#: smallest head image the defacer can judge: fewer voxels or slices than this along any
#: axis, or less than this many millimetres of field of view, cannot show where the face is
_MIN_VOXELS, _MIN_FOV_MM = 16, 60.0


def _not_defaceable(path: Path) -> str:
    """Why an anatomical image cannot be defaced (so it is withheld), or ''."""
    import nibabel as nib

    img = nib.load(str(path))
    shape = img.shape[:3] if len(img.shape) >= 3 else (*img.shape, *([1] * (3 - len(img.shape))))
    zooms = img.header.get_zooms()[:3]
    if min(shape) < _MIN_VOXELS:
        return (f"too thin or small to deface ({'x'.join(map(str, img.shape))} voxels): withheld, "
                "its face could not be removed")
    fov = [n * float(z) for n, z in zip(shape, zooms, strict=False)]
    if min(fov) < _MIN_FOV_MM:
        return f"field of view too small to deface ({min(fov):.0f} mm): withheld, its face could not be removed"
    return ""


def _stage_text(t: FileTask) -> str:
    """The progress bar's stage for a task (output names only: they hold no identifier)."""
    stage = STAGES["deface" if t.kind == "nifti" and t.deface else t.kind]
    return stage + (f" {Path(t.rel_out).name}" if t.kind in ("nifti", "convert") and t.rel_out else "")


def _stem(rel: str) -> str:
    return rel.split(".")[0]


#: task kinds that are data files (handled first: their sidecars follow their fate)
DATA_KINDS = ("nifti", "convert", "format")
#: files that belong to a recording's entities rather than to its suffix (withheld with it)
_ASSOCIATED = ("channels", "events", "physio", "physioevents", "stim", "markers")


def _goes_with_withheld(rel: str | None, withheld: set[str], data_dirs: set[str]) -> bool:
    """True for a sidecar, or an associated table of the same recording, of a withheld data file;
    and for a folder's coordinate system when every data file of that folder was withheld."""
    if not rel or not withheld:
        return False
    stem = _stem(rel)
    if stem in withheld:
        return True
    prefix, _, suffix = stem.rpartition("_")
    if suffix in _ASSOCIATED and any(w.rpartition("_")[0] == prefix for w in withheld):
        return True
    folder = rel.rpartition("/")[0]
    return suffix in _PER_FOLDER and folder not in data_dirs and any(
        w.rpartition("/")[0] == folder and w.rpartition("_")[2] not in _PER_FOLDER for w in withheld)


def _inherited_by_withheld_only(rel: str | None, data_fates: list[tuple[str, bool]]) -> bool:
    """True for a sidecar that applies (by BIDS inheritance: same suffix, its entities a subset,
    at or above their folder) to data files of which none was written."""
    if not rel or not data_fates:
        return False
    folder, _, name = rel.rpartition("/")
    parts = name.split(".")[0].split("_")
    suffix, ents = parts[-1], {p for p in parts[:-1] if "-" in p}
    served = []
    for drel, ok in data_fates:
        dfolder, _, dname = drel.rpartition("/")
        dparts = dname.split(".")[0].split("_")
        if dparts[-1] == suffix and ents <= set(dparts[:-1]) and (dfolder == folder or
                                                                   dfolder.startswith(folder + "/")):
            served.append(ok)
    return bool(served) and not any(served)


#: files that describe a whole folder of recordings (kept while any of them is)
_PER_FOLDER = ("coordsystem", "headshape", "photo", "electrodes", "optodes")


def _claimed_companions(tasks: list[FileTask]) -> set[Path]:
    """Files that a format handler takes with another file (the .eeg of a .vhdr, the .fdt of a .set)."""
    from .formats import handler_for

    claimed: set[Path] = set()
    for t in tasks:
        if t.kind != "format":
            continue
        mod = handler_for(t.src)
        if mod is not None:
            try:
                claimed.update(mod.companions(t.src))
            except OSError:
                continue
    return claimed


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"could not be processed ({exc.__class__.__name__}{': ' + text[:200] if text else ''})"


def _count(records: dict) -> dict:
    out: dict[str, int] = {}
    for r in records.values():
        out[r["status"]] = out.get(r["status"], 0) + 1
    return out


def run_subject(s: Settings, subject: str) -> dict:
    return SubjectRun(s, subject).run()


def cleanup_subject_temps(s: Settings, subjects: list[str]) -> None:
    """Remove leftover temp files of these subjects only: other jobs may be writing theirs."""
    pseudo = Pseudonymizer(s.key)
    for subj in subjects:
        new = pseudonym_for(s, pseudo, subj)
        shutil.rmtree(s.work_dir / f"sub-{new}", ignore_errors=True)  # scratch of a killed run
        for folder in [s.output_dir / f"sub-{new}", *s.output_dir.glob(f"sourcedata/*/sub-{new}")]:
            if folder.is_dir():
                cleanup_temps(folder)


