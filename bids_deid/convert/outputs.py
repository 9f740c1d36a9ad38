"""dcm2niix's outputs of one series classified, joined and compared (before naming).

Each output's header geometry and sidecar fields decide its BIDS suffix (see :mod:`.classify`);
single-volume images of one time series are joined into a 4D run; an image stored both as
Enhanced and classic DICOM is named once.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ..formats.headers import nifti_geometry
from .classify import Guess, HeuristicRule, classify, phase_dir_label
from .place import fieldmap_units
from .series import Series, num


def _image_geometry(o: dict) -> None:
    """``o['affine']``, ``o['shape']`` and ``o['n_vols']`` from the NIfTI header (None when unreadable)."""
    geometry = nifti_geometry(o["nii"])
    if geometry is None:  # geometry is a hint only
        o["affine"], o["shape"], o["n_vols"] = None, None, None
    else:
        o["affine"], o["shape"], o["n_vols"] = geometry


def classify_outputs(s: Series, heuristic: list[HeuristicRule] | None, reproin: bool = False) -> None:
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
        if o["guess"].suffix == "fieldmap" and "Units" not in o["fields"] and fieldmap_units(o["fields"]) is None:
            o["guess"] = Guess(None, None, {}, "B0 field map of unknown units (neither dcm2niix nor the vendor says)")
    # a B0 map series (GE, Philips): its other images are the field map's magnitude
    if any(o["guess"].suffix == "fieldmap" for o in s.outputs):
        for o in s.outputs:
            g = o["guess"]
            if g.suffix != "fieldmap" and not g.skipped and not (g.datatype == "fmap" and g.suffix == "epi"):
                g.datatype, g.suffix, g.entities = "fmap", "magnitude", {}
                g.reason = "rules: magnitude of a B0 field-map series"


def drop_copies(series: list[Series]) -> None:
    """An image that a series holds twice, as Enhanced and as classic DICOM, is named once (the classic copy).

    The Enhanced copy's images with the same voxels are marked skipped, so its DICOM stays in
    sourcedata with the reason; images only the Enhanced copy has are kept.
    """
    import hashlib

    by_uid: dict[str, list[Series]] = defaultdict(list)
    for s in series:
        by_uid[s.uid].append(s)

    def digest(o: dict) -> str | None:
        import nibabel as nib  # noqa: PLC0415 - only for series held twice

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


def merge_split_volumes(s: Series, work: Path) -> None:
    """One 4D run from the single-volume images of one EPI time series (Siemens XA ``MFSPLIT``, classic export).

    Only images of one voxel grid, one echo and one image type, classified alike as ``bold``,
    ``asl`` or ``dwi``, are joined, in acquisition order (AcquisitionTime, then SeriesNumber);
    the sidecar is the first volume's (b-values and vectors are joined too).
    """
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
        outs.sort(key=lambda o: (str(o["fields"].get("AcquisitionTime") or ""), num(o["fields"].get("SeriesNumber")),
                                 o["postfix"]))
        import nibabel as nib  # noqa: PLC0415 - only when there are volumes to join

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
        dest = work / f"merged-{s.token}-{len(outs)}-{outs[0]['postfix'] or 'x'}.nii"  # staged uncompressed
        nib.save(out, str(dest))
        keep = outs[0]
        for ext in ("bval", "bvec"):
            parts = [Path(o[ext]).read_text().split("\n") for o in outs if o.get(ext)]
            if parts and len(parts) == len(outs):
                rows = [" ".join(p[i].strip() for p in parts) for i in range(len(parts[0])) if parts[0][i].strip()]
                target = work / f"{dest.name[: -len('.nii')]}.{ext}"
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
