"""Header scrub of a large 4D NIfTI, side by side with cp, zcat|gzip -6 and nibabel.

Usage: python benchmarks/bench_nifti.py [--gb 1.1] [--work DIR]

Writes a 4D int16 image (>= 1 GB uncompressed, smooth noise so it compresses like
real fMRI) as .nii and .nii.gz with a planted header, then times each tool in a
fresh process under /usr/bin/time -v (wall seconds and peak RSS) and prints a
Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from isal import igzip

SCRUB = (
    "import sys; from pathlib import Path; from bids_deid.profiles import load_profile;"
    "from bids_deid.formats.nifti import scrub_nifti_file; from bids_deid.formats.base import ScrubLog;"
    "scrub_nifti_file(Path(sys.argv[1]), Path(sys.argv[2]), load_profile('basic'), ScrubLog())"
)
NIBABEL = (
    "import sys, nibabel as nib; img = nib.load(sys.argv[1]); img.header['descrip'] = b'';"
    "img.header.extensions.clear(); nib.save(nib.Nifti1Image(img.get_fdata(dtype='float32').astype(img.get_data_dtype()),"
    " img.affine, img.header), sys.argv[2])"
)


def make_input(work: Path, gb: float) -> tuple[Path, Path]:
    nx, ny, nz = 128, 128, 64
    nt = max(1, int(gb * 1e9 / (nx * ny * nz * 2)))
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((nx, ny, nz, nt))
    hdr.set_data_dtype(np.int16)
    hdr["descrip"] = b"DOE^JANE bench"
    hdr.set_xyzt_units("mm", "sec")
    hdr.extensions.append(nib.nifti1.Nifti1Extension(6, b"bench comment DOE^JANE"))
    plain, gz = work / "big_bold.nii", work / "big_bold.nii.gz"
    rng = np.random.default_rng(0)
    base = (rng.normal(800, 200, size=(nx, ny, nz))).astype(np.int16)
    hdr.set_data_offset(352 + hdr.extensions.get_sizeondisk())
    buf = io.BytesIO()
    hdr.write_to(buf)
    head = buf.getvalue()
    head += b"\x00" * (int(hdr.get_data_offset()) - len(head))
    with open(plain, "wb") as fh, igzip.open(gz, "wb", compresslevel=2) as gzf:
        fh.write(head)
        gzf.write(head)
        for _t in range(nt):
            vol = (base + rng.integers(-20, 20, size=base.shape, dtype=np.int16)).tobytes(order="F")
            fh.write(vol)
            gzf.write(vol)
    return plain, gz


def timed(cmd: str) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of a shell command, from GNU time."""
    proc = subprocess.run(["/usr/bin/time", "-v", "bash", "-c", cmd], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"failed: {cmd}\n{proc.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", proc.stderr)
    h, m, s = wall.groups()
    secs = int(h or 0) * 3600 + int(m) * 60 + float(s)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1)) / 1024
    return secs, rss


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--gb", type=float, default=1.1)
    p.add_argument("--work", type=Path)
    p.add_argument("--skip-nibabel", action="store_true", help="nibabel load+save needs several GB of RAM")
    a = p.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="bench-nifti-"))
    work.mkdir(parents=True, exist_ok=True)
    plain, gz = make_input(work, a.gb)
    py = sys.executable
    rows = []
    size_plain, size_gz = plain.stat().st_size / 1e9, gz.stat().st_size / 1e9
    cases = [
        (".nii", "cp", f"cp {plain} {work}/cp.nii"),
        (".nii", "bids-deid scrub", f"{py} -c \"{SCRUB}\" {plain} {work}/out.nii"),
        (".nii", "nibabel load+save", f"{py} -c \"{NIBABEL}\" {plain} {work}/nib.nii"),
        (".nii.gz", "cp", f"cp {gz} {work}/cp.nii.gz"),
        (".nii.gz", "zcat \\| gzip -6", f"zcat {gz} | gzip -6 > {work}/re.nii.gz"),
        (".nii.gz", "bids-deid scrub", f"{py} -c \"{SCRUB}\" {gz} {work}/out.nii.gz"),
        (".nii.gz", "nibabel load+save", f"{py} -c \"{NIBABEL}\" {gz} {work}/nib.nii.gz"),
    ]
    for kind, name, cmd in cases:
        if a.skip_nibabel and name.startswith("nibabel"):
            continue
        os.sync()
        secs, rss = timed(cmd)
        rows.append((kind, name, secs, rss))
        print(f"{kind:8} {name:20} {secs:7.2f} s {rss:8.1f} MB", flush=True)
    out = nib.load(work / "out.nii.gz")
    assert out.header["descrip"].item() == b"" and len(out.header.extensions) == 0
    print(f"\ninput: {size_plain:.2f} GB .nii, {size_gz:.2f} GB .nii.gz (shape {out.shape}); 2 cores\n")
    print("| file | tool | wall s | peak RSS MB |\n|---|---|---:|---:|")
    for kind, name, secs, rss in rows:
        print(f"| {kind} | {name} | {secs:.2f} | {rss:.0f} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
