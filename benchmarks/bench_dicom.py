"""Benchmark: bids-deid-dicom against cp and peer DICOM anonymizers on the same inputs.

Inputs (synthesized in a temp dir from ``../shared/data/dicom``):
  * ``small``: ~2000 small files (the GE EPI series, copied 14 times with distinct UIDs, in one flat
    folder so that every peer can read it: dicom-anonymizer does not walk sub-folders);
  * ``series``: one 196-slice series (GE IR-SPGR).

Each tool runs in its own child process; peak RSS is the child's ``ru_maxrss``; CPU s is the
user + system time of all the tool's processes (less sensitive to other load than seconds).
Peers come from a SEPARATE venv (never the project's), e.g.::

    python3 -m venv /tmp/peers-venv && /tmp/peers-venv/bin/pip install dicognito dicom-anonymizer deid

Usage::

    python benchmarks/bench_dicom.py [--peers-venv /tmp/peers-venv] [--n-cpus 2] [--copies 14]
        [--before-src DIR] [--repeats N]

``--before-src DIR`` also times an older checkout of the package (``DIR/bids_deid``, e.g. from
``git archive <commit> bids_deid | tar -x -C DIR``) in the same run, back to back.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "dicom"

_RUNNER = (
    "import resource, subprocess, sys, time;"
    "t = time.perf_counter(); rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL,"
    " stderr=subprocess.DEVNULL).returncode; dt = time.perf_counter() - t;"
    "u = resource.getrusage(resource.RUSAGE_CHILDREN);"
    "print(rc, dt, u.ru_maxrss, u.ru_utime + u.ru_stime)"
)


def measure(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> tuple[int, float, float, float]:
    """(return code, seconds, peak RSS MiB, CPU seconds of all its processes) of ``cmd`` in a fresh child.

    ``cwd`` matters for ``python -m``: the working folder comes first on ``sys.path``, before
    ``PYTHONPATH``, so tools are run from a neutral folder (else an older checkout given with
    ``--before-src`` would silently be replaced by the package of the repo)."""
    out = subprocess.run([sys.executable, "-c", _RUNNER, *cmd], capture_output=True, text=True, env=env, check=True,
                         cwd=cwd)
    rc, dt, rss, cpu = out.stdout.split()
    return int(rc), float(dt), int(rss) / 1024, float(cpu)


def make_inputs(tmp: Path, copies: int) -> dict[str, Path]:
    import pydicom

    small = tmp / "small"
    small.mkdir(parents=True)
    for i in range(copies):  # vary UIDs so every copy is a distinct instance
        for f in sorted((SHARED / "mr_ge_epi_nih").glob("*.dcm")):
            ds = pydicom.dcmread(f)
            for kw in ("SOPInstanceUID", "SeriesInstanceUID"):
                setattr(ds, kw, f"{getattr(ds, kw)}.{i + 1}"[:64])
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.save_as(small / f"s{i:02d}_{f.name}")
    series = tmp / "series"
    shutil.copytree(SHARED / "mr_ge_irspgr_refaced_deident", series)
    return {"small": small, "series": series}


def count(d: Path) -> int:
    return sum(1 for p in d.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peers-venv", type=Path, default=Path("/tmp/peers-venv"))
    ap.add_argument("--n-cpus", type=int, default=2)
    ap.add_argument("--copies", type=int, default=14)
    ap.add_argument("--before-src", type=Path, default=None, help="folder holding an older bids_deid package")
    ap.add_argument("--repeats", type=int, default=1,
                    help="runs per tool, interleaved (tool A, B, C, A, B, C, ...); the median is reported")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-dicom-"))
    try:
        inputs = make_inputs(tmp, args.copies)
        from bids_deid.pseudonym import generate_key

        key = generate_key(tmp / "key.txt")  # a weak or world-readable key is refused
        env = dict(os.environ, PYTHONPATH=str(REPO))
        peer_py = args.peers_venv / "bin" / "python"
        tools = {
            "cp -r": lambda i, o: ["cp", "-r", str(i), str(o)],
            "bids-deid-dicom": lambda i, o: [sys.executable, "-m", "bids_deid.dicom_cli", str(i), str(o),
                                             "--key-file", str(key), "--n-cpus", str(args.n_cpus)],
        }
        if args.before_src is not None:
            env_before = dict(env, PYTHONPATH=str(args.before_src.resolve()))
            tools["bids-deid-dicom (before)"] = (
                lambda i, o: [sys.executable, "-m", "bids_deid.dicom_cli", str(i), str(o), "--key-file", str(key),
                              "--n-cpus", str(args.n_cpus)],
                env_before,
            )
        if peer_py.exists():
            peer_env = dict(os.environ)
            tools["dicognito"] = (lambda i, o: [str(peer_py), "-m", "dicognito", "-o", str(o), "--quiet",
                                                "--assume-burned-in-annotation", "never", str(i)], peer_env)
            # dicom-anonymizer wants an existing output folder
            tools["dicom-anonymizer"] = (
                lambda i, o: ["sh", "-c", 'mkdir -p "$2" && exec "$0" "$1" "$2"',
                              str(args.peers_venv / "bin" / "dicom-anonymizer"), str(i), str(o)], peer_env)
            tools["deid"] = (lambda i, o: [str(peer_py), str(REPO / "benchmarks" / "peer_deid.py"), str(i), str(o)],
                             peer_env)
        if args.before_src is not None:  # check that each side really imports its own package
            for label, e in (("after", env), ("before", tools["bids-deid-dicom (before)"][1])):
                where = subprocess.run([sys.executable, "-c", "import bids_deid; print(bids_deid.__file__)"],
                                       capture_output=True, text=True, env=e, cwd=tmp, check=True).stdout.strip()
                print(f"{label}: {where}")
        print(f"load average before: {os.getloadavg()}")
        print("| input | files | tool | seconds | files/s | CPU s | peak RSS (MiB) | exit | files out |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name, src in inputs.items():
            n = count(src)
            runs: dict[str, list] = {tool: [] for tool in tools}
            for _ in range(max(1, args.repeats)):  # interleaved, so that load changes hit every tool alike
                for tool, cmd in tools.items():
                    out = tmp / f"out-{name}-{tool.replace(' ', '')}"
                    cmd_for, tool_env = cmd if isinstance(cmd, tuple) else (cmd, env)
                    rc, dt, rss, cpu = measure(cmd_for(src, out), tool_env, cwd=tmp)
                    n_out = count(out) if out.exists() else 0
                    runs[tool].append((dt, cpu, rss, rc, n_out))
                    shutil.rmtree(out, ignore_errors=True)
                    shutil.rmtree(Path(str(out) + "-private"), ignore_errors=True)
            medians = {}
            for tool, rs in runs.items():
                dt = statistics.median(r[0] for r in rs)
                cpu = statistics.median(r[1] for r in rs)
                rss, rc, n_out = max(r[2] for r in rs), max(r[3] for r in rs), min(r[4] for r in rs)
                medians[tool] = (dt, rc == 0 and n_out == n)
                print(f"| {name} | {n} | {tool} | {dt:.2f} | {n / dt:.0f} | {cpu:.2f} | {rss:.0f} | {rc} | {n_out} |",
                      flush=True)
            ours = medians["bids-deid-dicom"][0]
            peers = {t: d for t, (d, ok) in medians.items() if ok and t not in ("cp -r",) and "bids-deid" not in t}
            if peers:
                fastest = min(peers, key=peers.get)
                print(f"{name}: fastest complete peer {fastest} {peers[fastest]:.2f} s -> bids-deid-dicom is "
                      f"{peers[fastest] / ours:.1f}x its files/s; {ours / medians['cp -r'][0]:.1f}x the time of cp -r")
        print(f"load average after: {os.getloadavg()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
