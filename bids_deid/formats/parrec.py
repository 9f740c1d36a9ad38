"""Philips PAR/REC: scrub the PAR text header, convert to NIfTI + sidecar.

The PAR header's general-information block names the patient, the examination and
the protocol and gives the examination date/time; the ``# Dataset name:`` comment
holds an export path. Those values are blanked (the lines stay, so readers still
parse the file). Conversion uses nibabel's PAR/REC reader; the sidecar is built from
technical values only and then passes through
:func:`bids_deid.formats.sidecar.scrub_sidecar`.
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_bytes
from ..errors import InputError
from ..profiles import Profile
from .base import Context, Outcome, ScrubLog, scrub_to
from .niftiout import clean_nifti, write_nifti_gz
from .sidecar import dump_json, scrub_sidecar

log = logging.getLogger(__name__)

_GENERAL = re.compile(r"^(\.\s+)([^:]*?)(\s*:)(.*?)(\r?)$")
_COMMENT_VALUE = re.compile(r"^(#\s*(?:Dataset name|Patient|Examination|Protocol)[^:]*:)(.*?)(\r?)$", re.I)
_TECHNICAL_PATIENT = {"patient position"}


def is_par(path: Path) -> bool:
    """True when ``path`` starts like a Philips PAR header."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2048)
    except OSError:
        return False
    return b"DATA DESCRIPTION FILE" in head and b"GENERAL INFORMATION" in head


def rec_of(par: Path) -> Path | None:
    """The REC file beside ``par`` (``.REC`` or ``.rec``), or None."""
    for ext in (".REC", ".rec"):
        p = par.with_suffix(ext)
        if p.is_file():
            return p
    return None


def _identifying_key(key: str) -> bool:
    k = key.strip().lower()
    if k in _TECHNICAL_PATIENT:
        return False
    return any(w in k for w in ("patient", "examination name", "protocol name", "date", "time stamp", "name"))


def scrub_par_text(text: str, slog: ScrubLog | None = None) -> str:
    """Return the PAR text with identifying values blanked (lines kept).

    Parameters
    ----------
    text : str
        The whole PAR file (latin-1 decoded).
    slog : ScrubLog, optional
        Audit entries and the identifying values met (private side).
    """
    slog = slog or ScrubLog()
    out = []
    for line in text.split("\n"):
        m = _GENERAL.match(line)
        if m and _identifying_key(m.group(2)):
            value = m.group(4).strip()
            if value:
                slog.met(f"PAR {m.group(2).strip()}", value)
                if "date" in m.group(2).lower():
                    slog.met("StudyDate", value.split("/")[0].strip())
                slog.change(m.group(2).strip(), "empty", "identifying PAR header value")
            line = f"{m.group(1)}{m.group(2)}{m.group(3)}   {m.group(5)}"
        else:
            c = _COMMENT_VALUE.match(line)
            if c and c.group(2).strip():
                slog.met("PAR comment", c.group(2).strip())
                slog.change(c.group(1).strip("# :"), "empty", "identifying PAR comment")
                line = f"{c.group(1)} {c.group(3)}"
        out.append(line)
    return "\n".join(out)


# ------------------------------------------------------------------ the format module interface
NAME = "parrec"
SUFFIXES = (".par",)
COMPANION_SUFFIXES = (".rec",)


def sniff(path: Path) -> bool:
    return path.suffix.lower() == ".par" and is_par(path)


def companions(path: Path) -> list[Path]:
    rec = rec_of(path)
    return [rec] if rec is not None else []


