"""Driving the DICOM engine over files and trees (streamed, parallel, resumable).

:func:`iter_tree` walks an input tree and de-identifies every DICOM file into a tree whose names
carry no identifier. Each file takes the lean byte-level path (:mod:`bids_deid.scrub.dicom_lean`)
and, only when that path declines it, the pydicom paths of :mod:`bids_deid.scrub.dicom`, which
is then imported. A run over usual files never imports pydicom (or NumPy), which keeps the
start-up of ``bids-deid-dicom`` short.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..atomic import sync_tree
from ..profiles import Profile
from ..pseudonym import Pseudonymizer
from . import dicom_lean
from .dicom_core import DicomResult, Fallback
from .dicom_table import compile_plan

log = logging.getLogger(__name__)


# The lean byte-level path (dicom_lean) is tried first; tests switch it off to compare paths.
_LEAN = True


def _process(src: Path, dst_for, profile: Profile, pseudo: Pseudonymizer, subject: str | None,
             offset_days: int | None, overwrite: bool, fsync: bool = True, check_dicom: bool = False) -> DicomResult:
    """The lean byte-level path first; the pydicom paths (raw, then full) for anything it does not handle."""
    if _LEAN:
        try:
            return dicom_lean.process(src, dst_for, profile, pseudo, subject, offset_days, overwrite, fsync)
        except Fallback as exc:
            log.debug("raw path for %s: %s", src, exc)
        except Exception:  # noqa: BLE001 - the raw and full paths decide (they report real errors)
            log.debug("lean path failed on %s; trying the raw path", src, exc_info=True)
    from . import dicom_files  # pydicom: imported only when a file needs it

    try:
        return dicom_files.process_slow(src, dst_for, profile, pseudo, subject, offset_days, overwrite, fsync,
                                        check_dicom)
    except OSError as exc:
        return DicomResult(Path(src), None, "error", f"cannot read or write ({exc.strerror or type(exc).__name__})")
    except Exception as exc:  # noqa: BLE001 - hostile input must not stop a run: one line, nothing written
        log.debug("DICOM engine failed on %s", src, exc_info=True)
        return DicomResult(Path(src), None, "error",
                           f"internal error of the DICOM engine ({type(exc).__name__}); nothing written "
                           "(rerun with -v for details)")


def deidentify_file(
    src: Path, dst: Path, profile: Profile, pseudo: Pseudonymizer, subject: str | None = None,
    offset_days: int | None = None, overwrite: bool = False, fsync: bool = True,
) -> DicomResult:
    """De-identify one DICOM file into ``dst`` (atomic write; the input is never changed).

    ``subject`` None -> ``pseudo.subject(PatientID)``; ``offset_days`` None ->
    ``pseudo.date_offset_days(subject)``. An existing ``dst`` is left alone (status
    ``exists``) unless ``overwrite``. Corrupt or non-DICOM input gives status ``error`` or
    ``withheld`` with the reason; nothing is ever written for it.
    ``fsync=False`` skips the per-file fsync (the file is still written to a temp name and
    renamed); the caller then syncs once (:func:`bids_deid.atomic.sync_tree`) after many files.
    """
    return _process(Path(src), lambda *_: dst, profile, pseudo, subject, offset_days, overwrite, fsync)


# ------------------------------------------------------------------ trees
def iter_files(root: Path) -> Iterator[Path]:
    """All regular files under ``root`` in a stable order (hidden temp files skipped)."""
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            if name.startswith(".bids-deid-tmp-"):
                continue
            yield Path(dirpath) / name


class TreeDst:
    """Output path ``sub-<label>/ser-<token>/<token>.dcm`` (keyed tokens; picklable)."""

    def __init__(self, out_dir: Path, pseudo: Pseudonymizer, src: Path):
        self.out_dir, self.pseudo, self.src = out_dir, pseudo, src

    def __call__(self, subject: str, series: str, sop: str) -> Path:
        ser = self.pseudo.text_token("dicom-series", series or str(self.src.parent))
        inst = self.pseudo.text_token("dicom-instance", sop or str(self.src), 16)
        return self.out_dir / f"sub-{subject}" / f"ser-{ser}" / f"{inst}.dcm"


# Per-worker job settings, set once by _init_worker (the pool initializer) so that a task
# carries only its file path.
_JOB: tuple | None = None


def _init_worker(out_dir: Path, profile: Profile, pseudo: Pseudonymizer, subject: str | None, fsync: bool) -> None:
    global _JOB
    compile_plan(profile)  # resolve the table once per worker
    _JOB = (out_dir, profile, pseudo, subject, fsync)


def _tree_job(src: Path) -> DicomResult:
    assert _JOB is not None, "worker not initialised"
    out_dir, profile, pseudo, subject, fsync = _JOB
    src = Path(src)
    return _process(src, TreeDst(out_dir, pseudo, src), profile, pseudo, subject, None, False,
                    fsync=fsync, check_dicom=True)


def iter_tree(
    in_dir: Path, out_dir: Path, profile: Profile, pseudo: Pseudonymizer, n_cpus: int = 1,
    subject: str | None = None, progress: bool = True, fsync: bool = False,
) -> Iterator[DicomResult]:
    """De-identify every DICOM file under ``in_dir`` into ``out_dir``, yielding results as they come.

    Results arrive in file order; nothing is kept per file, so memory does not grow with the
    number of files. Files are recognised by content. Output names carry no identifier:
    ``sub-<label>/ser-<keyed token>/<keyed token>.dcm``. Finished files are skipped on a rerun
    (status ``exists``). ``n_cpus`` > 1 uses a process pool whose workers load the profile
    once.

    With ``fsync=False`` (default) files are not fsynced one by one; the output file system is
    synced once when the iteration ends. Every file is still written to a temp name and renamed,
    so a killed run never leaves a half file under a final name (only after a power loss before
    the final sync could a just-renamed file be incomplete).
    """
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    files = (str(p) for p in iter_files(in_dir))
    bar = _bar(None, progress)
    global _JOB
    try:
        if n_cpus <= 1:
            saved = _JOB
            _init_worker(out_dir, profile, pseudo, subject, fsync)
            try:
                for src in files:
                    yield _tree_job(src)
                    bar.update(1)
            finally:
                _JOB = saved
        else:
            import multiprocessing

            with multiprocessing.get_context().Pool(
                n_cpus, initializer=_init_worker, initargs=(out_dir, profile, pseudo, subject, fsync)
            ) as pool:
                for r in pool.imap(_tree_job, files, chunksize=32):
                    yield r
                    bar.update(1)
    finally:
        bar.close()
        if not fsync and out_dir.is_dir():
            sync_tree(out_dir)


def deidentify_tree(
    in_dir: Path, out_dir: Path, profile: Profile, pseudo: Pseudonymizer, n_cpus: int = 1,
    subject: str | None = None, progress: bool = True, on_result=None, fsync: bool = False,
) -> list[DicomResult]:
    """De-identify every DICOM file under ``in_dir`` into ``out_dir`` (see :func:`iter_tree`).

    Returns the list of results, or, when ``on_result`` (a callable taking one
    :class:`DicomResult`) is given, calls it per result and returns an empty list so that
    nothing accumulates (large trees).
    """
    results: list[DicomResult] = []
    for r in iter_tree(in_dir, out_dir, profile, pseudo, n_cpus, subject, progress, fsync):
        if on_result is None:
            results.append(r)
        else:
            on_result(r)
    return results


class _NoBar:
    """What the tree walk calls when no bar is shown (tqdm costs ~30 ms to import)."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int | None, progress: bool):
    import sys

    if not (progress and sys.stderr.isatty()):
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="file", disable=not (progress and sys.stderr.isatty()), leave=False)


def summarize(results: Iterable[DicomResult]) -> dict[str, int]:
    """Count results by status."""
    out: dict[str, int] = {}
    for r in results:
        out[r.status] = out.get(r.status, 0) + 1
    return out


