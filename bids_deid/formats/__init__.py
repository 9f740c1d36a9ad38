"""The format registry: one module per format, asked in order which one handles a file.

Each module follows :mod:`bids_deid.formats.base` (``NAME``, ``sniff``, ``companions``,
``COMPANION_SUFFIXES``, ``scrub``; image formats that become NIfTI also ``to_nifti``).

* :data:`REGISTRY` holds the modules of files the run takes as they are (recordings,
  photos, folders, empty placeholders): the pipeline asks :func:`handler_for` for every
  such file and writes what the handler's :class:`~bids_deid.formats.base.Outcome` says;
  a file no module claims is withheld, with its sidecars, and listed in the report.
* :data:`IMAGES` holds the older image formats (converted to NIfTI in a subject folder,
  scrubbed as they are under ``sourcedata/``) and whole-slide TIFF: :func:`image_format`.
* :data:`ROUTED` holds the formats the run routes by name (NIfTI, JSON sidecars, TSV
  tables, Siemens twix): :func:`by_name`.

New formats go here: write the module, add it to one of the tuples.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from . import (
    analyze,
    brainvision,
    edf,
    eeglab,
    empty,
    fif,
    folders,
    gifti,
    hdf5,
    megcal,
    minc,
    nifti,
    parrec,
    photo,
    png,
    sidecar,
    tabular,
    twix,
    wsi,
)

#: asked in this order; the first whose ``sniff`` is true handles the file
REGISTRY: tuple[ModuleType, ...] = (folders, empty, photo, edf, brainvision, eeglab, fif, hdf5, png, megcal, gifti)
#: image formats read through a header (converted to NIfTI, or scrubbed as they are) and TIFF slides
IMAGES: tuple[ModuleType, ...] = (analyze, minc, parrec, wsi)
#: image formats that become NIfTI in a subject folder
CONVERTIBLE: tuple[ModuleType, ...] = (analyze, minc, parrec)
#: formats the run routes by their name
ROUTED: tuple[ModuleType, ...] = (nifti, sidecar, tabular, twix)
ALL: tuple[ModuleType, ...] = REGISTRY + IMAGES + ROUTED


def handler_for(path: Path, among: tuple[ModuleType, ...] = REGISTRY) -> ModuleType | None:
    """The format module (of ``among``) for ``path`` (a file, or a folder-format directory), or None."""
    for mod in among:
        try:
            if mod.sniff(path):
                return mod
        except OSError:
            return None
    return None


def image_format(path: Path) -> ModuleType | None:
    """The module of an Analyze / MINC / PAR image or a TIFF slide, from the file's content; or None."""
    return handler_for(Path(path), IMAGES)


def by_name(name: str) -> ModuleType:
    """The module whose ``NAME`` is ``name`` (KeyError if none)."""
    for mod in ALL:
        if mod.NAME == name:
            return mod
    raise KeyError(name)


def companion_suffixes() -> tuple[str, ...]:
    """Lower-case extensions of the data halves of :data:`IMAGES` pairs (``.img``, ``.mat``, ``.rec``): files
    read through their header, never on their own. Listed once, by each format module."""
    return tuple(dict.fromkeys(s for mod in IMAGES for s in mod.COMPANION_SUFFIXES))


def header_suffixes() -> tuple[str, ...]:
    """Lower-case extensions of the headers of :data:`CONVERTIBLE` images (``.hdr``, ``.mnc``, ``.par``)."""
    return tuple(s for mod in CONVERTIBLE for s in mod.SUFFIXES)


def is_folder_format(name: str) -> bool:
    """True for a folder name that is one recording (``*.ds``, ``*.ome.zarr``, ``*.mefd``)."""
    return folders.folder_suffix(name) is not None
