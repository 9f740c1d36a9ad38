"""Compose the scrubbers: participant level (one subject = one unit) and group level."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from . import __version__
from .atomic import atomic_write_bytes, cleanup_temps, publish
from .config import Settings
from .dataset import FileTask, check_bids_input, list_subjects, map_strings, plan_subject, subject_sessions
from .errors import BidsDeidError, InputError, OutputError
from .private import check_key, ensure_dir, read_json, write_json, write_private
from .progress import STAGES, Bar
from .progress import wanted as progress_wanted
from .pseudonym import Pseudonymizer
from .record import check_group, journal_read, journal_write
from .record import ensure as ensure_record
from .scrub.nifti import scrub_nifti_file
from .scrub.sidecar import ScrubLog, dump_json, load_json, scrub_sidecar
from .scrub.tabular import read_tsv, scrub_dated_table, scrub_participants, write_tsv

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ set-up checks
def check_locations(s: Settings) -> None:
    """Refuse outputs inside the input, a private dir inside the output, unwritable places."""
    bids, out, priv = (p.resolve() for p in (s.bids_dir, s.output_dir, s.private_dir))
    if out == bids or bids in out.parents:
        raise OutputError("the output folder must not be inside the input folder")
    if out in bids.parents:
        raise OutputError("the input folder must not be inside the output folder")
    if priv == out or out in priv.parents:
        raise OutputError("the private dir must not be inside the public output folder")
    if priv == bids or bids in priv.parents:
        raise OutputError("the private dir must not be inside the input folder")
    work = s.work_dir.resolve()
    if work == out or out in work.parents:
        raise OutputError("the work dir must not be inside the public output folder (temp files would land there)")
    if work == bids or bids in work.parents:
        raise OutputError("the work dir must not be inside the input folder")
    for where in (out, priv, s.work_dir.resolve()):
        try:
            where.mkdir(parents=True, exist_ok=True)
            probe = where / f".bids-deid-tmp-probe-{os.getpid()}-{os.urandom(4).hex()}"  # parallel jobs
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise OutputError(f"cannot write to {where}: {exc.strerror or exc}") from exc
    ensure_dir(priv)
    if priv in work.parents or work == priv:
        ensure_dir(work)  # the default work dir: 0700 like the rest of the private side


#: subject labels the BIDS specification gives a meaning (they name no one): kept
SPEC_SUBJECTS = ("emptyroom",)


def pseudonym_for(s: Settings, pseudo: Pseudonymizer, subject: str) -> str:
    if subject in SPEC_SUBJECTS:
        return subject  # MEG empty-room recordings: sub-emptyroom by the specification
    return pseudo.subject(subject) if s.profile.subjects == "pseudonymize" else subject


def session_map(s: Settings, pseudo: Pseudonymizer, subject: str) -> dict[str, str]:
    """Original -> new session labels; a label holding a date is pseudonymized whatever the profile says."""
    from .dataset import date_like_label

    sessions = subject_sessions(s.bids_dir, subject)
    if s.profile.sessions == "pseudonymize":
        return {ses: pseudo.session(subject, ses) for ses in sessions}
    if s.labels_pseudonymized:
        return {}
    return {ses: pseudo.session(subject, ses) for ses in sessions if date_like_label(ses)}


_RELABELS: dict[tuple, object] = {}


def dataset_relabel(s: Settings, pseudo: Pseudonymizer):
    """The input's :class:`~bids_deid.dataset.Relabel` (every subject and session label), cached per process."""
    from .dataset import Relabel, stimulus_renames

    key = (str(s.bids_dir), pseudo.fingerprint, s.profile.subjects, s.profile.sessions, s.labels_pseudonymized)
    if key not in _RELABELS:
        subjects = {x: pseudonym_for(s, pseudo, x) for x in list_subjects(s.bids_dir)}
        _RELABELS[key] = Relabel(subjects, {x: session_map(s, pseudo, x) for x in subjects},
                                 stimulus_renames(s.bids_dir, subjects))
    return _RELABELS[key]


def selected_subjects(s: Settings) -> list[str]:
    subjects = list_subjects(s.bids_dir)
    if not subjects:
        return []  # atlas / template datasets: everything is dataset level (the group step)
    if s.participants:
        missing = [p for p in s.participants if p not in subjects]
        if missing:
            raise InputError(f"participant(s) not found in the input: {', '.join(missing)}; "
                             f"the input has: {label_list(subjects)}")
        return [p for p in subjects if p in s.participants]
    return subjects


def label_list(labels: list[str], most: int = 30) -> str:
    """``labels`` for a one-line message, cut after ``most``."""
    more = f" ... ({len(labels)} in all)" if len(labels) > most else ""
    return " ".join(labels[:most]) + more


