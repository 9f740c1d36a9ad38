"""Classify one converted MR series (its dcm2niix sidecar) into BIDS entities.

Order of precedence:

1. a user heuristic (YAML rules matching sidecar fields, see ``docs/heuristics.md``);
2. series that are never raw BIDS data are skipped: derived images (ImageType DERIVED),
   localizers/scouts, MPR and MoCo series, dcm2niix's own ``derived``/``discard`` guesses;
3. dcm2niix's ``BidsGuess`` field (datatype + suffix; ``dir`` is kept, its ``acq``/``run``
   are not: runs are numbered by the caller, acq labels only come from heuristics);
4. rules on ImageType, ScanningSequence, SequenceVariant, EchoTime, InversionTime,
   SeriesDescription and ProtocolName.

Keys starting with ``_`` in the ``fields`` dict are hints from the caller:
``_postfix`` (dcm2niix file-name postfix such as ``_e2_ph``), ``_n_echoes`` (echo images
the series produced), ``_has_phase`` (the series produced phase images), ``_has_bval``,
``_dir`` (the ``dir`` label from PhaseEncodingDirection and the image orientation, see
:func:`phase_dir_label`; it wins over dcm2niix's guess, a heuristic's ``dir`` wins over it).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ProfileError
from .guess import Guess, sanitize_label
from .reproin import reproin_guess

log = logging.getLogger(__name__)

DATATYPES = {"anat", "func", "dwi", "fmap", "perf"}
# entity order in file names (BIDS specification, subset used here)
ENTITY_ORDER = ("task", "acq", "ce", "rec", "dir", "run", "echo", "part")
SET_KEYS = {"datatype", "suffix", *ENTITY_ORDER}
# entities each suffix may carry (subset of the BIDS schema rules we produce)
_ALLOWED = {
    "T1w": {"acq", "ce", "rec", "run", "part"},
    "T2w": {"acq", "ce", "rec", "run", "part"},
    "PDw": {"acq", "ce", "rec", "run", "part"},
    "FLAIR": {"acq", "ce", "rec", "run", "part"},
    "T2starw": {"acq", "ce", "rec", "run", "part"},
    "MEGRE": {"acq", "ce", "rec", "run", "echo", "part"},
    "MESE": {"acq", "ce", "rec", "run", "echo", "part"},
    "bold": {"task", "acq", "ce", "rec", "dir", "run", "echo", "part"},
    "sbref": {"task", "acq", "ce", "rec", "dir", "run", "echo", "part"},
    "dwi": {"acq", "rec", "dir", "run", "part"},
    "cbv": {"task", "acq", "ce", "rec", "dir", "run", "echo", "part"},
    "epi": {"acq", "ce", "dir", "run"},
    "magnitude1": {"acq", "run"},
    "magnitude2": {"acq", "run"},
    "magnitude": {"acq", "run"},
    "phasediff": {"acq", "run"},
    "phase1": {"acq", "run"},
    "phase2": {"acq", "run"},
    "fieldmap": {"acq", "run"},
    "asl": {"acq", "rec", "dir", "run"},
    "m0scan": {"acq", "rec", "dir", "run"},
}
#: the same table, public (for the placement of raw-input Analyze/MINC/PAR images)
ALLOWED_ENTITIES = _ALLOWED
# suffixes that get a dir- entity from the phase-encoding direction
DIR_SUFFIXES = ("epi", "bold", "sbref", "dwi", "asl", "m0scan")
# world (RAS+) axis -> label when the phase axis points to + / - along it
_DIR_LABELS = (("LR", "RL"), ("PA", "AP"), ("IS", "SI"))


def task_label(*texts: str | None) -> str:
    """Task label from protocol/series names: ``fMRI_rest`` -> ``rest``; default ``unknown``."""
    for text in texts:
        if not text:
            continue
        t = str(text)
        m = re.search(r"task[-_ ]?([A-Za-z0-9]+)", t, re.I)
        if m:
            return m.group(1).lower()
        if re.search(r"(?<![a-z])rest", t, re.I):
            return "rest"
        m = re.search(r"(?:fmri|bold|func|ep2d_bold|epfid)[_\- ]*([A-Za-z][A-Za-z0-9]*)", t, re.I)
        if m and m.group(1).lower() not in {"sbref", "moco", "ap", "pa", "lr", "rl", "mb", "run"}:
            return sanitize_label(m.group(1)).lower() or "unknown"
    return "unknown"


def phase_dir_label(ped: str | None, affine: Any = None, min_cosine: float = 0.8) -> str | None:
    """BIDS ``dir`` label from a sidecar's PhaseEncodingDirection and the image affine.

    The voxel axis (``i``/``j``/``k``, ``-`` = reversed) is turned into a world direction
    with the NIfTI affine (RAS+); the label names where the traversal starts and ends:
    toward +x (right) is ``LR``, toward -x ``RL``, toward +y (anterior) ``PA``, toward -y
    ``AP``, toward +z ``IS``, toward -z ``SI``. When the affine is unknown or the axis is
    oblique (no world axis with ``|cos| >= min_cosine``), the label names the voxel axis
    instead: ``ipos``/``ineg``, ``jpos``/``jneg``, ``kpos``/``kneg`` (any alphanumeric label
    is a valid BIDS label).

    Parameters
    ----------
    ped : str or None
        ``"i"``, ``"i-"``, ``"j"``, ``"j-"``, ``"k"`` or ``"k-"``.
    affine : array-like (4, 4), optional
        Voxel-to-world (RAS+) affine of the image the sidecar describes.
    min_cosine : float
        How closely the axis must follow a world axis to be named anatomically.

    Returns
    -------
    str or None
        None when ``ped`` is missing or malformed.
    """
    m = re.fullmatch(r"\s*([ijk])\s*(-?)\s*", str(ped or ""))
    if not m:
        return None
    axis, sign = "ijk".index(m.group(1)), (-1.0 if m.group(2) else 1.0)
    raw = f"{m.group(1)}{'neg' if sign < 0 else 'pos'}"
    if affine is None:
        return raw
    try:
        col = [float(affine[r][axis]) * sign for r in range(3)]
    except (TypeError, ValueError, IndexError, KeyError):
        return raw
    norm = sum(c * c for c in col) ** 0.5
    if norm == 0:
        return raw
    k = max(range(3), key=lambda r: abs(col[r]))
    if abs(col[k]) / norm < min_cosine:
        return raw
    return _DIR_LABELS[k][0 if col[k] > 0 else 1]


def _as_list(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, (list, tuple)):
        return [str(x) for x in v]
    return [x for x in re.split(r"[\\/ ]+", str(v)) if x]


def _text(fields: dict) -> str:
    return " ".join(str(fields.get(k) or "") for k in ("SeriesDescription", "ProtocolName", "SequenceName")).lower()


# ---------------------------------------------------------------- heuristics file
@dataclass
class HeuristicRule:
    """One user rule: all ``match`` conditions must hold; then ``set`` or ``skip``."""

    match: dict[str, Any]
    set: dict[str, str]
    skip: bool = False
    name: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    aslcontext: list[str] | None = None

    def matches(self, fields: dict) -> bool:
        return all(_match_value(fields.get(k), cond) for k, cond in self.match.items())


def _match_value(value: Any, cond: Any) -> bool:
    if isinstance(cond, list):
        return any(_match_value(value, c) for c in cond)
    if value is None:
        return cond is None
    if isinstance(cond, str) and cond.startswith("re:"):
        rx = re.compile(cond[3:])
        if isinstance(value, (list, tuple)):
            return any(rx.search(str(v)) for v in value) or bool(rx.search("\\".join(map(str, value))))
        return bool(rx.search(str(value)))
    if isinstance(value, (list, tuple)):
        return any(_match_value(v, cond) for v in value)
    if isinstance(cond, (int, float)) and not isinstance(cond, bool):
        try:
            return abs(float(value) - float(cond)) < 1e-9
        except (TypeError, ValueError):
            return False
    return str(value) == str(cond)


def load_heuristic(path: Path) -> list[HeuristicRule]:
    """Read a YAML rules file (see ``docs/heuristics.md``).

    Raises
    ------
    ProfileError
        When the file cannot be read or a rule is malformed.
    """
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"cannot read heuristic file {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ProfileError(f"heuristic file {path} is not valid YAML") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise ProfileError(f"heuristic file {path} needs a top-level 'rules:' list")
    rules = []
    for i, raw in enumerate(doc["rules"], 1):
        where = f"heuristic file {path}, rule {i}"
        if not isinstance(raw, dict) or not isinstance(raw.get("match"), dict) or not raw["match"]:
            raise ProfileError(f"{where}: needs a non-empty 'match:' mapping")
        unknown = set(raw) - {"match", "set", "skip", "name", "why", "metadata", "aslcontext"}
        if unknown:
            raise ProfileError(f"{where}: unknown key(s) {sorted(unknown)}")
        skip = bool(raw.get("skip", False))
        setv = raw.get("set") or {}
        if not isinstance(setv, dict) or (not skip and not setv):
            raise ProfileError(f"{where}: needs 'set:' entities or 'skip: true'")
        bad = set(setv) - SET_KEYS
        if bad:
            raise ProfileError(f"{where}: cannot set {sorted(bad)} (allowed: {sorted(SET_KEYS)})")
        if not skip and ("datatype" not in setv or "suffix" not in setv):
            raise ProfileError(f"{where}: 'set:' must name datatype and suffix")
        if "datatype" in setv and setv["datatype"] not in DATATYPES:
            raise ProfileError(f"{where}: datatype must be one of {sorted(DATATYPES)}")
        clean = {}
        for k, v in setv.items():
            label = str(v) if k in ("datatype", "suffix") else sanitize_label(v)
            if not label:
                raise ProfileError(f"{where}: empty label for {k}")
            clean[k] = label
        for k, cond in raw["match"].items():
            for c in cond if isinstance(cond, list) else [cond]:
                if isinstance(c, str) and c.startswith("re:"):
                    try:
                        re.compile(c[3:])
                    except re.error as exc:
                        raise ProfileError(f"{where}: bad regex for {k}: {exc}") from exc
        meta = raw.get("metadata") or {}
        if not isinstance(meta, dict) or not all(isinstance(k, str) and re.fullmatch(r"[A-Z][A-Za-z0-9]*", k)
                                                 and isinstance(v, (bool, int, float, str, list)) for k, v in
                                                 meta.items()):
            raise ProfileError(f"{where}: 'metadata:' must map BIDS field names to values")
        context = raw.get("aslcontext")
        if context is not None and (not isinstance(context, list) or not context or not all(
                v in ("control", "label", "m0scan", "deltam", "cbf") for v in context)):
            raise ProfileError(f"{where}: 'aslcontext:' must list volume types (control, label, m0scan, deltam, cbf)")
        rules.append(HeuristicRule(match=dict(raw["match"]), set=clean, skip=skip, name=str(raw.get("name", i)),
                                   metadata=dict(meta), aslcontext=list(context) if context else None))
    return rules


# ---------------------------------------------------------------- classification
def _skip_reason(fields: dict) -> str | None:
    itype = [x.upper() for x in _as_list(fields.get("ImageType"))]
    text = _text(fields)
    postfix = str(fields.get("_postfix") or "")
    if "ROI" in postfix or re.search(r"_roi\d*$", postfix, re.I):
        return "ROI overlay image"
    if re.search(r"local|scout|survey|3[- ]?plane|aahead|\bloc\b|calibration|_calib", text):
        return "localizer/scout"
    if "MPR" in itype or "CSA MPR" in itype or re.search(r"<mpr|\bmpr (collection|range|thick)", text):
        return "MPR reformat"
    if "MOCO" in itype or re.search(r"moco", text):
        return "motion-corrected (MoCo) series"
    if "DERIVED" in itype:
        return "derived image"
    if any(x in itype for x in ("ADC", "FA", "TRACEW", "TENSOR", "EXP", "PROJECTION IMAGE", "SCREENSHOT")):
        return "derived image"
    return None


def _guess_skip(fields: dict) -> str | None:
    """dcm2niix's own verdict that an image is no raw data (used only when the rules have no opinion)."""
    guess = fields.get("BidsGuess")
    if isinstance(guess, list) and guess and str(guess[0]) in ("derived", "discard", "localizer"):
        return f"dcm2niix BidsGuess '{guess[0]}'"
    return None


