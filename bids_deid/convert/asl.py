"""Arterial spin labeling: complete an ``asl`` sidecar with what the headers support, write ``aslcontext.tsv``.

BIDS requires for every ASL run: ``ArterialSpinLabelingType``, ``PostLabelingDelay``,
``BackgroundSuppression``, ``M0Type``, ``TotalAcquiredPairs``, ``RepetitionTimePreparation``,
``LabelingDuration`` for (P)CASL and ``BolusCutOffFlag`` for PASL, plus an ``aslcontext.tsv``
naming every volume (``control``, ``label``, ``m0scan``, ``deltam``, ``cbf``).

What is filled here, and from what (nothing is guessed that would change the science):

* ``ArterialSpinLabelingType`` from dcm2niix, else from the protocol name (``pcasl``/``pasl``/``casl``);
* ``M0Type``: ``Included`` when the context has M0 volumes, ``Separate`` when the session has an
  ``m0scan`` for this run, else ``Absent``;
* ``TotalAcquiredPairs``: control/label volumes / 2; ``RepetitionTimePreparation`` = ``RepetitionTime``
  when dcm2niix gave none (one preparation per volume, the common case);
* the volume order only from a user rule (``aslcontext:`` in the heuristics file) or a single
  derived volume (``deltam``/``cbf`` from ImageType).

Labeling parameters (delays, durations, background suppression) come from dcm2niix or the rule's
``metadata:``. A run that still lacks any required field or its volume order is not named: the
caller keeps its DICOM in ``sourcedata/`` and lists which fields were missing.
"""

from __future__ import annotations

import re

REQUIRED = ("ArterialSpinLabelingType", "PostLabelingDelay", "BackgroundSuppression", "M0Type",
            "TotalAcquiredPairs", "RepetitionTimePreparation")
VOLUME_TYPES = ("control", "label", "m0scan", "deltam", "cbf")


def label_type(side: dict) -> str | None:
    """PCASL / CASL / PASL from dcm2niix's field or the protocol/series name."""
    v = str(side.get("ArterialSpinLabelingType") or "").upper()
    if v in ("PCASL", "CASL", "PASL"):
        return v
    text = " ".join(str(side.get(k) or "") for k in ("ProtocolName", "SeriesDescription", "SequenceName")).lower()
    for word, kind in (("pcasl", "PCASL"), ("pasl", "PASL"), ("casl", "CASL"), ("pulsed", "PASL")):
        if re.search(word, text):
            return kind
    return None


def volume_context(side: dict, n_vols: int, pattern: list[str] | None) -> list[str] | None:
    """One volume type per volume: the user's pattern repeated, or a single derived volume; else None."""
    if pattern:
        if n_vols % len(pattern) and len(pattern) != n_vols:
            return None
        return [pattern[i % len(pattern)] for i in range(n_vols)]
    itype = {str(x).upper() for x in (side.get("ImageType") or [])}
    if n_vols == 1 and ("CBF" in itype or "DELTAM" in itype or "PERFUSION" in itype):
        return ["cbf" if "CBF" in itype else "deltam"]
    return None


def complete_asl(side: dict, n_vols: int, *, has_m0scan: bool, pattern: list[str] | None = None,
                 metadata: dict | None = None) -> tuple[dict, list[str] | None, list[str]]:
    """The completed sidecar, the volume context (or None) and the required fields still missing.

    Parameters
    ----------
    side : dict
        The dcm2niix sidecar of the run.
    n_vols : int
        Volumes in the image.
    has_m0scan : bool
        The session has an ``m0scan`` for this run.
    pattern : list of str, optional
        Volume types from the user's rule (repeated over the run).
    metadata : dict, optional
        Fields from the user's rule; they win over dcm2niix's.
    """
    out = {**side, **(metadata or {})}
    kind = label_type(out)
    if kind:
        out["ArterialSpinLabelingType"] = kind
    context = volume_context(out, n_vols, pattern)
    if context is not None:
        m0 = context.count("m0scan")
        out.setdefault("M0Type", "Included" if m0 else "Separate" if has_m0scan else "Absent")
        pairs = min(context.count("control"), context.count("label"))
        if pairs:
            out.setdefault("TotalAcquiredPairs", pairs)
        elif context.count("deltam") or context.count("cbf"):
            out.setdefault("TotalAcquiredPairs", 1)
    if "RepetitionTime" in out:
        out.setdefault("RepetitionTimePreparation", out["RepetitionTime"])
    need = list(REQUIRED)
    if kind in ("PCASL", "CASL"):
        need.append("LabelingDuration")
    if kind == "PASL":
        need.append("BolusCutOffFlag")
    missing = [k for k in need if k not in out]
    if context is None:
        missing.append("volume order (aslcontext)")
    return out, context, missing


def aslcontext_tsv(context: list[str]) -> str:
    """The ``*_aslcontext.tsv`` text."""
    return "volume_type\n" + "".join(f"{v}\n" for v in context)
