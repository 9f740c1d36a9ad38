"""Named outputs moved into the staging tree: sidecars completed and cleaned, scans.tsv written.

Also the two writes every staging step uses: :func:`symlink` (atomic link) and
:func:`write_sidecar` (atomic private JSON).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import numpy as np

from ..atomic import atomic_open, atomic_write_text
from ..formats.sidecar_keep import FREE_TEXT, clean_text
from .asl import aslcontext_tsv
from .classify import Guess
from .identity import looks_identifying
from .series import Series


def symlink(target: Path, link: Path) -> None:
    """Create/replace a symlink atomically."""
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.parent / f".bids-deid-tmp-{uuid.uuid4().hex}"
    os.symlink(os.path.abspath(target), tmp)
    os.replace(tmp, link)


def write_sidecar(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n", perm=0o600)


def place_outputs(by_ses: dict[tuple[str, str | None], list[tuple[Series, dict]]], staging: Path,
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
                if isinstance(value, str) and value.strip() and looks_identifying(value, idents):
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
                side["Units"] = fieldmap_units(side)
            if g.suffix == "phasediff" and ("EchoTime1" not in side or "EchoTime2" not in side):
                _fill_echo_times(side, s, items)
            # staged uncompressed (.nii): the participant stage writes the image as .nii.gz
            image = dest.with_name(dest.name[: -len(".gz")])
            if g.suffix in _TIME_SERIES and _single_volume_to_4d(Path(o["nii"]), image, side.get("RepetitionTime")):
                o["problem"] = "one volume: written as a 4D run of length 1"
            else:
                os.replace(o["nii"], image)
            write_sidecar(dest.with_name(dest.name[: -len(".nii.gz")] + ".json"), side)
            for ext in ("bval", "bvec"):
                if o.get(ext) is not None:
                    os.replace(o[ext], dest.with_name(dest.name[: -len(".nii.gz")] + f".{ext}"))
        if rows:
            folder = staging / f"sub-{sub}" / (f"ses-{ses}" if ses else "")
            name = f"sub-{sub}{f'_ses-{ses}' if ses else ''}_scans.tsv"
            body = "filename\tacq_time\n" + "".join(f"{f}\t{t or 'n/a'}\n" for f, t in sorted(rows))
            atomic_write_text(folder / name, body, perm=0o600)


def fieldmap_units(side: dict) -> str | None:
    """Units of a direct B0 map dcm2niix did not label: GE and Philips scanners store them in Hz (else None)."""
    maker = str(side.get("Manufacturer") or "").lower()
    return "Hz" if maker.startswith(("ge", "philips")) else None


# free-text sidecar fields dcm2niix copies from the headers that raw conversion never keeps
_DROP_TEXT = ("ProcedureStepDescription", "StudyDescription", "ImageComments", "InstitutionalDepartmentName",
              "InstitutionName", "InstitutionAddress", "StationName", "DeviceSerialNumber", "SeriesInstanceUID",
              "StudyInstanceUID", "ReferringPhysicianName", "PerformedProcedureStepDescription", "AccessionNumber")


def _acq_time(s: Series, side: dict) -> str | None:
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
    from ..formats.headers import read_nifti_header

    head = read_nifti_header(src)
    if head is not None and int(head["dim"][0]) != 3:
        return False  # told from the header, without loading nibabel for every 4D run
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
    with atomic_open(dest, "wb") as fh:  # uncompressed, as every staged image
        fh.write(out.to_bytes())
    return True


def _fill_echo_times(side: dict, s: Series, items: list[tuple[Series, dict]]) -> None:
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
