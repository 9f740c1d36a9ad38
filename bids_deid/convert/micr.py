"""Whole-slide images in the BIDS microscopy datatype (``micr``).

BIDS (schema ``rules.files.raw.micr``) wants ``sub-<label>[_ses-<label>]_sample-<label>_<suffix>``
with a suffix such as ``BF`` (bright field: H&E slides) and one of ``.ome.tif``,
``.ome.btf``, ``.tif``, ``.png``; a sidecar with ``PixelSize`` and ``PixelSizeUnits``; and a
``samples.tsv`` at the top (``sample_id``, ``participant_id``, ``sample_type``) as soon as
the dataset holds ``micr`` data. The validator checks that ``PixelSize`` agrees with the
OME ``PhysicalSizeX/Y``.

A slide is placed there only when its pixel size is known (DICOM ``PixelSpacing``, SVS
``MPP``, TIFF resolution in cm/inch); otherwise it stays in ``sourcedata/microscopy``.
The image is written as a pyramidal OME-TIFF built from the *scrubbed* slide:

* TIFF/SVS: the kept tiled pages (label, macro and thumbnail left out) are copied tile by
  tile, still compressed, as the full-resolution image and its SubIFD levels;
* DICOM WSI (VOLUME instance, after the DICOM engine): the frames are decoded, assembled
  and written zlib-compressed with 2x reduced levels.

The OME-XML written holds geometry and pixel size only.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import numpy as np

from ..atomic import atomic_open, atomic_write_bytes
from ..errors import InputError
from ..formats.base import Outcome, ScrubLog

log = logging.getLogger(__name__)

SUFFIX = "BF"
MAX_DICOM_PIXELS = 1 << 28  # larger DICOM slides stay in sourcedata (assembled in memory here)
#: slide files placed in ``micr`` (TIFF family and DICOM WSI)
SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".scn", ".bif", ".btf", ".dcm")


# ------------------------------------------------------------------ pixel size
def tiff_pixel_size_um(path: Path) -> tuple[float, float] | None:
    """(x, y) pixel size in micrometres of a TIFF slide's first page, or None when unknown."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            m = re.search(r"\|\s*MPP\s*=\s*([0-9.eE+-]+)", page.description or "")
            if m and float(m.group(1)) > 0:
                return float(m.group(1)), float(m.group(1))
            x, y, unit = page.tags.get(282), page.tags.get(283), page.tags.get(296)
            if x is None or y is None or unit is None or int(unit.value) not in (2, 3):
                return None
            per = 25400.0 if int(unit.value) == 2 else 10000.0
            xr, yr = (v[0] / v[1] if isinstance(v, tuple) else float(v) for v in (x.value, y.value))
            return (per / xr, per / yr) if xr > 0 and yr > 0 else None
    except Exception:  # noqa: BLE001 - unreadable: not placed, the scrubber reports it
        return None


def dicom_wsi_info(path: Path) -> tuple[tuple[float, float], int] | None:
    """((x, y) pixel size in um, total pixels) of a DICOM WSI VOLUME instance, or None."""
    import pydicom

    from ..formats.wsi import is_dicom_wsi, wsi_image_type

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # noqa: BLE001
        return None
    if not is_dicom_wsi(ds) or wsi_image_type(ds) != "VOLUME":
        return None
    spacing = None
    for seq in (ds.get("SharedFunctionalGroupsSequence") or [])[:1]:
        for pm in seq.get("PixelMeasuresSequence") or []:
            spacing = pm.get("PixelSpacing")
    if not spacing or len(spacing) < 2 or float(spacing[0]) <= 0 or float(spacing[1]) <= 0:
        return None
    total = int(ds.get("TotalPixelMatrixRows") or 0) * int(ds.get("TotalPixelMatrixColumns") or 0)
    if not total or str(ds.get("DimensionOrganizationType", "TILED_FULL")).upper() != "TILED_FULL":
        return None
    # DICOM PixelSpacing is (row spacing = y, column spacing = x) in mm
    return (float(spacing[1]) * 1000.0, float(spacing[0]) * 1000.0), total


