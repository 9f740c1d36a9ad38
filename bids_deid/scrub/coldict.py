"""Old import path of the column dictionaries, kept while dataset-level code imports them from here:
the module is :mod:`bids_deid.formats.coldict`."""

from ..formats.coldict import scrub_column_dictionary, table_columns

__all__ = ["scrub_column_dictionary", "table_columns"]
