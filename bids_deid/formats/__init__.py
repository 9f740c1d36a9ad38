"""The format registry: one module per format, asked in order which one handles a file.

Each module follows :mod:`bids_deid.formats.base` (``NAME``, ``sniff``, ``companions``,
``scrub``). The pipeline asks :func:`handler_for` for every file it does not route
itself (NIfTI, JSON sidecars and TSV tables keep their own steps) and writes what the
handler's :class:`~bids_deid.formats.base.Outcome` says; a file no module claims is
withheld, with its sidecars, and listed in the report.

New formats go here: write the module, add it to :data:`REGISTRY`.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from . import brainvision, edf, eeglab, empty, fif, folders, hdf5, photo, png

#: asked in this order; the first whose ``sniff`` is true handles the file
REGISTRY: tuple[ModuleType, ...] = (folders, empty, photo, edf, brainvision, eeglab, fif, hdf5, png)


def handler_for(path: Path) -> ModuleType | None:
    """The format module for ``path`` (a file, or a folder-format directory), or None."""
    for mod in REGISTRY:
        try:
            if mod.sniff(path):
                return mod
        except OSError:
            return None
    return None


def is_folder_format(name: str) -> bool:
    """True for a folder name that is one recording (``*.ds``, ``*.ome.zarr``, ``*.mefd``)."""
    return folders.folder_suffix(name) is not None
