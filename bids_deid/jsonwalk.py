"""One walk over a parsed JSON value (used by the sidecar scrub and the dataset-level writers)."""

from __future__ import annotations


def map_strings(value, fn):
    """``fn`` applied to every string inside ``value`` (lists and dicts walked, keys kept)."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return [map_strings(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: map_strings(v, fn) for k, v in value.items()}
    return value
