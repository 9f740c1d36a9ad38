"""Shared fixtures: a key, the synthetic canary dataset, and a leak scanner of our own."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import pytest

from bids_deid.demo import build_demo_dataset

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not present")

CANARY_DATES = (b"2019-03-14", b"20190314", b"1961-07-04", b"19610704")


def _dicom_engine_available() -> bool:
    try:
        import bids_deid.scrub.dicom  # noqa: F401
    except ImportError:
        return False
    return True


DICOM_KEY = b"test-key-for-dicom-engine-0123456789"


@pytest.fixture(scope="module")
def profile():
    """The shipped basic profile."""
    from bids_deid.profiles import load_profile

    return load_profile("basic")


@pytest.fixture()
def pseudo():
    """A Pseudonymizer with the fixed test key of the DICOM tests."""
    from bids_deid.pseudonym import Pseudonymizer

    return Pseudonymizer(DICOM_KEY)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    from bids_deid.pseudonym import generate_key

    return generate_key(tmp_path / "secret.key")


@pytest.fixture
def canary_ds(tmp_path: Path) -> Path:
    return build_demo_dataset(tmp_path / "input", dicom=_dicom_engine_available())


def run_level(ds: Path, out: Path, key: Path, level: str, *extra: str) -> int:
    """One App level on ``ds`` (no defacing, no validator: the tests that use it look at scrubbing)."""
    from bids_deid.cli import main

    return main([str(ds), str(out), level, "--key-file", str(key), "--deface-method", "none",
                 "--skip-bids-validation", *extra])


def run_both(ds: Path, out: Path, key: Path, *extra: str) -> int:
    """participant, then group when it succeeded; the first non-zero exit code."""
    rc = run_level(ds, out, key, "participant", *extra)
    return rc if rc else run_level(ds, out, key, "group", *extra)


def tree_digest(root: Path) -> str:
    """Hash of every path, content and mtime under ``root`` (to prove it was not touched)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        h.update(p.relative_to(root).as_posix().encode())
        h.update(str(st.st_mtime_ns).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def canary_hits(root: Path, needles: tuple[bytes, ...] = (b"canary",)) -> list[str]:
    """Every file (or file name) under ``root`` whose bytes hold a needle.

    Independent of bids_deid.audit on purpose: raw bytes, .gz unpacked, ASCII and
    UTF-16 (both byte orders), case-blind.
    """
    forms = []
    for n in needles:
        forms += [n.lower(), n.decode().encode("utf-16-le").lower(), n.decode().encode("utf-16-be").lower()]
    hits = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if any(f in rel.lower().encode() for f in forms):
            hits.append(f"name:{rel}")
        if not p.is_file():
            continue
        blobs = [p.read_bytes()]
        if p.name.endswith(".gz"):
            blobs.append(gzip.decompress(blobs[0]))
        for b in blobs:
            low = b.lower()
            for f in forms:
                if f in low:
                    hits.append(f"{rel}:{f!r}")
    return hits


@pytest.fixture(autouse=True)
def _no_key_env(monkeypatch):
    monkeypatch.delenv("BIDS_DEID_KEY", raising=False)
    os.environ.setdefault("NO_COLOR", "1")