def _guess_text(fields: dict) -> str | None:
    guess = fields.get("BidsGuess")
    if not (isinstance(guess, list) and guess):
        return None
    parts = [p for p in str(guess[-1]).split("_") if p] if len(guess) > 1 else []
    return sanitize_label(guess[0]) + ("/" + sanitize_label(parts[-1]) if parts else "")


def _is_phase(fields: dict) -> bool:
    itype = [x.upper() for x in _as_list(fields.get("ImageType"))]
    postfix = str(fields.get("_postfix") or "")
    return "P" in itype or "PHASE" in itype or "_ph" in postfix


def is_direct_fieldmap(fields: dict) -> bool:
    """A B0 map in Hz or rad/s (GE, Philips): dcm2niix writes ``Units``; ImageType says B0/FIELD_MAP."""
    itype = [x.upper() for x in _as_list(fields.get("ImageType"))]
    postfix = str(fields.get("_postfix") or "").lower()
    units = str(fields.get("Units") or "").strip().lower()
    return (units in ("hz", "rad/s") or "fieldmap" in postfix or "FIELDMAP" in itype or "FIELD_MAP" in itype
            or ("B0" in itype and "M" not in itype))


def _part_of(fields: dict) -> str | None:
    """``real``/``imag`` for the real and imaginary images dcm2niix writes (postfix or ImageType)."""
    itype = [x.upper() for x in _as_list(fields.get("ImageType"))]
    postfix = str(fields.get("_postfix") or "").lower()
    if "_real" in postfix or "REAL" in itype:
        return "real"
    if "_imag" in postfix or "IMAGINARY" in itype:
        return "imag"
    return None


