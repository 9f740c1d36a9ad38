"""Raw scanner data (DICOM folders, Siemens twix) to a *staging* BIDS tree.

Steps: discover files (headers only, in parallel), group them patient -> study ->
series, classify MR series (see :mod:`.classify`), convert with dcm2niix into a work
dir, then place the images under pseudonymous BIDS names. Non-MR and skipped series
are linked (symlinks, never copies of identifying names) under ``sourcedata/``.

Sessions: a patient with one study gets no ``ses-`` level; with several studies they
become ``ses-01``, ``ses-02``, ... in (StudyDate, StudyTime) order.

The staging tree is private: its contents are not scrubbed yet. Only its *names*
are safe (pseudonymous labels and keyed tokens).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom

from ..atomic import atomic_open, atomic_write_text
from ..dicom.sniff import is_dicom
from ..errors import InputError
from ..openneuro import bids_version
from ..pseudonym import Pseudonymizer
from .asl import aslcontext_tsv
from .batch import MAX_DEPTH, conversion_key, convert_links, convert_one, depth_below, index_outputs, start_folder
from .classify import Guess, HeuristicRule, bids_name, classify, load_heuristic, phase_dir_label, sanitize_label
from .fasthdr import fast_header
from .fmap import TARGET_SUFFIXES, fieldmap_sets, link_fieldmaps
from .sidecar_keep import FREE_TEXT, clean_text
from .twix import is_twix, read_twix_identifiers, twix_layout

# Scanner files often break VR length rules; reading them must not warn per file.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

log = logging.getLogger(__name__)

WORK_DIR_NAME = ".bids-deid-work"
UNPACK_DIR_NAME = ".bids-deid-unpacked"  # gzip-compressed DICOM, unpacked (the staging tree links to them)

_ID_TAGS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "InstitutionName",
    "InstitutionAddress",
    "StationName",
    "DeviceSerialNumber",
    "ReferringPhysicianName",
    "OperatorsName",
    "PerformingPhysicianName",
    "StudyDescription",
    "AccessionNumber",
    "OtherPatientIDs",
    "PatientAddress",
    "StudyID",
    "InstitutionalDepartmentName",
)
# Identity text read once per series (their tags lie past the vendors' private groups, so the fast
# header pass over every file stops before them): the kept series names are cleaned of them too.
_LATE_ID_TAGS = ("PerformedLocation", "PerformedProcedureStepDescription", "RequestedProcedureDescription",
                 "PerformedStationName", "PerformedStationAETitle", "ScheduledProcedureStepDescription")
_DATE_TAGS = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")
_CLASS_TAGS = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "StudyTime",
    "SeriesTime",
    "SeriesNumber",
    "InstanceNumber",
    "SeriesDescription",
    "ProtocolName",
    "ImageType",
    "ScanningSequence",
    "SequenceVariant",
    "SequenceName",
    "EchoTime",
    "InversionTime",
    "EchoNumbers",
    "Rows",
    "Columns",
    "BitsAllocated",
    "SamplesPerPixel",
    "NumberOfFrames",
    "AcquisitionTime",
    "PatientSex",
    "PatientAge",
)
HEADER_TAGS = list(dict.fromkeys(_ID_TAGS + _DATE_TAGS + _CLASS_TAGS))
_HEADER_TAGS_T = tuple(HEADER_TAGS)
_FAST_HEADERS = True  # fasthdr for plain Part 10 files (tests switch it off to compare with pydicom)
# SOP classes that are never converted to NIfTI (spectroscopy, raw data, SR, secondary capture, ...)
_NON_IMAGE_SOP_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.4.2",  # MR spectroscopy
    "1.2.840.10008.5.1.4.1.1.66",  # raw data, spatial registration, segmentation ...
    "1.2.840.10008.5.1.4.1.1.88.",  # structured reports
    "1.2.840.10008.5.1.4.1.1.7",  # secondary capture
    "1.2.840.10008.5.1.4.1.1.104.",  # encapsulated documents
    "1.2.840.10008.5.1.4.1.1.11.",  # presentation states
)
_DICOMDIR_SOP = "1.2.840.10008.1.3.10"
_UNCOMPRESSED_TS = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}
_ENHANCED_IMAGE_SOP = ("1.2.840.10008.5.1.4.1.1.4.1", "1.2.840.10008.5.1.4.1.1.4.4")  # Enhanced / Legacy Converted
_SOP_NAMES = {
    "1.2.840.10008.5.1.4.1.1.66": "Raw Data Storage",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.11.1": "Grayscale Softcopy Presentation State",
    "1.2.840.10008.5.1.4.1.1.4.2": "MR Spectroscopy",
}


def _sop_kind(fields: dict) -> str:
    """``"image"`` (classic image storage), ``"enhanced"`` (multi-frame MR) or the SOP class of a non-image object."""
    sop = str(fields.get("SOPClassUID") or "")
    if sop in _ENHANCED_IMAGE_SOP:
        return "enhanced"
    if sop.startswith(_NON_IMAGE_SOP_PREFIXES) or sop.startswith("1.3.46.670589.11.0.0.12."):  # Philips private
        return sop or "unknown"
    return "image"


def _sop_name(kind: str) -> str:
    if kind.startswith("1.3.46.670589.11.0.0.12."):
        return "Philips private series data"
    return _SOP_NAMES.get(kind, f"SOP class {kind}" if re.fullmatch(r"[0-9.]{1,64}", kind) else "unknown SOP class")


# ---------------------------------------------------------------- public API
@dataclass
class StageResult:
    """What :func:`stage_raw` did. ``subjects`` and ``identifiers`` are PRIVATE."""

    subjects: dict[str, str] = field(default_factory=dict)
    identifiers: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    series: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    available: list[str] = field(default_factory=list)  # pseudonymous labels of every patient found
    demographics: dict[str, dict[str, object]] = field(default_factory=dict)  # label -> sex/age (PRIVATE)


def is_raw_input(path: Path) -> bool:
    """True when ``path`` is not a BIDS dataset but holds DICOM or twix files.

    Parameters
    ----------
    path : Path
        Input directory.

    Returns
    -------
    bool
        False when ``dataset_description.json`` exists at the top or nothing raw is found.
    """
    path = Path(path)
    if not path.is_dir() or (path / "dataset_description.json").exists():
        return False
    checked = 0
    for f in _walk(path):
        if f.suffix.lower() == ".dat" and is_twix(f):
            return True
        if is_dicom(f):
            return True
        if _other_format(f):
            return True
        checked += 1
        if checked > 2000:  # a tree this size with no DICOM in the first 2000 files is not raw input
            break
    return False


def _other_format(path: Path) -> str | None:
    """Analyze / MINC / PAR / TIFF slide (see :mod:`.formats`), or None."""
    if path.suffix.lower() not in (".hdr", ".mnc", ".par", ".svs", ".tif", ".tiff", ".ndpi", ".scn", ".bif"):
        return None
    from .formats import format_of

    return format_of(path)


def _other_files(records: list[dict]) -> set[str]:
    """Paths of the 'other' records that are Analyze/MINC/PAR/slide files or their data halves."""
    out: set[str] = set()
    for r in records:
        path = Path(r["path"])
        if r["kind"] == "other" and _other_format(path):
            out.add(str(path))
            out.update(str(path.with_suffix(e)) for e in _COMPANIONS)
    return out


_COMPANIONS = (".img", ".IMG", ".mat", ".REC", ".rec")


def _stage_other_formats(records: list[dict], raw_dir: Path, staging: Path, pseudo: Pseudonymizer,
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
        kind = _other_format(path) if r["kind"] == "other" else None
        if kind is None:
            continue
        pids = {p for fo, ps in by_folder.items() if _is_within(r["folder"], fo, str(raw_dir)) for p in ps}
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
            _symlink(path, staging / f"{rel}{path.suffix}")
            _write_sidecar(staging / f"{rel}.json", micr_sidecar(size))
            entry.update(action="bids", bids_name=f"{rel}.ome.tif", reason="whole-slide image: BIDS micr (OME-TIFF)")
        elif guess is not None:
            rel = _free_bids_rel(staging, label, guess)
            for p in parts:
                _symlink(p, staging / f"{rel}{p.suffix}")
            if extra:
                _write_sidecar(staging / f"{rel}.json", extra)
            entry.update(action="bids", bids_name=f"{rel}.nii.gz", reason=f"{kind} file: {guess.reason}")
        if entry["action"] != "bids" or (sourcedata == "dicom" and kind != "tiff"):  # a slide: its OME-TIFF only
            folder = staging / "sourcedata" / ("microscopy" if kind == "tiff" else kind) / f"sub-{label}"
            for p in parts:
                _symlink(p, folder / f"{token}{p.suffix}")
        staged.append(entry)
    return staged


def _free_bids_rel(staging: Path, label: str, guess: Guess) -> str:
    """``sub-X/<datatype>/<name>`` (no extension) not yet used in the staging tree (run-2, run-3 ... if needed)."""
    for run in (None, *range(2, 1000)):
        rel = f"sub-{label}/{guess.datatype}/{bids_name(label, None, guess, run=run)}"
        if not list((staging / rel).parent.glob(Path(rel).name + ".*")):
            return rel
    raise InputError("too many images with the same BIDS name")


# ---------------------------------------------------------------- discovery
def _walk(root: Path):
    """Files under ``root`` in sorted order; follows folder symlinks once (no loops)."""
    seen: set[str] = set()
    for dirpath, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if d not in (WORK_DIR_NAME, UNPACK_DIR_NAME))
        for name in sorted(files):
            yield Path(dirpath) / name


def _plain(value) -> object:
    """pydicom values to picklable plain Python (str / float / list of str)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return [str(v) for v in value]
    if isinstance(value, (int, float)):
        return value
    return str(value)


