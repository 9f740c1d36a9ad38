"""Analyze 7.5 (``.hdr``/``.img``, optional SPM ``.mat``): scrub in place of a copy, or convert to NIfTI.

Every free-text field of the 348-byte header is blanked at its nibabel-given offset
(``db_name``, ``descrip``, ``aux_file``, ``generated``, ``scannum``, ``patient_id``,
``exp_date``, ``exp_time``, ``hist_un0``, ``data_type``, ...), and the integer fields
of the history block that readers never use (``views`` ... ``smin``) are zeroed as they
can carry packed text. The image bytes are streamed, cut to the size the header
declares. An SPM ``.mat`` keeps only its 4x4 ``M``/``mat`` matrices.
"""

from __future__ import annotations

import io
import logging
import re
import shutil
from pathlib import Path

import numpy as np

from ..errors import InputError
from .base import Context, Outcome, ScrubLog, scrub_to
from .headers import ANALYZE
from .niftiout import clean_nifti, write_nifti_gz

log = logging.getLogger(__name__)

HEADER_SIZE = 348
_DTYPE = ANALYZE
# Text fields kept because readers need them and they hold a fixed vocabulary.
_KEEP_TEXT = {"regular", "orient"}
_UNIT_WORDS = {b"", b"mm", b"um", b"cm", b"m", b"ms", b"s", b"us", b"hz"}
_HISTORY_INTS = ("views", "vols_added", "start_field", "field_skip", "omax", "omin", "smax", "smin")
_MAT_KEYS = ("M", "mat")


def is_analyze_pair(hdr: Path) -> bool:
    """True when ``hdr`` is a 348-byte Analyze/NIfTI-pair header with its ``.img`` beside it (not NIfTI)."""
    hdr = Path(hdr)
    if hdr.suffix.lower() != ".hdr" or not hdr.is_file() or not _img_of(hdr).is_file():
        return False
    try:
        with open(hdr, "rb") as fh:
            head = fh.read(HEADER_SIZE)
    except OSError:
        return False
    if len(head) < HEADER_SIZE:
        return False
    size_le = int.from_bytes(head[:4], "little")
    size_be = int.from_bytes(head[:4], "big")
    return HEADER_SIZE in (size_le, size_be) and head[344:347] not in (b"ni1", b"n+1")


def _img_of(hdr: Path) -> Path:
    for ext in (".img", ".IMG"):
        p = hdr.with_suffix(ext)
        if p.exists():
            return p
    return hdr.with_suffix(".img")


def _mat_of(hdr: Path) -> Path | None:
    p = hdr.with_suffix(".mat")
    return p if p.is_file() else None


def _field(name: str) -> tuple[int, int, np.dtype]:
    dt, off = _DTYPE.fields[name][:2]
    return off, dt.itemsize, dt


def _text(raw: bytes) -> str:
    return raw.split(b"\x00")[0].decode("latin-1", "replace").strip()


def scrub_analyze_header(raw: bytes, slog: ScrubLog | None = None, keep_descrip: bool = False) -> bytes:
    """Return the 348-byte header with every free-text and history field blanked (``descrip`` kept when
    ``keep_descrip``: the profile's ``nifti.keep_descrip``, the same field of the same header layout).

    Parameters
    ----------
    raw : bytes
        The original header (at least 348 bytes; any extra bytes are dropped).
    slog : ScrubLog, optional
        Receives the change list and the identifying values met (private side).

    Returns
    -------
    bytes
        The scrubbed header, 348 bytes.
    """
    if len(raw) < HEADER_SIZE:
        raise InputError("Analyze header shorter than 348 bytes")
    slog = slog or ScrubLog()
    out = bytearray(raw[:HEADER_SIZE])
    for name in _DTYPE.names:
        off, size, dt = _field(name)
        if dt.kind != "S" or name in _KEEP_TEXT or name == "descrip" and keep_descrip:
            continue
        value = bytes(out[off : off + size])
        if name in ("vox_units", "cal_units") and value.split(b"\x00")[0].strip().lower() in _UNIT_WORDS:
            continue
        if name == "originator" and not _texty(value):
            continue  # SPM's origin voxel (five int16), not text
        if value.strip(b"\x00 "):
            text = _text(value)
            if text:
                slog.met(f"Analyze {name}", text)
            slog.change(name, "empty", "free text in the Analyze header")
        out[off : off + size] = b"\x00" * size
    for name in _HISTORY_INTS:
        off, size, _dt = _field(name)
        if any(out[off : off + size]):
            slog.change(name, "empty", "unused history field (may hold packed text)")
            out[off : off + size] = b"\x00" * size
    return bytes(out)


def _texty(value: bytes) -> bool:
    letters = sum(1 for b in value if 65 <= b <= 90 or 97 <= b <= 122)
    return letters >= 3 or bool(re.search(rb"[0-9A-Za-z^]{4,}", value))


def _image_bytes(hdr_raw: bytes) -> int:
    import nibabel as nib
    h = nib.analyze.AnalyzeHeader(hdr_raw[:HEADER_SIZE], check=False)
    shape = h.get_data_shape()
    n = int(np.prod(shape)) if shape else 0
    return int(h.get_data_offset()) + n * int(h["bitpix"]) // 8


