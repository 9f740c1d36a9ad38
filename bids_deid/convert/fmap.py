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


# ---------------------------------------------------------------- field-map sets
_MAGNITUDES = ("magnitude", "magnitude1", "magnitude2")
TARGET_SUFFIXES = ("bold", "sbref", "dwi", "asl", "m0scan")


def _echo(o: dict) -> float:
    try:
        return float((o.get("fields") or {}).get("EchoNumber") or 1)
    except (TypeError, ValueError):
        return 1.0


def _skip(o: dict, why: str) -> None:
    g = o["guess"]
    g.datatype, g.suffix, g.entities = None, None, {}
    g.reason = why


def fieldmap_sets(items: list[tuple[Any, dict]], session: str | None = None) -> list[dict]:
    """Group a session's field-map images into BIDS field-map sets and name their files.

    ``items`` are (series, output) pairs whose ``o["guess"]`` is already classified; the
    series needs ``number``. Sets follow the four BIDS cases: a phase difference with
    ``magnitude1``/``magnitude2``; two phases with two magnitudes; a direct ``fieldmap``
    with its ``magnitude``; PEpolar ``epi`` images (opposite directions paired). A
    magnitude series (Siemens writes magnitudes and phase as two series) is paired with
    the nearest phase series of the same voxel grid. Images BIDS cannot name (a magnitude
    without any phase, a phase without a magnitude, extra images) are marked skipped with
    the reason, so the caller keeps their series in ``sourcedata/``.

    Returns
    -------
    list of dict
        ``{"id", "kind", "members": [output, ...], "number"}`` per set, in acquisition order;
        ``kind`` is ``phasediff``, ``phase``, ``fieldmap`` or ``epi``. Members carry the
        final suffix in ``o["guess"]``; runs are set per set when a kind repeats.
    """
    by_series: dict[int, list[dict]] = {}
    series_of: dict[int, Any] = {}
    epis: list[tuple[Any, dict]] = []
    for s, o in items:
        g = o["guess"]
        if g.datatype != "fmap":
            continue
        if g.suffix == "epi":
            epis.append((s, o))
            continue
        by_series.setdefault(id(s), []).append(o)
        series_of[id(s)] = s
    sets: list[dict] = []
    pending_mag: list[tuple[Any, list[dict]]] = []
    pending_phase: list[tuple[Any, list[dict]]] = []
    for key, outs in by_series.items():
        s = series_of[key]
        fmaps = [o for o in outs if o["guess"].suffix == "fieldmap"]
        phases = sorted((o for o in outs if o["guess"].suffix in ("phasediff", "phase1", "phase2")), key=_echo)
        mags = sorted((o for o in outs if o["guess"].suffix in _MAGNITUDES), key=_echo)
        if fmaps and not mags:
            for o in fmaps[1:] + phases:
                _skip(o, "extra image of a B0 field-map series (BIDS names one fieldmap and one magnitude)")
            pending_phase.append((s, fmaps[:1]))  # its magnitude may be the neighbouring series
        elif fmaps:
            members = [fmaps[0]] + mags[:1]
            fmaps[0]["guess"].suffix = "fieldmap"
            for o in mags[:1]:
                o["guess"].suffix = "magnitude"
            for o in fmaps[1:] + mags[1:] + phases:
                _skip(o, "extra image of a B0 field-map series (BIDS names one fieldmap and one magnitude)")
            if not mags:
                _skip(fmaps[0], "B0 field map without its magnitude image (BIDS needs both)")
                continue
            sets.append({"kind": "fieldmap", "members": members, "number": s.number})
        elif phases and mags:
            sets.append(_phase_set(s.number, mags, phases))
        elif mags:
            pending_mag.append((s, mags))
        elif phases:
            pending_phase.append((s, phases))
    # Siemens: magnitudes and phase in two neighbouring series of one voxel grid (some scanners write
    # each echo's magnitude as a series of its own: those of one series number join the set)
    merged: dict[float, list[dict]] = {}
    for s, mags in pending_mag:
        merged.setdefault(s.number, []).extend(mags)
    pending_mag = [(next(s for s, _m in pending_mag if s.number == n), sorted(m, key=_echo))
                   for n, m in merged.items()]
    for s, mags in sorted(pending_mag, key=lambda x: x[0].number):
        cands = [(abs(ps.number - s.number), i) for i, (ps, phs) in enumerate(pending_phase)
                 if same_geometry(mags[0], phs[0]) or mags[0].get("shape") is None]
        if not cands:
            for o in mags:
                _skip(o, "field-map magnitude without its phase image (BIDS cannot name it alone)")
            continue
        _d, i = min(cands)
        ps, phases = pending_phase.pop(i)
        if phases[0]["guess"].suffix == "fieldmap":
            mags[0]["guess"].suffix = "magnitude"
            for o in mags[1:]:
                _skip(o, "extra magnitude image of a B0 field map (BIDS names one)")
            sets.append({"kind": "fieldmap", "members": [phases[0], mags[0]], "number": min(s.number, ps.number)})
        else:
            sets.append(_phase_set(min(s.number, ps.number), mags, phases))
    for _ps, phases in pending_phase:
        for o in phases:
            _skip(o, "field-map image without its magnitude (BIDS needs both)")
    sets.extend(_epi_sets(epis))
    sets = [x for x in sets if x["members"]]
    sets.sort(key=lambda x: x["number"])
    # runs only for real repeats: sets of one kind (and acq) numbered in acquisition order
    kinds: dict[tuple, list[dict]] = {}
    for x in sets:
        g0 = x["members"][0]["guess"]
        dirs = tuple(sorted(m["guess"].entities.get("dir", "") for m in x["members"]))
        kinds.setdefault((x["kind"], g0.entities.get("acq"), dirs if x["kind"] == "epi" else ()), []).append(x)
    for group in kinds.values():
        if len(group) > 1:
            for run, x in enumerate(group, 1):
                for m in x["members"]:
                    m["guess"].entities.setdefault("run", str(run))
    label = f"ses{session}" if session else ""
    for k, x in enumerate(sets, 1):
        x["id"] = f"{label}{'_' if label else ''}b0map{k}"
    return sets


