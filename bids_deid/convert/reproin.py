"""The ReproIn naming convention: series named on the scanner by their BIDS destination.

A ReproIn name is ``<datatype>[-<suffix>][_<key>-<value>...][__<anything>]``, written into the
protocol (and so the series description) on the console, for example ``anat-T1w_acq-mprage``,
``func-bold_task-rest_run-1``, ``fmap-epi_dir-PA`` or ``dwi_dir-AP``. The datatype is one of
``anat``, ``func``, ``dwi``, ``fmap``, ``perf``; entity pairs follow BIDS (``ses``, ``task``,
``acq``, ``ce``, ``rec``, ``dir``, ``run``, ``echo``, ``part``); ``run+`` / no run means "number the
repeats"; everything after a double underscore is a free comment. Scanners add their own tails
(Siemens ``_SBRef``, ``_MoCo``, ``_PhysioLog``, ``_ND``): those are read, not taken as entities.

Only the convention is followed here (written from its public description); the name says where
an image goes, the headers still say what each output of the series is (phase or magnitude,
echo, field-map role), so a ``fmap`` series without a suffix gets its suffixes from the rules.
"""

from __future__ import annotations

import re

from .guess import Guess, sanitize_label

DATATYPES = ("anat", "func", "dwi", "fmap", "perf")
DEFAULT_SUFFIX = {"func": "bold", "dwi": "dwi", "perf": "asl"}
_ENTITIES = ("ses", "task", "acq", "ce", "rec", "dir", "run", "echo", "part", "inv", "mt", "flip")
_SKIP_SUFFIXES = {"scout", "localizer", "loc", "survey"}
_NAME_RE = re.compile(r"^\s*(anat|func|dwi|fmap|perf)(?:-([A-Za-z0-9]+))?(?=$|_)(.*)$", re.I)


def parse(name: str | None) -> dict | None:
    """Split a ReproIn name into ``datatype``, ``suffix`` (or None) and ``entities``; None if it is not one.

    Parameters
    ----------
    name : str or None
        ProtocolName or SeriesDescription.

    Returns
    -------
    dict or None
        ``{"datatype", "suffix", "entities", "sbref", "skip"}``; ``skip`` says why a series
        named this way is no raw data (a scout, a MoCo or physiology series), else "".
    """
    if not name:
        return None
    m = _NAME_RE.match(str(name))
    if not m:
        return None
    datatype, suffix, rest = m.group(1).lower(), m.group(2), m.group(3)
    rest = rest.split("__", 1)[0]
    ents: dict[str, str] = {}
    skip, sbref = "", False
    for part in (p for p in rest.split("_") if p):
        low = part.lower()
        if low == "sbref":
            sbref = True
            continue
        if low in ("moco", "mocoseries"):
            skip = "motion-corrected (MoCo) series"
            continue
        if low in ("physiolog", "physio"):
            skip = "physiology log series"
            continue
        if "-" not in part:
            continue  # a scanner's tail (ND, RR, ...)
        key, value = part.split("-", 1)
        key = key.lower()
        if key in _ENTITIES and key not in ents:
            if key == "run" and value.strip() in ("+", "=", ""):
                continue  # "number the repeats"
            label = sanitize_label(value)
            if key in ("run", "echo"):
                label = str(int(label)) if label.isdigit() else ""
            if label:
                ents[key] = label
    if suffix and suffix.lower() in _SKIP_SUFFIXES:
        skip = "localizer/scout (ReproIn name)"
    return {"datatype": datatype, "suffix": suffix, "entities": ents, "sbref": sbref, "skip": skip}


def reproin_guess(fields: dict) -> Guess | None:
    """The Guess a ReproIn name gives (``suffix`` None when the headers must decide), or None.

    The protocol name is read first (it is what the console shows), then the series
    description. ``task`` labels are lower-cased only when the name has none of its own case.
    """
    for key in ("ProtocolName", "SeriesDescription"):
        parsed = parse(fields.get(key))
        if parsed is not None:
            break
    else:
        return None
    if parsed["skip"]:
        return Guess(None, None, {}, parsed["skip"])
    ents = dict(parsed["entities"])
    suffix = parsed["suffix"]
    if suffix is None:
        suffix = DEFAULT_SUFFIX.get(parsed["datatype"])
    if parsed["sbref"] and parsed["datatype"] in ("func", "dwi"):
        suffix = "sbref"
    g = Guess(parsed["datatype"], suffix, ents, f"ReproIn name ({parsed['datatype']}"
              f"{'-' + suffix if suffix else ''})")
    return g
