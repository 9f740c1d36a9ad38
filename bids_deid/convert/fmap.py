"""Which images of a session a field map is for (``IntendedFor``).

Rules (all within one session; the caller passes only that session's images):

* targets are the session's ``func`` and ``dwi`` images, single-band references left out;
* an EPI field map (``_epi``) keeps the targets whose phase-encoding *axis* (i/j/k,
  sign ignored: the field map is usually the reversed blip) equals its own, then of
  those the ones with the same slice geometry (voxel grid shape and affine) when any
  match;
* any field map then keeps the targets acquired with the same shim settings
  (``ShimSetting``) when both sides record them and any match;
* a filter that would leave nothing is not applied, so a field map with nothing better
  to go on is intended for every func/dwi image of its session.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ROT_TOL = 0.05  # affine direction/zoom columns (mm per voxel)
SHIFT_TOL = 1.0  # affine origin (mm)


def pe_axis(fields: dict) -> str | None:
    """Phase-encoding axis letter (``i``/``j``/``k``) of a sidecar, sign dropped."""
    ped = str(fields.get("PhaseEncodingDirection") or "").strip()
    return ped[0] if ped[:1] in ("i", "j", "k") else None


def same_geometry(a: dict, b: dict) -> bool:
    """True when two outputs (``shape`` and ``affine`` keys) share a voxel grid."""
    sa, sb = a.get("shape"), b.get("shape")
    aa, ab = a.get("affine"), b.get("affine")
    if sa is None or sb is None or aa is None or ab is None or tuple(sa[:3]) != tuple(sb[:3]):
        return False
    aa, ab = np.asarray(aa, float), np.asarray(ab, float)
    return bool(np.allclose(aa[:3, :3], ab[:3, :3], atol=ROT_TOL) and np.allclose(aa[:3, 3], ab[:3, 3], atol=SHIFT_TOL))


def _narrow(cands: list[dict], keep) -> list[dict]:
    kept = [c for c in cands if keep(c)]
    return kept or cands


def intended_for(fmap: dict, suffix: str, targets: list[dict[str, Any]]) -> list[dict]:
    """The targets a field map is for (see module docstring).

    Parameters
    ----------
    fmap : dict
        The field map output: ``fields`` (sidecar), optional ``shape`` and ``affine``.
    suffix : str
        Its BIDS suffix (``epi``, ``phasediff``, ``magnitude1``, ...).
    targets : list of dict
        The session's func/dwi outputs (same keys).

    Returns
    -------
    list of dict
        A subset of ``targets`` in their order (all of them when nothing narrows it).
    """
    cands = list(targets)
    if not cands:
        return []
    ff = fmap.get("fields") or {}
    if suffix == "epi":
        axis = pe_axis(ff)
        if axis:
            cands = _narrow(cands, lambda t: pe_axis(t.get("fields") or {}) == axis)
        cands = _narrow(cands, lambda t: same_geometry(fmap, t))
    shim = ff.get("ShimSetting")
    if shim is not None:
        cands = _narrow(cands, lambda t: (t.get("fields") or {}).get("ShimSetting") == shim)
    return cands