def _phase_set(number: float, mags: list[dict], phases: list[dict]) -> dict:
    """phasediff + magnitude1/2, or phase1/phase2 + magnitude1/2 (two phase images of distinct echoes)."""
    two = len(phases) >= 2 and len({_echo(o) for o in phases}) >= 2
    members = []
    if two:
        for i, o in enumerate(phases[:2], 1):
            o["guess"].suffix = f"phase{i}"
            members.append(o)
        for o in phases[2:]:
            _skip(o, "extra phase image of a field-map set")
    else:
        phases[0]["guess"].suffix = "phasediff"
        members.append(phases[0])
        for o in phases[1:]:
            _skip(o, "extra phase image of a field-map set")
    for i, o in enumerate(mags[:2], 1):
        o["guess"].suffix = f"magnitude{i}"
        members.append(o)
    for o in mags[2:]:
        _skip(o, "extra magnitude image of a field-map set")
    return {"kind": "phase" if two else "phasediff", "members": members, "number": number}


def _epi_sets(epis: list[tuple[Any, dict]]) -> list[dict]:
    """PEpolar images: each paired with the nearest image of the opposite direction on the same grid."""
    left = sorted(epis, key=lambda x: x[0].number)
    sets = []
    while left:
        s, o = left.pop(0)
        axis, d = pe_axis(o.get("fields") or {}), str((o.get("fields") or {}).get("PhaseEncodingDirection") or "")
        mate = None
        for i, (_s2, o2) in enumerate(left):
            f2 = o2.get("fields") or {}
            if (pe_axis(f2) == axis and str(f2.get("PhaseEncodingDirection") or "") != d
                    and (same_geometry(o, o2) or o.get("shape") is None)):
                mate = i
                break
        members = [o]
        if mate is not None:
            members.append(left.pop(mate)[1])
        sets.append({"kind": "epi", "members": members, "number": s.number})
    return sets


def link_fieldmaps(sets: list[dict], targets: list[tuple[Any, dict]]) -> None:
    """IntendedFor, B0FieldIdentifier and B0FieldSource for a session's field-map sets.

    Every target (func/dwi/perf image of the session) is corrected by one set: among the
    sets :func:`intended_for` keeps for it (same phase-encoding axis and grid for PEpolar
    sets, same shim settings), the last one acquired before it, else the first after it.
    Results go to ``o["b0_id"]`` / ``o["intended"]`` (list of target outputs) on set
    members and ``o["b0_source"]`` on targets.
    """
    if not sets:
        return
    chosen: dict[int, list[dict]] = {id(x): [] for x in sets}
    cand: dict[int, list[dict]] = {}
    for x in sets:
        rep = x["members"][0]
        cand[id(x)] = [t for t in intended_for(rep, rep["guess"].suffix or "", [o for _s, o in targets])]
    for ts, t in targets:
        mine = [x for x in sets if any(c is t for c in cand[id(x)])]
        if not mine:
            continue
        before = [x for x in mine if x["number"] <= ts.number]
        pick = max(before, key=lambda x: x["number"]) if before else min(mine, key=lambda x: x["number"])
        chosen[id(pick)].append(t)
        t["b0_source"] = pick["id"]
    for x in sets:
        intended = chosen[id(x)] or cand[id(x)]
        for m in x["members"]:
            m["b0_id"] = x["id"]
            m["intended"] = intended
