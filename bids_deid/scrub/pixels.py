"""Burned-in text in pixel data: find it with OCR, black it out, prove it is gone.

OCR runs with RapidOCR (``rapidocr`` 3.x on onnxruntime and the headless OpenCV build; its
text detection and recognition ONNX models ship inside the wheel, so it works offline; the
older ``rapidocr-onnxruntime`` package is used where only it is installed). Every detected text box is
filled with the darkest value the image can show (index of the darkest palette entry
for PALETTE COLOR, the maximum for MONOCHROME1), plus fixed regions from the
profile's ``dicom.pixel_regions``. OCR then runs again on the result; boxes it still
finds are blacked out too, up to ``max_passes`` times. If text remains after that the
file is refused (:class:`~bids_deid.errors.LeakError`), never written.

Pixels are decoded with pydicom (compressed input through its handlers) and written
uncompressed, Explicit VR Little Endian; YBR colour data become RGB.
"""

from __future__ import annotations

import base64
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BidsDeidError, LeakError

log = logging.getLogger(__name__)

MIN_SCORE = 0.5  # OCR confidence from which a detection counts as text
MARGIN = 3  # pixels added around each box
_ENGINE = None


@dataclass
class TextBox:
    """One text detection: pixel box (x0, y0, x1, y1, inclusive-exclusive), text and confidence."""

    x0: int
    y0: int
    x1: int
    y1: int
    text: str
    score: float


@dataclass
class PixelResult:
    """What :func:`clean_dataset_pixels` did. ``texts_found`` is PRIVATE (it holds burned-in text)."""

    frames: int = 0
    boxes: int = 0
    region_boxes: int = 0
    passes: int = 0
    texts_found: list[str] = field(default_factory=list)
    remaining: list[str] = field(default_factory=list)
    before_png: bytes | None = None
    after_png: bytes | None = None
    photometric_note: str = ""


def _engine_class():
    """(RapidOCR class, major version): ``rapidocr`` 3.x first, else ``rapidocr-onnxruntime``."""
    try:
        from rapidocr import RapidOCR  # noqa: PLC0415

        return RapidOCR, 3
    except Exception:  # noqa: BLE001
        from rapidocr_onnxruntime import RapidOCR  # noqa: PLC0415

        return RapidOCR, 1


def ocr_available() -> bool:
    """True when an OCR package can be imported."""
    try:
        _engine_class()
    except Exception:  # noqa: BLE001
        return False
    return True


def get_engine():
    """The shared RapidOCR engine (built once per process) and its major version."""
    global _ENGINE
    if _ENGINE is None:
        try:
            cls, major = _engine_class()
        except Exception as exc:  # noqa: BLE001
            raise BidsDeidError(
                "cleaning burned-in text needs the OCR extra: pip install 'bids-deid[ocr]'"
            ) from exc
        engine = cls()
        # its logger reports every model load and every frame without text: errors only
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        _ENGINE = (engine, major)
    return _ENGINE


def _detections(img: np.ndarray) -> list[tuple[list, str, float]]:
    """(quadrilateral, text, score) of every detection in one RGB frame."""
    engine, major = get_engine()
    if major >= 3:
        out = engine(img)
        if out.boxes is None or out.txts is None:
            return []
        return [(quad.tolist(), str(t), float(sc)) for quad, t, sc in zip(out.boxes, out.txts, out.scores,
                                                                          strict=False)]
    result, _ = engine(img)
    return [(quad, str(t), float(sc)) for quad, t, sc in (result or [])]


def find_text(rgb: np.ndarray, min_score: float = MIN_SCORE) -> list[TextBox]:
    """Text boxes in one frame.

    Parameters
    ----------
    rgb : ndarray
        (rows, cols, 3) uint8 RGB or (rows, cols) uint8 grey image.
    min_score : float
        Detections with a lower recognition confidence are ignored.

    Returns
    -------
    list of TextBox
    """
    img = np.ascontiguousarray(rgb)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    boxes = []
    for quad, text, score in _detections(img):
        if score < min_score or not text.strip():
            continue
        xs = [p[0] for p in quad]
        ys = [p[1] for p in quad]
        boxes.append(TextBox(int(np.floor(min(xs))), int(np.floor(min(ys))), int(np.ceil(max(xs))) + 1,
                             int(np.ceil(max(ys))) + 1, text, score))
    return boxes