def slide_pixel_size_um(path: Path) -> tuple[float, float] | None:
    """Pixel size of a slide (TIFF family or DICOM WSI VOLUME) when it can go to ``micr``, else None."""
    path = Path(path)
    if path.suffix.lower() == ".dcm" or not path.suffix:
        info = dicom_wsi_info(path)
        return info[0] if info and info[1] <= MAX_DICOM_PIXELS else None
    return tiff_pixel_size_um(path)


def micr_stem(subject: str, session: str | None, sample: str, suffix: str = SUFFIX) -> str:
    """``sub-X[_ses-Y]_sample-Z_BF``."""
    return "_".join([f"sub-{subject}", *([f"ses-{session}"] if session else []), f"sample-{sample}", suffix])


def micr_sidecar(pixel_size_um: tuple[float, float]) -> dict:
    """The required sidecar fields of a ``micr`` image."""
    return {"PixelSize": [round(float(pixel_size_um[0]), 9), round(float(pixel_size_um[1]), 9)],
            "PixelSizeUnits": "um"}


# ------------------------------------------------------------------ OME-TIFF writers
def _ome_meta(shape: tuple[int, ...], pixel_size_um: tuple[float, float], name: str) -> dict:
    import uuid

    axes = "YXS" if len(shape) == 3 else "YX"
    # tifffile's default UUID is uuid1 (host MAC address and time): replaced by one derived from the output name
    return {"axes": axes, "UUID": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'bids-deid:' + name)}",
            "Creator": "bids-deid", "PhysicalSizeX": float(pixel_size_um[0]), "PhysicalSizeXUnit": "µm",
            "PhysicalSizeY": float(pixel_size_um[1]), "PhysicalSizeYUnit": "µm"}


def _segments(fh, page):
    for off, n in zip(page.dataoffsets, page.databytecounts, strict=True):
        fh.seek(off)
        yield fh.read(n) if n else b""


def _levels(pages) -> list:
    """Full-resolution page and its tiled reduced levels, largest first (thumbnail and others left out)."""
    base = pages[0]
    h0, w0 = base.shape[:2]
    levels = [base]
    for p in pages[1:]:
        if not p.is_tiled or p.dtype != base.dtype or len(p.shape) != len(base.shape):
            continue
        h, w = p.shape[:2]
        if h < levels[-1].shape[0] and abs(h / h0 - w / w0) < 0.02 * max(1.0, w / w0):
            levels.append(p)
    return levels


def _raw_kw(page) -> dict:
    kw = {"shape": page.shape, "dtype": page.dtype, "photometric": page.photometric,
          "planarconfig": page.planarconfig, "compression": page.compression, "bitspersample": page.bitspersample,
          "tile": (page.tilelength, page.tilewidth), "software": False, "datetime": False}
    if page.jpegtables is not None:
        kw["jpegtables"] = page.jpegtables
    if page.photometric == 6 and page.subsampling:
        kw["subsampling"] = page.subsampling
    if page.predictor and page.predictor > 1:
        kw["predictor"] = page.predictor
    if page.extrasamples:
        kw["extrasamples"] = page.extrasamples
    return kw


def tiff_ome_into(src: Path, out, pixel_size_um: tuple[float, float], name: str) -> int:
    """Copy the pyramid of a (scrubbed) TIFF slide into an open atomic file (``out.tmp_path``) as a
    pyramidal OME-TIFF, tiles still compressed. Returns the number of levels written."""
    import tifffile

    with tifffile.TiffFile(src) as tif:
        pages = list(tif.pages)
        if not pages or not pages[0].is_tiled:
            raise InputError("the slide's full-resolution page is not tiled")
        levels = _levels(pages)
        fh = tif.filehandle
        with tifffile.TiffWriter(out.tmp_path, bigtiff=True, ome=True) as tw:
            for i, page in enumerate(levels):
                kw = _raw_kw(page)
                if i == 0:
                    tw.write(_segments(fh, page), subifds=len(levels) - 1,
                             metadata=_ome_meta(page.shape, pixel_size_um, name), **kw)
                else:
                    tw.write(_segments(fh, page), subfiletype=1, metadata=None, **kw)
    return len(levels)