def _from_bidsguess(fields: dict) -> Guess | None:
    guess = fields.get("BidsGuess")
    if not (isinstance(guess, list) and len(guess) >= 2):
        return None
    datatype = str(guess[0])
    if datatype not in DATATYPES:
        return None
    parts = [p for p in str(guess[1]).split("_") if p]
    if not parts:
        return None
    suffix = parts[-1]
    ents = {}
    for p in parts[:-1]:
        if "-" in p:
            k, v = p.split("-", 1)
            if k == "dir" and datatype in ("fmap", "dwi", "func", "perf"):
                ents["dir"] = sanitize_label(v)
            if k == "task":
                ents["task"] = sanitize_label(v).lower()
    return Guess(datatype, suffix, ents, "dcm2niix BidsGuess")


def _fmap_field_kind(fields: dict) -> bool:
    text = _text(fields)
    return bool(re.search(r"field[_ ]?map|fieldmap|gre_field|b0[_ ]?map|\bfmap\b|fm2d|fm_", text))


def _from_rules(fields: dict) -> Guess | None:
    """Header rules: ImageType, ScanningSequence, SequenceVariant, volumes, b-values, TE/TI, names."""
    text = _text(fields)
    itype = [x.upper() for x in _as_list(fields.get("ImageType"))]
    seq = {x.upper() for x in _as_list(fields.get("ScanningSequence"))}
    var = {x.upper() for x in _as_list(fields.get("SequenceVariant"))}
    seqname = str(fields.get("SequenceName") or "").lower()
    te = _num(fields.get("EchoTime"))
    ti = _num(fields.get("InversionTime"))
    n_vols = int(_num(fields.get("_n_vols")) or 1)
    bmax = _num(fields.get("_bmax"))
    epi = ("EP" in seq or "EPI" in itype or re.search(r"^\*?(ep|epfid|epse|epi)", seqname) is not None
           or re.search(r"\bepi\b|ep2d|ep3d|epfid|epse|ep_b|cmrr|\bbold\b|fmri", text) is not None)
    fmap_text = re.search(r"topup|se[_ ]?epi|spin[_ ]?echo.*(map|fmap)|fmap|field[_ ]?map|blip|revpe|reverse|pepolar",
                          text)
    asl_text = re.search(r"pcasl|pasl|\basl\b|perfusion|tgse.*asl|asl_|_asl", text + " " + seqname)
    if asl_text or "ASL" in itype:
        if re.search(r"m0", text) or "M0" in itype:
            return Guess("perf", "m0scan", {}, "rules: ASL M0")
        return Guess("perf", "asl", {}, "rules: ASL")
    if "DIFFUSION" in itype or (bmax is not None and bmax > 0) or (
            (fields.get("_has_bval") or re.search(r"dwi|dti|diff|tensor", text)) and not fmap_text):
        return Guess("dwi", "dwi", {}, "rules: diffusion")
    if is_direct_fieldmap(fields) and not epi:
        return Guess("fmap", "fieldmap", {}, "rules: B0 field map (Hz)")
    if (_fmap_field_kind(fields) or re.search(r"fm2d|fm3d|field", seqname)) and not epi:
        return Guess("fmap", "phasediff" if _is_phase(fields) else "magnitude", {}, "rules: GRE field map")
    if epi and fmap_text:
        return Guess("fmap", "epi", {}, "rules: EPI field map")
    if epi and re.search(r"sbref", text):
        return Guess("func", "sbref", {}, "rules: single-band reference")
    if epi and "SE" in seq and "GR" not in seq and 1 < n_vols <= 6 and not re.search(r"bold|fmri|func|rest|task", text):
        return Guess("fmap", "epi", {}, "rules: short spin-echo EPI (PEpolar field map)")
    if epi and (n_vols > 1 or re.search(r"bold|fmri|func|rest|task|\bepi\b|ep2d|epfid", text) or "GR" in seq):
        return Guess("func", "bold", {}, "rules: EPI time series")
    if re.search(r"flair|\bdark[_ ]?fluid", text) or ("IR" in seq and te and te > 0.06):
        return Guess("anat", "FLAIR", {}, "rules: FLAIR")
    if re.search(r"t2\*|t2star|t2s\b|swi|\bswan|susc|gre_t2", text):
        return Guess("anat", "T2starw", {}, "rules: T2*-weighted")
    if re.search(r"megre|me[_ ]?gre|multi[_ ]?echo", text):
        return Guess("anat", "MEGRE", {}, "rules: multi-echo GRE")
    if re.search(r"\bpd\b|pdw|proton[_ ]?dens|_pd_|pd_", text):
        return Guess("anat", "PDw", {}, "rules: PD-weighted")
    if re.search(r"t2(?!\*)|tse|space.*t2|cube.*t2", text) and "IR" not in seq:
        return Guess("anat", "T2w", {}, "rules: T2-weighted")
    if re.search(r"t1|mprage|mp2rage|spgr|bravo|tfl|fspgr|mpr\b|vibe", text):
        return Guess("anat", "T1w", {}, "rules: T1-weighted")
    # parameters only
    if ("IR" in seq or "MP" in var) and ti and 0.3 < ti < 1.5 and te is not None and te < 0.01:
        return Guess("anat", "T1w", {}, "rules: IR-prepared short TE")
    if "SE" in seq and te is not None and te > 0.07:
        return Guess("anat", "T2w", {}, "rules: long-TE spin echo")
    if "GR" in seq and te is not None and te > 0.015 and not epi:
        return Guess("anat", "T2starw", {}, "rules: long-TE gradient echo")
    return None


