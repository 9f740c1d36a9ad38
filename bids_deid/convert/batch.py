"""dcm2niix over many series at once, outputs mapped back to series by SeriesInstanceUID.

dcm2niix splits a folder into series itself, so one call per folder (instead of one
per series) saves a process start and a second header pass per series. Outputs are
named ``%j_%s`` (SeriesInstanceUID and SeriesNumber, private work folder only) plus
dcm2niix's own postfixes (``_e2``, ``_ph``, ``_i00002``, ``a`` for a second image of the
same name ...), which is how they are mapped back: one UID may hold several series
numbers (e.g. copies of one series in several transfer syntaxes), and each becomes its
own series.

Two ways in:

* :func:`start_folder` runs dcm2niix on the raw input folder itself, in the
  background, while Python reads the headers (the overlap that makes staging cost
  about one dcm2niix pass);
* :func:`convert_links` links the instances of the given series into per-series
  folders under a work folder (deduplicated, corrupt files left out) and converts them
  with one call per CPU.

:func:`convert_all` chooses, per series, which of the two serves it (or one dcm2niix run of
its own files when neither can be mapped back); :func:`dcm2niix_bin` finds the executable.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from .detect import WORK_DIR_NAME

if TYPE_CHECKING:
    from .series import Series

log = logging.getLogger(__name__)

MAX_DEPTH = 9  # dcm2niix searches at most 9 folder levels below its input


def dcm2niix_cmd(exe: str, in_dir: Path, out_dir: Path) -> list[str]:
    """The dcm2niix command line: anonymized BIDS sidecar, outputs named ``<SeriesInstanceUID>_<SeriesNumber>``.

    Parameters
    ----------
    exe : str
        dcm2niix executable.
    in_dir, out_dir : Path
        Folder searched (recursively, up to 9 levels) and output folder.

    Returns
    -------
    list of str
    """
    # images uncompressed (-z n): the participant stage compresses each image once, as it writes
    # the cleaned header and the voxels
    return [exe, "-b", "y", "-ba", "y", "-z", "n", "-d", str(MAX_DEPTH),
            "-f", "%j_%s", "-w", "1", "-o", str(out_dir), str(in_dir)]


def start_folder(exe: str, in_dir: Path, out_dir: Path) -> subprocess.Popen:
    """Start dcm2niix on a whole folder in the background (caller waits or kills).

    Returns
    -------
    subprocess.Popen
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(dcm2niix_cmd(exe, in_dir, out_dir),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


_KEY_RE = re.compile(r"^(.+?_\d+)(\D.*)?$")


def conversion_key(uid: str, series_number) -> str | None:
    """The name stem dcm2niix gives a series with ``-f %j_%s`` (None when it cannot be predicted)."""
    try:
        number = float(series_number)
    except (TypeError, ValueError):
        return None
    if not uid or not number.is_integer() or number < 0 or not re.fullmatch(r"[0-9.]+", uid):
        return None
    return f"{uid}_{int(number)}"


def index_outputs(out_dir: Path, keys: Iterable[str] | None = None) -> dict[str, list[dict]]:
    """dcm2niix outputs of a ``%j_%s`` run grouped by ``<uid>_<series number>``.

    Parameters
    ----------
    out_dir : Path
        dcm2niix output folder.
    keys : iterable of str, optional
        The expected keys (:func:`conversion_key`); a name is matched to the longest key it
        starts with. Without them the key is the name up to the series number.

    Returns
    -------
    dict
        ``{key: [{"nii", "json", "bval", "bvec", "postfix"}, ...]}`` in name order;
        ``json``/``bval``/``bvec`` are None when absent. ``postfix`` is the part of the
        name after the key (``""``, ``"_e2"``, ``"_ph"``, ``"a"``, ...).
    """
    known = sorted(set(keys or ()), key=len, reverse=True)
    index: dict[str, list[dict]] = {}
    try:
        names = sorted(os.listdir(out_dir))
    except OSError:
        return index
    present = set(names)
    for name in names:
        if name.endswith(".nii.gz"):
            stem = name[: -len(".nii.gz")]
        elif name.endswith(".nii"):
            stem = name[: -len(".nii")]
        else:
            continue
        uid = next((k for k in known if stem.startswith(k) and not stem[len(k):len(k) + 1].isdigit()), None)
        if uid is None:
            m = _KEY_RE.match(stem)
            uid = m.group(1) if m else stem
        out = {"nii": out_dir / name, "postfix": stem[len(uid):]}
        for ext in ("json", "bval", "bvec"):
            out[ext] = out_dir / f"{stem}.{ext}" if f"{stem}.{ext}" in present else None
        index.setdefault(uid, []).append(out)
    return index


def depth_below(path: str | Path, root: str | Path) -> int:
    """Folder levels between ``root`` and the file ``path`` (0: directly in ``root``)."""
    return len(Path(path).relative_to(root).parts) - 1


def _split(groups: list[tuple[str, list[str]]], n: int) -> list[list[tuple[str, list[str]]]]:
    """Spread series over ``n`` bins by instance count (largest first)."""
    bins: list[list] = [[] for _ in range(max(1, n))]
    load = [0] * len(bins)
    for item in sorted(groups, key=lambda g: -len(g[1])):
        i = load.index(min(load))
        bins[i].append(item)
        load[i] += len(item[1])
    return [b for b in bins if b]


def convert_one(paths: list[str], work: Path, exe: str) -> list[dict]:
    """Convert one series on its own (links under ``work/in``); every output belongs to it."""
    in_dir, out_dir = work / "in", work / "out"
    in_dir.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(paths, 1):
        os.symlink(os.path.abspath(p), in_dir / f"{i:05d}.dcm")
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(dcm2niix_cmd(exe, in_dir, out_dir), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
    return [o for outs in index_outputs(out_dir).values() for o in outs]


def convert_links(series: Iterable[tuple[str, list[str]]], work: Path, exe: str, n_cpus: int = 1, *,
                  keys: Iterable[str] | None = None) -> dict[str, list[dict]]:
    """Link each series' files into ``work/in<k>/<token>/`` and convert with one dcm2niix per bin.

    Parameters
    ----------
    series : iterable of (token, list of file paths)
        Keyed series token (a safe folder name) and the instances to convert.
    work : Path
        Private work folder.
    exe : str
        dcm2niix executable.
    n_cpus : int
        Number of dcm2niix processes (series are spread over them by instance count).
    keys : iterable of str, optional
        The expected output keys (see :func:`index_outputs`).

    Returns
    -------
    dict
        Merged :func:`index_outputs` of every bin, keyed by ``<uid>_<series number>``.
    """
    bins = _split(list(series), n_cpus)
    keys = list(keys or ())

    def run(k: int) -> dict[str, list[dict]]:
        in_dir, out_dir = work / f"in{k}", work / f"out{k}"
        for token, paths in bins[k]:
            folder = in_dir / token
            folder.mkdir(parents=True, exist_ok=True)
            for i, p in enumerate(paths, 1):
                os.symlink(os.path.abspath(p), folder / f"{i:05d}.dcm")
        out_dir.mkdir(parents=True, exist_ok=True)
        rc = subprocess.run(dcm2niix_cmd(exe, in_dir, out_dir), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, check=False).returncode
        if rc:
            log.debug("dcm2niix exit %s on bin %s", rc, k)
        return index_outputs(out_dir, keys)

    merged: dict[str, list[dict]] = {}
    if len(bins) == 1:
        results = [run(0)]
    else:
        with ThreadPoolExecutor(max_workers=len(bins)) as pool:
            results = list(pool.map(run, range(len(bins))))
    for idx in results:
        for uid, outs in idx.items():
            merged.setdefault(uid, []).extend(outs)
    return merged


def dcm2niix_bin() -> str:
    """The dcm2niix executable: the PyPI package's binary first (no Python wrapper), then PATH."""
    try:
        import dcm2niix  # noqa: PLC0415

        exe = Path(dcm2niix.bin)
        if exe.is_file() and os.access(exe, os.X_OK):
            return str(exe)
    except Exception:  # noqa: BLE001 - fall back to PATH
        pass
    exe = shutil.which("dcm2niix")
    if exe:
        return exe
    raise InputError("dcm2niix is not installed (pip install dcm2niix)")


def convert_all(to_convert: list[Series], records: list[dict], raw_dir: Path,
                work: Path, exe: str, early, n_cpus: int) -> None:
    """Fill ``s.outputs`` of every series to convert.

    Outputs of the background whole-folder run (``early``) are taken for series that it
    converted exactly as we grouped them (UID unique to one series, no duplicate
    instances dropped, no corrupt file in their folders, within dcm2niix's search depth);
    the rest are converted from links, batched, and one by one when batching cannot map
    them back (shared or missing SeriesInstanceUID).
    """
    keys = [s.key for s in to_convert if s.key]
    index: dict[str, list[dict]] = {}
    if early is not None:
        early.wait()
        index = index_outputs(work / "all", keys)
    key_count = Counter(s.key for s in to_convert)
    bad_folders = {r["folder"] for r in records if r["kind"] == "corrupt"}
    rest: list[Series] = []
    for s in to_convert:
        outs = index.get(s.key) if s.key else None
        if (outs and key_count[s.key] == 1 and not s.deduped
                and all(not r.get("unpacked") and r["folder"] not in bad_folders
                        and depth_below(r["path"], raw_dir) < MAX_DEPTH for r in s.records)):
            _take_outputs(s, outs)
        else:
            rest.append(s)
    batchable = [s for s in rest if s.key and key_count[s.key] == 1]
    singles = [s for s in rest if s not in batchable]
    if batchable:
        idx = convert_links([(s.token, [r["path"] for r in s.records]) for s in batchable], work / "links", exe,
                            n_cpus, keys=keys)
        for s in batchable:
            if idx.get(s.key):
                _take_outputs(s, idx[s.key])
            else:
                singles.append(s)
    if singles:
        def one(s: Series) -> list[dict]:
            return convert_one([r["path"] for r in s.records], work / "one" / s.token, exe)

        with ThreadPoolExecutor(max_workers=n_cpus) as pool:
            for s, outs in zip(singles, pool.map(one, singles), strict=True):
                if outs:
                    _take_outputs(s, outs)
                else:
                    s.problems.append(f"series {s.token}: dcm2niix produced no image")
                    s.reason = "conversion failed"


def _take_outputs(s: Series, outs: list[dict]) -> None:
    for o in outs:
        fields = {}
        if o.get("json") is not None:
            try:
                fields = json.loads(Path(o["json"]).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                fields = {}
        s.outputs.append({**o, "fields": fields})


@dataclass
class Begun:
    """A staging run's work folder and its whole-folder dcm2niix run (None when the series are converted
    from links only), as :func:`begin` started them."""

    raw_dir: Path
    staging_dir: Path
    work: Path
    exe: str
    early: subprocess.Popen | None
    dry_run: bool

    def fits(self, raw_dir: Path, staging_dir: Path, participants, dry_run: bool) -> bool:
        """True when this start is the one :func:`begin` would make for these arguments."""
        return (Path(raw_dir) == self.raw_dir and Path(staging_dir) == self.staging_dir and dry_run == self.dry_run
                and (self.early is None or not participants))

    def stop(self) -> None:
        """End the dcm2niix run if it is still going (its output is not wanted then)."""
        if self.early is not None and self.early.poll() is None:
            self.early.kill()
            self.early.wait()


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def begin(raw_dir: Path, staging_dir: Path, *, participants=None, dry_run: bool = False) -> Begun:
    """Make the work folder of a staging run and start dcm2niix on the whole input in the background.

    The whole folder is converted at once only when every patient is wanted and neither the work
    nor the staging folder lies inside the input (dcm2niix would read its own output). Images are
    staged uncompressed (the participant stage compresses them once, as it writes them); a dry
    run converts into a temporary folder.
    """
    raw_dir, staging_dir = Path(raw_dir), Path(staging_dir)
    exe = dcm2niix_bin()
    if dry_run:  # converted into a temporary folder (names come from the real classification)
        work = Path(tempfile.mkdtemp(prefix="bids-deid-plan-"))
    else:
        work = staging_dir / WORK_DIR_NAME / uuid.uuid4().hex
        work.mkdir(parents=True, exist_ok=True)
    early = None
    raw_real = raw_dir.resolve()
    if not participants and not _inside(work.resolve(), raw_real) and not _inside(staging_dir.resolve(), raw_real):
        # everything is converted anyway: dcm2niix reads the folder while Python reads the headers
        early = start_folder(exe, raw_dir, work / "all")
    return Begun(raw_dir, staging_dir, work, exe, early, dry_run)