def to_display(frame: np.ndarray, photometric: str, lut: np.ndarray | None = None) -> np.ndarray:
    """An 8-bit RGB view of one stored frame, for OCR and thumbnails."""
    pi = photometric.upper()
    if pi == "PALETTE COLOR" and lut is not None:
        rgb = lut[np.clip(frame.astype(np.int64), 0, len(lut) - 1)]
        return _to_uint8(rgb)
    if frame.ndim == 3:
        return _to_uint8(frame)
    g = frame.astype(np.float64)
    lo, hi = np.percentile(g, 0.5), np.percentile(g, 99.5)
    g = np.clip((g - lo) / (hi - lo if hi > lo else 1.0) * 255.0, 0, 255).astype(np.uint8)
    if pi == "MONOCHROME1":
        g = 255 - g
    return g


def _to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    a = a.astype(np.float64)
    hi = a.max() if a.size else 1.0
    return np.clip(a / (hi if hi > 0 else 1.0) * 255.0, 0, 255).astype(np.uint8)


def _black_value(frame: np.ndarray, photometric: str, lut: np.ndarray | None):
    pi = photometric.upper()
    if pi == "PALETTE COLOR" and lut is not None:
        return int(np.argmin(lut.astype(np.float64).sum(axis=1)))
    if pi == "MONOCHROME1":
        return np.iinfo(frame.dtype).max if frame.dtype.kind in "iu" else frame.max()
    if frame.dtype.kind in "iu":
        return min(0, int(frame.min())) if frame.dtype.kind == "i" else 0
    return 0


def fill_boxes(frame: np.ndarray, boxes: list[tuple[int, int, int, int]], value, margin: int = MARGIN) -> None:
    """Set every box (x0, y0, x1, y1) of ``frame`` (rows, cols[, samples]) to ``value``, in place."""
    rows, cols = frame.shape[:2]
    for x0, y0, x1, y1 in boxes:
        xa, ya = max(0, x0 - margin), max(0, y0 - margin)
        xb, yb = min(cols, x1 + margin), min(rows, y1 + margin)
        if xb > xa and yb > ya:
            frame[ya:yb, xa:xb, ...] = value


def regions_for(ds, regions: tuple[dict, ...]) -> list[tuple[int, int, int, int]]:
    """Fixed boxes from the profile's ``dicom.pixel_regions`` that apply to ``ds``."""
    modality = str(ds.get("Modality", "") or "").upper()
    maker = str(ds.get("Manufacturer", "") or "").lower()
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    out = []
    for r in regions or ():
        if r.get("modality") and str(r["modality"]).upper() != modality:
            continue
        if r.get("manufacturer") and str(r["manufacturer"]).lower() not in maker:
            continue
        if r.get("rows") and int(r["rows"]) != rows or r.get("columns") and int(r["columns"]) != cols:
            continue
        out += [tuple(int(v) for v in b) for b in r.get("boxes", [])]
    return out


def _lut(ds) -> np.ndarray | None:
    if str(ds.get("PhotometricInterpretation", "")).upper() != "PALETTE COLOR":
        return None
    from pydicom.pixels import apply_color_lut  # noqa: PLC0415

    n = int(ds.RedPaletteColorLookupTableDescriptor[0]) or 65536
    first = int(ds.RedPaletteColorLookupTableDescriptor[1])
    idx = np.arange(first, first + n, dtype=np.uint16 if int(ds.BitsAllocated) > 8 else np.uint8)
    return np.asarray(apply_color_lut(idx, ds)).reshape(-1, 3)


