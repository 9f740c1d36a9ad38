"""Old import path of the TSV format module, kept while dataset-level code imports it from here: the
module is :mod:`bids_deid.formats.tabular`."""

from ..formats.tabular import read_tsv, regzip, scrub_dated_table, scrub_participants, write_tsv

__all__ = ["read_tsv", "regzip", "scrub_dated_table", "scrub_participants", "write_tsv"]
