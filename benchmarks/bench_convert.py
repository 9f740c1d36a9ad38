"""Time raw-DICOM staging (bids_deid.convert.raw.stage_raw) against plain dcm2niix.

Usage::

    python benchmarks/bench_convert.py [--repeats 3] [--n-cpus 1] [--dcm2bids PATH]

Uses the shared scanner series in ../shared/data/dicom (next to the repository).
Both tools convert the same folder with the same dcm2niix flags (-b y -ba y -z y).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bids_deid.convert.raw import _dcm2niix_bin, discover, stage_raw  # noqa: E402
from bids_deid.pseudonym import Pseudonymizer  # noqa: E402

SHARED = REPO.parent / "shared" / "data" / "dicom"
SERIES = [
    "mr_siemens_epi_nih",
    "mr_ge_epi_nih",
    "mr_ge_irspgr_refaced_deident",
    "mr_siemens_mosaic_nibabel",
    "ct_small_pydicom",
    "us_rgb_burnedin",
]


def _time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-cpus", type=int, default=1)
    ap.add_argument("--dcm2bids", help="dcm2bids executable (optional, e.g. from a throwaway venv)")
    args = ap.parse_args(argv)
    if not SHARED.is_dir():
        print("shared data not found", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="bench-convert-"))
    raw = work / "raw"
    raw.mkdir()
    for s in SERIES:
        shutil.copytree(SHARED / s, raw / s)  # real files, like a scanner export
    n_files = sum(1 for _ in raw.rglob("*") if _.is_file())
    exe = _dcm2niix_bin()  # the same binary stage_raw runs
    pseudo = Pseudonymizer(b"benchmark-key-0123456789abcdef")

    counter = iter(range(10**6))

    def plain():
        out = work / f"plain{next(counter)}"  # fresh folder: no clean-up inside the timing
        out.mkdir()
        subprocess.run(
            [exe, "-b", "y", "-ba", "y", "-z", "y", "-o", str(out), str(raw)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
        )

    def ours():
        out = work / f"stage{next(counter)}"
        stage_raw(raw, out, pseudo, n_cpus=args.n_cpus)

    def disc():
        discover(raw, args.n_cpus)

    rows = [
        ("dcm2niix (plain, whole folder)", _time(plain, args.repeats)),
        (f"bids-deid stage_raw (n_cpus={args.n_cpus})", _time(ours, args.repeats)),
        (f"bids-deid discovery only (n_cpus={args.n_cpus})", _time(disc, args.repeats)),
    ]
    if args.dcm2bids:
        cfg = work / "dcm2bids.json"
        cfg.write_text(
            '{"descriptions": [{"datatype": "anat", "suffix": "T1w", "criteria": {"SeriesDescription": "*SPGR*"}},'
            '{"datatype": "func", "suffix": "bold", "custom_entities": "task-rest",'
            ' "criteria": {"SeriesDescription": "*EPI*"}}]}'
        )

        def d2b():
            out = work / f"d2b{next(counter)}"
            subprocess.run(
                [args.dcm2bids, "-d", str(raw), "-p", "01", "-c", str(cfg), "-o", str(out)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )

        rows.append(("dcm2bids", _time(d2b, args.repeats)))
    base = statistics.median(rows[0][1])
    print(f"{n_files} files, {len(SERIES)} series, repeats={args.repeats}, cpus available={os.cpu_count()}")
    print("| tool | median s | min s | ratio to dcm2niix |")
    print("|---|---|---|---|")
    for name, ts in rows:
        med = statistics.median(ts)
        print(f"| {name} | {med:.3f} | {min(ts):.3f} | {med / base:.2f} |")
    disc_med = statistics.median(rows[2][1])
    print(f"\ndiscovery throughput: {n_files / disc_med * 60:.0f} files/min")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