def _num(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _finish(g: Guess, fields: dict) -> Guess:
    """Add echo/part entities and the task label, then drop entities the suffix cannot carry."""
    n_echoes = int(fields.get("_n_echoes") or 1)
    echo = fields.get("EchoNumber")
    phase = _is_phase(fields)
    if g.datatype == "anat" and n_echoes > 1 and g.suffix in ("T2starw", "T1w", "PDw", "T2w", "MEGRE"):
        g.suffix = "MESE" if g.suffix in ("T2w",) else "MEGRE"
    if n_echoes > 1 and echo is not None and "echo" not in g.entities:
        g.entities["echo"] = str(int(_num(echo) or 1))
    part = _part_of(fields)
    if part and g.datatype != "fmap" and "part" not in g.entities:
        g.entities["part"] = part
    if g.datatype == "fmap":
        if g.suffix == "fieldmap":
            pass
        elif g.suffix in ("magnitude", "magnitude1", "magnitude2") and not phase:
            e = int(_num(echo) or 1)
            g.suffix = "magnitude2" if e >= 2 else "magnitude1"
        elif g.suffix in ("magnitude", "magnitude1", "magnitude2", "phasediff") and phase:
            g.suffix = "phasediff"
    elif phase and "part" not in g.entities:
        g.entities["part"] = "phase"
    elif fields.get("_has_phase") and "part" not in g.entities:
        g.entities["part"] = "mag"
    if g.suffix in ("bold", "sbref") and not g.entities.get("task"):
        g.entities["task"] = task_label(fields.get("ProtocolName"), fields.get("SeriesDescription"))
    allowed = _ALLOWED.get(g.suffix or "")
    if allowed is not None:
        g.entities = {k: v for k, v in g.entities.items() if k in allowed}
    return g


def classify(fields: dict, heuristic: list[HeuristicRule] | None = None, reproin: bool = False) -> Guess:
    """Classify one image from its sidecar fields.

    Parameters
    ----------
    fields : dict
        dcm2niix sidecar (or header-derived fields with the same names; times in seconds)
        plus optional ``_``-prefixed hints (see module docstring).
    heuristic : list of HeuristicRule, optional
        User rules; the first matching rule wins over every guess.
    reproin : bool
        Series named by the ReproIn convention go where their name says (after the user
        rules); what the name leaves open (a field map's suffixes, echo, part) the headers say.

    Returns
    -------
    Guess
        ``datatype`` None when skipped (``reason`` says why).
    """
    for rule in heuristic or []:
        if rule.matches(fields):
            if rule.skip:
                return Guess(None, None, {}, f"heuristic rule {rule.name}: skip")
            s = dict(rule.set)
            g = Guess(s.pop("datatype"), s.pop("suffix"), s, f"heuristic rule {rule.name}",
                      metadata=dict(rule.metadata), aslcontext=rule.aslcontext)
            if fields.get("_dir") and g.suffix == "epi":  # a PEpolar image needs its direction; others: as named
                g.entities.setdefault("dir", str(fields["_dir"]))
            return _finish(g, fields)
    if str(fields.get("Modality") or "MR").upper() != "MR":
        return Guess(None, None, {}, f"modality {sanitize_label(fields.get('Modality'))} is not MR")
    if reproin:
        g = reproin_guess(fields)
        if g is not None:
            if g.skipped:
                return g
            derived = _skip_reason(fields)
            if derived:  # a derived or MPR image of a ReproIn-named protocol is still no raw data
                return Guess(None, None, {}, f"{derived} (ReproIn-named series)")
            if g.suffix is None or g.datatype == "fmap" and g.suffix != "epi":
                r = _from_rules(fields)
                if g.datatype == "fmap" and r is not None and r.datatype == "fmap":
                    g.suffix = r.suffix if g.suffix in (None, "magnitude", "phasediff") or r.suffix == "fieldmap" \
                        else g.suffix
                elif g.suffix is None:
                    g.suffix = r.suffix if r is not None and r.datatype == g.datatype else None
                if g.datatype == "fmap" and g.suffix is None:
                    g.suffix = "phasediff" if _is_phase(fields) else "magnitude"
            if g.suffix is None or g.suffix not in _ALLOWED:
                return Guess(None, None, {}, f"ReproIn name without a BIDS suffix BIDS knows ({g.datatype})")
            if fields.get("_dir") and g.suffix == "epi":  # a PEpolar image needs its direction; others: as named
                g.entities.setdefault("dir", str(fields["_dir"]))
            return _finish(g, fields)
    guessed = _guess_text(fields)
    said = f" (dcm2niix guessed {guessed})" if guessed else ""
    reason = _skip_reason(fields)
    if reason:
        return Guess(None, None, {}, reason + said)
    g = _from_rules(fields)
    dg = _from_bidsguess(fields)
    if dg is not None and dg.suffix not in _ALLOWED:
        dg = None  # e.g. an unknown anat suffix
    if g is not None:
        if dg is not None and (dg.datatype, dg.suffix) != (g.datatype, g.suffix):
            g.reason += f"; dcm2niix guessed {dg.datatype}/{dg.suffix}: the rules win"
        elif dg is not None and "dir" in dg.entities:
            g.entities.setdefault("dir", dg.entities["dir"])
        if dg is not None and "task" in dg.entities:
            g.entities.setdefault("task", dg.entities["task"])
    else:
        reason = _guess_skip(fields)
        if reason:
            return Guess(None, None, {}, reason)
        g = dg
    if g is None:
        return Guess(None, None, {}, "unclassified MR series (add a heuristic rule)" + said)
    # dcm2niix guesses phase images of field maps inconsistently; rules know the pair
    if g.datatype == "fmap" and g.suffix not in ("epi", "fieldmap") and _is_phase(fields):
        g.suffix = "phasediff"
    if fields.get("_dir") and g.suffix in DIR_SUFFIXES:
        g.entities["dir"] = str(fields["_dir"])
    return _finish(g, fields)


def bids_name(subject: str, session: str | None, guess: Guess, run: int | None = None) -> str:
    """File name stem ``sub-X[_ses-Y]_<entities>_<suffix>`` for a classified image."""
    ents = dict(guess.entities)
    if run is not None and "run" not in ents:
        ents["run"] = str(run)
    parts = [f"sub-{subject}"]
    if session:
        parts.append(f"ses-{session}")
    for key in ENTITY_ORDER:
        if ents.get(key):
            parts.append(f"{key}-{ents[key]}")
    parts.append(str(guess.suffix))
    return "_".join(parts)