def png_thumbnail(rgb: np.ndarray, size: int = 256) -> bytes:
    """A small PNG of one display frame (for the private QC page)."""
    from PIL import Image  # noqa: PLC0415

    im = Image.fromarray(rgb)
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def clean_dataset_pixels(ds, regions: tuple[dict, ...] = (), max_passes: int = 3, min_score: float = MIN_SCORE,
                         thumbnails: bool = True) -> PixelResult:
    """Black out burned-in text in ``ds`` (in place) and re-encode its pixels uncompressed.

    Parameters
    ----------
    ds : pydicom.Dataset
        A dataset with Pixel Data (any photometric interpretation, single or multi-frame,
        compressed or not).
    regions : tuple of dict
        The profile's ``dicom.pixel_regions`` (fixed boxes per modality/manufacturer).
    max_passes : int
        OCR passes after the first cleaning; text still found after them refuses the file.
    min_score : float
        OCR confidence threshold.
    thumbnails : bool
        Keep PNG thumbnails of the first frame before/after (private QC).

    Returns
    -------
    PixelResult

    Raises
    ------
    LeakError
        When OCR still finds text after ``max_passes`` cleanings.
    """

    if "PixelData" not in ds:
        return PixelResult()
    pi = str(ds.PhotometricInterpretation).upper()
    arr = np.array(ds.pixel_array)  # decoded; YBR becomes RGB
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    if n_frames == 1:
        arr = arr[None, ...]
    out_pi = "RGB" if spp == 3 else pi
    lut = _lut(ds)
    fixed = regions_for(ds, regions)
    res = PixelResult(frames=n_frames, region_boxes=len(fixed) * n_frames)
    for i in range(n_frames):
        frame = arr[i]
        black = _black_value(frame, out_pi, lut)
        if fixed:
            fill_boxes(frame, fixed, black, margin=0)
        disp = to_display(frame, out_pi, lut)
        if i == 0 and thumbnails:
            res.before_png = png_thumbnail(to_display(np.array(ds.pixel_array)[0] if n_frames > 1 else
                                                      np.array(ds.pixel_array), out_pi, lut))
        boxes = find_text(disp, min_score)
        passes = 0
        while boxes and passes <= max_passes:
            res.texts_found += [b.text for b in boxes]
            res.boxes += len(boxes)
            fill_boxes(frame, [(b.x0, b.y0, b.x1, b.y1) for b in boxes], black)
            passes += 1
            disp = to_display(frame, out_pi, lut)
            boxes = find_text(disp, min_score)
        res.passes = max(res.passes, passes)
        if boxes:
            res.remaining += [b.text for b in boxes]
        if i == 0 and thumbnails:
            res.after_png = png_thumbnail(disp)
    if res.remaining:
        raise LeakError(f"burned-in text remains after {max_passes} cleaning passes ({len(res.remaining)} box(es))")
    res.photometric_note = store_pixels(ds, arr[0] if n_frames == 1 else arr, pi, out_pi, n_frames)
    ds.BurnedInAnnotation = "NO"
    return res


def store_pixels(ds, data: np.ndarray, pi: str, out_pi: str, n_frames: int) -> str:
    """Put the decoded (and cleaned) ``data`` back into ``ds`` uncompressed, Explicit VR Little
    Endian, with the input's Bits Allocated, Bits Stored and Pixel Representation; returns why
    the photometric interpretation changed ('' when it did not)."""
    import pydicom  # noqa: PLC0415

    bits = int(ds.BitsAllocated)
    if bits == 1:
        raw = np.packbits(np.ascontiguousarray(data, dtype=np.uint8).ravel(), bitorder="little").tobytes()
    else:
        want = np.dtype(f"<{'i' if int(ds.get('PixelRepresentation', 0) or 0) else 'u'}{bits // 8}")
        if data.dtype.itemsize * 8 != bits and not np.can_cast(data.dtype, want, "same_kind"):
            raise ValueError(f"decoded pixels of type {data.dtype} do not fit {bits}-bit storage")
        raw = np.ascontiguousarray(data, dtype=want).tobytes()
    if len(raw) % 2:
        raw += b"\0"
    ds.PixelData = raw
    ds["PixelData"].VR = "OW" if bits > 8 else "OB"
    ds["PixelData"].is_undefined_length = False
    ds.PhotometricInterpretation = out_pi
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    if spp > 1:
        ds.PlanarConfiguration = 0  # decoded arrays are colour-by-pixel
    if n_frames > 1:
        ds.NumberOfFrames = n_frames
    for kw in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths", "LossyImageCompression"):
        if kw in ds and kw != "LossyImageCompression":
            del ds[kw]
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    if out_pi != pi:
        return (f"{pi} pixels are written as {out_pi}: the decoder returns {out_pi} and the cleaned image is "
                "stored uncompressed")
    return ""


