"""The PS3.6 data dictionary (tag -> VR, keyword) without importing pydicom.

Importing ``pydicom`` costs about 0.17 s (it pulls in NumPy and its pixel handlers), which is
most of the start-up of ``bids-deid-dicom`` on a short series. The engine's lean path needs only
the data dictionary, so this module loads pydicom's dictionary file (``pydicom/_dicom_dict.py``,
plain literals transcribed from PS3.6) on its own, without running the package's
``__init__``. Lookups follow :mod:`pydicom.datadict` (repeating groups such as 50xx/60xx
included; private tags never match); ``tests/test_dicom_lean.py`` checks that they agree.
When the file is not where pydicom 3 keeps it, pydicom itself is imported instead.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path


def _load() -> tuple[dict, dict]:
    spec = importlib.util.find_spec("pydicom")  # finds the package without importing it
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "_dicom_dict.py"
        if path.is_file():
            file_spec = importlib.util.spec_from_file_location("bids_deid._ps3_6_dictionary", path)
            if file_spec is not None and file_spec.loader is not None:
                module = importlib.util.module_from_spec(file_spec)
                file_spec.loader.exec_module(module)
                return module.DicomDictionary, module.RepeatersDictionary
    from pydicom import _dicom_dict  # pragma: no cover - another pydicom layout

    return _dicom_dict.DicomDictionary, _dicom_dict.RepeatersDictionary  # pragma: no cover


_MAIN, _REPEATERS = _load()
# "60xx0010" -> (value with x = 0, mask with x bits cleared): tag matches when (tag ^ value) & mask == 0
_MASKS = {
    key: (int(key.replace("x", "0"), 16), int("".join("0" if c == "x" else "F" for c in key), 16))
    for key in _REPEATERS
}
_KEYWORDS = {entry[4]: tag for tag, entry in _MAIN.items()}


@lru_cache(maxsize=16384)
def _entry(tag: int) -> tuple | None:
    entry = _MAIN.get(tag)
    if entry is not None:
        return entry
    if (tag >> 16) & 1:  # private: never in the standard dictionary
        return None
    for key, (value, mask) in _MASKS.items():
        if (tag ^ value) & mask == 0:
            return _REPEATERS[key]
    return None


def dictionary_vr(tag: int) -> str | None:
    """The dictionary VR of ``tag`` (e.g. ``"US or SS"`` for some), or None when unknown."""
    entry = _entry(tag)
    return entry[0] if entry is not None else None


def keyword_for_tag(tag: int) -> str:
    """The keyword of ``tag``, or '' when unknown."""
    entry = _entry(tag)
    return entry[4] if entry is not None else ""


def tag_for_keyword(keyword: str) -> int | None:
    """The tag of a standard keyword, or None."""
    return _KEYWORDS.get(keyword)
