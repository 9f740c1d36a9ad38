"""Bounded resources: what is checked before anything is unpacked or loaded whole into memory.

Streaming paths (header scrubbing, gzip re-packing, the leak audit) need no limit: they hold
one buffer at a time. Defacing loads an image whole (as floating point), so an anatomical
image is checked against :data:`DEFACE_MAX_VOXELS` from its header alone, before a byte of its
voxel data is unpacked; a gzip file whose declared size is out of proportion with its packed
size (:data:`MAX_GZIP_RATIO`) is refused as a likely decompression bomb. JSON files are
limited in size and nesting depth before and after parsing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import InputError

#: largest anatomical image defaced: 2**28 voxels, 4x a 0.5 mm isotropic 7T whole head
#: (about 400 x 400 x 420 voxels); one such image needs roughly 4-6 GB while defacing
DEFACE_MAX_VOXELS = 1 << 28
#: declared unpacked size / packed size above which a large .gz image is refused
MAX_GZIP_RATIO = 1000
#: below this declared size the ratio is not checked (small masks pack very well)
RATIO_MIN_BYTES = 64 << 20
#: largest JSON file read (sidecars are kilobytes; the largest real ones are a few MB)
JSON_MAX_BYTES = 64 << 20
#: deepest nesting of a JSON file (BIDS sidecars nest a few levels)
JSON_MAX_DEPTH = 64


class ResourceLimitError(InputError):
    """A file is larger, deeper or more packed than the documented limits; it is withheld."""


def check_image_for_deface(path: Path, voxels: int, data_bytes: int) -> None:
    """Raise :class:`ResourceLimitError` when defacing ``path`` would need unbounded memory."""
    if voxels > DEFACE_MAX_VOXELS:
        raise ResourceLimitError(
            f"{path.name}: {voxels:,} voxels declared, more than the defacing limit of {DEFACE_MAX_VOXELS:,} "
            "(4x the largest plausible anatomical image); withheld unread")
    if path.name.endswith(".gz") and data_bytes > RATIO_MIN_BYTES:
        packed = max(path.stat().st_size, 1)
        if data_bytes / packed > MAX_GZIP_RATIO:
            raise ResourceLimitError(
                f"{path.name}: would unpack to {data_bytes / 2**20:,.0f} MiB from {packed / 2**20:,.1f} MiB "
                f"(ratio {data_bytes / packed:,.0f}, limit {MAX_GZIP_RATIO}): a likely decompression bomb; "
                "withheld unread")


def json_depth(obj: Any) -> int:
    """Nesting depth of a parsed JSON value, without recursion."""
    depth, stack = 0, [(obj, 1)]
    while stack:
        value, d = stack.pop()
        if isinstance(value, dict | list):
            depth = max(depth, d)
            stack.extend((v, d + 1) for v in (value.values() if isinstance(value, dict) else value))
    return depth


def load_json_limited(data: bytes, where: str) -> Any:
    """``json.loads`` with the size and depth limits; one-line :class:`ResourceLimitError` otherwise."""
    if len(data) > JSON_MAX_BYTES:
        raise ResourceLimitError(f"JSON file {where} is {len(data) / 2**20:,.0f} MiB, more than the limit of "
                                 f"{JSON_MAX_BYTES >> 20} MiB")
    try:
        obj = json.loads(data.decode("utf-8-sig"))
    except RecursionError:
        raise ResourceLimitError(f"JSON file {where} is nested deeper than the limit of {JSON_MAX_DEPTH}") from None
    if json_depth(obj) > JSON_MAX_DEPTH:
        raise ResourceLimitError(f"JSON file {where} is nested deeper than the limit of {JSON_MAX_DEPTH}")
    return obj
