"""Facts taken from the BIDS schema (``bidsschematools``), never typed by hand."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _schema():
    from bidsschematools import schema

    return schema.load_schema()


@lru_cache(maxsize=1)
def metadata_fields() -> frozenset[str]:
    """Every JSON sidecar field name the BIDS specification defines."""
    return frozenset(v["name"] for v in _schema()["objects"]["metadata"].values())


@lru_cache(maxsize=1)
def date_fields() -> frozenset[str]:
    """Sidecar fields whose schema format is a date or datetime."""
    return frozenset(
        v["name"] for v in _schema()["objects"]["metadata"].values() if v.get("format") in ("date", "datetime")
    )


@lru_cache(maxsize=1)
def column_names() -> frozenset[str]:
    """Every TSV column name the BIDS specification defines."""
    return frozenset(v["name"] for v in _schema()["objects"]["columns"].values())


def bids_version() -> str:
    """The BIDS version of the installed schema."""
    return str(_schema()["bids_version"])
