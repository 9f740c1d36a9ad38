"""Old import path of the column dictionaries, kept while dataset-level code imports them from here:
they are in :mod:`bids_deid.formats.sidecar`."""

from ..formats.sidecar import scrub_column_dictionary, table_columns

__all__ = ["scrub_column_dictionary", "table_columns"]
