"""Where raw-input Analyze / MINC / PAR images go in BIDS.

A raw folder may hold images in the older formats next to (or instead of) DICOM. They
are placed in the staging BIDS tree when one of these says what they are:

* a BIDS-like file name (``..._T1w.hdr``, ``..._task-rest_bold.PAR``);
* for PAR/REC, the header's protocol name, technique and scan mode, given to
  :func:`bids_deid.convert.classify.classify` as a pseudo-sidecar (the same rules as
  DICOM series);
* for Analyze/MINC without a telling name, the content: a 3D image with fine
  (<= 1.5 mm) voxels covering a head-sized field of view is taken as a T1-weighted
  anatomical (the usual case for a lone high-resolution volume).

Only placements that the validator accepts without more metadata are made: anatomical
images, and BOLD series with a known repetition time (``TaskName`` and
``RepetitionTime`` are staged in a sidecar). Anything else stays under
``sourcedata/<format>/`` as before. The texts read here are used for the decision only;
nothing of them is written except a sanitized task label.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from .classify import ALLOWED_ENTITIES, Guess, classify, sanitize_label, task_label

log = logging.getLogger(__name__)

_ANAT = {"T1w", "T2w", "PDw", "FLAIR", "T2starw", "MEGRE", "MESE", "UNIT1", "PD", "T2star", "angio"}
_NAME_SUFFIX = re.compile(r"(?:^|_)([A-Za-z0-9]+)$")


def _name_guess(stem: str) -> Guess | None:
    """A Guess from a BIDS-like name (``x_T1w``, ``sub-a_task-rest_bold``), or None."""
    m = _NAME_SUFFIX.search(stem)
    if not m or "_" not in stem and m.group(1) not in _ANAT:
        return None
    suffix = m.group(1)
    ents = dict(p.split("-", 1) for p in stem.split("_")[:-1] if "-" in p)
    if suffix in _ANAT:
        return Guess("anat", suffix, {}, "file name")
    if suffix == "bold":
        task = sanitize_label(ents.get("task", "")).lower() or "unknown"
        return Guess("func", "bold", {"task": task}, "file name")
    return None


def _par_fields(path: Path) -> tuple[dict, float | None, int]:
    """Pseudo-sidecar of a PAR header (for :func:`classify`), TR in seconds, dynamics."""
    import nibabel as nib

    with open(path, encoding="latin-1") as fh:
        gen, defs = nib.parrec.parse_PAR_header(fh)
    tech = str(gen.get("tech") or "").upper()
    seq = []
    if "FE" in tech or "TFE" in tech or "GRE" in tech:
        seq.append("GR")
    if "SE" in tech.replace("TSE", "SE") and "GR" not in seq:
        seq.append("SE")
    if "IR" in tech:
        seq.append("IR")
    if "EPI" in tech or int(gen.get("epi_factor") or 1) > 1:
        seq.append("EP")
    fields = {
        "Modality": "MR",
        "SeriesDescription": f"{gen.get('protocol_name') or ''} {tech.lower()}".strip(),
        "ScanningSequence": "\\".join(seq) or None,
        "_has_bval": bool(gen.get("diffusion")),
    }
    if "echo_time" in defs.dtype.names and len(defs):
        fields["EchoTime"] = float(defs["echo_time"][0]) / 1000.0
    tr = float(np.atleast_1d(gen.get("repetition_time", [0]))[0]) / 1000.0
    return {k: v for k, v in fields.items() if v is not None}, (tr if tr > 0 else None), int(gen.get("max_dynamics")
                                                                                                or 1)


def _image_shape(path: Path) -> tuple[tuple[int, ...], tuple[float, ...]]:
    import nibabel as nib

    img = nib.load(str(path))
    return tuple(int(x) for x in img.shape), tuple(float(z) for z in img.header.get_zooms())


def guess_other(path: Path, kind: str) -> tuple[Guess | None, dict]:
    """Where one raw Analyze / MINC / PAR image goes in BIDS, and the sidecar fields to stage.

    Parameters
    ----------
    path : Path
        The header (``.hdr``, ``.mnc`` or ``.PAR``).
    kind : str
        ``"analyze"``, ``"minc"`` or ``"parrec"`` (see :func:`bids_deid.convert.formats.format_of`).

    Returns
    -------
    (Guess or None, dict)
        None when it cannot be placed validly (it stays in sourcedata); the dict holds
        sidecar fields the BIDS file needs (``TaskName``, ``RepetitionTime`` for BOLD).
    """
    path = Path(path)
    stem = path.name.rsplit(".", 1)[0]
    try:
        shape, zooms = _image_shape(path)
        tr: float | None = zooms[3] if len(zooms) > 3 and zooms[3] > 0 else None
        fields: dict = {"Modality": "MR", "SeriesDescription": stem}
        if kind == "parrec":
            from ..formats.parrec import rec_of

            if rec_of(path) is None:
                return None, {}
            fields, tr, _dyn = _par_fields(path)
    except Exception as exc:  # noqa: BLE001 - unreadable: it stays in sourcedata, the scrubber reports it
        log.debug("not placed in BIDS: %s", type(exc).__name__)
        return None, {}
    n_vols = shape[3] if len(shape) > 3 else 1
    g = _name_guess(stem)
    if g is None:
        g = classify(fields)
        if g.skipped:
            g = None
    if g is None and kind != "parrec" and len(shape) == 3 and max(zooms[:3]) <= 1.5 and min(
            s * z for s, z in zip(shape, zooms[:3], strict=False)) >= 120:
        g = Guess("anat", "T1w", {}, "content: 3D high-resolution volume (T1-like)")
    if g is None:
        return None, {}
    if g.datatype == "anat" and g.suffix in _ANAT and n_vols == 1:
        g.entities = {k: v for k, v in g.entities.items() if k in ALLOWED_ENTITIES.get(g.suffix, set())}
        return g, {}
    if g.datatype == "func" and g.suffix == "bold" and n_vols > 1 and tr:
        task = g.entities.get("task") or task_label(fields.get("SeriesDescription"))
        g.entities = {"task": task}
        return g, {"TaskName": task, "RepetitionTime": round(float(tr), 6)}
    return None, {}