def _truncated(path: Path, ds, ts: str, pixel_offset: int) -> bool:
    """Pixel data shorter than Rows x Columns x ... says or compressed data without its end."""
    if "Rows" not in ds or "Columns" not in ds:
        return False
    size = path.stat().st_size
    if ts in _UNCOMPRESSED_TS:
        try:
            frames = int(ds.get("NumberOfFrames") or 1)
            need = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel") or 1) * int(ds.BitsAllocated) // 8
        except (AttributeError, TypeError, ValueError):
            return False
        return size < pixel_offset + need * frames
    with open(path, "rb") as fh:
        fh.seek(max(0, size - 16))
        tail = fh.read()
    if b"\xfe\xff\xdd\xe0" in tail:
        return False
    return not _fragments_complete(path, pixel_offset, size)  # e.g. trailing padding after the pixel data


def _fragments_complete(path: Path, pixel_offset: int, size: int) -> bool:
    """Walk the encapsulated Pixel Data items (explicit little endian) up to the sequence delimiter."""
    import struct

    with open(path, "rb") as fh:
        fh.seek(max(0, pixel_offset - 16))
        head = fh.read(64)
        i = head.find(b"\xe0\x7f\x10\x00")
        if i < 0 or head[i + 8:i + 12] != b"\xff\xff\xff\xff":
            return False
        pos = max(0, pixel_offset - 16) + i + 12
        for _ in range(10_000_000):
            fh.seek(pos)
            item = fh.read(8)
            if len(item) < 8:
                return False
            group, elem, length = struct.unpack("<HHI", item)
            if (group, elem) == (0xFFFE, 0xE0DD):
                return True
            if (group, elem) != (0xFFFE, 0xE000) or pos + 8 + length > size:
                return False
            pos += 8 + length
    return False


def read_header(path: Path) -> dict:
    """Read the header fields we need from one file; never raises.

    Returns a dict with ``path``, ``kind`` ("dicom", "twix", "other", "corrupt",
    "dicomdir"), and for DICOM ``fields`` (plain values) and ``folder``.
    """
    path = Path(path)
    rec: dict = {"path": str(path), "folder": str(path.parent), "kind": "other"}
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        rec["kind"] = "corrupt"
        return rec
    preamble = len(head) >= 132 and head[128:132] == b"DICM"
    if not preamble and path.suffix.lower() == ".dat":
        rec["kind"] = "twix" if is_twix(path) else "twix-bad"
        return rec
    if not preamble and len(head) < 8:
        return rec
    if preamble and _FAST_HEADERS:
        fast = fast_header(str(path), _HEADER_TAGS_T)
        if fast is not None and fast["pixels_complete"] is not False:
            fields = fast["fields"]
            if fast["sop_class"] == _DICOMDIR_SOP or fields.get("SOPClassUID") == _DICOMDIR_SOP:
                rec["kind"] = "dicomdir"
                return rec
            if fields.get("SOPInstanceUID") and (fields.get("Modality") or fields.get("StudyInstanceUID")):
                if fast["ae_title"]:
                    fields["SourceApplicationEntityTitle"] = fast["ae_title"]
                rec["kind"], rec["fields"] = "dicom", fields
                return rec
        # anything unusual (or a verdict other than "dicom"): pydicom decides below
    try:
        with open(path, "rb") as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=True, force=not preamble, specific_tags=HEADER_TAGS)
            pixel_offset = fh.tell()  # where reading stopped: at (or just past) the Pixel Data tag
    except Exception:  # noqa: BLE001 - corrupt input is reported, never raised
        rec["kind"] = "corrupt" if preamble else "other"
        return rec
    meta = getattr(ds, "file_meta", None)
    sop_class = str(ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta else "") or "")
    if sop_class == _DICOMDIR_SOP:
        rec["kind"] = "dicomdir"
        return rec
    if not (ds.get("SOPInstanceUID") and (ds.get("Modality") or ds.get("StudyInstanceUID"))):
        if preamble:
            rec["kind"] = "corrupt"  # a DICOM file cut short or without its identity
        return rec
    fields = {}
    for tag in HEADER_TAGS:
        try:
            v = ds.get(tag)
        except Exception:  # noqa: BLE001 - a malformed value is a corrupt file
            rec["kind"] = "corrupt"
            return rec
        if v is not None and str(v) != "":
            fields[tag] = _plain(v)
    if meta is not None and meta.get("SourceApplicationEntityTitle"):
        fields["SourceApplicationEntityTitle"] = str(meta.SourceApplicationEntityTitle)
    ts = str((meta.get("TransferSyntaxUID") if meta is not None else None) or "1.2.840.10008.1.2")
    try:
        if _truncated(path, ds, ts, pixel_offset):
            rec["kind"] = "corrupt"
            return rec
    except Exception:  # noqa: BLE001
        rec["kind"] = "corrupt"
        return rec
    rec["kind"] = "dicom"
    rec["fields"] = fields
    return rec