def data_uri(png: bytes | None) -> str:
    """``data:image/png;base64,...`` for embedding a thumbnail in an HTML page."""
    return "data:image/png;base64," + base64.b64encode(png or b"").decode("ascii")


def read_dataset(path: Path):
    """Read a DICOM file with its pixels (pydicom; compressed data decoded on access)."""
    import pydicom  # noqa: PLC0415

    return pydicom.dcmread(path)


def deidentify_file_clean_pixels(src: Path, dst: Path, profile, pseudo, subject: str | None = None,
                                 offset_days: int | None = None, max_passes: int = 3):
    """De-identify a DICOM file the engine would skip for burned-in text: clean its pixels first.

    Files without a burned-in risk go through :func:`bids_deid.scrub.dicom.deidentify_file`
    unchanged. Risky ones have their text blacked out (:func:`clean_dataset_pixels`),
    BurnedInAnnotation set to NO, then the header de-identified and written
    (uncompressed, Explicit VR Little Endian, the input's bit depth; a change of photometric
    interpretation is said in the result). A file where text remains, or whose pixels cannot
    be decoded or stored again, is refused (status ``withheld``, with the reason); nothing
    is ever raised for a bad input.

    Returns
    -------
    (DicomResult, PixelResult or None)
    """
    from .dicom import DicomResult  # noqa: PLC0415

    try:
        return _clean_pixels_file(Path(src), Path(dst), profile, pseudo, subject, offset_days, max_passes)
    except Exception as exc:  # noqa: BLE001 - a hostile file must not stop the run: one line, nothing written
        log.debug("pixel cleaning failed on %s", src, exc_info=True)
        return DicomResult(Path(src), None, "withheld", f"pixel data could not be cleaned ({type(exc).__name__}); "
                           "not written", subject=subject), None


def _clean_pixels_file(src: Path, dst: Path, profile, pseudo, subject, offset_days, max_passes):
    from dataclasses import replace  # noqa: PLC0415

    from ..dicom import integrity  # noqa: PLC0415
    from ..dicom.syntax import EXPLICIT_BE, name  # noqa: PLC0415
    from .dicom import (  # noqa: PLC0415
        DicomResult,
        OutputDefect,
        burned_in_reason,
        deidentify_dataset,
        deidentify_file,
        kept_tags,
        prepare_meta,
        read_dicom,
        refusal,
        subject_for,
        write_whole,
    )

    found = integrity.inspect_path(src)
    refused = refusal(src, found)
    if refused is not None:
        return refused, None
    try:
        ds = read_dicom(src)
    except Exception as exc:  # noqa: BLE001
        return DicomResult(src, None, "error", f"not readable as DICOM ({type(exc).__name__})"), None
    reason = burned_in_reason(ds, profile)
    if not reason:
        return deidentify_file(src, dst, profile, pseudo, subject=subject, offset_days=offset_days), None
    if dst.exists():
        return DicomResult(src, dst, "exists", "already written", subject=subject), None
    subj = subject_for(ds, pseudo, subject)
    offset = pseudo.date_offset_days(subj) if offset_days is None else offset_days
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if ts == EXPLICIT_BE:
        return DicomResult(src, None, "withheld", f"burned-in text not cleaned: pixel cleaning does not re-encode "
                           f"{name(ts)} files; not written", subject=subj), None
    kept = kept_tags(profile, found.tags)
    try:
        prepare_meta(ds)
        pres = clean_dataset_pixels(ds, profile.dicom_pixel_regions, max_passes=max_passes)
    except LeakError as exc:
        return DicomResult(src, None, "withheld", str(exc), subject=subj), None
    except Exception as exc:  # noqa: BLE001
        log.debug("pixel cleaning failed on %s", src, exc_info=True)
        why = _decode_failure(exc, name(ts) if ts else "")
        return DicomResult(src, None, "withheld", f"pixel data could not be cleaned ({why}); not written",
                           subject=subj), None
    changes, identifiers = deidentify_dataset(ds, replace(profile, dicom_burned_in="keep"), pseudo, subj, offset)
    _add_clean_pixel_code(ds)
    changes.append({"field": "PixelData", "action": "clean",
                    "why": f"{pres.boxes} OCR text box(es) and {pres.region_boxes} fixed region(s) blacked out"})
    if pres.photometric_note:
        changes.append({"field": "PhotometricInterpretation", "action": "replace", "why": pres.photometric_note})
    identifiers = list(identifiers) + [("burned-in text", t) for t in pres.texts_found if len(t.strip()) >= 4]
    try:
        write_whole(ds, dst, True, kept)
    except OutputDefect as exc:
        return DicomResult(src, None, "withheld", f"{exc}; not written", subject=subj), None
    note = "ok (burned-in text cleaned" + (f"; {pres.photometric_note})" if pres.photometric_note else ")")
    return DicomResult(src, dst, "written", note, changes, identifiers, subj), pres


