"""Discovery of raw input: every file under a folder, read for the header fields staging needs.

The header pass (:func:`discover`) reads each file once, headers only: the fast reader
(:mod:`.fasthdr`) for plain Part-10 files, pydicom for anything unusual. A record says what a
file is (``dicom``, ``twix``, ``dicomdir``, ``corrupt``, ``other``) and, for DICOM, holds the
plain values of :data:`HEADER_TAGS` that grouping, classification and identifier collection use.
gzip-compressed DICOM is unpacked into a private folder first.
"""

from __future__ import annotations

import re
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from ..formats.twix import is_twix
from .detect import walk
from .fasthdr import fast_header

# Scanner files often break VR length rules; reading them must not warn per file.


def pydicom_reader():
    """pydicom, imported on first use (most folders never need it: the header pass reads plain
    files itself), set to read values without validating them."""
    import pydicom

    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    return pydicom

ID_TAGS = (
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
LATE_ID_TAGS = ("PerformedLocation", "PerformedProcedureStepDescription", "RequestedProcedureDescription",
                "PerformedStationName", "PerformedStationAETitle", "ScheduledProcedureStepDescription")
DATE_TAGS = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")
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
HEADER_TAGS = list(dict.fromkeys(ID_TAGS + DATE_TAGS + _CLASS_TAGS))
HEADER_TAGS_T = tuple(HEADER_TAGS)
FAST_HEADERS = True  # fasthdr for plain Part 10 files (tests switch it off to compare with pydicom)
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


def sop_kind(fields: dict) -> str:
    """``"image"`` (classic image storage), ``"enhanced"`` (multi-frame MR) or the SOP class of a non-image object."""
    sop = str(fields.get("SOPClassUID") or "")
    if sop in _ENHANCED_IMAGE_SOP:
        return "enhanced"
    if sop.startswith(_NON_IMAGE_SOP_PREFIXES) or sop.startswith("1.3.46.670589.11.0.0.12."):  # Philips private
        return sop or "unknown"
    return "image"


def sop_name(kind: str) -> str:
    if kind.startswith("1.3.46.670589.11.0.0.12."):
        return "Philips private series data"
    return _SOP_NAMES.get(kind, f"SOP class {kind}" if re.fullmatch(r"[0-9.]{1,64}", kind) else "unknown SOP class")


def _plain(value) -> object:
    """pydicom values to picklable plain Python (str / float / list of str)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
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
    if not preamble and min(int.from_bytes(head[:2], "little"), int.from_bytes(head[:2], "big")) > 0x0008:
        # Files are only taken as DICOM with a SOPInstanceUID (0008,0018); elements come in tag
        # order, so a stream without preamble must start in a group up to 0008: text files and
        # other data are told apart here without a parse.
        return rec
    if preamble and FAST_HEADERS:
        fast = fast_header(str(path), HEADER_TAGS_T)
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
            ds = pydicom_reader().dcmread(fh, stop_before_pixels=True, force=not preamble,
                                          specific_tags=HEADER_TAGS)
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
    files = [str(f) for f in walk(Path(raw_dir))]
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
