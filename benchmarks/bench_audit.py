"""Leak audit speed against ``zcat | grep -F -i -f PATTERNS`` on a 0.5 GB bold run, side by side.

Usage: python benchmarks/bench_audit.py [--size-mb 512] [--values 300] [--workdir DIR]

Builds a synthetic 4D bold image (int16, brain-like values and noise) of ``--size-mb``
unpacked megabytes as ``.nii.gz`` and ``.nii``, and a private dir with ``--values``
identifiers of several classes. Then times, on one core:

- bids-deid's audit (``audit_output``, n_cpus=1) on the ``.nii.gz`` and on the ``.nii``;
- ``zcat FILE | grep -F -i -c -f PATTERNS`` and ``grep -F -i -c -f PATTERNS FILE`` with as many
  patterns as the audit has distinct forms (the audit also searches UTF-16 and Latin-1
  spellings and checks word boundaries; grep gets the UTF-8 forms only).

Prints a Markdown table (copied into docs/benchmarks.md) with seconds, MB/s of unpacked data
and the ratio audit / peer.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np


def make_bold(path: Path, size_mb: int) -> Path:
    import nibabel as nib

    nx, ny, nz = 96, 96, 60
    nt = max(2, size_mb * 1_000_000 // (nx * ny * nz * 2))
    rng = np.random.default_rng(7)
    ii, jj, kk = np.meshgrid(np.linspace(-1, 1, nx), np.linspace(-1, 1, ny), np.linspace(-1, 1, nz), indexing="ij")
    head = (ii**2 + jj**2 / 1.2 + kk**2 / 0.9) < 0.8
    base = np.where(head, 900, 12).astype(np.float32)
    data = np.empty((nx, ny, nz, nt), dtype=np.int16)
    for t in range(nt):
        data[..., t] = (base + rng.normal(0, 25, base.shape) * head + rng.normal(0, 3, base.shape)).astype(np.int16)
    img = nib.Nifti1Image(data, np.diag([2.5, 2.5, 2.5, 1]))
    img.header.set_xyzt_units("mm", "sec")
    raw = path.with_suffix("")  # .nii
    nib.save(img, raw)
    from isal import igzip

    with open(raw, "rb") as fin, igzip.open(path, "wb", compresslevel=2) as fout:
        shutil.copyfileobj(fin, fout, 8 << 20)
    return raw


def make_private(priv: Path, n: int) -> None:
    rng = np.random.default_rng(3)
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    pairs = []
    for i in range(n):
        word = "".join(rng.choice(letters, 7))
        kind = ("PatientName", "PatientID", "InstitutionName", "StationName", "StudyDate")[i % 5]
        value = {"PatientName": f"{word}^{word[::-1]}", "PatientID": f"MRN{rng.integers(10**6, 10**7)}",
                 "InstitutionName": f"{word.title()} General Hospital", "StationName": f"ST{word}",
                 "StudyDate": f"{rng.integers(1950, 2020)}{rng.integers(1, 13):02d}{rng.integers(1, 29):02d}"}[kind]
        pairs.append([kind, value])
    (priv / "identifiers").mkdir(parents=True, exist_ok=True)
    (priv / "identifiers" / "sub-01.json").write_text(json.dumps(pairs))


def timed(fn) -> tuple[float, float]:
    """Wall seconds and CPU seconds (this process and its children) of ``fn()``."""
    import os

    t, c = time.perf_counter(), os.times()
    fn()
    c2 = os.times()
    cpu = (c2.user - c.user) + (c2.system - c.system) + (c2.children_user - c.children_user) + (
        c2.children_system - c.children_system)
    return time.perf_counter() - t, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mb", type=int, default=512)
    ap.add_argument("--values", type=int, default=300)
    ap.add_argument("--workdir", type=Path)
    args = ap.parse_args()
    from bids_deid.audit import audit_output, make_plan
    from bids_deid.audit.scan import Matcher

    work = Path(tempfile.mkdtemp(prefix="bench-audit-", dir=args.workdir))
    try:
        out = work / "out"
        func = out / "sub-01" / "func"
        func.mkdir(parents=True)
        gz = func / "sub-01_task-rest_bold.nii.gz"
        raw = make_bold(gz, args.size_mb)
        raw_only = work / "out-raw" / "sub-01" / "func"
        raw_only.mkdir(parents=True)
        raw = raw.rename(raw_only / raw.name)
        priv = work / "out-private"
        make_private(priv, args.values)
        shutil.copytree(priv, work / "out-raw-private")
        plan = make_plan(priv, out)
        needles = [n for lst in plan.needles.values() for n in lst]
        m = Matcher(needles)
        forms = sorted({f[0] for f in m.forms})
        patterns = work / "patterns.txt"
        patterns.write_text("\n".join(forms) + "\n")
        unpacked = raw.stat().st_size
        # warm the page cache for every reader alike
        for f in (gz, raw):
            subprocess.run(["cat", str(f)], stdout=subprocess.DEVNULL, check=True)
        rows = []
        audit_gz = timed(lambda: audit_output(out, priv, n_cpus=1))
        peer_gz = timed(lambda: subprocess.run(f"zcat {gz} | grep -F -i -c -f {patterns}", shell=True,
                                               stdout=subprocess.DEVNULL, check=False))
        zcat = timed(lambda: subprocess.run(f"zcat {gz} > /dev/null", shell=True, check=True))
        audit_raw = timed(lambda: audit_output(work / "out-raw", work / "out-raw-private", n_cpus=1))
        peer_raw = timed(lambda: subprocess.run(["grep", "-F", "-i", "-c", "-f", str(patterns), str(raw)],
                                                stdout=subprocess.DEVNULL, check=False))
        mb = unpacked / 1e6
        rows.append(("bold .nii.gz", "bids-deid audit (n-cpus 1)", audit_gz, peer_gz))
        rows.append(("bold .nii.gz", "zcat \\| grep -F -i -f", peer_gz, peer_gz))
        rows.append(("bold .nii.gz", "zcat alone (no search)", zcat, peer_gz))
        rows.append(("bold .nii", "bids-deid audit (n-cpus 1)", audit_raw, peer_raw))
        rows.append(("bold .nii", "grep -F -i -f", peer_raw, peer_raw))
        print(f"{mb:.0f} MB unpacked ({gz.stat().st_size / 1e6:.0f} MB gzipped), {args.values} identifiers -> "
              f"{len(forms)} distinct forms ({len(m.patterns)} byte patterns with UTF-16/Latin-1)")
        print("| input | tool | wall s | CPU s | MB/s unpacked per CPU s | wall ratio to peer | CPU ratio to peer |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for inp, tool, (wall, cpu), (pw, pc) in rows:
            print(f"| {inp} | {tool} | {wall:.2f} | {cpu:.2f} | {mb / cpu:.0f} | {wall / pw:.2f} | {cpu / pc:.2f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
