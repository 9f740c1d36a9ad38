"""Run bids-deid over the BIDS specification's example suite and compare validator results.

The suite (``../shared/data/bids-examples``) ships its images as 0-byte placeholders; the
harness copies each dataset and fills every empty NIfTI with a small valid image (4-D for
time series) so that the images can be read. Other 0-byte files stay empty, as in the
suite. Both input and output are validated with the suite's own ``default-config.json``.

Run directly for numbers: ``python tests/examples_sweep.py [-j N] [names...]``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "bids-examples"
SERIES = ("_bold", "_dwi", "_asl", "_cbv", "_phase", "_sbref", "_pet", "_m0scan")


def example_names() -> list[str]:
    if not EXAMPLES.is_dir():
        return []
    return sorted(p.name for p in EXAMPLES.iterdir() if (p / "dataset_description.json").is_file())


def fill_placeholders(root: Path) -> int:
    """Write a small valid NIfTI into every 0-byte ``.nii``/``.nii.gz`` under ``root``."""
    import nibabel as nib
    import numpy as np

    n = 0
    for p in root.rglob("*"):
        if not p.name.endswith((".nii", ".nii.gz")) or not p.is_file() or p.stat().st_size:
            continue
        stem = p.name.split(".")[0]
        shape = (6, 6, 6, 3) if stem.endswith(SERIES) else (6, 6, 6)
        data = (np.arange(np.prod(shape), dtype=np.int16) % 97).reshape(shape)
        img = nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]))
        img.header.set_xyzt_units("mm", "sec")
        if len(shape) == 4:
            img.header["pixdim"][4] = 2.0
        nib.save(img, p)
        n += 1
    return n


def held_files(priv: Path, src: Path) -> list[tuple[str, str, str, int]]:
    """(output path, status, reason, input size) of every file the run withheld or left out.

    The size is that of the input file of the same (original-label) name when it can be found,
    else -1: tiny placeholders of the suite (1-byte files) can then be told from real files.
    """
    import json
    import re

    def key(name: str) -> str:  # labels differ between input and output names
        return re.sub(r"(sub|ses)-[A-Za-z0-9]+", "", name)

    sizes: dict[str, int] = {}
    for p in src.rglob("*"):
        if p.is_file():
            sizes[key(p.name)] = max(sizes.get(key(p.name), -1), p.stat().st_size)
    out = []
    for f in sorted((priv / "state").glob("*.json")):
        try:
            records = json.loads(f.read_text()).get("records") or {}
        except (OSError, ValueError):
            continue
        for rel, r in records.items():
            if isinstance(r, dict) and r.get("status") in ("withheld", "left out"):
                name = rel.rstrip("/").rsplit("/", 1)[-1]
                out.append((rel, r["status"], r.get("reason", ""), sizes.get(key(name), -1)))
    return out


def _validate(dataset: Path, config: Path) -> dict:
    from bids_deid.validate import run_validator

    res = run_validator(dataset, config=config)
    return _summarise(res.report)


def _summarise(report: dict) -> dict:
    counts: dict[str, int] = {}
    for i in report.get("issues", {}).get("issues", []):
        if i.get("severity") == "error":
            counts[i.get("code", "?")] = counts.get(i.get("code", "?"), 0) + 1
    return counts


def run_one(name: str, scratch: Path | None = None) -> dict:
    """Process one example dataset; returns codes, exit codes and what was new in the output."""
    from bids_deid.cli import main

    own = scratch is None
    scratch = Path(tempfile.mkdtemp(prefix=f"sweep-{name}-")) if own else scratch
    try:
        src = scratch / "in" / name
        shutil.copytree(EXAMPLES / name, src, symlinks=True)
        fill_placeholders(src)
        config = EXAMPLES / "default-config.json"
        key = scratch / "key"
        main(["--generate-key", str(key)])
        out, priv = scratch / "out" / name, scratch / "priv"
        common = ["--key-file", str(key), "--private-dir", str(priv), "--deface-method", "none",
                  "--bids-validator-config", str(config)]
        before = _validate(src, config)
        rc_p = main([str(src), str(out), "participant", "--skip-bids-validation", *common])
        rc_g = main([str(src), str(out), "group", *common]) if rc_p == 0 else None
        after = _summarise(json.loads((priv / "validator-output.json").read_text())) \
            if (priv / "validator-output.json").is_file() else {}
        audit = {}
        if (priv / "leak-audit.json").is_file():
            rep = json.loads((priv / "leak-audit.json").read_text())
            hits = rep.get("hits") if isinstance(rep.get("hits"), list) else []
            audit = {"hits": len(hits), "files": sorted({h.get("file", "?") for h in hits})}
        new = sorted(c for c in after if c not in before)
        return {"name": name, "participant": rc_p, "group": rc_g, "input_errors": before, "output_errors": after,
                "new_errors": new, "audit": audit, "held": held_files(priv, src)}
    finally:
        if own:
            shutil.rmtree(scratch, ignore_errors=True)


#: files the input's authors wrote as free text and bids-deid carries as they are (labels replaced):
#: the leak audit reads them, and an identifier the authors wrote there fails the audit (exit 3)
CARRIED_TEXT = ("README", "CHANGES", "LICENSE", "CITATION.cff", "dataset_description.json", "code/", "stimuli/",
                "docs/", "logs/")


def only_in_carried_text(files: list[str]) -> bool:
    """True when every audit hit is in a file carried verbatim (none in what a scrubber wrote)."""
    return bool(files) and all(f.startswith(CARRIED_TEXT) for f in files)


def _run_quiet(name: str) -> dict:
    import contextlib
    import io

    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            res = run_one(name)
    except Exception as exc:  # the harness reports, it does not stop
        res = {"name": name, "participant": "crash", "group": None, "new_errors": [], "error": repr(exc)}
    res["log"] = buf.getvalue()[-2000:]
    return res


def sweep(names: list[str], jobs: int = 2) -> list[dict]:
    with ProcessPoolExecutor(max_workers=jobs) as ex:
        return list(ex.map(_run_quiet, names))


def main(argv: list[str]) -> int:
    jobs = 2
    if argv[:1] == ["-j"]:
        jobs, argv = int(argv[1]), argv[2:]
    names = argv or example_names()
    results = sweep(names, jobs)
    bad = 0
    for r in results:
        ok = r["participant"] == 0 and r["group"] in (0, 4) and not r["new_errors"]
        ok = ok or r["group"] == 3 and only_in_carried_text(r.get("audit", {}).get("files", [])) and not r["new_errors"]
        bad += not ok
        print(f"{'ok ' if ok else 'BAD'} {r['name']:36} p={r['participant']} g={r['group']} "
              f"new={r['new_errors']} {r.get('error', '')}")
        if r.get("group") == 3:
            print(f"       audit hits in: {', '.join(r['audit'].get('files', [])[:6])}")
        if not ok:
            tail = [ln for ln in r.get("log", "").splitlines() if "error" in ln.lower()][-3:]
            for ln in tail:
                print("      ", ln[:300])
    n3 = sum(1 for r in results if r["group"] == 3)
    print(f"{len(results)} datasets; {sum(1 for r in results if r['participant'] != 0 or r['group'] is None)} "
          f"did not complete; {sum(1 for r in results if r['new_errors'])} with new validator errors; "
          f"{n3} audit exit 3 ({sum(1 for r in results if r['group'] == 3 and only_in_carried_text(r['audit']['files']))}"
          f" of them only in carried free text); {bad} not ok")
    if os.environ.get("SWEEP_JSON"):
        Path(os.environ["SWEEP_JSON"]).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main(sys.argv[1:]))
