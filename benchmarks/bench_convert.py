"""Time raw-DICOM staging (bids_deid.convert.raw.stage_raw) against plain dcm2niix.

Usage::

    python benchmarks/bench_convert.py [--repeats 3] [--n-cpus 1] [--dcm2bids PATH] [--before-src DIR]

``--before-src DIR`` also times ``stage_raw`` of an older checkout (a folder holding its
``bids_deid`` package, e.g. from ``git archive <commit> bids_deid | tar -x -C DIR``) in
the same run, interleaved with the others, timed inside a child process (imports not
counted).

Uses the shared scanner series in ../shared/data/dicom (next to the repository).
Both tools convert the same folder with the same dcm2niix flags (-b y -ba y -z y).
"""

from __future__ import annotations

import argparse
import json
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
    ap.add_argument("--before-src", help="folder with an older bids_deid package to time side by side")
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

    everyone = set(stage_raw(raw, work / "plan", pseudo, dry_run=True).subjects)

    def ours_selected():  # a participant selection: no whole-folder run, linked series in batches
        out = work / f"sel{next(counter)}"
        stage_raw(raw, out, pseudo, n_cpus=args.n_cpus, participants=everyone)

    child = (
        "import sys, time, json; sys.path.insert(0, sys.argv[1]);"
        "from bids_deid.convert.raw import stage_raw; from bids_deid.pseudonym import Pseudonymizer;"
        "p = Pseudonymizer(b'benchmark-key-0123456789abcdef'); t = time.perf_counter();"
        "stage_raw(sys.argv[2], sys.argv[3], p, n_cpus=int(sys.argv[4]));"
        "print(json.dumps(time.perf_counter() - t))"
    )
    before_times: list[float] = []

    def before():
        out = work / f"before{next(counter)}"
        proc = subprocess.run([sys.executable, "-c", child, args.before_src, str(raw), str(out), str(args.n_cpus)],
                              capture_output=True, text=True, check=True)
        before_times.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    timed = {"plain": [], "ours": [], "disc": [], "sel": []}
    for _ in range(args.repeats):  # interleaved: load changes hit every tool alike
        timed["plain"] += _time(plain, 1)
        timed["ours"] += _time(ours, 1)
        timed["disc"] += _time(disc, 1)
        timed["sel"] += _time(ours_selected, 1)
        if args.before_src:
            before()
    rows = [
        ("dcm2niix (plain, whole folder)", timed["plain"]),
        (f"bids-deid stage_raw (n_cpus={args.n_cpus})", timed["ours"]),
        (f"bids-deid discovery only (n_cpus={args.n_cpus})", timed["disc"]),
    ]
    rows.append((f"bids-deid stage_raw, all participants listed (n_cpus={args.n_cpus})", timed["sel"]))
    if args.before_src:
        rows.append((f"stage_raw of --before-src (n_cpus={args.n_cpus})", before_times))
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
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{n_files} files, {len(SERIES)} series, repeats={args.repeats}, cpus available={os.cpu_count()}, "
          f"load average {load}")
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
