"""Raw DICOM -> BIDS with the App, side by side with plain dcm2niix (and dcm2niix + the DICOM engine).

Usage::

    python benchmarks/bench_convert.py [--repeats 3] [--n-cpus 1] [--large-copies 4] [--only small|large]
                                       [--before-src DIR]

Rows, per input, all run as command lines (imports and process start counted, as a user sees it),
interleaved repeat by repeat so that load changes hit every tool alike:

* ``dcm2niix``: ``dcm2niix -b y -ba y -z y`` on the whole folder (the peer);
* ``bids-deid participant --sourcedata none``: conversion, naming, sidecar/NIfTI scrubbing (target <= 1.3x);
* ``dcm2niix + bids-deid-dicom``: the peer when de-identified DICOM is kept: dcm2niix, then the
  DICOM engine alone on the same folder;
* ``bids-deid participant`` (de-identified DICOM kept in ``sourcedata/``; target <= 1.3x of the row above).

Wall time is what a user waits for; on a loaded machine it mostly measures the wait for a core,
so the CPU seconds of each run (user + system, child processes included) are printed too.

Inputs: ``small`` is the NIH QA set (``../shared/data/dcm_qa/nih/In``, GE and Siemens EPI, 608
DICOM); ``large`` is a study made of ``--large-copies`` copies of every shared MR series (new
study/series/instance UIDs, so each copy is a session of its own), built once, untimed.
``--deface-method none`` everywhere: defacing is benchmarked in bench_deface.py.

``--before-src DIR`` adds a row: ``--sourcedata none`` with the ``bids_deid`` package found in DIR
(e.g. ``git archive <commit> bids_deid | tar -x -C DIR``), same interpreter, same repeats.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
BIN = Path(sys.executable).parent
LARGE_SOURCES = ("dicom/mr_siemens_epi_nih", "dicom/mr_ge_epi_nih", "dicom/mr_ge_irspgr_refaced_deident",
                 "heads/dicom/decub_hfs_t1_2dsag", "heads/dicom/philips_sag3d_t1",
                 "dcm_qa/nih/In/20180918Si/mr_0003", "dcm_qa/nih/In/20180918Si/mr_0004")


def build_large(dest: Path, copies: int) -> None:
    """``copies`` sessions of one patient, each holding every series of LARGE_SOURCES (real pixels)."""
    import pydicom
    from pydicom.uid import generate_uid

    for c in range(copies):
        study = generate_uid()
        for k, src in enumerate(LARGE_SOURCES):
            uid = generate_uid()
            folder = dest / f"study{c}" / f"series{k}"
            folder.mkdir(parents=True)
            for i, f in enumerate(sorted((SHARED / src).glob("*.dcm"))):
                ds = pydicom.dcmread(f)
                ds.PatientID, ds.PatientName = "BENCH1", "Bench^Patient"
                ds.StudyInstanceUID, ds.SeriesInstanceUID = study, uid
                ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
                ds.SeriesNumber = k + 1
                ds.save_as(folder / f"{i:05d}.dcm")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-cpus", type=int, default=1)
    ap.add_argument("--large-copies", type=int, default=4)
    ap.add_argument("--only", choices=["small", "large"])
    ap.add_argument("--before-src", type=Path, help="folder holding an older bids_deid package to compare")
    args = ap.parse_args(argv)
    if not SHARED.is_dir():
        print("shared data not found", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="bench-convert-"))
    key = work / "bench.key"
    subprocess.run([str(BIN / "bids-deid"), "--generate-key", str(key)], check=True, capture_output=True)
    inputs = {}
    if args.only in (None, "small"):
        inputs["small"] = SHARED / "dcm_qa" / "nih" / "In"
    if args.only in (None, "large"):
        build_large(work / "large", args.large_copies)
        inputs["large"] = work / "large"
    counter = iter(range(10**6))
    cpus = ["--n-cpus", str(args.n_cpus)]

    def dcm2niix(src: Path) -> None:
        out = work / f"d{next(counter)}"
        out.mkdir()
        subprocess.run([str(BIN / "dcm2niix"), "-b", "y", "-ba", "y", "-z", "y", "-o", str(out), str(src)],
                       check=True, capture_output=True)

    def engine(src: Path) -> None:
        out = work / f"e{next(counter)}"
        subprocess.run([str(BIN / "bids-deid-dicom"), str(src), str(out), "--key-file", str(key), *cpus],
                       check=True, capture_output=True)

    def app(src: Path, *extra: str, before: bool = False) -> None:
        n = next(counter)
        out = work / f"a{n}"
        env = dict(os.environ, PYTHONPATH=str(args.before_src.resolve())) if before else None
        subprocess.run([str(BIN / "bids-deid"), str(src), str(out), "participant", "--key-file", str(key),
                        "--private-dir", str(work / f"a{n}-private"), "-w", str(work / f"a{n}-work"),
                        "--deface-method", "none", *cpus, *extra], check=True, capture_output=True, env=env)

    cpu_used: list[float] = []

    def timed(fn) -> float:
        """Wall seconds of ``fn``; the CPU seconds of its child processes go to ``cpu_used``."""
        r0, t = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        fn()
        wall, r1 = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_used.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        return wall

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"repeats={args.repeats}, n_cpus={args.n_cpus}, cores={os.cpu_count()}, load average at start {load}\n")
    print("| input | files | dcm2niix | App --sourcedata none | ratio | dcm2niix + DICOM engine | App (DICOM kept) "
          "| ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for name, src in inputs.items():
        n_files = sum(1 for p in src.rglob("*") if p.is_file())
        rows: dict[str, list[float]] = {"d": [], "none": [], "peer": [], "kept": [], "before": []}
        cpu: dict[str, list[float]] = {k: [] for k in rows}
        for _ in range(args.repeats):
            rows["d"].append(timed(lambda src=src: dcm2niix(src)))
            cpu["d"].append(cpu_used[-1])
            rows["none"].append(timed(lambda src=src: app(src, "--sourcedata", "none")))
            cpu["none"].append(cpu_used[-1])
            rows["peer"].append(timed(lambda src=src: dcm2niix(src)) + timed(lambda src=src: engine(src)))
            cpu["peer"].append(cpu_used[-1] + cpu_used[-2])
            rows["kept"].append(timed(lambda src=src: app(src)))
            cpu["kept"].append(cpu_used[-1])
            if args.before_src:
                rows["before"].append(timed(lambda src=src: app(src, "--sourcedata", "none", before=True)))
                cpu["before"].append(cpu_used[-1])
        for label, data in (("wall", rows), ("CPU", cpu)):
            med = {k: statistics.median(v) for k, v in data.items() if v}
            print(f"| {name} ({label}) | {n_files} | {med['d']:.2f} s | {med['none']:.2f} s "
                  f"| **{med['none'] / med['d']:.2f}** | {med['peer']:.2f} s | {med['kept']:.2f} s "
                  f"| **{med['kept'] / med['peer']:.2f}** |"
                  + (f" before: {med['before']:.2f} s, **{med['before'] / med['d']:.2f}** |" if "before" in med else ""))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nload average at the end {load}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
