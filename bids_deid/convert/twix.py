"""Old import path of the Siemens twix format module, kept while raw-input code imports it from here:
the module is :mod:`bids_deid.formats.twix`."""

from ..formats.twix import is_twix, read_twix_identifiers, scrub_twix, twix_layout

__all__ = ["is_twix", "read_twix_identifiers", "scrub_twix", "twix_layout"]