def mat_bytes(src: Path, slog: ScrubLog | None = None) -> bytes | None:
    """An SPM ``.mat`` holding only its 4x4 ``M``/``mat`` matrices; None if it has none.

    The MAT-file text header (which records who/when/where it was created) is replaced
    by a neutral one.
    """
    import scipy.io as sio  # only here: 0.07 s of every start otherwise

    slog = slog or ScrubLog()
    try:
        content = sio.loadmat(src)
    except Exception as exc:  # noqa: BLE001 - an unreadable .mat is left out
        raise InputError(f"SPM .mat file not readable ({type(exc).__name__})") from exc
    keep = {}
    for k, v in content.items():
        if k in _MAT_KEYS and isinstance(v, np.ndarray) and v.shape == (4, 4) and v.dtype.kind in "fiu":
            keep[k] = v.astype(float)
        elif not k.startswith("__"):
            slog.change(f".mat {k}", "remove", "only the affine matrix is kept")
    slog.change(".mat __header__", "replace", "MAT-file header records creator and date")
    if not keep:
        return None
    buf = io.BytesIO()
    sio.savemat(buf, keep, format="5", do_compression=False)
    data = bytearray(buf.getvalue())
    data[:116] = b"MATLAB 5.0 MAT-file, written by bids-deid".ljust(116, b" ")
    return bytes(data)


# ------------------------------------------------------------------ the format module interface
NAME = "analyze"
SUFFIXES = (".hdr",)
COMPANION_SUFFIXES = (".img", ".mat")


def sniff(path: Path) -> bool:
    return is_analyze_pair(path)


def companions(path: Path) -> list[Path]:
    return [p for p in (_img_of(path), _mat_of(path)) if p is not None and p.is_file()]


def scrub(src: Path, profile, ctx: Context) -> Outcome:
    """The scrubbed pair (and SPM ``.mat``) under ``ctx.rel_out`` (the ``.hdr``) and the same stem.

    Every free-text and history field goes, ``descrip`` too unless the profile keeps it
    (``nifti.keep_descrip``). Raises InputError for a file that is not an Analyze pair or a
    truncated image.
    """
    import nibabel as nib
    hdr = Path(src)
    slog = ScrubLog()
    if not is_analyze_pair(hdr):
        raise InputError(f"{hdr.name} is not an Analyze 7.5 header with its .img")
    raw = hdr.read_bytes()
    clean = scrub_analyze_header(raw, slog, keep_descrip=bool(profile is not None and profile.nifti_keep_descrip))
    offset = int(nib.analyze.AnalyzeHeader(raw[:HEADER_SIZE], check=False).get_data_offset())
    need = _image_bytes(raw) - offset
    img = _img_of(hdr)
    if img.stat().st_size < need:
        raise InputError(f"{img.name} is shorter than its header declares (truncated image)")

    def image(out) -> None:  # the image bytes the header declares, streamed
        with open(img, "rb") as fh:
            left = need + offset
            while left > 0:
                chunk = fh.read(min(left, 8 << 20))
                if not chunk:
                    break
                out.write(chunk)
                left -= len(chunk)

    stem = ctx.rel_out[: -len(".hdr")] if ctx.rel_out.lower().endswith(".hdr") else ctx.rel_out
    res = Outcome(writes={stem + ".img": image, ctx.rel_out: clean}, log=slog)
    mat = _mat_of(hdr)
    mat_data = mat_bytes(mat, slog) if mat is not None else None
    if mat_data is not None:
        res.writes[stem + ".mat"] = mat_data
    return res


def scrub_analyze(hdr: Path, out_hdr: Path, slog: ScrubLog | None = None) -> list[Path]:
    """Scrub an Analyze pair (and its SPM ``.mat``) into ``out_hdr``/``.img``/``.mat``; the files written.

    :func:`scrub` and :func:`~bids_deid.formats.base.write_outcome` in one call (``hdr`` is never modified).
    """
    return scrub_to(scrub, hdr, out_hdr, slog)


def analyze_to_nifti(hdr: Path, dst: Path, slog: ScrubLog | None = None) -> Path:
    """Convert an Analyze pair to a clean ``.nii.gz`` (geometry from the SPM ``.mat`` when present).

    The input is first scrubbed into a private temporary folder beside nothing public,
    then read with nibabel; the output header carries no text from the input.
    """
    import tempfile

    import nibabel as nib

    hdr, dst = Path(hdr), Path(dst)
    slog = slog or ScrubLog()
    with tempfile.TemporaryDirectory(prefix="bids-deid-analyze-") as tmp:
        t = Path(tmp) / "image.hdr"
        scrub_analyze(hdr, t, slog)
        try:
            img = nib.load(str(t))
            data = np.asanyarray(img.dataobj)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{hdr.name}: Analyze image not readable ({type(exc).__name__})") from exc
        zooms = img.header.get_zooms()
        out = clean_nifti(data, img.affine, zooms)
        write_nifti_gz(out, dst)
        shutil.rmtree(tmp, ignore_errors=True)
    return dst


def to_nifti(src: Path, dst: Path, profile=None, offset_days: int | None = None,
             slog: ScrubLog | None = None) -> tuple[Path, Path | None]:
    """The registry's conversion entry: a clean ``.nii.gz`` (Analyze has no sidecar)."""
    return analyze_to_nifti(src, dst, slog), None
