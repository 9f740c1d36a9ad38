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

Only public names are gathered here; nothing underscored crosses a module line.
"""

from __future__ import annotations

from .dicom_core import DicomResult
from .dicom_engine import Tag, burned_in_reason, deidentify_dataset, deidentify_events, is_dicom, skip_for
from .dicom_files import (
    OutputDefect,
    kept_tags,
    prepare_meta,
    process_full,
    process_raw,
    read_dicom,
    refusal,
    subject_for,
    write_whole,
)
from .dicom_table import compile_plan
from .dicom_tree import TreeDst, deidentify_file, deidentify_tree, iter_files, iter_tree, summarize

__all__ = ["DicomResult", "OutputDefect", "Tag", "TreeDst", "burned_in_reason", "compile_plan", "deidentify_dataset",
           "deidentify_events", "deidentify_file", "deidentify_tree", "is_dicom", "iter_files", "iter_tree",
           "kept_tags", "prepare_meta", "process_full", "process_raw", "read_dicom", "refusal", "skip_for",
           "subject_for", "summarize", "write_whole"]
