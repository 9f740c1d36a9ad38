"""Facts taken from the BIDS schema (``bidsschematools``), never typed by hand."""

from __future__ import annotations

from functools import cache, lru_cache


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


@lru_cache(maxsize=1)
def dataset_description_fields() -> tuple[str, ...]:
    """Fields the schema defines for dataset_description.json, in the schema's order."""
    out: list[str] = []
    for rule in _schema()["rules"]["json"]["dataset"].values():
        if any("dataset_description.json" in sel for sel in rule.get("selectors", [])):
            out += [f for f in rule.get("fields", {}) if f not in out]
    return tuple(out)


@cache
def table_columns(table: str) -> frozenset[str]:
    """Columns the schema names for one table rule (``Participants``, ``Samples``, ``Phenotype``...)."""
    for group in _schema()["rules"]["tabular_data"].values():
        if table in group:
            return frozenset(group[table].get("columns", {}))
    return frozenset()


#: the keys of a column description object in a TSV's JSON dictionary (BIDS common
#: principles, "tabular files"); every one is checked against the schema's metadata names.
_COLUMN_KEYS = ("LongName", "Description", "Levels", "Units", "TermURL", "HED", "Delimiter", "Format",
                "Maximum", "Minimum")


@lru_cache(maxsize=1)
def column_description_keys() -> frozenset[str]:
    """Keys a column description may hold (those of :data:`_COLUMN_KEYS` the schema defines)."""
    return frozenset(k for k in _COLUMN_KEYS if k in metadata_fields())


@lru_cache(maxsize=1)
def tabular_suffixes() -> frozenset[str]:
    """Suffixes of the tables the schema defines (events, channels, physio, ...): their JSON
    files are column dictionaries."""
    import re

    out: set[str] = set()
    for group in _schema()["rules"]["tabular_data"].values():
        for rule in group.values():
            for sel in rule.get("selectors", None) or []:
                out.update(re.findall(r'suffix == "(\w+)"', sel))
                out.update(re.findall(r'path == "/(\w+)\.tsv"', sel))
    return frozenset(out)
