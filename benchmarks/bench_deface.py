"""Defacing benchmark on real heads: bids-deid side by side with its peers, one run, 2 cores.

Heads: the five real individual heads and the two already-defaced negative controls of
``../shared/data/heads`` (see its SOURCES.md), judged with their truth masks: brain voxels
removed (truth brain eroded 2 mm, where the input had signal), share of the truth face's
tissue left, withheld or not, wall seconds, CPU seconds and peak RSS of the tool's own
process. The controls have no truth masks: their brain is the brain network's mask at its
trained 256^3 size (eroded 2 mm).

Peers (run in their own venv, ``benchmarks/peer_deface.py``): the seed tool's CNN defacer
(``mede``, CPU), deepbet + quickshear, and the antspyx affine recipe (bids-deid's template
and face mask). Reproduce (from the repository root)::

    python -m venv /tmp/peer-venv && /tmp/peer-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 deepbet quickshear antspyx
    /tmp/peer-venv/bin/pip install --no-deps mede==0.0.12 && /tmp/peer-venv/bin/pip install deid easyocr timm torchio safetensors scikit-image pytesseract pandas pillow opencv-python-headless torch==2.14.1 torchvision==0.29.1
   (mede pins torch 2.2.2; it runs with the CPU torch named here)
    python benchmarks/bench_deface.py --peer-python /tmp/peer-venv/bin/python --out docs/benchmarks-deface.md

Without ``--peer-python`` only bids-deid runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from scipy import ndimage as ndi  # noqa: E402

from bids_deid.atomic import atomic_write_text  # noqa: E402
from bids_deid.deface.template import DATA_DIR, DEFAULT_NAME  # noqa: E402

# Peak RSS is read by the child itself from /proc/self/status (VmHWM): with vfork/exec the
# kernel's ru_maxrss of a child inherits the parent's high-water mark.
HWM = """
import resource as _r
_u = _r.getrusage(_r.RUSAGE_SELF)
print("CPUSEC", _u.ru_utime + _u.ru_stime)
for _line in open("/proc/self/status"):
    if _line.startswith("VmHWM:"):
        print("VMHWM", int(_line.split()[1]))
"""

THREADS = {
    "OMP_NUM_THREADS": "2",
    "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "2",
    "OPENBLAS_NUM_THREADS": "2",
    "MKL_NUM_THREADS": "2",
}

BIDS_DEID = """
import sys
from pathlib import Path
from bids_deid.deface import deface_file
r = deface_file(Path(sys.argv[1]), Path(sys.argv[2]), qc=True)
m = r.metrics
print(("PASSED " if r.passed else "WITHHELD ") + r.reason + f" (cut {m.get('cut_to_brain_mm')} mm)")
"""

# the peer script, run as a file so that its own imports stay in the peer venv
PEER = """
import runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit:
    pass