# ------------------------------------------------------------------ participant level
class SubjectRun:
    """State of one subject's run: pseudonyms, logs, what was written or held back."""

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

    # -- helpers
    def _log(self, rel: str, slog: ScrubLog) -> None:
        for c in slog.changes:
            self.audit.append({"file": rel, **c})
        self.identifiers += slog.identifiers

    def _record(self, rel: str, status: str, reason: str = "", **extra) -> None:
        self.records[rel] = {"status": status, "reason": reason, **extra, "settings": self.s.run_id}

    def out(self, rel: str) -> Path:
        return self.s.output_dir / rel

    def source_dicom_rel(self, rel_src: str, folder: str) -> str:
        """Output path of a de-identified sourcedata DICOM: keyed folder and file names only."""
        parent = self.pseudo.text_token("srcdir", f"{self.subject}/{Path(rel_src).parent.as_posix()}")
        name = self.pseudo.text_token("srcfile", f"{self.subject}/{rel_src}") + ".dcm"
        return f"sourcedata/{folder}/sub-{self.new}/{parent}/{name}"

    def relabel_value(self, value: str) -> str:
        """Every subject/session label in ``value`` (this subject's and other subjects') relabelled."""
        if self._relabel is None:
            self._relabel = dataset_relabel(self.s, self.pseudo)
        return self._relabel(value, self.subject)

    # -- per kind
    def do_sidecar(self, t: FileTask, data: dict | None = None) -> None:
        slog = ScrubLog()
        from .limits import ResourceLimitError

        try:
            obj = load_json(t.src.read_bytes(), t.src.name) if data is None else data
        except ResourceLimitError as exc:  # withheld, the rest goes on
            self._record(t.rel_out, "withheld", str(exc))
            return
        from .schema import tabular_suffixes

        if t.src.name.split(".")[0].rpartition("_")[2] in tabular_suffixes() and isinstance(obj, dict):
            from .scrub.coldict import scrub_column_dictionary, table_columns

            # events.json, channels.json, physio.json ...: keys naming the table's columns keep their descriptions
            obj = scrub_column_dictionary(obj, table_columns(t.src), self.s.profile, self.offset, slog)
        else:
            obj = scrub_sidecar(obj, self.s.profile, self.offset, slog)
        # IntendedFor, Sources, RawSources, AssociatedEmptyRoom, ... name files by their original labels.
        obj = map_strings(obj, self.relabel_value)
        stem = str(t.src)[: -len(".json")]
        if self.s.dataset_type == "derivative" and "SkullStripped" not in obj and (
            Path(stem + ".nii.gz").exists() or Path(stem + ".nii").exists()
        ):
            # Required by BIDS-Derivatives for images; true only where the brain was extracted.
            obj["SkullStripped"] = self.s.deface_method == "skullstrip" and "/anat/" in t.rel_out
        self._write(t.rel_out, dump_json(obj), slog)

    def do_coldict(self, t: FileTask) -> None:
        # Column dictionaries (scans.json, sessions.json): keep entries for kept columns.
        slog = ScrubLog()
        obj = load_json(t.src.read_bytes(), t.src.name)
        from .schema import column_names

        keep = {
            k: v
            for k, v in (obj.items() if isinstance(obj, dict) else [])
            if k in column_names() or (self.s.profile.tabular_rule(k) and self.s.profile.tabular_rule(k).action != "remove")
        }
        for k in set(obj) - set(keep):
            slog.change(k, "remove", "column not kept")
        self._write(t.rel_out, dump_json(keep), slog)

    def do_format(self, t: FileTask) -> None:
        """A file (or folder recording) of any other format: through the format registry."""
        from .formats import handler_for
        from .formats.base import Context

        mod = handler_for(t.src)
        if mod is None:
            what = "".join(Path(t.src.name).suffixes[-2:]) or t.src.name
            self._record(t.rel_out, "withheld", f"no format module reads '{what}' files (unknown may identify)")
            if self.s.dry_run:
                self.plan_lines.append(f"  WITHHOLD {t.rel_out} (unknown file type)")
            return
        ctx = Context(rel_out=t.rel_out, offset_days=self.offset, relabel=self.relabel_value, subject=self.new,
                      keep_photos=self.s.profile.keep_photos)
        res = mod.scrub(t.src, self.s.profile, ctx)
        self._log(t.rel_out, res.log)
        if res.withheld:
            self._record(t.rel_out, "withheld", res.withheld)
            for comp in mod.companions(t.src):
                self._record(self._companion_rel(t, comp), "withheld", "goes with a withheld file")
            if self.s.dry_run:
                self.plan_lines.append(f"  WITHHOLD {t.rel_out} ({res.withheld})")
            return
        if self.s.dry_run:
            self.plan_lines.append(f"  {mod.NAME:8} {t.rel_out}")
            return
        self.write_outcome(res)
        self._record(t.rel_out, "written")

    def _companion_rel(self, t: FileTask, comp: Path) -> str:
        return t.rel_out.rpartition("/")[0] + "/" + self.relabel_value(comp.name)

    def write_outcome(self, res) -> None:
        """Write what a format handler returned (bytes, or a source file copied unchanged)."""
        for rel, data in res.writes.items():
            path = self.out(rel)
            if not path.exists():
                if isinstance(data, Path):
                    with open(data, "rb") as fh:
                        atomic_write_bytes(path, fh.read())
                else:
                    atomic_write_bytes(path, data)
            self._record(rel, "written")

    def do_dated_tsv(self, t: FileTask) -> None:
        slog = ScrubLog()
        header, rows = read_tsv(t.src.read_bytes(), t.src.name)
        header, rows = scrub_dated_table(header, rows, self.s.profile, self.offset, self.relabel_value, slog)
        if t.rel_out.endswith("_scans.tsv") and "filename" in header and not self.s.dry_run:
            # Images run first: a row whose file was withheld or left out must go too.
            col, base = header.index("filename"), t.rel_out.rsplit("/", 1)[0]
            kept = [r for r in rows if self.records.get(f"{base}/{r[col]}", {}).get("status") in ("written", "defaced")
                    or self.out(f"{base}/{r[col]}").exists()]
            if len(kept) != len(rows):
                slog.change("filename", "remove", f"{len(rows) - len(kept)} row(s) of files not in the output")
            rows = kept
        self._write(t.rel_out, write_tsv(header, rows), slog)

    def do_copy(self, t: FileTask) -> None:
        if self.s.dry_run:
            self.plan_lines.append(f"  copy     {t.rel_out}")
            return
        if not self.out(t.rel_out).exists():
            if t.src.name.endswith(".gz"):
                from .scrub.tabular import regzip

                # The gzip header holds the original file name, a timestamp, maybe a comment: never copied.
                regzip(t.src, self.out(t.rel_out))
            elif t.src.name.endswith(".tsv"):  # events/channels tables name files (stim_file, ...): relabelled
                raw = t.src.read_bytes()
                try:
                    raw = self.relabel_value(raw.decode("utf-8")).encode("utf-8")
                except UnicodeDecodeError:
                    pass
                atomic_write_bytes(self.out(t.rel_out), raw)
            else:
                with open(t.src, "rb") as fh:
                    atomic_write_bytes(self.out(t.rel_out), fh.read())
        self._record(t.rel_out, "written")

    def _write(self, rel: str, data: bytes, slog: ScrubLog) -> None:
        self._log(rel, slog)
        if self.s.dry_run:
            removed = [c["field"] for c in slog.changes if c["action"] == "remove"]
            self.plan_lines.append(f"  scrub    {rel}" + (f"  (removes: {', '.join(removed)})" if removed else ""))
            return
        path = self.out(rel)
        if not path.exists():
            atomic_write_bytes(path, data)
        self._record(rel, "written")

    def do_nifti(self, t: FileTask) -> None:
        slog = ScrubLog()
        dst = self.out(t.rel_out)
        if self.s.dry_run:
            scrub_nifti_file(t.src, None, self.s.profile, slog)
            self._log(t.rel_out, slog)
            what = "deface  " if t.deface else "header  "
            self.plan_lines.append(f"  {what} {t.rel_out}  ({len(slog.changes)} header changes)")
            return
        resumed = journal_read(self.s, self.new, t.rel_out) if t.deface and dst.exists() else None
        if t.deface and dst.exists() and resumed is None:
            dst.unlink()  # a public image without its private record is not known to be defaced: redone
        if dst.exists():
            scrub_nifti_file(t.src, None, self.s.profile, slog)
            self._log(t.rel_out, slog)
            if resumed is not None:  # the defacing result, QC names and audit entry, as first recorded
                self._record(t.rel_out, **resumed["record"])
                self.audit.append(resumed["audit"])
            else:
                self._record(t.rel_out, "written")
            return
        if not t.deface:
            scrub_nifti_file(t.src, dst, self.s.profile, slog)
            self._log(t.rel_out, slog)
            self._record(t.rel_out, "written")
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
        from .limits import ResourceLimitError, check_image_for_deface
        from .scrub.nifti import data_size, voxel_count

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

    def do_source(self, t: FileTask) -> None:
        from .scrub.dicom import deidentify_file, is_dicom

        rel_src = t.src.relative_to(self.s.bids_dir / "sourcedata").as_posix()
        if self.s.sourcedata == "none":
            self._record(f"sourcedata/{rel_src}", "left out", "--sourcedata none", original=True)
            return
        if t.src.suffix.lower() == ".dat":
            return self._twix(t, rel_src)
        from .convert.formats import source_task

        if source_task(self, t, rel_src):  # Analyze/MINC/PAR/slides, whole-slide DICOM, --clean-pixels
            return
        if not is_dicom(t.src):
            if not self._source_by_format(t, rel_src):
                self._record(f"sourcedata/{rel_src}", "left out", "not DICOM: unknown files may identify", original=True)
            return
        face = self.s.deface_method != "none" and _face_in_pixels(t.src)
        if face:
            self._record(f"sourcedata/{rel_src}", "withheld", face, original=True)
            return
        rel = self.source_dicom_rel(rel_src, "dicom")
        if self.s.dry_run:
            self.plan_lines.append(f"  dicom    {rel}")
            return
        # no fsync per file: run() syncs the output once after the subject's files
        # A resumed file is de-identified again into scratch (then dropped): its audit record and the
        # identifiers the leak audit searches are those of an uninterrupted run.
        dst = self.out(rel) if not self.out(rel).exists() else self._scratch(rel)
        res = deidentify_file(t.src, dst, self.s.profile, self.pseudo, subject=self.new, offset_days=self.offset,
                              fsync=False)
        if dst != self.out(rel):
            dst.unlink(missing_ok=True)
        self._dicom_unsynced = True
        for c in res.changes:
            self.audit.append({"file": rel, **c})
        self.identifiers += list(res.identifiers)
        if res.status in ("written", "exists"):
            self._record(rel, "written")
        else:
            self._record(rel, res.status, res.reason)

    def _source_by_format(self, t: FileTask, rel_src: str) -> bool:
        """A one-file recording under sourcedata/ (EDF/BDF, FIF, SNIRF/NWB, PNG): scrubbed by its format
        module and written under a keyed name (source names are not BIDS and may hold anything)."""
        from .formats import edf, fif, handler_for, hdf5, png
        from .formats.base import Context

        mod = handler_for(t.src)
        if mod not in (edf, fif, hdf5, png):
            return False
        ext = "".join(Path(t.src.name).suffixes[-2:]) if t.src.name.lower().endswith(".gz") else t.src.suffix
        rel = f"sourcedata/{mod.NAME}/sub-{self.new}/{self.pseudo.text_token('srcfile', f'{self.subject}/{rel_src}')}"
        rel += ext.lower()
        res = mod.scrub(t.src, self.s.profile, Context(rel_out=rel, offset_days=self.offset,
                                                       relabel=self.relabel_value, subject=self.new))
        self._log(rel, res.log)
        if res.withheld:
            self._record(f"sourcedata/{rel_src}", "withheld", res.withheld, original=True)
        elif self.s.dry_run:
            self.plan_lines.append(f"  {mod.NAME:8} {rel}")
        else:
            self.write_outcome(res)
        return True

    def do_convert(self, t: FileTask) -> None:
        from .convert.formats import convert_task  # Analyze / MINC / PAR -> NIfTI (+ sidecar)

        convert_task(self, t)

    def do_companion(self, t: FileTask) -> None:
        from .convert.formats import companion_task  # .img/.mat/.REC: with their header, else left out

        companion_task(self, t)

    def _twix(self, t: FileTask, rel_src: str) -> None:
        from .convert.twix import is_twix, scrub_twix

        if not is_twix(t.src):
            self._record(f"sourcedata/{rel_src}", "left out", "a .dat file that is not Siemens twix", original=True)
            return
        rel = f"sourcedata/twix/sub-{self.new}/{self.pseudo.text_token('twix', f'{self.subject}/{rel_src}')}.dat"
        if self.s.dry_run:
            self.plan_lines.append(f"  twix     {rel}")
            return
        dst = self.out(rel) if not self.out(rel).exists() else self._scratch(rel)  # resumed: as in do_source
        try:
            changes, idents = scrub_twix(t.src, dst, f"sub-{self.new}")
        except InputError as exc:
            self._record(rel, "error", str(exc))
            return
        finally:
            if dst != self.out(rel):
                dst.unlink(missing_ok=True)
        self.identifiers += idents
        self.audit += [{"file": rel, **c} for c in changes]
        self._record(rel, "written")

    def _scratch(self, rel: str) -> Path:
        """A private scratch path (0700 folders) for a file whose public copy already exists."""
        return ensure_dir(self.s.work_dir / f"sub-{self.new}" / "recheck") / Path(rel).name

    def run(self) -> dict:
        s = self.s
        tasks = plan_subject(s.bids_dir, self.subject, self.new, self.sessions, s.sessions,
                             deface=s.deface_method != "none", follow_links=s.labels_pseudonymized)
        handlers = {
            "nifti": self.do_nifti, "sidecar": self.do_sidecar, "coldict": self.do_coldict,
            "dated_tsv": self.do_dated_tsv, "copy": self.do_copy, "source": self.do_source,
            "convert": self.do_convert, "companion": self.do_companion, "format": self.do_format,
        }
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
                handlers[t.kind](t)
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
        if getattr(self, "_dicom_unsynced", False):
            from .atomic import sync_tree

            sync_tree(self.s.output_dir)
        return self.finish()

    def finish(self) -> dict:
        s, p = self.s, self.s.private_dir
        # Only this subject's scratch: other jobs may share the work dir.
        shutil.rmtree(s.work_dir / f"sub-{self.new}", ignore_errors=True)
        if s.dry_run:
            return {"subject": self.new, "original": self.subject, "plan": self.plan_lines}
        encode = json.JSONEncoder(sort_keys=True).encode  # one encoder for every record (a study has ~10^5)
        write_private(p / "audit" / f"sub-{self.new}.jsonl", "\n".join(map(encode, self.audit)) +
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


def _face_in_pixels(path: Path) -> str | None:
    """Why a DICOM's pixels may show a face (so it is withheld while defacing is on), or None.

    MR/CT images are withheld unless they are EPI (fMRI, diffusion, EPI fieldmaps: low
    resolution, no usable face surface); their defaced NIfTI is in the dataset instead.
    The few values are read without pydicom when the file allows it (the same reader gave the
    formats dispatch its values, so the file is read once); else pydicom reads them.
    """
    from .scrub.dicom_lean import source_header

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


def _run_subject(s: Settings, subject: str) -> dict:
    return SubjectRun(s, subject).run()


def check_deface_method(s: Settings) -> None:
    """Refuse a defacing method that cannot run here, before anything is written."""
    if s.deface_method != "skullstrip":
        return
    try:
        from .deface.skullstrip import available
    except ImportError:
        reason = "it is not part of this installation"
    else:
        reason = available()
    if reason:
        raise BidsDeidError(f"--deface-method skullstrip cannot run: {reason}")


def run_participant(s: Settings) -> list[dict]:
    """Participant level: each selected subject is processed independently."""
    check_bids_input(s.bids_dir)
    check_deface_method(s)
    subjects = selected_subjects(s)
    if not s.dry_run:
        check_locations(s)
        check_key(s.private_dir, Pseudonymizer(s.key).fingerprint)
        s = ensure_record(s)
        _cleanup_subject_temps(s, subjects)
        if not s.skip_validation:
            validate_input(s)
    results = []
    if s.n_cpus > 1 and len(subjects) > 1:
        from concurrent.futures import as_completed
        from dataclasses import replace

        # One bar of participants in this process; workers draw none (their lines would interleave).
        from .private import die_with_parent

        with ProcessPoolExecutor(max_workers=min(s.n_cpus, len(subjects)), initializer=die_with_parent,
                                 initargs=(os.getpid(),)) as ex, \
                Bar("participants", len(subjects), show=progress_wanted(s.progress) and not s.dry_run,
                    unit="participant") as bar:
            futures = [ex.submit(_run_subject, replace(s, progress=False), subj) for subj in subjects]
            for _done in as_completed(futures):
                bar.step()
            results = [f.result() for f in futures]
    else:
        results = [_run_subject(s, subj) for subj in subjects]
    return results


def _cleanup_subject_temps(s: Settings, subjects: list[str]) -> None:
    """Remove leftover temp files of these subjects only: other jobs may be writing theirs."""
    pseudo = Pseudonymizer(s.key)
    for subj in subjects:
        new = pseudonym_for(s, pseudo, subj)
        shutil.rmtree(s.work_dir / f"sub-{new}", ignore_errors=True)  # scratch of a killed run
        for folder in [s.output_dir / f"sub-{new}", *s.output_dir.glob(f"sourcedata/*/sub-{new}")]:
            if folder.is_dir():
                cleanup_temps(folder)


def validate_input(s: Settings) -> None:
    from .validate import run_validator

    res = run_validator(s.bids_dir, config=s.bids_validator_config)
    write_json(s.private_dir / "validator-input.json", res.report)
    if res.errors:
        raise InputError(
            f"the input is not valid BIDS: {res.errors} error(s) ({', '.join(res.codes[:5])}); "
            f"see {s.private_dir / 'validator-input.json'} or pass --skip-bids-validation"
        )


# ------------------------------------------------------------------ group level
DD_KEEP = ("Name", "BIDSVersion", "License", "Authors", "Acknowledgements", "HowToAcknowledge", "Funding",
           "EthicsApprovals", "ReferencesAndLinks", "DatasetDOI", "Keywords")


def dataset_description(s: Settings, original: dict) -> dict:
    """The output's dataset_description.json: the schema's fields of the input, GeneratedBy appended.

    A derivative input stays a derivative; its GeneratedBy and SourceDatasets are kept.
    """
    from .openneuro import bids_version, publication_fields
    from .schema import dataset_description_fields, metadata_fields

    keep = [*DD_KEEP, *dataset_description_fields(), *(["Genetics"] if "Genetics" in metadata_fields() else [])]
    dd = {k: original[k] for k in dict.fromkeys(keep) if k in original}
    dd.setdefault("Name", "De-identified dataset")
    dd["BIDSVersion"] = bids_version(original.get("BIDSVersion"))
    dd.update(publication_fields(s.license, s.authors, original)[0])  # --license/--authors win
    dd["DatasetType"] = "derivative" if original.get("DatasetType") == "derivative" else s.dataset_type
    gen = {"Name": "bids-deid", "Version": __version__,
           "Description": f"De-identified with profile '{s.profile.name}'"}
    container = _container()
    if container:
        gen["Container"] = container
    before = [g for g in original.get("GeneratedBy") or [] if isinstance(g, dict) and g.get("Name") != "bids-deid"]
    dd["GeneratedBy"] = [*before, gen]
    if dd["DatasetType"] == "derivative" and not dd.get("SourceDatasets"):
        dd["SourceDatasets"] = [{"URL": "n/a (withheld: original data are identifiable)"}]
    return dd


def _nested_dataset(s: Settings, child: Path, rel: str) -> dict[str, dict]:
    """A dataset nested in ``derivatives/``: its subjects and its dataset files, like the top one.

    Its private records go to ``PRIVATE/nested/<token>/``; what the leak audit needs (the
    identifiers met) is copied into the top private dir, and its file records are
    returned under their path in the output.
    """
    from dataclasses import replace

    from .dataset_files import DatasetFiles

    pseudo = Pseudonymizer(s.key)
    token = pseudo.text_token("nested", rel)
    priv = s.private_dir / "nested" / token
    inner = replace(s, bids_dir=child, output_dir=s.output_dir / rel, private_dir=priv, work_dir=s.work_dir / token,
                    participants=None, dataset_type="derivative", progress=False)
    try:
        original = check_bids_input(child)
    except InputError as exc:
        return {rel + "/": {"status": "withheld", "reason": str(exc), "original": True}}
    records: dict[str, dict] = {}
    subjects = list_subjects(child)
    for subj in subjects:
        res = _run_subject(inner, subj)
        st = read_json(priv / "state" / f"sub-{res['subject']}.json", {}) or {}
        records.update({f"{rel}/{k}": v for k, v in (st.get("records") or {}).items()})
    done = {f"sub-{x}": f"sub-{pseudonym_for(s, pseudo, x)}" for x in subjects}
    files = DatasetFiles(inner, dataset_relabel(inner, pseudo), done, lambda dd: dataset_description(inner, dd),
                         nested=lambda c, r: _nested_dataset(inner, c, r))
    records.update({f"{rel}/{k}": v for k, v in files.run(original).items()})
    idents = list(files.slog.identifiers)
    for f in sorted((priv / "identifiers").glob("*.json")):
        idents += [tuple(x) for x in read_json(f, []) or []]
    write_json(s.private_dir / "identifiers" / f"_nested-{token}.json", [list(x) for x in sorted(set(idents))])
    return records


def _container() -> dict | None:
    if os.environ.get("BIDS_DEID_CONTAINER_TAG"):
        kind = "singularity" if os.environ.get("SINGULARITY_NAME") or os.environ.get("APPTAINER_NAME") else "docker"
        return {"Type": kind, "Tag": os.environ["BIDS_DEID_CONTAINER_TAG"]}
    return None


def _raw_dataset_files(s: Settings) -> tuple[dict, list[str]]:
    """dataset_description, participants.tsv and README for a dataset converted from raw data."""
    subjects = sorted(p.name for p in s.output_dir.glob("sub-*") if p.is_dir())
    demo = {x: read_json(s.private_dir / "participants" / f"{x}.json", {}) or {} for x in subjects}
    cols = ["participant_id"] + [c for c in ("age", "sex") if any(c in d for d in demo.values())]
    rows = [[x] + [str(demo[x].get(c, "n/a")) for c in cols[1:]] for x in subjects]
    header, rows, _removed = scrub_participants(cols, rows, s.profile, {x: x for x in subjects}, ScrubLog())
    atomic_write_bytes(s.output_dir / "participants.tsv", write_tsv(header, rows))
    described = {"age": {"Description": "age of the participant at the first scan, in whole years"
                                        f" (ages above {s.profile.age_cap} are given as {s.profile.age_cap})",
                         "Units": "year"},
                 "sex": {"Description": "sex of the participant as recorded by the scanner (PatientSex)",
                         "Levels": {"M": "male", "F": "female", "O": "other"}}}
    if len(header) > 1:
        atomic_write_bytes(s.output_dir / "participants.json", dump_json({c: described[c] for c in header[1:]}))
    else:
        (s.output_dir / "participants.json").unlink(missing_ok=True)
    atomic_write_bytes(s.output_dir / "README", (
        b"This dataset was converted to BIDS from raw scanner data (DICOM/twix) with dcm2niix and bids-deid.\n"
        b"Describe the study here before publishing it.\n"))
    return {"Name": "De-identified dataset converted from raw scanner data"}, subjects


def run_group(s: Settings, raw: bool = False) -> dict:
    """Group level: dataset files, merged mapping, validator, leak audit, report."""
    from .audit import audit_output
    from .report.html import write_run_report
    from .validate import run_validator

    if not raw:
        original_dd = check_bids_input(s.bids_dir)
    if s.dry_run:  # nothing written: say what the leak audit would search, by class (no values)
        from .audit import make_plan

        plan = make_plan(s.private_dir, s.output_dir, s.key)
        return {"audit_plan": {"by_class": plan.by_class(), "not_searched": plan.not_by_reason()}}
    check_locations(s)
    pseudo = Pseudonymizer(s.key)
    check_key(s.private_dir, pseudo.fingerprint)
    s = check_group(s)  # every subject complete, under the recorded settings and key
    cleanup_temps(s.output_dir)  # group level runs after every participant job: all leftovers go
    slog = ScrubLog()
    records: dict[str, dict] = {}
    if raw:
        original_dd, done = _raw_dataset_files(s)
        subjects = done
        atomic_write_bytes(s.output_dir / "dataset_description.json", dump_json(dataset_description(s, original_dd)))
    else:
        subjects = list_subjects(s.bids_dir)
        relabel = {f"sub-{subj}": f"sub-{pseudonym_for(s, pseudo, subj)}" for subj in subjects}
        done = {r for r in relabel if (s.output_dir / relabel[r]).is_dir()}
        relabel_done = {k: v for k, v in relabel.items() if k in done}
        from .dataset_files import DatasetFiles

        files = DatasetFiles(s, dataset_relabel(s, pseudo), relabel_done, lambda dd: dataset_description(s, dd),
                             nested=lambda child, rel: _nested_dataset(s, child, rel))
        records.update(files.run(original_dd))
        slog = files.slog
    records.update(_publication_notes(s))
    idents = sorted({(k, v) for k, v in slog.identifiers})
    write_json(s.private_dir / "identifiers" / "_dataset.json", [list(x) for x in idents])
    from .convert.micr import write_samples_tsv  # required by BIDS as soon as there are micr images

    if write_samples_tsv(s.output_dir) is not None:
        records["samples.tsv"] = records["samples.json"] = {"status": "written", "reason": ""}
    write_json(s.private_dir / "state" / "_dataset.json", {"records": records})
    _merge_mapping(s)
    validation = None
    res = run_validator(s.output_dir, config=s.bids_validator_config)
    write_json(s.private_dir / "validator-output.json", res.report)
    validation = {"errors": res.errors, "warnings": res.warnings, "codes": res.codes}
    write_json(s.private_dir / "audit-settings.json", {"free_text": s.profile.audit_free_text})
    audit = audit_output(s.output_dir, s.private_dir, key=s.key, n_cpus=s.n_cpus, free_text=s.profile.audit_free_text)
    from .report.html import collect_records

    # For OpenNeuro's "affirm defaced" step: every public image whose face was removed.
    defaced = sorted(k for k, v in collect_records(s.private_dir).items() if v.get("status") == "defaced")
    from .openneuro import dwi_volume_problems, publication_fields

    summary = {"validation": validation, "audit": {**audit.summary(), "open": audit.public_lines()},
               "subjects_done": len(done),
               "subjects_in_input": len(subjects), "defaced_images": defaced,
               "openneuro": publication_fields(s.license, s.authors, original_dd)[1] + dwi_volume_problems(s.output_dir)}
    report = write_run_report(s, summary)
    summary["report"] = str(report)
    return summary


def _publication_notes(s: Settings) -> dict[str, dict]:
    """README gets a de-identification statement (which images were defaced, by public name), CHANGES an entry."""
    import datetime as dt

    from .openneuro import changes_entry, statement
    from .report.html import collect_records

    records = collect_records(s.private_dir)
    defaced = sorted(k for k, v in records.items() if v.get("status") == "defaced")
    withheld = sum(1 for v in records.values() if v.get("status") == "withheld")
    readme = next((s.output_dir / n for n in ("README", "README.md", "README.txt", "README.rst")
                   if (s.output_dir / n).is_file()), s.output_dir / "README")
    old = readme.read_text(encoding="utf-8", errors="replace") if readme.is_file() else ""
    note = statement(__version__, s.profile.name, s.deface_method, defaced, withheld)
    atomic_write_bytes(readme, ((old.rstrip() + "\n\n" if old.strip() else "") + note).encode())
    changes = s.output_dir / "CHANGES"
    old = changes.read_text(encoding="utf-8", errors="replace") if changes.is_file() else ""
    old = re.sub(r"\A\s*\S+ \S+\n  - De-identified with bids-deid[^\n]*\n", "", old)  # ours, from a rerun
    top = re.match(r"\s*(\d+)\.(\d+)\.(\d+)", old)
    version = f"{top[1]}.{top[2]}.{int(top[3]) + 1}" if top else "1.0.0"
    entry = changes_entry(version, dt.date.today().isoformat(), len(defaced))
    atomic_write_bytes(changes, (entry + ("\n" + old.lstrip("\n") if old.strip() else "")).encode())
    return {readme.name: {"status": "written", "reason": ""}, "CHANGES": {"status": "written", "reason": ""}}


def _merge_mapping(s: Settings) -> None:
    rows = ["original\tpseudonym\tdate_offset_days\tsessions\n"]
    for frag in sorted((s.private_dir / "mapping").glob("sub-*.tsv")):
        rows.append(frag.read_text(encoding="utf-8"))
    write_private(s.private_dir / "mapping.tsv", "".join(rows))


_DATATYPES = {"anat", "func", "dwi", "fmap", "perf", "eeg", "meg", "ieeg", "pet", "beh", "micr", "nirs", "motion"}


def input_kind(s: Settings) -> str:
    """'bids' or 'raw', from --input-type or by looking at the input."""
    if s.input_type in ("bids", "raw"):
        return s.input_type
    if not s.bids_dir.is_dir():
        raise InputError(f"input folder {s.bids_dir} does not exist")
    if (s.bids_dir / "dataset_description.json").is_file():
        return "bids"
    bids_like = sorted(p.parent.relative_to(s.bids_dir).as_posix() for p in s.bids_dir.glob("sub-*/*")
                       if p.is_dir() and (p.name in _DATATYPES or p.name.startswith("ses-")))
    if bids_like:  # a BIDS tree that lost its dataset_description.json is not raw scanner data
        raise InputError(f"{s.bids_dir} looks like a BIDS dataset ({bids_like[0]}/ has BIDS folders) but has no "
                         "dataset_description.json; add one, or pass --input-type raw if it is raw DICOM/twix")
    from .convert.raw import is_raw_input

    if is_raw_input(s.bids_dir):
        return "raw"
    raise InputError(f"{s.bids_dir} is neither a BIDS dataset (no dataset_description.json) nor raw DICOM/twix")


def run_raw_participant(s: Settings) -> list[dict]:
    """Raw DICOM/twix: convert into a private staging BIDS tree, then scrub it like any input."""
    from dataclasses import replace

    from .convert.raw import stage_raw
    from .convert.sidecar_keep import keep_rules

    pseudo = Pseudonymizer(s.key)
    check_deface_method(s)
    if not s.dry_run:
        check_locations(s)
        check_key(s.private_dir, pseudo.fingerprint)
        s = ensure_record(s)
        # temp files of earlier runs are removed at group level (other jobs may be writing now)
    s.work_dir.mkdir(parents=True, exist_ok=True)
    from .private import claim_job_dir

    job, lock = claim_job_dir(s.work_dir, "raw-")  # one per job: jobs may share -w; dead jobs' removed
    try:
        # While defacing, series that became BIDS images keep their (facial) DICOM out of sourcedata.
        sourcedata = s.sourcedata if s.deface_method == "none" else "non-bids-only"
        with Bar("raw input", None, show=progress_wanted(s.progress)) as bar:
            bar.stage("reading headers, converting series (dcm2niix)")
            res = stage_raw(s.bids_dir, job / "staging", pseudo, participants=set(s.participants or ()) or None,
                            heuristic=s.heuristic, n_cpus=s.n_cpus, dry_run=s.dry_run, sourcedata=sourcedata,
                            skip_policy=s.skip_series_policy)
        if s.participants:  # a label matches a patient's pseudonym or PatientID
            found = set(res.subjects.values()) | set(res.subjects)
            missing = [p for p in s.participants if p not in found]
            if missing:
                raise InputError(f"participant(s) not found in the raw input: {', '.join(missing)}; "
                                 f"its participants are: {label_list(res.available)}")
        if s.dry_run:
            return [{"subject": "(raw input)", "original": "(raw input)",
                     "plan": [f"  {r.get('action', '?'):10} {r.get('bids_name') or r.get('series_token')}"
                              f"  [{r.get('modality', '')}, {r.get('n_files', '?')} files] {r.get('reason', '')}"
                              for r in res.series] + [f"  PROBLEM  {p}" for p in res.problems]}]
        for original, label in res.subjects.items():
            write_private(s.private_dir / "mapping" / f"sub-{label}.tsv",
                          f"{original}\tsub-{label}\t{pseudo.date_offset_days(label)}\t\n")
        for label, demo in res.demographics.items():  # participants.tsv is written at group level
            write_json(s.private_dir / "participants" / f"sub-{label}.json", demo)
        for label, idents in res.identifiers.items():
            write_json(s.private_dir / "identifiers" / f"sub-{label}.raw.json", sorted({tuple(x) for x in idents}))
        batch = pseudo.text_token("rawbatch", ",".join(sorted(res.subjects.values())))
        records = {f"raw series {r.get('series_token')}": _series_record(r, s.sourcedata) for r in res.series}
        counts = {k: sum(1 for v in records.values() if v["status"] == k) for k in ("converted", "sourcedata",
                                                                                     "left out")}
        write_json(s.private_dir / "state" / f"_raw-{batch}.json", {"records": records, "problems": res.problems,
                                                                    "series_counts": counts})
        staging = job / "staging"
        if not list(staging.glob("sub-*")) and not list(staging.glob("sourcedata/*/sub-*")):
            raise InputError("no participant could be converted from the raw input; see the problems in the report")
        inner = replace(s, bids_dir=staging, work_dir=job / "work", participants=None, sessions=s.sessions,
                        profile=replace(s.profile, subjects="keep", sessions="keep",
                                        sidecar_rules=keep_rules() + tuple(s.profile.sidecar_rules)),
                        labels_pseudonymized=True,
                        skip_validation=True)
        subjects = set(list_subjects(staging))  # and those with only sourcedata (CT, twix, ...)
        subjects |= {p.name[4:] for p in staging.glob("sourcedata/*/sub-*") if p.is_dir()}
        _cleanup_subject_temps(inner, sorted(subjects))  # half-files of a killed run of these subjects
        results = [_run_subject(inner, subj) for subj in sorted(subjects)]
        _forget_kept_names(s.private_dir, sorted(subjects))
        return results
    finally:
        if not s.dry_run:
            shutil.rmtree(job, ignore_errors=True)
        os.close(lock)


def _series_record(r: dict, sourcedata: str) -> dict:
    """Private record of one raw series: converted, kept in sourcedata, or left out (with why)."""
    action = r.get("action")
    status = {"bids": "converted", "sourcedata": "sourcedata"}.get(str(action), "left out")
    reason = str(r.get("reason", ""))
    if status == "sourcedata" and sourcedata == "none":
        status, reason = "left out", f"{reason} (not written: --sourcedata none)"
    rec = {"status": status, "reason": reason, "bids_name": r.get("bids_name")}
    for k in ("series_number", "description", "images", "partial"):
        if r.get(k) not in (None, ""):
            rec[k] = r[k]
    return rec


def _forget_kept_names(private_dir: Path, subjects: list[str]) -> None:
    """Series/protocol names the raw conversion kept (already clean of every identifier) are no audit needles."""
    from .convert.sidecar_keep import FREE_TEXT, clean_text

    for subj in subjects:
        path = private_dir / "identifiers" / f"sub-{subj}.json"
        idents = read_json(path, None)
        if not idents:
            continue
        values = [v for k, v in idents if k.split(":")[-1] not in FREE_TEXT and ":" not in k
                  and not k.endswith("Time") and k not in ("uid", "date")]
        kept = [[k, v] for k, v in idents
                if not (k.split(":")[-1] in FREE_TEXT and clean_text(v, values) == v.strip())]
        if len(kept) != len(idents):
            write_json(path, kept)


def run(s: Settings) -> dict:
    """Run the level asked for; raise BidsDeidError on any expected failure."""
    kind = input_kind(s)
    if s.analysis_level == "participant":
        return {"participants": run_raw_participant(s) if kind == "raw" else run_participant(s)}
    if s.analysis_level == "group":
        return run_group(s, raw=kind == "raw")
    raise BidsDeidError(f"unknown analysis level {s.analysis_level}")
