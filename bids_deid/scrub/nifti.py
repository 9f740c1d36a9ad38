"""Old import path of the NIfTI format module, kept while dataset-level code imports it from here: the
module is :mod:`bids_deid.formats.nifti`."""

from ..formats.nifti import scrub_nifti_file

__all__ = ["scrub_nifti_file"]
