"""The DICOM engine's pydicom file paths, for files the lean byte path declines.

:func:`process_slow` checks the file whole (:mod:`bids_deid.dicom.integrity`), then takes the
raw path (:func:`process_raw`: elements stay unconverted until an action needs their value,
kept ones are written back as their bytes, :mod:`bids_deid.scrub.dicom_raw`) and, for what the
raw path declines, the full pydicom path (:func:`process_full`: read, walk, write whole). Both
decide through the dataset walk of :mod:`bids_deid.scrub.dicom_engine`. The tree driver
(:mod:`bids_deid.scrub.dicom_tree`) calls :func:`process_slow`; :mod:`bids_deid.scrub.pixels`
uses the read and write steps for the burned-in text cleaner.

Which files come here (measured on the 1,192 shared DICOM files): the raw path takes what the
byte path declines but pydicom's raw elements handle: profiles that keep safe private tags
(``retain_safe_private``, e.g. dicom-research), files over ``READ_WHOLE_MAX`` (streamed from a
mapping), text in character sets other than latin-1/UTF-8, actions the byte path cannot encode.
Both paths build on the one reader's element records (:mod:`bids_deid.dicom.reader`); the full
path is the fallback reader for what the raw path declines: big-endian, deflated or private
transfer syntaxes, no preamble, data not in the declared encoding, a changed character set.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO

from ..atomic import atomic_open
from ..dicom import integrity
from ..dicom.sniff import is_dicom
from ..dicom.syntax import refusal as syntax_refusal
from ..dicom.syntax import transfer_syntax
from ..profiles import Profile
from ..pseudonym import Pseudonymizer
from .dicom_core import DicomResult, Fallback, decide_tag, keeps_pixels, not_to_write
from .dicom_engine import (
    MS_SOP_CLASS,
    MS_SOP_INSTANCE,
    deidentify_dataset,
    deidentify_events,
    skip_for,
    string_value,
)
from .dicom_raw import read_raw, write_raw_file
from .dicom_table import compile_plan

log = logging.getLogger(__name__)


def read_dicom(src: Path) -> Dataset:
    try:
        ds = pydicom.dcmread(src)
    except InvalidDicomError:
        ds = pydicom.dcmread(src, force=True)
        if "SOPClassUID" not in ds:
            raise
    ts = transfer_syntax(str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or ""))
    if ts is not None and not ts.implicit and any(type(e) is RawDataElement and e.VR is None
                                                  for e in ds._dict.values()):
        # read as implicit VR (pydicom reads data in the encoding they have, whatever the meta
        # declares): convert every element now so that each has its VR when written
        for _ in ds.iterall():
            pass
    return ds


def prepare_meta(ds: Dataset) -> None:
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        meta = FileMetaDataset() if meta is None else meta
        implicit = getattr(ds, "is_implicit_VR", True)
        little = getattr(ds, "is_little_endian", True)
        meta.TransferSyntaxUID = (
            pydicom.uid.ImplicitVRLittleEndian if implicit else
            (pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian)
        )
        meta.FileMetaInformationVersion = b"\x00\x01"
        ds.file_meta = meta


def write_whole(ds: Dataset, dst: Path, fsync: bool = True, kept: frozenset[int] = frozenset()) -> None:
    """Write ``ds`` to ``dst`` atomically, once its bytes parse completely, keep the elements
    ``kept`` and hold pixel data of the length the header declares (else :class:`OutputDefect`)."""
    ds.preamble = b"\x00" * 128  # a preamble may hold data (dual-format files)
    buf = DicomBytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    found = integrity.inspect(data)
    if found.defect is not None:
        raise OutputDefect(f"the de-identified file would not be whole ({found.defect})")
    lost = sorted(kept - found.tags.keys())
    if lost:
        shown = ", ".join(f"({t >> 16:04X},{t & 0xFFFF:04X})" for t in lost[:5])
        raise OutputDefect(f"the de-identified file would lose {len(lost)} element(s) the profile keeps ({shown})")
    with atomic_open(dst, "wb", fsync=fsync) as fh:
        fh.write(data)


def subject_for(ds: Dataset, pseudo: Pseudonymizer, subject: str | None) -> str:
    if subject is not None:
        return subject
    pid = string_value(ds, 0x00100020).strip() or string_value(ds, 0x00100010).strip()
    return pseudo.subject(pid or "unknown")


def process_slow(src: Path, dst_for, profile: Profile, pseudo: Pseudonymizer, subject: str | None,
                  offset_days: int | None, overwrite: bool, fsync: bool = True,
                  check_dicom: bool = False) -> DicomResult:
    """The raw path, then the full pydicom path (for files the lean path declines)."""
    src = Path(src)
    if check_dicom and not is_dicom(src):
        return DicomResult(src, None, "skipped", "not a DICOM file")
    found = integrity.inspect_path(src)
    refused = refusal(src, found)
    if refused is not None:
        return refused
    try:
        return process_raw(src, dst_for, profile, pseudo, subject, offset_days, overwrite, fsync)
    except Fallback as exc:
        log.debug("full pydicom path for %s: %s", src, exc)
    except Exception:  # noqa: BLE001 - the full path decides (it reports real errors)
        log.debug("raw path failed on %s; trying the full pydicom path", src, exc_info=True)
    return process_full(src, dst_for, profile, pseudo, subject, offset_days, overwrite, fsync, found)


_MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"
_DIRECTORY_RECORDS = 0x00041220
DICOMDIR_REASON = ("DICOMDIR (a media directory) not copied: its records index the input's files and folders, "
                   "which the de-identified tree renames; the output is read as a folder of files")


def refusal(src: Path, found: integrity.Inspection) -> DicomResult | None:
    """The result for a file the engine does not write (input defect, unknown transfer syntax,
    media directory), before any path of the engine reads it; else None."""
    if found.defect is not None:
        return DicomResult(src, None, "withheld", f"input defect: {found.defect}; not written")
    if found.transfer_syntax and transfer_syntax(found.transfer_syntax) is None:
        return DicomResult(src, None, "withheld", syntax_refusal(found.transfer_syntax))
    if found.media_sop_class == _MEDIA_DIRECTORY or _DIRECTORY_RECORDS in found.tags:
        return DicomResult(src, None, "skipped", DICOMDIR_REASON)
    return None


def process_raw(src: Path, dst_for, profile: Profile, pseudo: Pseudonymizer, subject: str | None,
                 offset_days: int | None, overwrite: bool, fsync: bool) -> DicomResult:
    """Same steps as :func:`process_full` on a raw-parsed dataset, written by :func:`write_raw`.

    Kept elements are copied as bytes and Pixel Data is never parsed. Raises :class:`Fallback`
    (or any other exception) before anything is written under ``dst`` when the file needs the
    full path.
    """
    plan = compile_plan(profile)
    skip = plan.decisions.get("raw_skip")
    if skip is None:
        skip = plan.decisions["raw_skip"] = skip_for(plan)
    raw = read_raw(src, skip)
    try:
        if raw.pixel is not None and not keeps_pixels(plan):
            raise Fallback("the plan does not keep Pixel Data as is")
        ds = raw.ds
        subj = subject_for(ds, pseudo, subject)
        dst = Path(dst_for(subj, string_value(ds, 0x0020000E), string_value(ds, 0x00080018)))
        early = _not_to_write(src, dst, ds, profile, subj, overwrite)
        if early is not None:
            return early
        offset = pseudo.date_offset_days(subj) if offset_days is None else offset_days
        changes, identifiers = deidentify_events(ds, profile, pseudo, subj, offset, raw.events)
        write_raw_file(raw, dst, fsync)
        return _written(src, dst, changes, identifiers, subj, ds)
    finally:
        raw.close()


def _not_to_write(src: Path, dst: Path, ds: Dataset, profile: Profile, subj: str,
                  overwrite: bool) -> DicomResult | None:
    """The result for a file that is already written or held back as a burned-in risk; else None."""
    return not_to_write(src, dst, subj, overwrite, lambda tag: string_value(ds, tag), profile)


def process_full(src: Path, dst_for, profile: Profile, pseudo: Pseudonymizer, subject: str | None,
                  offset_days: int | None, overwrite: bool, fsync: bool = True,
                  found: integrity.Inspection | None = None) -> DicomResult:
    if found is None:
        found = integrity.inspect_path(src)
        refused = refusal(src, found)
        if refused is not None:
            return refused
    try:
        ds = read_dicom(src)
    except Exception as exc:  # noqa: BLE001 - one line, file never copied
        return DicomResult(src, None, "error", f"not readable as DICOM ({type(exc).__name__})")
    if len(ds._dict) < len(found.tags):
        return DicomResult(src, None, "withheld", f"pydicom read {len(ds._dict)} of the file's {len(found.tags)} "
                           "top-level elements; not written")
    kept = kept_tags(profile, found.tags)
    subj = subject_for(ds, pseudo, subject)
    orig_series = string_value(ds, 0x0020000E)
    orig_sop = string_value(ds, 0x00080018)
    dst = Path(dst_for(subj, orig_series, orig_sop))
    early = _not_to_write(src, dst, ds, profile, subj, overwrite)
    if early is not None:
        return early
    offset = pseudo.date_offset_days(subj) if offset_days is None else offset_days
    try:
        prepare_meta(ds)
        changes, identifiers = deidentify_dataset(ds, profile, pseudo, subj, offset)
        missing = [name for tag, name in ((MS_SOP_CLASS, "SOP Class UID"), (MS_SOP_INSTANCE, "SOP Instance UID"))
                   if not string_value(ds.file_meta, tag).strip()]
        if missing:
            raise OutputDefect(f"no {' and no '.join(missing)}: the file meta PS3.10 requires cannot be made")
        write_whole(ds, dst, fsync, kept)
    except OutputDefect as exc:
        return DicomResult(src, None, "withheld", f"{exc}; not written", subject=subj)
    except Exception as exc:  # noqa: BLE001
        log.debug("failed on %s", src, exc_info=True)
        return DicomResult(src, None, "error", f"de-identification failed ({type(exc).__name__})", subject=subj)
    return _written(src, dst, changes, identifiers, subj, ds)


def kept_tags(profile: Profile, tags: dict[int, str | None]) -> frozenset[int]:
    """The top-level ``tags`` (tag -> VR as read) that ``profile`` keeps as they are."""
    plan = compile_plan(profile)
    return frozenset(t for t, vr in tags.items() if t >> 16 != 0x0002 and decide_tag(plan, t, vr) is None)


class OutputDefect(Exception):
    """The bytes about to be written are not a whole DICOM file (nothing is written)."""


def _written(src: Path, dst: Path, changes: list[dict], identifiers: list, subj: str, ds: Dataset) -> DicomResult:
    res = DicomResult(
        src, dst, "written", "ok", changes, identifiers, subj,
        string_value(ds, 0x0020000D) or None, string_value(ds, 0x0020000E) or None,
    )
    res.__dict__["_ckey"] = tuple(map(id, changes))  # every entry is interned (_Ctx.note)
    return res