def _add_clean_pixel_code(ds) -> None:
    """Say in DeidentificationMethodCodeSequence that the pixel data were cleaned (CID 7050
    113101 "Clean Pixel Data Option"), once."""
    from pydicom.dataset import Dataset  # noqa: PLC0415
    from pydicom.sequence import Sequence  # noqa: PLC0415

    from .dicom_core import CID7050  # noqa: PLC0415

    value, meaning = CID7050["clean_pixel_data"]
    seq = ds.get("DeidentificationMethodCodeSequence")
    if seq is None:
        seq = ds.DeidentificationMethodCodeSequence = Sequence()
    if any(str(getattr(i, "CodeValue", "")) == value and str(getattr(i, "CodingSchemeDesignator", "")) == "DCM"
           for i in seq):
        return
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
    seq.append(item)


def _decode_failure(exc: Exception, syntax: str) -> str:
    """Why pixel data could not be decoded, in words that hold nothing of the file."""
    msg = str(exc)
    if "decompression bomb" in msg or "exceeds limit" in msg:
        return "the declared image size exceeds the decoder's decompression-bomb limit"
    if "does not support" in msg or "No plugins" in msg or "missing" in msg and "dependenc" in msg:
        return f"no installed decoder supports this {syntax or 'encoding'}"
    if "broken data stream" in msg or "truncated" in msg.lower():
        return f"the {syntax or 'compressed'} stream is corrupt"
    return f"{type(exc).__name__} while decoding {syntax}".rstrip()


def write_pixels_qc(path: Path, items: list[dict]) -> Path:
    """Write the private ``pixels-qc.html``: before/after thumbnails per cleaned file.

    ``items``: dicts with ``file`` (output name), ``boxes``, ``passes``, ``before`` and
    ``after`` (PNG bytes).
    """
    from ..atomic import atomic_write_bytes  # noqa: PLC0415

    def uri(v) -> str:
        return v if isinstance(v, str) else data_uri(v)

    rows = []
    for it in items:
        rows.append(
            f"<tr><td>{_esc(it['file'])}</td><td>{int(it.get('boxes', 0))}</td><td>{int(it.get('passes', 0))}</td>"
            f"<td><img src='{uri(it.get('before'))}'></td><td><img src='{uri(it.get('after'))}'></td></tr>"
        )
    html = ("<!doctype html><meta charset='utf-8'><title>bids-deid: burned-in text QC</title>"
            "<h1>Burned-in text cleaning (private: the 'before' images show the original text)</h1>"
            "<table border=1 cellpadding=4><tr><th>output file</th><th>text boxes</th><th>OCR passes</th>"
            "<th>before</th><th>after</th></tr>" + "".join(rows) + "</table>")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, html.encode("utf-8"), perm=0o600)
    return path


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