def tiff_to_ome(src: Path, dst: Path, pixel_size_um: tuple[float, float]) -> int:
    """:func:`tiff_ome_into` a new file ``dst`` (atomically); the number of levels written."""
    with atomic_open(dst, "wb") as out:
        return tiff_ome_into(src, out, pixel_size_um, Path(dst).name)


def _assemble_dicom(ds, total: tuple[int, int]) -> np.ndarray:
    rows, cols = int(ds.Rows), int(ds.Columns)
    th, tw_ = total
    frames = ds.pixel_array
    if frames.ndim == (3 if int(ds.get("SamplesPerPixel") or 1) == 1 else 4) - 1:
        frames = frames[None]
    nx = math.ceil(tw_ / cols)
    full = np.zeros((math.ceil(th / rows) * rows, nx * cols, *frames.shape[3:]), frames.dtype)
    for i, f in enumerate(frames):
        y, x = divmod(i, nx)
        full[y * rows:(y + 1) * rows, x * cols:(x + 1) * cols] = f
    return full[:th, :tw_]


def dicom_ome_into(src: Path, out, pixel_size_um: tuple[float, float], name: str,
                   total: tuple[int, int] | None = None, min_level: int = 512) -> int:
    """Decode a (de-identified) DICOM WSI VOLUME instance into an open atomic file (``out.tmp_path``) as a
    pyramidal OME-TIFF; returns levels written.

    ``total`` is (TotalPixelMatrixRows, TotalPixelMatrixColumns) when the header passed here
    no longer holds them (the DICOM engine does not keep every WSI attribute).
    """
    import pydicom
    import tifffile

    ds = pydicom.dcmread(src)
    try:
        total = total or (int(ds.TotalPixelMatrixRows), int(ds.TotalPixelMatrixColumns))
        full = _assemble_dicom(ds, total)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"whole-slide frames not decodable ({type(exc).__name__})") from exc
    levels = [full]
    while max(levels[-1].shape[:2]) > 2 * min_level:
        levels.append(levels[-1][::2, ::2])
    photometric = "rgb" if full.ndim == 3 else "minisblack"
    opts = {"tile": (256, 256), "compression": "zlib", "photometric": photometric, "software": False,
            "datetime": False}
    with tifffile.TiffWriter(out.tmp_path, bigtiff=True, ome=True) as tw:
        tw.write(full, subifds=len(levels) - 1, metadata=_ome_meta(full.shape, pixel_size_um, name), **opts)
        for lv in levels[1:]:
            tw.write(np.ascontiguousarray(lv), subfiletype=1, metadata=None, **opts)
    return len(levels)


def dicom_to_ome(src: Path, dst: Path, pixel_size_um: tuple[float, float], total: tuple[int, int] | None = None,
                 min_level: int = 512) -> int:
    """:func:`dicom_ome_into` a new file ``dst`` (atomically); the number of levels written."""
    with atomic_open(dst, "wb") as out:
        return dicom_ome_into(src, out, pixel_size_um, Path(dst).name, total, min_level)


# ------------------------------------------------------------------ pipeline handler
def is_micr_rel(rel: str) -> bool:
    """True for a slide file inside a ``micr`` folder of a subject."""
    parts = rel.split("/")
    return "micr" in parts[:-1] and parts[-1].lower().endswith(SLIDE_SUFFIXES)


def ome_name(rel: str) -> str:
    """``.../x_BF.svs`` / ``.dcm`` / ``.ome.tif`` -> ``.../x_BF.ome.tif``."""
    head, _, name = rel.rpartition("/")
    return (head + "/" if head else "") + name.split(".")[0] + ".ome.tif"


def _total_matrix(path: Path) -> tuple[int, int]:
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["TotalPixelMatrixRows",
                                                                       "TotalPixelMatrixColumns"])
    return int(ds.TotalPixelMatrixRows), int(ds.TotalPixelMatrixColumns)