def scrub(src: Path, profile, ctx: Context) -> Outcome:
    """The scrubbed PAR under ``ctx.rel_out`` and its REC copied as it is (same stem).

    Fixed rules for the PAR text (every patient, examination, protocol, name and date value
    is emptied); the profile governs the sidecar of a conversion (:func:`to_nifti`). Raises
    InputError for a file that is not a PAR header.
    """
    par = Path(src)
    if not is_par(par):
        raise InputError(f"{par.name} is not a Philips PAR header")
    slog = ScrubLog()
    text = par.read_bytes().decode("latin-1")
    res = Outcome(writes={ctx.rel_out: scrub_par_text(text, slog).encode("latin-1")}, log=slog)
    rec = rec_of(par)
    if rec is not None:
        stem = ctx.rel_out[: -len(".par")] if ctx.rel_out.lower().endswith(".par") else ctx.rel_out
        res.writes[stem + (".REC" if ctx.rel_out.endswith(".PAR") else ".rec")] = rec
    return res


def scrub_parrec(par: Path, out_par: Path, slog: ScrubLog | None = None) -> list[Path]:
    """Write the scrubbed PAR and a streamed copy of its REC (same stem as ``out_par``); the files written."""
    return scrub_to(scrub, par, out_par, slog)


def parrec_to_nifti(par: Path, dst: Path, profile: Profile | None = None, offset_days: int | None = None,
                    slog: ScrubLog | None = None) -> tuple[Path, Path]:
    """Convert PAR/REC to a clean ``.nii.gz`` and its scrubbed JSON sidecar.

    Parameters
    ----------
    par : Path
        Input ``.PAR`` (its ``.REC`` must be beside it).
    dst : Path
        Output ``.nii.gz``; the sidecar is written beside it with ``.json``.
    profile : Profile, optional
        Used for the sidecar scrub (default: the shipped ``basic`` profile).
    offset_days : int, optional
        Date shift for the sidecar scrub.
    slog : ScrubLog, optional
        Audit entries and identifying values met.

    Returns
    -------
    (Path, Path)
        The image and the sidecar.
    """
    import nibabel as nib

    from ..profiles import load_profile

    par, dst = Path(par), Path(dst)
    slog = slog or ScrubLog()
    if rec_of(par) is None:
        raise InputError(f"{par.name}: its .REC file is missing")
    with tempfile.TemporaryDirectory(prefix="bids-deid-parrec-") as tmp:
        clean_par = Path(tmp) / "image.PAR"
        scrub_parrec(par, clean_par, slog)
        try:
            img = nib.parrec.load(str(clean_par), strict_sort=True, permit_truncated=False)
            data = np.asarray(img.get_fdata(dtype=np.float32))
            hdr = img.header
            affine = hdr.get_affine(origin="scanner")
            zooms = hdr.get_zooms()
            gen = hdr.general_info
            defs = hdr.image_defs
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{par.name}: PAR/REC not readable ({type(exc).__name__}: {exc})") from exc
    side: dict = {"Manufacturer": "Philips"}
    tr = float(np.atleast_1d(gen.get("repetition_time", [0]))[0])
    if tr > 0:
        side["RepetitionTime"] = round(tr / 1000.0, 6)
    te = defs["echo_time"] if "echo_time" in defs.dtype.names else None
    if te is not None and len(te):
        side["EchoTime"] = round(float(te[0]) / 1000.0, 6)
    if "image_flip_angle" in defs.dtype.names and len(defs):
        side["FlipAngle"] = float(defs["image_flip_angle"][0])
    if gen.get("epi_factor") is not None:
        side["EchoTrainLength"] = int(gen["epi_factor"])
    side = scrub_sidecar(side, profile or load_profile("basic"), offset_days, slog)
    write_nifti_gz(clean_nifti(data, affine, zooms), dst)
    json_path = dst.with_name(dst.name[: -len(".nii.gz")] + ".json")
    atomic_write_bytes(json_path, dump_json(side))
    return dst, json_path


def to_nifti(src: Path, dst: Path, profile: Profile | None = None, offset_days: int | None = None,
             slog: ScrubLog | None = None) -> tuple[Path, Path | None]:
    """The registry's conversion entry: a clean ``.nii.gz`` and its sidecar (scrubbed by the profile)."""
    return parrec_to_nifti(src, dst, profile, offset_days, slog)