def discover(raw_dir: Path, n_cpus: int = 1, unpack_dir: Path | None = None) -> list[dict]:
    """Header records of every file under ``raw_dir`` (see :func:`read_header`).

    gzip-compressed files (``IM_0001.gz``, ``*.dcm.gz``) that hold DICOM are unpacked into
    ``unpack_dir`` (private) and read from there: their records have ``unpacked`` True,
    ``path`` the unpacked copy and ``source`` the original file.
    """
    files = [str(f) for f in _walk(Path(raw_dir))]
    packed: dict[str, str] = {}
    if unpack_dir is not None:
        for i, f in enumerate(files):
            target = _gunzip_dicom(Path(f), Path(unpack_dir), i)
            if target is not None:
                packed[target] = f
                files[i] = target
    if n_cpus > 1 and len(files) > 1000:  # the header pass is ~0.25 ms/file: a pool pays off late
        chunk = max(16, len(files) // (n_cpus * 8))
        with ProcessPoolExecutor(max_workers=n_cpus) as pool:
            records = list(pool.map(read_header, files, chunksize=chunk))
    else:
        records = [read_header(Path(f)) for f in files]
    for r in records:
        src = packed.get(r["path"])
        if src is not None:
            if r["kind"] == "dicom":
                r.update(unpacked=True, source=src, folder=str(Path(src).parent))
            else:  # not DICOM after all: reported as the original file
                r.update(path=src, folder=str(Path(src).parent), kind="other" if r["kind"] != "corrupt" else "corrupt")
    return records


def _gunzip_dicom(path: Path, unpack_dir: Path, index: int) -> str | None:
    """Unpack a gzip file whose content starts like DICOM; the unpacked path, or None."""
    import gzip
    import zlib

    try:
        with open(path, "rb") as fh:
            if fh.read(2) != b"\x1f\x8b":
                return None
        with gzip.open(path, "rb") as gz:
            head = gz.read(132)
            if not (head[128:132] == b"DICM" or head[:2] in (b"\x08\x00", b"\x02\x00")):
                return None
            unpack_dir.mkdir(parents=True, exist_ok=True)
            target = unpack_dir / f"{index:07d}.dcm"
            with open(target, "wb") as out:
                out.write(head)
                shutil.copyfileobj(gz, out, 1 << 20)
    except (OSError, EOFError, zlib.error):
        return None
    return str(target)


def _late_identifiers(path: str) -> list[tuple[str, str]]:
    """(tag, value) of :data:`_LATE_ID_TAGS` in one file (pydicom, header only); [] when unreadable."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=list(_LATE_ID_TAGS))
    except Exception:  # noqa: BLE001 - the series' own reading reports problems
        return []
    out = []
    for tag in _LATE_ID_TAGS:
        v = ds.get(tag)
        for item in v if isinstance(v, (list, tuple, pydicom.multival.MultiValue)) else [v]:
            text = str(item or "").strip()
            if len(text) >= 3:
                out.append((tag, text))
    return out


def _demographics(f: dict) -> dict[str, object]:
    """Sex (``M``/``F``/``O``) and age in whole years at the first study, from one header; missing values left out.

    The age comes from PatientAge (``034Y``, ``006M``, ``010W``, ``003D``) or, without it, from
    PatientBirthDate and StudyDate. Capping (HIPAA: over 89) is the profile's, at group level.
    """
    out: dict[str, object] = {}
    sex = str(f.get("PatientSex") or "").strip().upper()
    if sex in ("M", "F", "O"):
        out["sex"] = sex
    age = str(f.get("PatientAge") or "").strip().upper()
    m = re.fullmatch(r"(\d{1,3})\s*([YMWD])?", age)
    if m:
        n, unit = int(m[1]), m[2] or "Y"
        out["age"] = n if unit == "Y" else n // {"M": 12, "W": 52, "D": 365}[unit]
    else:
        b, d = str(f.get("PatientBirthDate") or ""), str(f.get("StudyDate") or "")
        if re.fullmatch(r"\d{8}", b) and re.fullmatch(r"\d{8}", d):
            years = int(d[:4]) - int(b[:4]) - ((int(d[4:8]) < int(b[4:8])) and 1 or 0)
            if 0 <= years < 150:
                out["age"] = years
    return out


# ---------------------------------------------------------------- identifiers
def _looks_identifying(text: str, known: list[str]) -> bool:
    t = text.lower()
    if re.search(r"\d{6,}|\^|@", t) or re.search(r"(19|20)\d\d[-./]?[01]\d[-./]?[0-3]\d", t):
        return True
    for k in known:
        for part in re.split(r"[\^ ,]+", k.lower()):
            if len(part) >= 3 and part in t:
                return True
    return False


def _collect_identifiers(records: list[dict]) -> list[tuple[str, str]]:
    found: dict[tuple[str, str], None] = {}
    names: list[str] = []
    for r in records:
        f = r["fields"]
        for tag in _ID_TAGS + _DATE_TAGS:
            v = f.get(tag)
            if v:
                for item in v if isinstance(v, list) else [v]:
                    s = str(item).strip()
                    # values under 3 characters ("1", "MC") cannot be searched for usefully
                    if s and (len(s) >= 3 or tag == "PatientID"):
                        kind = "StudyDate" if tag in _DATE_TAGS else tag
                        found[(kind, s)] = None
                        if tag in ("PatientName", "PatientID", "InstitutionName", "ReferringPhysicianName"):
                            names.append(s)
        if f.get("SourceApplicationEntityTitle"):
            found[("StationName", f["SourceApplicationEntityTitle"].strip())] = None
    unique_names = list(dict.fromkeys(names))
    descriptions = {
        (tag, str(r["fields"][tag]))
        for r in records
        for tag in ("SeriesDescription", "ProtocolName")
        if r["fields"].get(tag)
    }
    for tag, v in sorted(descriptions):
        if _looks_identifying(v, unique_names):
            found[(tag, v.strip())] = None
    return list(found)


# ---------------------------------------------------------------- staging helpers
def _symlink(target: Path, link: Path) -> None:
    """Create/replace a symlink atomically."""
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.parent / f".bids-deid-tmp-{uuid.uuid4().hex}"
    os.symlink(os.path.abspath(target), tmp)
    os.replace(tmp, link)


def _dcm2niix_bin() -> str:
    """The dcm2niix executable: the PyPI package's binary first (no Python wrapper), then PATH."""
    try:
        import dcm2niix  # noqa: PLC0415

        exe = Path(dcm2niix.bin)
        if exe.is_file() and os.access(exe, os.X_OK):
            return str(exe)
    except Exception:  # noqa: BLE001 - fall back to PATH
        pass
    exe = shutil.which("dcm2niix")
    if exe:
        return exe
    raise InputError("dcm2niix is not installed (pip install dcm2niix)")


def run_dcm2niix(in_dir: Path, out_dir: Path, exe: str | None = None) -> int:
    """Convert one series folder with dcm2niix (anonymized BIDS sidecar, gzip, neutral name)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        exe or _dcm2niix_bin(),
        "-b",
        "y",
        "-ba",
        "y",
        "-z",
        "y",
        "-f",
        "s",
        "-w",
        "1",
        "-o",
        str(out_dir),
        str(in_dir),
    ]
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return proc.returncode


@dataclass
class _Series:
    subject: str
    session: str | None
    token: str
    uid: str
    key: str | None  # dcm2niix output stem ``<uid>_<series number>`` (None: not predictable)
    kind: str  # "image", "enhanced" or the SOP class UID of a non-image object
    modality: str
    number: float
    time: str
    records: list[dict]
    fields: dict
    problems: list[str] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)  # {nii, json, bval, bvec, fields, guess}
    action: str = "skipped"
    reason: str = ""
    names: list[str] = field(default_factory=list)
    deduped: bool = False  # duplicate instances were dropped (whole-folder conversion would include them)
    partial: str = ""  # why some of its images got no BIDS name (its DICOM then goes to sourcedata too)


def _header_fields(f: dict) -> dict:
    """Header values renamed/scaled like a dcm2niix sidecar (times in seconds)."""
    out = {k: f.get(k) for k in ("Modality", "ImageType", "ScanningSequence", "SequenceVariant", "SequenceName")}
    out["SeriesDescription"] = f.get("SeriesDescription")
    out["ProtocolName"] = f.get("ProtocolName")
    for k in ("EchoTime", "InversionTime"):
        v = f.get(k)
        try:
            out[k] = float(v) / 1000.0 if v is not None else None
        except (TypeError, ValueError):
            out[k] = None
    out["EchoNumber"] = f.get("EchoNumbers")
    out["SeriesNumber"] = f.get("SeriesNumber")
    return {k: v for k, v in out.items() if v is not None}


def _dedupe(series: _Series) -> None:
    """Drop repeated instances (same SOPInstanceUID) and report them, gaps and out-of-order storage."""
    stored = [_num(r["fields"].get("InstanceNumber")) for r in series.records]
    if any(b < a for a, b in zip(stored, stored[1:], strict=False)):
        series.problems.append(f"series {series.token}: instances are not stored in instance-number order "
                               "(converted in slice order)")
    recs = sorted(series.records, key=lambda r: (_num(r["fields"].get("InstanceNumber")), r["path"]))
    seen: dict[str, dict] = {}
    keep, dups, differ = [], 0, 0
    for r in recs:
        sop = r["fields"].get("SOPInstanceUID") or r["path"]
        if sop in seen:
            dups += 1
            differ += _size(seen[sop]) != _size(r)
            continue
        seen[sop] = r
        keep.append(r)
    series.records = keep
    series.deduped = dups > 0
    if dups:
        series.problems.append(f"series {series.token}: {dups} duplicate instance(s) (same SOPInstanceUID) ignored"
                               + (f", {differ} of them with other content (the first by instance number kept)"
                                  if differ else ""))
    nums = sorted({int(_num(r["fields"].get("InstanceNumber"))) for r in keep if r["fields"].get("InstanceNumber")})
    if len(nums) > 1:
        missing = (nums[-1] - nums[0] + 1) - len(nums)
        if missing > 0:
            series.problems.append(
                f"series {series.token}: {missing} instance number(s) missing between {nums[0]} and {nums[-1]} "
                "(missing slices?)"
            )


def _size(r: dict) -> int:
    try:
        return os.path.getsize(r["path"])
    except OSError:
        return -1


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return 0.0


def _convert_all(to_convert: list[_Series], all_series: list[_Series], records: list[dict], raw_dir: Path,
                 work: Path, exe: str, early, n_cpus: int, compress: bool) -> None:
    """Fill ``s.outputs`` of every series to convert.

    Outputs of the background whole-folder run (``early``) are taken for series that it
    converted exactly as we grouped them (UID unique to one series, no duplicate
    instances dropped, no corrupt file in their folders, within dcm2niix's search depth);
    the rest are converted from links, batched, and one by one when batching cannot map
    them back (shared or missing SeriesInstanceUID).
    """
    keys = [s.key for s in to_convert if s.key]
    index: dict[str, list[dict]] = {}
    if early is not None:
        early.wait()
        index = index_outputs(work / "all", keys)
    key_count = Counter(s.key for s in to_convert)
    bad_folders = {r["folder"] for r in records if r["kind"] == "corrupt"}
    rest: list[_Series] = []
    for s in to_convert:
        outs = index.get(s.key) if s.key else None
        if (outs and key_count[s.key] == 1 and not s.deduped
                and all(not r.get("unpacked") and r["folder"] not in bad_folders
                        and depth_below(r["path"], raw_dir) < MAX_DEPTH for r in s.records)):
            _take_outputs(s, outs)
        else:
            rest.append(s)
    batchable = [s for s in rest if s.key and key_count[s.key] == 1]
    singles = [s for s in rest if s not in batchable]
    if batchable:
        idx = convert_links([(s.token, [r["path"] for r in s.records]) for s in batchable], work / "links", exe,
                            n_cpus, compress=compress, keys=keys)
        for s in batchable:
            if idx.get(s.key):
                _take_outputs(s, idx[s.key])
            else:
                singles.append(s)
    if singles:
        def one(s: _Series) -> list[dict]:
            return convert_one([r["path"] for r in s.records], work / "one" / s.token, exe, compress=compress)

        with ThreadPoolExecutor(max_workers=n_cpus) as pool:
            for s, outs in zip(singles, pool.map(one, singles), strict=True):
                if outs:
                    _take_outputs(s, outs)
                else:
                    s.problems.append(f"series {s.token}: dcm2niix produced no image")
                    s.reason = "conversion failed"


def _take_outputs(s: _Series, outs: list[dict]) -> None:
    for o in outs:
        fields = {}
        if o.get("json") is not None:
            try:
                fields = json.loads(Path(o["json"]).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                fields = {}
        s.outputs.append({**o, "fields": fields})


def _image_geometry(o: dict) -> None:
    """``o['affine']``, ``o['shape']`` and ``o['n_vols']`` from the NIfTI header (None when unreadable)."""
    import nibabel as nib  # noqa: PLC0415

    try:
        img = nib.load(str(o["nii"]))
        o["affine"], o["shape"] = img.affine, tuple(img.shape[:3])
        o["n_vols"] = int(img.shape[3]) if len(img.shape) > 3 else 1
    except Exception:  # noqa: BLE001 - geometry is a hint only
        o["affine"], o["shape"], o["n_vols"] = None, None, None


def _reproin_sessions(series: list[_Series]) -> None:
    """ReproIn ``ses-`` labels: a study whose named series agree on one label becomes that session.

    A label that looks like a date (or a long number) is not taken; the numbered session stays.
    """
    from .reproin import parse

    by_study: dict[tuple[str, str | None], list[_Series]] = defaultdict(list)
    for s in series:
        by_study[(s.subject, s.session)].append(s)
    taken: dict[str, set[str]] = defaultdict(set)
    for (sub, _ses), members in sorted(by_study.items(), key=lambda x: str(x[0])):
        labels = set()
        for s in members:
            p = parse(s.fields.get("ProtocolName")) or parse(s.fields.get("SeriesDescription"))
            if p is not None:
                labels.add(p["entities"].get("ses"))
        labels.discard(None)
        if len(labels) == 1:
            label = next(iter(labels))
            if re.search(r"\d{6,}|(19|20)\d\d[01]\d", label) or label in taken[sub]:
                continue
            taken[sub].add(label)
            for s in members:
                s.session = label


def _classify_outputs(s: _Series, heuristic: list[HeuristicRule] | None, reproin: bool = False) -> None:
    echoes = {o["fields"].get("EchoNumber") for o in s.outputs if o["fields"].get("EchoNumber") is not None}
    has_phase = any("_ph" in o["postfix"] or "P" in (o["fields"].get("ImageType") or []) for o in s.outputs)
    for o in s.outputs:
        f = dict(o["fields"])
        if not f:
            o["guess"] = Guess(None, None, {}, "no sidecar (ROI or auxiliary output)")
            continue
        f.setdefault("Modality", s.modality)
        _image_geometry(o)
        d = phase_dir_label(f.get("PhaseEncodingDirection"), o["affine"])
        if d:
            f["_dir"] = d
        f["_postfix"] = o["postfix"]
        f["_n_echoes"] = len(echoes)
        f["_has_phase"] = has_phase
        f["_has_bval"] = o["bval"] is not None
        f["_n_vols"] = o.get("n_vols") or 1
        f["_bmax"] = _bmax(o.get("bval"))
        o["guess"] = classify(f, heuristic, reproin)
    for o in s.outputs:  # BIDS needs the units of a direct field map
        if o["guess"].suffix == "fieldmap" and "Units" not in o["fields"] and _fieldmap_units(o["fields"]) is None:
            o["guess"] = Guess(None, None, {}, "B0 field map of unknown units (neither dcm2niix nor the vendor says)")
    # a B0 map series (GE, Philips): its other images are the field map's magnitude
    if any(o["guess"].suffix == "fieldmap" for o in s.outputs):
        for o in s.outputs:
            g = o["guess"]
            if g.suffix != "fieldmap" and not g.skipped and not (g.datatype == "fmap" and g.suffix == "epi"):
                g.datatype, g.suffix, g.entities = "fmap", "magnitude", {}
                g.reason = "rules: magnitude of a B0 field-map series"


def _drop_copies(series: list[_Series]) -> None:
    """An image that a series holds twice, as Enhanced and as classic DICOM, is named once (the classic copy).

    The Enhanced copy's images with the same voxels are marked skipped, so its DICOM stays in
    sourcedata with the reason; images only the Enhanced copy has are kept.
    """
    import hashlib

    import nibabel as nib  # noqa: PLC0415

    by_uid: dict[str, list[_Series]] = defaultdict(list)
    for s in series:
        by_uid[s.uid].append(s)

    def digest(o: dict) -> str | None:
        try:
            img = nib.load(str(o["nii"]))
            return hashlib.sha1(np.ascontiguousarray(img.dataobj.get_unscaled()).tobytes()).hexdigest()
        except Exception:  # noqa: BLE001 - not comparable: both are kept
            return None

    for parts in by_uid.values():
        classic = [s for s in parts if s.kind == "image"]
        enhanced = [s for s in parts if s.kind == "enhanced"]
        if not classic or not enhanced:
            continue
        seen = {digest(o) for s in classic for o in s.outputs if not o["guess"].skipped} - {None}
        for s in enhanced:
            for o in s.outputs:
                if not o["guess"].skipped and digest(o) in seen:
                    g = o["guess"]
                    g.datatype, g.suffix, g.entities = None, None, {}
                    g.reason = "same image as the classic DICOM copy of this series (Enhanced copy kept in sourcedata)"


def _scaling(hdr) -> tuple[float, float]:
    """(slope, intercept) of a NIfTI header, unset (0 or NaN slope) read as (1, 0)."""
    slope, inter = float(hdr["scl_slope"]), float(hdr["scl_inter"])
    if not np.isfinite(slope) or slope == 0:
        return 1.0, 0.0
    return slope, inter if np.isfinite(inter) else 0.0


def _merge_split_volumes(s: _Series, work: Path) -> None:
    """One 4D run from the single-volume images of one EPI time series (Siemens XA ``MFSPLIT``, classic export).

    Only images of one voxel grid, one echo and one image type, classified alike as ``bold``,
    ``asl`` or ``dwi``, are joined, in acquisition order (AcquisitionTime, then SeriesNumber);
    the sidecar is the first volume's (b-values and vectors are joined too).
    """
    import nibabel as nib  # noqa: PLC0415

    groups: dict[tuple, list[dict]] = defaultdict(list)
    for o in s.outputs:
        g = o["guess"]
        if g.skipped or g.suffix not in ("bold", "asl", "dwi") or o.get("n_vols") != 1 or o.get("shape") is None:
            continue
        f = o["fields"]
        groups[(g.suffix, tuple(sorted(g.entities.items())), o["shape"], f.get("EchoNumber"),
                tuple(f.get("ImageType") or ()))].append(o)
    for outs in groups.values():
        if len(outs) < 2 or not all(np.allclose(outs[0]["affine"], o["affine"], atol=1e-4) for o in outs):
            continue
        outs.sort(key=lambda o: (str(o["fields"].get("AcquisitionTime") or ""), _num(o["fields"].get("SeriesNumber")),
                                 o["postfix"]))
        imgs = [nib.load(str(o["nii"])) for o in outs]
        scale = {_scaling(i.header) for i in imgs}
        if len({i.get_data_dtype() for i in imgs}) != 1:
            continue
        if len(scale) == 1:
            data = np.stack([np.asanyarray(i.dataobj.get_unscaled()) for i in imgs], axis=-1)
        else:
            data = np.stack([np.asarray(i.dataobj, dtype=np.float32) for i in imgs], axis=-1)
        first = imgs[0]
        hdr = first.header.copy()
        out = nib.Nifti1Image(data, first.affine, header=hdr)
        if len(scale) == 1:
            out.header["scl_slope"], out.header["scl_inter"] = first.header["scl_slope"], first.header["scl_inter"]
        tr = outs[0]["fields"].get("RepetitionTime")
        out.header.set_zooms((*first.header.get_zooms()[:3], float(tr) if isinstance(tr, int | float) else 1.0))
        out.header.set_xyzt_units(first.header.get_xyzt_units()[0], "sec")
        out.set_qform(first.get_qform(), int(first.header["qform_code"]))
        out.set_sform(first.get_sform(), int(first.header["sform_code"]))
        dest = work / f"merged-{s.token}-{len(outs)}-{outs[0]['postfix'] or 'x'}.nii.gz"
        nib.save(out, str(dest))
        keep = outs[0]
        for ext in ("bval", "bvec"):
            parts = [Path(o[ext]).read_text().split("\n") for o in outs if o.get(ext)]
            if parts and len(parts) == len(outs):
                rows = [" ".join(p[i].strip() for p in parts) for i in range(len(parts[0])) if parts[0][i].strip()]
                target = work / f"{dest.name[:-7]}.{ext}"
                target.write_text("\n".join(rows) + "\n")
                keep[ext] = target
        keep.update(nii=dest, n_vols=len(outs))
        for o in outs[1:]:
            s.outputs.remove(o)
        s.problems.append(f"series {s.token}: {len(outs)} single-volume images of one time series joined into a "
                          "4D run")


def _bmax(bval) -> float | None:
    if bval is None:
        return None
    try:
        vals = [float(x) for x in Path(bval).read_text().split()]
    except (OSError, ValueError):
        return None
    return max(vals) if vals else None


def _assign_runs(items: list[tuple[_Series, dict]], subject: str, session: str | None) -> None:
    """Number repeated names run-1, run-2, ... in series order; store ``o['name']``."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for _s, o in items:
        g: Guess = o["guess"]
        base = bids_name(subject, session, g)
        o["base"] = base
        groups[base].append(o)
    for base, outs in groups.items():
        if len(outs) == 1:
            outs[0]["name"] = base
            continue
        for i, o in enumerate(outs, 1):
            o["name"] = bids_name(subject, session, o["guess"], run=i)
            if o["name"] == base:  # run fixed by a heuristic: keep the rule's choice, avoid clashes
                o["name"] = f"{base}{'' if i == 1 else f'_dup{i}'}"


def _write_sidecar(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n", perm=0o600)


# ---------------------------------------------------------------- main entry
def stage_raw(
    raw_dir: Path,
    staging_dir: Path,
    pseudo: Pseudonymizer,
    *,
    participants: set[str] | None = None,
    heuristic: Path | None = None,
    n_cpus: int = 1,
    dry_run: bool = False,
    sourcedata: str = "dicom",
    skip_policy: str = "sourcedata",
) -> StageResult:
    """Discover, group, classify and convert raw scanner data into a staging BIDS tree.

    Parameters
    ----------
    raw_dir : Path
        Input folder with DICOM files (any layout) and/or twix ``.dat`` files. Never modified.
    staging_dir : Path
        Private work folder that becomes a BIDS dataset with pseudonymous names
        (contents not yet scrubbed).
    pseudo : Pseudonymizer
        Keyed pseudonyms: subjects ``pseudo.subject(PatientID)``, series tokens.
    participants : set of str, optional
        Only these patients (pseudonymous label, with or without ``sub-``, or PatientID).
    heuristic : Path, optional
        YAML rules file overriding the classification (see ``docs/heuristics.md``).
    n_cpus : int
        Parallel header readers and dcm2niix processes.
    dry_run : bool
        Plan only: series are converted into a temporary folder and classified exactly
        like a real run (so the names are the real run's names); nothing is written
        under ``staging_dir``.
    sourcedata : str
        ``"dicom"`` links every series under ``sourcedata/dicom``; anything else links
        only the series that do not become BIDS images.
    skip_policy : str
        ``"sourcedata"``: an MR series that gets no BIDS name (localizer, derived,
        unclassified, a field-map image without its partner) is kept in ``sourcedata/dicom``;
        ``"drop"``: it is left out, and listed (private) with its reason.

    Returns
    -------
    StageResult
    """
    raw_dir, staging_dir = Path(raw_dir), Path(staging_dir)
    if not raw_dir.is_dir():
        raise InputError(f"raw input {raw_dir} is not a directory")
    exe = _dcm2niix_bin()
    if dry_run:  # converted into a temporary folder (names come from the real classification)
        work = Path(tempfile.mkdtemp(prefix="bids-deid-plan-"))
    else:
        work = staging_dir / WORK_DIR_NAME / uuid.uuid4().hex
        work.mkdir(parents=True, exist_ok=True)
    early = None
    raw_real = raw_dir.resolve()
    if not participants and not _inside(work.resolve(), raw_real) and not _inside(staging_dir.resolve(), raw_real):
        # everything is converted anyway: dcm2niix reads the folder while Python reads the headers
        early = start_folder(exe, raw_dir, work / "all", compress=not dry_run)
    try:
        return _stage_raw(raw_dir, staging_dir, pseudo, participants=participants, heuristic=heuristic,
                          n_cpus=n_cpus, dry_run=dry_run, sourcedata=sourcedata, skip_policy=skip_policy,
                          _work=work, _exe=exe, _early=early,
                          _unpack=work / "unpacked" if dry_run else staging_dir / UNPACK_DIR_NAME)
    finally:
        if early is not None and early.poll() is None:
            early.kill()
            early.wait()
        shutil.rmtree(work, ignore_errors=True)
        if not dry_run:
            with contextlib.suppress(OSError):
                (staging_dir / WORK_DIR_NAME).rmdir()


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _stage_raw(
    raw_dir: Path,
    staging_dir: Path,
    pseudo: Pseudonymizer,
    *,
    participants: set[str] | None,
    heuristic: Path | None,
    n_cpus: int,
    dry_run: bool,
    sourcedata: str,
    skip_policy: str,
    _work: Path,
    _exe: str,
    _early,
    _unpack: Path,
) -> StageResult:
    """:func:`stage_raw` inside its work folder (``_early``: the background whole-folder dcm2niix or None)."""
    reproin = heuristic is not None and str(heuristic).lower() == "reproin" and not Path(heuristic).is_file()
    rules = load_heuristic(heuristic) if heuristic and not reproin else None
    n_cpus = max(1, int(n_cpus or 1))
    result = StageResult()
    records = discover(raw_dir, n_cpus, unpack_dir=_unpack)

    kinds = Counter(r["kind"] for r in records)
    handled_other = _other_files(records)  # Analyze/MINC/PAR/slides and their data halves are not ignored
    ignored = [r for r in records if r["kind"] == "other" and r["path"] not in handled_other]
    if ignored:
        exts = sorted({sanitize_label(Path(r["path"]).suffix.lower())[:8] or "none" for r in ignored})
        result.problems.append(f"{len(ignored)} non-DICOM file(s) ignored (extensions: {', '.join(exts[:6])})")
    if kinds["corrupt"]:
        result.problems.append(f"{kinds['corrupt']} corrupt or truncated DICOM file(s) skipped")
    if kinds["twix-bad"]:
        result.problems.append(
            f"{kinds['twix-bad']} .dat file(s) are not readable twix (unknown header version or corrupt)"
        )

    dicoms = [r for r in records if r["kind"] == "dicom"]
    # mixed patients in one folder
    by_folder: dict[str, set[str]] = defaultdict(set)
    no_pid = 0
    for r in dicoms:
        f = r["fields"]
        pid = str(f.get("PatientID") or "").strip()
        if not pid:
            no_pid += 1
            pid = str(f.get("PatientName") or "").strip() or "unknown"
        r["pid"] = pid
        by_folder[r["folder"]].add(pid)
    mixed = sum(1 for v in by_folder.values() if len(v) > 1)
    if mixed:
        result.problems.append(
            f"{mixed} folder(s) hold files of more than one patient; files were grouped by PatientID"
        )
    if no_pid:
        result.problems.append(f"{no_pid} DICOM file(s) without PatientID (grouped by PatientName)")

    # A series is (SeriesInstanceUID, SeriesNumber, kind of object): one UID may hold several
    # series numbers (copies in several transfer syntaxes) and several SOP classes (raw data,
    # presentation states or Enhanced next to classic images): each part is staged on its own.
    tree: dict[str, dict[str, dict[tuple, list[dict]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in dicoms:
        f = r["fields"]
        study = str(f.get("StudyInstanceUID") or "unknown-study")
        uid = str(f.get("SeriesInstanceUID") or f"{study}/{f.get('SeriesNumber')}/{f.get('Modality')}")
        # Siemens XA "MFSPLIT" time series give every volume a series number of its own: one series
        number = "MFSPLIT" if "MFSPLIT" in (f.get("ImageType") or []) else str(f.get("SeriesNumber") or "")
        tree[r["pid"]][study][(uid, number, _sop_kind(f))].append(r)

    twix_recs = [r for r in records if r["kind"] == "twix"]
    twix_by_pid: dict[str, list[tuple[dict, list[tuple[str, str]]]]] = defaultdict(list)
    for r in twix_recs:
        try:
            ids = read_twix_identifiers(Path(r["path"]))
            pid = _twix_patient_id(Path(r["path"]))
        except Exception:  # noqa: BLE001 - reported, never raised
            result.problems.append("a twix file could not be parsed (unknown header version or corrupt)")
            continue
        if not pid:
            folder_pids = {p for fo, ps in by_folder.items() if _is_within(r["folder"], fo, str(raw_dir)) for p in ps}
            pid = next(iter(folder_pids)) if len(folder_pids) == 1 else "unknown-twix-patient"
            if pid == "unknown-twix-patient":
                result.problems.append("a twix file has no usable PatientID; staged under its own subject")
        twix_by_pid[pid].append((r, ids))

    wanted = None
    if participants:
        wanted = {p[4:] if p.startswith("sub-") else p for p in participants}
    all_pids = sorted(set(tree) | set(twix_by_pid))
    result.available = sorted({pseudo.subject(pid) for pid in all_pids})
    series_list: list[_Series] = []
    sessions_of: dict[str, list[tuple[str | None, str]]] = {}
    for pid in all_pids:
        label = pseudo.subject(pid)
        if wanted is not None and label not in wanted and pid not in wanted:
            continue
        result.subjects[pid] = label
        studies = tree.get(pid, {})

        def study_key(item):
            first = next(iter(item[1].values()))[0]["fields"]
            return (str(first.get("StudyDate") or ""), str(first.get("StudyTime") or ""), item[0])

        ordered = sorted(studies.items(), key=study_key)
        ids: list[dict] = []
        sessions_of[label] = []
        for si, (_study, sers) in enumerate(ordered, 1):
            ses = f"{si:02d}" if len(ordered) > 1 else None
            sdate = str(next(iter(sers.values()))[0]["fields"].get("StudyDate") or "")
            sessions_of[label].append((ses, sdate))
            parts_of = Counter(k[0] for k in sers)
            for (uid, _sn, kind), recs in sers.items():
                ids.extend(recs)
                f0 = recs[0]["fields"]
                s = _Series(
                    subject=label,
                    session=ses,
                    token=pseudo.text_token("series", uid if parts_of[uid] == 1 else f"{uid}/{_sn}/{kind}"),
                    uid=uid,
                    key=None if _sn == "MFSPLIT" else conversion_key(uid, f0.get("SeriesNumber")),
                    kind=kind,
                    modality=sanitize_label(f0.get("Modality") or "OT").upper() or "OT",
                    number=min(_num(r["fields"].get("SeriesNumber")) for r in recs),
                    time=str(f0.get("SeriesTime") or ""),
                    records=list(recs),
                    fields=_header_fields(f0),
                )
                _dedupe(s)
                series_list.append(s)
        if ordered:
            result.demographics[label] = _demographics(next(iter(ordered[0][1].values()))[0]["fields"])
        idents = _collect_identifiers(ids) if ids else []
        for _study, sers in ordered:
            for recs in sers.values():
                for t in _late_identifiers(recs[0]["path"]):
                    if t not in idents:
                        idents.append(t)
        for _r, tids in twix_by_pid.get(pid, []):
            for t in tids:
                if t not in idents:
                    idents.append(t)
        result.identifiers[label] = idents

    # plan: which series are converted
    to_convert: list[_Series] = []
    for s in series_list:
        if s.modality != "MR":
            s.action, s.reason = "sourcedata", f"modality {s.modality} is not converted to BIDS"
        elif s.kind not in ("image", "enhanced"):
            s.action, s.reason = "sourcedata", f"non-image MR object ({_sop_name(s.kind)})"
        else:
            to_convert.append(s)
        if s.modality == "SM":
            _plan_micr(s)

    if not dry_run:  # links need no conversion result: made while dcm2niix runs
        _stage_sourcedata(series_list, staging_dir, sourcedata)
    _convert_all(to_convert, series_list, records, raw_dir, _work, _exe, _early, n_cpus, compress=not dry_run)
    for s in to_convert:
        _classify_outputs(s, rules, reproin)
        _merge_split_volumes(s, _work)
    _drop_copies(to_convert)
    if reproin:
        _reproin_sessions(to_convert)
    by_ses = _name_outputs(to_convert)
    for s in to_convert:  # nothing disappears: what got no BIDS name is kept in sourcedata (or listed as dropped)
        if s.action == "skipped":
            if skip_policy == "drop":
                s.action, s.reason = "dropped", f"{s.reason}; dropped (--skip-series-policy drop)"
            else:
                s.action, s.reason = "sourcedata", f"{s.reason}; DICOM kept in sourcedata"
    if not dry_run:
        late = [s for s in to_convert if sourcedata != "dicom" and (s.action == "sourcedata" or s.partial)]
        _stage_sourcedata(late, staging_dir, "dicom")
        for s in to_convert:
            if s.action == "dropped":
                shutil.rmtree(_sourcedata_folder(staging_dir, s), ignore_errors=True)
        _stage_micr(series_list, staging_dir)
        _place_outputs(by_ses, staging_dir, result.identifiers)
        _stage_twix(twix_by_pid, result.subjects, sessions_of, staging_dir, pseudo)
        result.series += _stage_other_formats(records, raw_dir, staging_dir, pseudo, result.subjects, by_folder,
                                              wanted, sourcedata)
        desc = {
            "Name": "bids-deid staging",
            "BIDSVersion": bids_version(),
            "DatasetType": "raw",
            "GeneratedBy": [{"Name": "bids-deid", "Description": "staging of raw scanner data (dcm2niix)"}],
        }
        _write_sidecar(staging_dir / "dataset_description.json", desc)

    for s in series_list:
        result.problems.extend(s.problems)
        result.series.append(
            {
                "subject": s.subject,
                "session": s.session,
                "series_token": s.token,
                "modality": s.modality,
                "n_files": len(s.records),
                "action": s.action,
                "bids_name": ";".join(s.names),
                "reason": s.reason,
                "series_number": s.fields.get("SeriesNumber"),
                "description": s.fields.get("SeriesDescription") or s.fields.get("ProtocolName") or "",
                "images": len(s.outputs),
                "partial": s.partial,
            }
        )
    for pid, items in twix_by_pid.items():
        if pid in result.subjects:
            for r, _ids in items:
                result.series.append(
                    {
                        "subject": result.subjects[pid],
                        "session": None,
                        "series_token": pseudo.text_token("twix", str(Path(r["path"]).resolve())),
                        "modality": "MR",
                        "n_files": 1,
                        "action": "sourcedata",
                        "bids_name": "",
                        "reason": "Siemens twix raw data",
                    }
                )
    return result


def _is_within(path: str, folder: str, root: str) -> bool:
    """True when ``folder`` is ``path``'s folder or an ancestor below ``root``."""
    p, f = Path(path), Path(folder)
    return p == f or f in p.parents and Path(root) != f


def _twix_patient_id(path: Path) -> str | None:
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


def _name_outputs(series: list[_Series]) -> dict[tuple[str, str | None], list[tuple[_Series, dict]]]:
    """Action, runs and final relative path (``o['rel']``, ``s.names``) of every classified output.

    The dry run stops here, so its names are the real run's names.
    """
    by_ses: dict[tuple[str, str | None], list[tuple[_Series, dict]]] = defaultdict(list)
    ordered = sorted(series, key=lambda s: (s.number, s.time, s.token))
    for s in ordered:
        for o in s.outputs:
            if not o["guess"].skipped:
                by_ses[(s.subject, s.session)].append((s, o))
    for (_sub, ses), items in by_ses.items():  # ASL runs and field-map sets can turn images BIDS cannot name
        _complete_perfusion(items)                # into skipped ones
        items[:] = [(s, o) for s, o in items if not o["guess"].skipped]
        sets = fieldmap_sets(items, ses)
        targets = [(s, o) for s, o in items if not o["guess"].skipped and o["guess"].suffix in TARGET_SUFFIXES]
        link_fieldmaps(sets, targets)
        items[:] = [(s, o) for s, o in items if not o["guess"].skipped]
    for s in ordered:
        kept = [o for o in s.outputs if not o["guess"].skipped]
        left = [o for o in s.outputs if o["guess"].skipped]
        if not kept:
            s.action = "skipped"
            s.reason = s.reason or (left[0]["guess"].reason if left else "dcm2niix produced no image")
            continue
        s.action, s.reason = "bids", kept[0]["guess"].reason
        if left:  # part of the series could not be named: its DICOM is kept in sourcedata as well
            s.partial = "; ".join(sorted({o["guess"].reason for o in left}))
            s.reason += f"; {len(left)} of {len(s.outputs)} images not named ({s.partial})"
    for (sub, ses), items in by_ses.items():
        _assign_runs(items, sub, ses)
        prefix = Path(f"sub-{sub}") / (f"ses-{ses}" if ses else "")
        for s, o in items:
            o["rel"] = prefix / o["guess"].datatype / f"{o['name']}.nii.gz"
            s.names.append(str(o["rel"]))
    return by_ses


def _complete_perfusion(items: list[tuple[_Series, dict]]) -> None:
    """ASL runs get their required fields and volume order, or are skipped with what is missing; M0 scans
    are linked to the session's ASL runs (skipped when there is none)."""
    from .asl import complete_asl

    m0s = [o for _s, o in items if o["guess"].suffix == "m0scan"]
    asls = [o for _s, o in items if o["guess"].suffix == "asl"]
    for o in asls:
        g = o["guess"]
        side, context, missing = complete_asl(o["fields"], int(o.get("n_vols") or 1), has_m0scan=bool(m0s),
                                              pattern=g.aslcontext, metadata=g.metadata)
        if missing:
            g.datatype, g.suffix, g.entities = None, None, {}
            g.reason = (f"ASL run without {', '.join(missing)} (BIDS needs them; give them in a heuristic "
                        "rule's metadata/aslcontext)")
            continue
        o["asl_side"], o["aslcontext"] = side, context
    kept = [o for o in asls if not o["guess"].skipped]
    for o in m0s:
        if not kept:
            g = o["guess"]
            g.datatype, g.suffix, g.entities = None, None, {}
            g.reason = "M0 scan without an ASL run in BIDS"
        else:
            o["m0_for"] = kept


def _place_outputs(by_ses: dict[tuple[str, str | None], list[tuple[_Series, dict]]], staging: Path,
                   identifiers: dict[str, list[tuple[str, str]]] | None = None) -> None:
    """Move named outputs into the staging tree; sidecars get TaskName, IntendedFor, EchoTime1/2, B0 fields.

    Free-text names kept for pipelines (SeriesDescription, ProtocolName) are cleaned of the
    subject's identifiers here; a ``scans.tsv`` per session lists the images with their
    acquisition time (shifted later with the subject's date offset).
    """
    for (sub, ses), items in by_ses.items():
        identifiers = identifiers if identifiers is not None else {}
        idents = [v for _k, v in identifiers.get(sub, [])]
        rows = []
        for s, o in items:
            g: Guess = o["guess"]
            dest = staging / o["rel"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            side = dict(o["fields"])
            for name in [k for k in side if k in _DROP_TEXT]:  # identity text of the headers: never public
                value = side.pop(name)
                if isinstance(value, str) and value.strip() and _looks_identifying(value, idents):
                    identifiers.setdefault(sub, []).append((f"sidecar:{name}", value.strip()))
            for name in FREE_TEXT:
                if name in side:
                    text = clean_text(side[name], idents)
                    if text:
                        side[name] = text
                    else:
                        del side[name]
            when = _acq_time(s, side)
            rows.append((Path(*o["rel"].parts[2 if ses else 1:]).as_posix(), when))
            if g.suffix in ("bold", "sbref"):
                side["TaskName"] = g.entities.get("task", "unknown")
            if g.datatype == "fmap" and o.get("b0_id"):
                side["B0FieldIdentifier"] = o["b0_id"]
                if o.get("intended"):
                    side["IntendedFor"] = [f"bids::{t['rel'].as_posix()}" for t in o["intended"] if t.get("rel")]
            if o.get("b0_source") and g.datatype != "fmap":
                side["B0FieldSource"] = o["b0_source"]
            side.update(g.metadata)
            if o.get("asl_side"):
                side.update({k: v for k, v in o["asl_side"].items() if k not in side})
                atomic_write_text(dest.with_name(dest.name.replace("_asl.nii.gz", "_aslcontext.tsv")),
                                  aslcontext_tsv(o["aslcontext"]), perm=0o600)
            if o.get("m0_for"):
                side["IntendedFor"] = [f"bids::{t['rel'].as_posix()}" for t in o["m0_for"]]
                if "RepetitionTime" in side:
                    side.setdefault("RepetitionTimePreparation", side["RepetitionTime"])
            if g.suffix == "fieldmap" and "Units" not in side:
                side["Units"] = _fieldmap_units(side)
            if g.suffix == "phasediff" and ("EchoTime1" not in side or "EchoTime2" not in side):
                _fill_echo_times(side, s, items)
            if g.suffix in _TIME_SERIES and _single_volume_to_4d(Path(o["nii"]), dest, side.get("RepetitionTime")):
                o["problem"] = "one volume: written as a 4D run of length 1"
            else:
                os.replace(o["nii"], dest)
            _write_sidecar(dest.with_name(dest.name[: -len(".nii.gz")] + ".json"), side)
            for ext in ("bval", "bvec"):
                if o.get(ext) is not None:
                    os.replace(o[ext], dest.with_name(dest.name[: -len(".nii.gz")] + f".{ext}"))
        if rows:
            folder = staging / f"sub-{sub}" / (f"ses-{ses}" if ses else "")
            name = f"sub-{sub}{f'_ses-{ses}' if ses else ''}_scans.tsv"
            body = "filename\tacq_time\n" + "".join(f"{f}\t{t or 'n/a'}\n" for f, t in sorted(rows))
            atomic_write_text(folder / name, body, perm=0o600)


def _fieldmap_units(side: dict) -> str | None:
    """Units of a direct B0 map dcm2niix did not label: GE and Philips scanners store them in Hz (else None)."""
    maker = str(side.get("Manufacturer") or "").lower()
    return "Hz" if maker.startswith(("ge", "philips")) else None


# free-text sidecar fields dcm2niix copies from the headers that raw conversion never keeps
_DROP_TEXT = ("ProcedureStepDescription", "StudyDescription", "ImageComments", "InstitutionalDepartmentName",
              "InstitutionName", "InstitutionAddress", "StationName", "DeviceSerialNumber", "SeriesInstanceUID",
              "StudyInstanceUID", "ReferringPhysicianName", "PerformedProcedureStepDescription", "AccessionNumber")


def _acq_time(s: _Series, side: dict) -> str | None:
    """ISO date-time of an image: the series' (acquisition/series/study) date and dcm2niix's AcquisitionTime."""
    date = next((str(s.records[0]["fields"].get(k) or "") for k in ("AcquisitionDate", "SeriesDate", "StudyDate")
                 if s.records[0]["fields"].get(k)), "")
    t = str(side.get("AcquisitionTime") or s.records[0]["fields"].get("AcquisitionTime") or "")
    m = re.fullmatch(r"(\d{4})(\d{2})(\d{2})", date.strip())
    tm = re.fullmatch(r"(\d{2}):?(\d{2}):?(\d{2})(\.\d+)?", t.strip())
    if not m or not tm:
        return None
    return f"{m[1]}-{m[2]}-{m[3]}T{tm[1]}:{tm[2]}:{tm[3]}"


_TIME_SERIES = ("bold", "asl", "cbv", "phase")  # BIDS wants these 4D


def _single_volume_to_4d(src: Path, dest: Path, tr) -> bool:
    """Write a 3D image as 4D with one volume (BIDS time series are 4D); False when it is not 3D.

    Voxels (stored values and scaling) and the affine are unchanged; only the header's
    dimensions (and the TR in pixdim[4]) change.
    """
    import gzip

    import nibabel as nib  # noqa: PLC0415

    img = nib.load(str(src))
    if len(img.shape) != 3:
        return False
    hdr = img.header.copy()
    data = np.asanyarray(img.dataobj.get_unscaled())[..., np.newaxis]
    out = nib.Nifti1Image(data, img.affine, header=hdr)
    slope, inter = img.header["scl_slope"], img.header["scl_inter"]
    out.header["scl_slope"], out.header["scl_inter"] = slope, inter
    zooms = list(img.header.get_zooms()) + [float(tr) if isinstance(tr, int | float) else 1.0]
    out.header.set_zooms(zooms)
    out.header.set_xyzt_units(*img.header.get_xyzt_units()[:1], "sec")
    out.set_qform(img.get_qform(), int(img.header["qform_code"]))
    out.set_sform(img.get_sform(), int(img.header["sform_code"]))
    with atomic_open(dest, "wb") as fh, gzip.GzipFile(filename="", fileobj=fh, mode="wb", mtime=0,
                                                      compresslevel=6) as gz:
        gz.write(out.to_bytes())
    return True


def _fill_echo_times(side: dict, s: _Series, items: list[tuple[_Series, dict]]) -> None:
    """EchoTime1/2 for a phase-difference map from its magnitude images (same or previous series)."""
    cands = [
        (abs(o_s.number - s.number), o["fields"].get("EchoTime"))
        for o_s, o in items
        if o["guess"].suffix in ("magnitude1", "magnitude2") and o["fields"].get("EchoTime") is not None
    ]
    tes = sorted({te for _d, te in sorted(cands)[:2]})
    if len(tes) == 2:
        side.setdefault("EchoTime1", tes[0])
        side.setdefault("EchoTime2", tes[1])


def _sourcedata_folder(staging: Path, s: _Series) -> Path:
    folder = staging / "sourcedata" / "dicom" / f"sub-{s.subject}"
    if s.session:
        folder = folder / f"ses-{s.session}"
    return folder / s.token


def _stage_sourcedata(series: list[_Series], staging: Path, sourcedata: str) -> dict[str, Path]:
    """Link series under sourcedata/dicom; return {series token: folder} of what was linked."""
    linked: dict[str, Path] = {}
    for s in series:
        if s.action != "sourcedata" and sourcedata != "dicom" or s.outputs and "micr" in s.outputs[0]:
            continue  # a whole-slide series placed in micr: its OME-TIFF only
        folder = _sourcedata_folder(staging, s)
        folder.mkdir(parents=True, exist_ok=True)
        for i, r in enumerate(s.records, 1):
            link = folder / f"{i:05d}.dcm"
            try:
                os.symlink(os.path.abspath(r["path"]), link)  # a new link appears whole: atomic already
            except FileExistsError:
                _symlink(Path(r["path"]), link)
        linked[s.token] = folder
    return linked


def _plan_micr(s: _Series) -> None:
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


def _stage_micr(series: list[_Series], staging: Path) -> None:
    from .micr import micr_sidecar

    for s in series:
        if s.action == "bids" and s.outputs and "micr" in s.outputs[0]:
            o = s.outputs[0]
            _symlink(Path(o["micr"]), staging / f"{o['rel']}.dcm")
            _write_sidecar(staging / f"{o['rel']}.json", micr_sidecar(o["size"]))


def _stage_twix(twix_by_pid, subjects: dict[str, str], sessions_of, staging: Path, pseudo: Pseudonymizer) -> None:
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
            _symlink(Path(r["path"]), folder / f"{token}.dat")