def micr_task(t, ctx) -> Outcome:
    """A slide under ``sub-X/micr/``: scrubbed in the private scratch, then written as OME-TIFF."""
    from ..formats.base import write_outcome
    from ..formats.wsi import deidentify_wsi_dicom, tiff_outcome

    s = ctx.s
    rel = ome_name(t.rel_out)
    if ctx.dry_run:
        return Outcome(plan=[f"  micr     {rel}  (scrub -> pyramidal OME-TIFF)"])
    if ctx.out(rel).exists():
        return Outcome().record(rel, ctx.status(rel) or "written")
    is_dcm = t.src.suffix.lower() == ".dcm"
    size = slide_pixel_size_um(t.src)
    if size is None:
        return Outcome().record(t.src.relative_to(s.bids_dir).as_posix(), "left out",
                                "slide without a known pixel size (BIDS micr needs PixelSize)", original=True)
    tmp = ctx.scratch("micr") / (Path(rel).name + (".dcm" if is_dcm else ".tif"))
    slog = ScrubLog()
    res = Outcome(log=slog, audit_rel=rel, error_status="error", cleanup=[tmp])
    try:
        if is_dcm:  # the DICOM engine writes the de-identified instance into the scratch itself
            dres = deidentify_wsi_dicom(t.src, tmp, s.profile, ctx.pseudo, subject=ctx.new, offset_days=ctx.offset)
            res.audit += [{"file": rel, **c} for c in dres.changes]
            slog.identifiers += list(dres.identifiers)
            if dres.status not in ("written", "exists"):
                tmp.unlink(missing_ok=True)
                return Outcome(audit=res.audit, log=ScrubLog(identifiers=slog.identifiers)).record(
                    rel, dres.status, dres.reason)
            total = _total_matrix(t.src)

            def ome(out) -> None:
                n = dicom_ome_into(tmp, out, size, Path(rel).name, total=total)
                slog.change("format", "convert", f"pyramidal OME-TIFF, {n} level(s), OME-XML with geometry and "
                                                 "pixel size only")
        else:
            scrubbed, _pages = tiff_outcome(t.src, tmp.name)
            write_outcome(tmp.parent, scrubbed, skip_existing=False)
            slog.extend(scrubbed.log)
            if _pages.dropped:
                slog.change("pages", "remove", f"{len(_pages.dropped)} label/macro page(s)")

            def ome(out) -> None:
                n = tiff_ome_into(tmp, out, size, Path(rel).name)
                slog.change("format", "convert", f"pyramidal OME-TIFF, {n} level(s), OME-XML with geometry and "
                                                 "pixel size only")
    except InputError as exc:
        tmp.unlink(missing_ok=True)
        return Outcome().record(rel, "error", str(exc))
    res.writes[rel] = ome
    return res


# ------------------------------------------------------------------ dataset level
def write_samples_tsv(output_dir: Path) -> Path | None:
    """Write ``samples.tsv`` (+ ``samples.json``) listing every ``micr`` sample of the output; None if none."""
    import json

    output_dir = Path(output_dir)
    rows = set()
    for p in output_dir.glob("sub-*/**/micr/*"):
        m = re.match(r"(sub-[A-Za-z0-9]+)_(?:ses-[A-Za-z0-9]+_)?.*?(sample-[A-Za-z0-9]+)", p.name)
        if m and not p.name.endswith(".json"):
            rows.add((m.group(2), m.group(1)))
    if not rows:
        return None
    body = "sample_id\tparticipant_id\tsample_type\n" + "".join(f"{s}\t{p}\ttissue\n" for s, p in sorted(rows))
    atomic_write_bytes(output_dir / "samples.tsv", body.encode())
    desc = {"sample_id": {"Description": "Pseudonymous sample label (keyed token of the slide)"},
            "sample_type": {"Description": "Biosample type (ENCODE); whole-slide images are tissue sections"}}
    atomic_write_bytes(output_dir / "samples.json", (json.dumps(desc, indent=2) + "\n").encode())
    return output_dir / "samples.tsv"
