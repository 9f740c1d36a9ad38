"""Whole-slide images: DICOM WSI (VL Whole Slide Microscopy) and TIFF-based slides (SVS, pyramidal TIFF).

DICOM WSI: LABEL and OVERVIEW instances (ImageType value 3) show the slide label and
the glass with handwriting or barcodes: they are withheld. VOLUME and THUMBNAIL
instances are tissue only: their header goes through the DICOM engine (the SM modality
is not treated as a burned-in risk for them).

TIFF: the file is rebuilt page by page from the raw (still compressed) tiles or
strips, so the image data stay bit-identical. Label and macro pages are left out.
Only structural tags are written; ``ImageDescription`` keeps the SVS header line and
the technical key=value pairs (AppMag, MPP, ...); date, time, user, scanner, file name
and every other key are dropped, as are the Artist, HostComputer, DocumentName, PageName,
ImageUniqueID and Copyright tags. Make, Model, Software and DateTime follow the profile's
rules for the sidecar fields they are (Manufacturer, ManufacturersModelName,
SoftwareVersions, AcquisitionDateTime: kept, the date shifted, under the basic profile).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import InputError
from .base import Context, Outcome, ScrubLog, write_outcome

log = logging.getLogger(__name__)

WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
_DROP_IMAGE_TYPES = {"LABEL", "OVERVIEW"}
SVS_KEEP_KEYS = {
    "AppMag", "MPP", "StripeWidth", "Exposure Time", "Exposure Scale", "Focus Offset", "Gamma",
    "LineCameraSkew", "LineAreaXOffset", "LineAreaYOffset", "OriginalWidth", "OriginalHeight",
}
_ASSOCIATED = re.compile(r"\b(label|macro|overview|barcode|thumbnail-label)\b", re.I)
_SVS_HEADER = re.compile(r"^(Aperio [^\r\n|]*?)?\s*([0-9]+x[0-9]+[^|]*)?$")
TIFF_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".scn", ".bif")


@dataclass
class TiffResult:
    """Pages kept and left out by :func:`scrub_tiff_wsi`."""

    kept: int = 0
    dropped: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ DICOM WSI
def wsi_image_type(ds) -> str:
    """ImageType value 3 (VOLUME, THUMBNAIL, LABEL, OVERVIEW) upper-cased, or ''."""
    it = ds.get("ImageType")
    vals = list(it) if it is not None and not isinstance(it, str) else ([it] if it else [])
    return str(vals[2]).strip().upper() if len(vals) >= 3 else ""


def is_dicom_wsi(ds) -> bool:
    """True for VL Whole Slide Microscopy instances (SOP class or Modality SM)."""
    return str(ds.get("SOPClassUID", "")) == WSI_SOP_CLASS or str(ds.get("Modality", "")).upper() == "SM"


def deidentify_wsi_dicom(src: Path, dst: Path, profile, pseudo, subject: str | None = None,
                         offset_days: int | None = None):
    """De-identify one DICOM WSI instance; LABEL/OVERVIEW instances are withheld.

    Parameters
    ----------
    src, dst : Path
        Input instance (never modified) and output path.
    profile : Profile
        The run's profile (its burned-in policy is not applied to VOLUME/THUMBNAIL).
    pseudo : Pseudonymizer
        Keyed pseudonyms and UID remapping.
    subject : str, optional
        Pseudonymous subject label.
    offset_days : int, optional
        Date shift.

    Returns
    -------
    bids_deid.scrub.dicom.DicomResult
        Status ``withheld`` for label/overview images.
    """
    import pydicom  # noqa: PLC0415

    from ..scrub.dicom import DicomResult, deidentify_file  # noqa: PLC0415

    src = Path(src)
    try:
        head = pydicom.dcmread(src, stop_before_pixels=True, specific_tags=["ImageType", "SOPClassUID", "Modality"])
    except Exception as exc:  # noqa: BLE001
        return DicomResult(src, None, "error", f"not readable as DICOM ({type(exc).__name__})")
    kind = wsi_image_type(head)
    if kind in _DROP_IMAGE_TYPES or not kind:
        why = f"whole-slide {kind} image shows the slide label" if kind else "whole-slide image of unknown type"
        return DicomResult(src, None, "withheld", why, subject=subject)
    return deidentify_file(src, dst, replace(profile, dicom_burned_in="keep"), pseudo, subject=subject,
                           offset_days=offset_days)


# ------------------------------------------------------------------ TIFF WSI
def scrub_svs_description(text: str, slog: ScrubLog | None = None) -> str:
    """Keep the SVS header line and technical ``key = value`` pairs; drop the rest.

    Non-SVS descriptions (free text, OME-XML, JSON) are dropped entirely: they may
    name people, places or dates and readers do not need them.
    """
    slog = slog or ScrubLog()
    if not text:
        return ""
    parts = text.split("|")
    if not parts[0].lstrip().startswith("Aperio"):
        slog.met("TIFF ImageDescription", text[:200])
        slog.change("ImageDescription", "remove", "free-text image description")
        return ""
    head_lines = [ln.strip() for ln in re.split(r"[\r\n]+", parts[0]) if ln.strip()]
    kept_head = [ln for ln in head_lines if _SVS_HEADER.match(ln)]
    out = ["\r\n".join(kept_head)]
    for p in parts[1:]:
        key, _, value = p.partition("=")
        key, value = key.strip(), value.strip()
        if key in SVS_KEEP_KEYS and re.fullmatch(r"[-+0-9.eE]+", value or "x"):
            out.append(f"{key} = {value}")
        else:
            slog.met(f"SVS {key}", value)
            slog.change(f"ImageDescription:{key}", "remove", "not a technical SVS key")
    return "|".join(out)


def _is_associated(page) -> str | None:
    desc = page.description or ""
    first = desc.split("|")[0]
    m = _ASSOCIATED.search(first) if desc else None
    if m and m.group(1).lower() != "thumbnail-label":
        return m.group(1).lower()
    if int(page.subfiletype or 0) & 8:  # Aperio marks the macro with NewSubfileType 9
        return "macro"
    return None


def _segments(fh, page):
    for off, n in zip(page.dataoffsets, page.databytecounts, strict=True):
        if n == 0:
            yield b""
            continue
        fh.seek(off)
        yield fh.read(n)


# TIFF tags that describe the scanner, and the sidecar field whose profile rule decides them;
# ``DateTime`` follows the profile's date policy. The other identifying tags have no such
# field and are always removed.
PROFILE_TAGS = {271: "Manufacturer", 272: "ManufacturersModelName", 305: "SoftwareVersions"}


def _profile_tags(page, profile, offset_days: int | None) -> dict[int, str]:
    """Tag code -> value to write, for the scanner tags the profile keeps and ``DateTime``.

    The scanner tags go through :func:`~bids_deid.formats.sidecar.scrub_sidecar` as the
    fields they are (:data:`PROFILE_TAGS`), so the profile's sidecar rules decide exactly as
    for a sidecar. ``DateTime`` (``YYYY:MM:DD HH:MM:SS``) is shifted by the subject's offset
    under ``dates: shift``, kept under ``dates: keep`` and removed otherwise (and always at
    dataset level, where there is no offset).
    """
    from ..pseudonym import shift_iso
    from .sidecar import scrub_sidecar

    side = {name: page.tags[code].value.strip() for code, name in PROFILE_TAGS.items()
            if code in page.tags and isinstance(page.tags[code].value, str) and page.tags[code].value.strip()}
    clean = scrub_sidecar(side, profile, offset_days, ScrubLog()) if side else {}
    out = {code: clean[name] for code, name in PROFILE_TAGS.items() if isinstance(clean.get(name), str) and clean[name]}
    t = page.tags.get(306)
    m = re.fullmatch(r"(\d{4}):(\d\d):(\d\d) (\d\d:\d\d:\d\d)", t.value.strip()) if t is not None and isinstance(
        t.value, str) else None
    if m and profile.dates == "keep":
        out[306] = t.value.strip()
    elif m and profile.dates == "shift" and offset_days is not None:
        shifted = shift_iso(f"{m[1]}-{m[2]}-{m[3]}T{m[4]}", offset_days)
        n = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d:\d\d:\d\d)", shifted or "")
        if n:
            out[306] = f"{n[1]}:{n[2]}:{n[3]} {n[4]}"
    return out


def _page_plan(src: Path, tif, slog: ScrubLog, res: TiffResult, profile=None,
               offset_days: int | None = None) -> list[tuple[int, dict]]:
    """The pages to write (index, tifffile keywords), the rest logged as left out."""
    plan = []
    for i, page in enumerate(tif.pages):
        page = page.keyframe if hasattr(page, "keyframe") and page.keyframe is not page else page
        kept = _profile_tags(page, profile, offset_days) if profile is not None else {}
        for code, name in ((306, "DateTime"), (315, "Artist"), (316, "HostComputer"), (305, "Software"),
                           (271, "Make"), (272, "Model"), (269, "DocumentName"), (285, "PageName"),
                           (42016, "ImageUniqueID"), (33432, "Copyright")):
            t = page.tags.get(code)
            if t is not None and code not in kept:
                if code in (315, 316, 269, 285, 42016):  # people, machines, names: kept for the leak audit
                    slog.met(f"TIFF {name}", str(t.value))
                slog.change(f"page {i} {name}", "remove", "identifying TIFF tag")
            elif t is not None:
                slog.change(f"page {i} {name}", "keep" if kept[code] == str(t.value) else "shift_date",
                            "the profile's rule for the same sidecar field")
        kind = _is_associated(page)
        if kind:
            res.dropped.append(kind)
            slog.change(f"page {i}", "remove", f"{kind} image (slide label / glass)")
            continue
        if getattr(page, "subifds", None):
            raise InputError(f"{src.name}: pyramids stored as SubIFDs are not supported yet")
        desc = scrub_svs_description(page.description or "", slog)
        kw = {
            "shape": page.shape,
            "dtype": page.dtype,
            "photometric": page.photometric,
            "planarconfig": page.planarconfig,
            "compression": page.compression,
            "bitspersample": page.bitspersample,
            "subfiletype": int(page.subfiletype or 0),
            "description": desc or None,
            "software": kept.get(305, False),
            "datetime": kept.get(306, False),
            "metadata": None,
        }
        if page.is_tiled:
            kw["tile"] = (page.tilelength, page.tilewidth)
        else:
            kw["rowsperstrip"] = page.rowsperstrip
        if page.jpegtables is not None:
            kw["jpegtables"] = page.jpegtables
        if page.photometric == 6 and page.subsampling:  # YCbCr
            kw["subsampling"] = page.subsampling
        if page.predictor and page.predictor > 1:
            kw["predictor"] = page.predictor
        if page.extrasamples:
            kw["extrasamples"] = page.extrasamples
        if page.colormap is not None:
            kw["colormap"] = page.colormap
        extratags = [(code, "s", 0, kept[code], True) for code in (271, 272) if code in kept]
        if extratags:
            kw["extratags"] = extratags
        x, y, unit = page.tags.get(282), page.tags.get(283), page.tags.get(296)
        if x is not None and y is not None:
            kw["resolution"] = (x.value, y.value)
            kw["resolutionunit"] = unit.value if unit is not None else 1
        plan.append((i, kw))
        res.kept += 1
    if not res.kept:
        raise InputError(f"{src.name}: no image page left after removing label/macro pages")
    return plan


def _open_tiff(src: Path):
    import tifffile  # noqa: PLC0415

    try:
        return tifffile.TiffFile(src)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{src.name} is not a readable TIFF ({type(exc).__name__})") from exc


def tiff_outcome(src: Path, rel: str, profile=None, offset_days: int | None = None) -> tuple[Outcome, TiffResult]:
    """A TIFF whole-slide image rebuilt under ``rel`` without label/macro pages and identifying tags.

    With a profile, the scanner make/model, software and date-time tags follow its rules for
    the same sidecar fields (:data:`PROFILE_TAGS`; a date shifted by ``offset_days``); without
    one they are removed too.

    The pages are chosen (and every change logged) now; the kept pages are copied, still
    compressed, when the file is written. Raises InputError for an unreadable TIFF or one
    with no image page left.
    """
    src = Path(src)
    slog = ScrubLog()
    res = TiffResult()
    with _open_tiff(src) as tif:
        plan = _page_plan(src, tif, slog, res, profile, offset_days)
        bigtiff = tif.is_bigtiff

    def rebuild(out) -> None:
        import tifffile  # noqa: PLC0415

        with _open_tiff(src) as tif, tifffile.TiffWriter(out.tmp_path, bigtiff=bigtiff) as tw:
            fh = tif.filehandle
            for i, kw in plan:
                page = tif.pages[i]
                page = page.keyframe if hasattr(page, "keyframe") and page.keyframe is not page else page
                tw.write(_segments(fh, page), **kw)

    return Outcome(writes={rel: rebuild}, log=slog), res


def scrub_tiff_wsi(src: Path, dst: Path, slog: ScrubLog | None = None) -> TiffResult:
    """Rebuild a TIFF whole-slide image without label/macro pages and identifying tags, into ``dst``.

    :func:`tiff_outcome` written at once (atomically; BigTIFF when the input is); ``src`` is
    never modified. Returns the pages kept and left out.
    """
    dst = Path(dst)
    out, res = tiff_outcome(Path(src), dst.name)
    if slog is not None:
        slog.extend(out.log)
    write_outcome(dst.parent, out, skip_existing=False)
    return res


# ------------------------------------------------------------------ the format module interface
NAME = "tiff"
SUFFIXES = TIFF_SUFFIXES
COMPANION_SUFFIXES: tuple[str, ...] = ()


def sniff(path: Path) -> bool:
    return path.suffix.lower() in TIFF_SUFFIXES and is_tiff(path)


def companions(path: Path) -> list[Path]:
    return []


def scrub(src: Path, profile, ctx: Context) -> Outcome:
    """The slide under ``ctx.rel_out``: label, macro and overview pages and identifying tags left
    out; the scanner and date-time tags as the profile decides; see :func:`tiff_outcome`."""
    out, res = tiff_outcome(Path(src), ctx.rel_out, profile, ctx.offset_days)
    if res.dropped:
        out.log.change("pages", "remove", f"{len(res.dropped)} label/macro page(s)")
    return out


def is_tiff(path: Path) -> bool:
    """True when ``path`` starts with a TIFF/BigTIFF signature."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return head in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
