"""The DICOM engine's public names, in one place: PS3.15 Annex E basic profile + options +
profile rules, for datasets, files and trees.

:func:`deidentify_dataset` (pure, in place), :func:`deidentify_file`, :func:`iter_tree`
(streamed), :func:`deidentify_tree`, :func:`is_dicom`, :func:`burned_in_reason` and
:class:`DicomResult`. The work is done below this module, which nothing inside the engine
imports (no import circle):

* :mod:`bids_deid.scrub.dicom_tree` drives files and trees: the lean byte path
  (:mod:`bids_deid.scrub.dicom_lean`) first, then the pydicom paths;
* :mod:`bids_deid.scrub.dicom_engine` holds the pydicom dataset walk (the decisions applied);
* :mod:`bids_deid.scrub.dicom_files` the raw and full pydicom file paths (read, walk, write);
* :mod:`bids_deid.dicom.integrity` checks that what is written is a whole file.

The engine's internal names (underscored) stay reachable here for the tests that look at them.
"""

from __future__ import annotations

from . import dicom_engine, dicom_files

for _module in (dicom_engine, dicom_files):
    globals().update({k: v for k, v in vars(_module).items() if not k.startswith("__")})
from .dicom_engine import DicomResult, Tag, burned_in_reason, deidentify_dataset, is_dicom  # noqa: E402
from .dicom_files import (  # noqa: E402, F401
    OutputDefect,
    kept_tags,
    prepare_meta,
    read_dicom,
    refusal,
    subject_for,
    write_whole,
)
from .dicom_tree import (  # noqa: E402, F401
    TreeDst,
    deidentify_file,
    deidentify_tree,
    iter_files,
    iter_tree,
    summarize,
)

__all__ = ["DicomResult", "burned_in_reason", "deidentify_dataset", "deidentify_file", "deidentify_tree", "is_dicom",
           "iter_tree", "Tag"]