"""


def run_child(cmd: list[str], args: list[str]) -> tuple[float, float | None, str, float | None]:
    """Run a child; return (wall s, peak RSS MB, status line, CPU s)."""
    env = dict(os.environ, **THREADS)
    t0 = time.perf_counter()
    proc = subprocess.run([*cmd, *args], capture_output=True, env=env, check=False)
    seconds = time.perf_counter() - t0
    lines = proc.stdout.decode(errors="replace").strip().splitlines()
    rss = cpu = None
    for line in lines:
        if line.startswith("VMHWM "):
            rss = int(line.split()[1]) / 1024.0
        elif line.startswith("CPUSEC "):
            cpu = float(line.split()[1])
    status = [line for line in lines if not line.startswith(("VMHWM ", "CPUSEC "))]
    msg = status[-1] if status else ""
    if proc.returncode != 0:
        msg = "ERROR " + (proc.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1][:120]
    return seconds, rss, msg, cpu


def heads(root: Path, quick: bool) -> list[dict]:
    """The shared real heads and controls, with their truth masks (None for the controls)."""
    from bids_deid.deface.skullstrip import brain_mask

    names = sorted(p for p in root.glob("*.nii.gz"))
    controls = sorted((root / "controls").glob("*.nii.gz"))
    if quick:
        names, controls = names[:2], controls[:1]
    out = []
    for path in names + controls:
        name = path.name[: -len(".nii.gz")]
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
        brain_p, face_p = root / "truth" / f"{name}_brain.nii.gz", root / "truth" / f"{name}_face.nii.gz"
        if brain_p.is_file():
            brain = np.asarray(nib.load(str(brain_p)).dataobj) > 0
            face = np.asarray(nib.load(str(face_p)).dataobj) > 0
            kind = "real"
        else:
            brain, face, kind = brain_mask(np.asarray(data, np.float32), img.affine), None, "control"
        zooms = np.sqrt((img.affine[:3, :3] ** 2).sum(0))
        core = ndi.distance_transform_edt(brain, sampling=zooms) > 2.0
        out.append({"name": name, "src": path, "kind": kind, "brain": core, "face": face, "data": data})
    return out


def judge(head: dict, dst: Path) -> dict:
    """Brain voxels removed (eroded truth, input signal) and share of the face's tissue left."""
    if not dst.is_file():
        return {"brain_removed": "-", "face_left": "-"}
    src_data = head["data"]
    out_data = np.asarray(nib.load(str(dst)).dataobj)
    if out_data.shape[:3] != src_data.shape[:3]:
        return {"brain_removed": "grid changed", "face_left": "-"}
    out_data = out_data.reshape(src_data.shape)
    removed = (out_data == 0) & (src_data != 0)
    res = {"brain_removed": int((removed & head["brain"]).sum())}
    if head["face"] is None:
        res["face_left"] = "(no truth)"
    else:
        tissue = head["face"] & (src_data != 0)
        res["face_left"] = f"{float((out_data[tissue] != 0).mean()):.1%}" if tissue.any() else "-"
    return res


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and write the markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heads", type=Path, default=ROOT.parent / "shared" / "data" / "heads")
    ap.add_argument(
        "--peer-python", default=None, help="python of a venv with torch, deepbet, quickshear, mede, antspyx"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-deface.md")
    ap.add_argument("--quick", action="store_true", help="two heads and one control only")
    args = ap.parse_args(argv)

    tpl_head = str(DATA_DIR / f"{DEFAULT_NAME}.nii.gz")
    tpl_face = str(DATA_DIR / f"{DEFAULT_NAME}_facemask.nii.gz")
    peer = str(ROOT / "benchmarks" / "peer_deface.py")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-deface-") as tmp:
        work = Path(tmp)
        for head in heads(args.heads, args.quick):
            tools = [("bids-deid", [sys.executable, "-c", BIDS_DEID + HWM])]
            if args.peer_python:
                tools += [
                    ("mede (CNN defacer)", [args.peer_python, "-c", PEER + HWM, peer, "mede"]),
                    ("deepbet + quickshear", [args.peer_python, "-c", PEER + HWM, peer, "deepbet-quickshear"]),
                    ("antspyx affine + mask", [args.peer_python, "-c", PEER + HWM, peer, "ants"]),
                ]
            for tool, cmd in tools:
                dst = work / f"{head['name']}_{tool.split()[0]}.nii.gz"
                extra = [tpl_head, tpl_face] if tool.startswith("antspyx") else []
                seconds, rss, msg, cpu = run_child(cmd, [str(head["src"]), str(dst), *extra])
                row = {"head": head["name"], "kind": head["kind"], "tool": tool, "seconds": f"{seconds:.1f}"}
                row.update(rss=rss, cpu="-" if cpu is None else f"{cpu:.1f}", status=msg[:90])
                row["withheld"] = "yes" if not dst.is_file() else "no"
                row.update(judge(head, dst))
                rows.append(row)
                print(row, flush=True)
    _write(args, rows)


NOTES = """
## What is measured

- **Heads**: the five real individual heads of the shared data (`heads/`, five people,
  three vendors, T1w and T2w, 3D and 2D thick-slice, 1 and 2 mm, one oblique, two with
  the lower face outside the field of view) and the two heads their publishers had
  already defaced (**control**). No head is derived from the template.
- **brain voxels removed**: voxels that held signal in the input, are zero in the output
  and lie inside the truth brain (deepbet at 256^3) eroded by 2 mm; for the controls the
  brain is the embedded network's mask at 256^3, eroded 2 mm. Must be 0.
  **face left**: share of the truth face region's tissue still non-zero (target <= 5 %).
  **withheld**: the tool wrote nothing (only bids-deid withholds).
- **wall s**: one run in a fresh process (imports, models, registration, masking, QC
  renderings, writing). **CPU s**: user + system time of the child. **peak RSS**: its
  VmHWM. Thread pools are limited to 2. The machine is shared with other jobs, so wall
  times carry noise; CPU seconds are steadier.

## Tools

- **bids-deid**: SimpleITK affine registration of the embedded template; face mask carried
  into the stored grid; this head's own brain (embedded brain networks, ONNX, 192^3)
  dilated by 3 mm taken out of it; gate and geometric face check; stored bytes of face
  voxels set to 0, header bytes untouched. How every threshold was set: `docs/defacing.md`.
- **mede**: the seed tool's MedNeXt defacing CNN on CPU (`mede.dicom_skullstrip_defacing.Inference(deface=True)`);
  its output, written in RAS order, is put back in the stored order for judging.
- **deepbet + quickshear**: deepbet's brain mask (CPU), then quickshear's plane cut
  below the brain's convex hull in the stored voxel axes.
- **antspyx affine + mask**: `ants.registration(type_of_transform="Affine")` of bids-deid's
  template to the image, its face mask warped with nearest neighbour and zeroed (no brain
  protection).
"""


def _write(args, rows: list[dict]) -> None:
    lines = [
        "# Defacing benchmark (real heads)",
        "",
        "Generated by `benchmarks/bench_deface.py` "
        f"on {platform.machine()} / Python {platform.python_version()}, 2 threads per tool "
        f"({os.cpu_count()} cores on the machine, shared with other jobs).",
        "",
        "Reproduce:",
        "",
        "```",
        "python -m venv /tmp/peer-venv && /tmp/peer-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 deepbet quickshear antspyx",
        "/tmp/peer-venv/bin/pip install --no-deps mede==0.0.12 && /tmp/peer-venv/bin/pip install deid easyocr timm torchio safetensors scikit-image pytesseract pandas pillow opencv-python-headless torch==2.14.1 torchvision==0.29.1",
        "python benchmarks/bench_deface.py --peer-python /tmp/peer-venv/bin/python --out docs/benchmarks-deface.md",
        "```",
        "",
        "| head | tool | brain voxels removed | face left | withheld | wall s | CPU s | peak RSS MB | status |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rss = "-" if r.get("rss") is None else f"{r['rss']:.0f}"
        head = r["head"] + (" (control)" if r["kind"] == "control" else "")
        lines.append(
            f"| {head} | {r['tool']} | {r['brain_removed']} | {r['face_left']} | {r['withheld']} | {r['seconds']} | "
            f"{r['cpu']} | {rss} | {r['status']} |"
        )
    atomic_write_text(args.out, "\n".join(lines) + "\n" + NOTES)


if __name__ == "__main__":
    main()
