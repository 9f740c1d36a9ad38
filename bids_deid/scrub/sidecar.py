"""Old import path of the JSON sidecar format module, kept while dataset-level code imports it from
here: the module is :mod:`bids_deid.formats.sidecar` (``ScrubLog`` is in :mod:`bids_deid.formats.base`)."""

from ..formats.base import ScrubLog
from ..formats.sidecar import dump_json, load_json, scrub_sidecar

__all__ = ["ScrubLog", "dump_json", "load_json", "scrub_sidecar"]
