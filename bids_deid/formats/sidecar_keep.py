"""Acquisition fields of dcm2niix sidecars that raw conversion keeps, and cleaning of their free text.

The BIDS schema does not define every field that pipelines read: fMRIPrep, QSIPrep and
ASLPrep (and people) look at ``ImageType``, ``SeriesDescription``, ``ProtocolName``,
dcm2niix's ``PhaseEncodingAxis`` (when the polarity is unknown) and vendor acquisition
parameters. The fields below carry scanner settings, never identity; the raw path keeps
them (``keep`` rules placed *before* the profile's own rules, so a profile can still
remove any of them). The two free-text names are kept only after :func:`clean_text`
removed every identifier the headers hold (names, IDs, institution, dates, digit runs).
"""

from __future__ import annotations

import re

from ..profiles import Rule

# Non-identifying acquisition fields dcm2niix writes that the BIDS schema does not define.
ACQUISITION_FIELDS = (
    "ImageType", "SeriesDescription", "ProtocolName", "PhaseEncodingAxis", "SeriesNumber", "AcquisitionNumber",
    "EchoNumber", "ImagingFrequency", "PatientPosition", "ImageOrientationPatientDICOM", "ImageOrientationText",
    "InPlanePhaseEncodingDirectionDICOM", "ShimSetting", "TxRefAmp", "PhaseResolution", "PartialFourier",
    "BaseResolution", "EchoTrainLength", "PhaseEncodingSteps", "AcquisitionMatrixPE", "ReconMatrixPE",
    "BandwidthPerPixelPhaseEncode", "DerivedVendorReportedEchoSpacing", "PixelBandwidth", "PercentPhaseFOV",
    "PercentSampling", "SAR", "SpacingBetweenSlices", "CoilString", "ConsistencyInfo", "ParallelAcquisitionTechnique",
    "DiffusionScheme", "NumberOfAverages", "WaterFatShift", "PhilipsRescaleSlope", "PhilipsRescaleIntercept",
    "PhilipsScaleSlope", "UsePhilipsFloatNotDisplayScaling", "PhilipsRWVSlope", "PhilipsRWVIntercept",
    "ImageTypeText", "NonlinearGradientCorrection", "RefLinesPE", "PostLabelingDelay", "LabelingDuration",
    "BolusCutOffDelayTime", "InversionTime", "SpoilingState", "MTState", "SequenceName", "ScanOptions",
    "ReceiveCoilActiveElements", "CoilCombinationMethod", "MatrixCoilMode", "DwellTime", "RawImage",
    "SliceEncodingDirection", "Units", "AcquisitionDuration", "FrameTimesStart", "InternalPulseSequenceName",
    "PulseSequenceName",
)
FREE_TEXT = ("SeriesDescription", "ProtocolName")
_DATE = re.compile(r"(19|20)\d\d[-./_]?[01]\d[-./_]?[0-3]\d|\d{6,}")


def keep_rules() -> tuple[Rule, ...]:
    """``keep`` rules for :data:`ACQUISITION_FIELDS` (put before the profile's rules)."""
    return tuple(Rule(target=f, action="keep") for f in ACQUISITION_FIELDS)


def clean_text(value: str, identifiers: list[str]) -> str:
    """``value`` without any identifier (case-insensitive), date or long digit run; ``""`` if nothing is left.

    An identifier is removed whole and by its parts (``DOE^JOHN`` -> ``DOE``, ``JOHN``);
    parts shorter than 3 characters are not searched for. A word of ``value`` that contains
    an identifier or is contained in one (``FMRI`` in ``FMRIF``) goes as a whole.
    """
    text = _DATE.sub("", str(value))
    parts: set[str] = set()
    for ident in identifiers:
        for p in re.split(r"[\^ ,_\-./\\:;()]+", str(ident).lower()):
            if len(p) >= 3:
                parts.add(p)
    words = re.split(r"([A-Za-z0-9]+)", text)
    out = []
    for w in words:
        lw = w.lower()
        if w and w.isalnum() and len(lw) >= 3 and any(p in lw or lw in p for p in parts):
            continue
        out.append(w)
    cleaned = re.sub(r"\s+", " ", "".join(out)).strip(" _-^")
    return cleaned if any(c.isalnum() for c in cleaned) else ""
