"""``bids-deid-dicom IN_DIR OUT_DIR``: de-identify a DICOM tree (PS3.15 Annex E engine).

It does not deface: the pixels of MR/CT images of the head still show the face (``bids-deid``
defaces the NIfTI and withholds such DICOM).

The public OUT_DIR gets de-identified files under non-identifying names; the private dir
(default: sibling ``OUT_DIR-private``, mode 0700) gets ``audit.jsonl`` (per file: what was
done, no original values) and ``mapping.tsv`` (original PatientID -> pseudonym, 0600).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from .atomic import atomic_open, atomic_write_text, cleanup_temps
from .errors import BidsDeidError, InputError, OutputError
from .profiles import load_profile
from .pseudonym import Pseudonymizer, check_key_place, forget_key_env, load_key
from .scrub.dicom_tree import TreeDst, iter_tree
from .settings import default_private_dir

log = logging.getLogger(__name__)
NO_DEFACE = ("this tool does not deface: MR/CT images of the head keep the face in their pixels; "
             "to share them publicly use bids-deid, which defaces the images and withholds such DICOM")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser."""
    p = argparse.ArgumentParser(prog="bids-deid-dicom", description=__doc__.splitlines()[0],
                                epilog=NO_DEFACE)
    p.add_argument("in_dir", type=Path, help="input folder with DICOM files (never modified)")
    p.add_argument("out_dir", type=Path, help="output folder for de-identified DICOM (public side)")
    p.add_argument("--profile", default="basic", help="shipped profile name or YAML path (default: basic)")
    p.add_argument("--key-file", type=Path, default=None, help="pseudonymization key (else $BIDS_DEID_KEY)")
    p.add_argument("--n-cpus", "--n_cpus", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--private-dir", type=Path, default=None, help="private outputs (default OUT_DIR-private)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks")
    p.add_argument("--clean-pixels", action="store_true",
                   help="black out burned-in text (OCR) in files otherwise skipped as a burned-in risk")
    return p


def _check_dirs(in_dir: Path, out_dir: Path, private: Path) -> None:
    if not in_dir.is_dir():
        raise InputError(f"input folder {in_dir} does not exist")
    i, o, pv = in_dir.resolve(), out_dir.resolve(), private.resolve()
    if o == i or i in o.parents:
        raise OutputError("output folder must not be inside the input folder")
    if pv == o or o in pv.parents:
        raise OutputError("private folder must not be inside the output folder")
    if pv == i or i in pv.parents:
        raise OutputError("private folder must not be inside the input folder")


def run(args: argparse.Namespace) -> int:
    """Run with parsed arguments; returns the exit code."""
    private_dir = args.private_dir or default_private_dir(args.out_dir)
    if args.key_file is not None:  # never inside the input (read as data) nor the output (published)
        check_key_place(args.key_file, {"input": args.in_dir, "public output": args.out_dir})
    key = load_key(args.key_file)
    forget_key_env()  # child processes must not inherit the key
    profile = load_profile(args.profile)
    if args.n_cpus < 1:
        raise InputError("--n-cpus must be at least 1")
    out_dir: Path = args.out_dir
    private: Path = private_dir
    _check_dirs(args.in_dir, out_dir, private)
    out_dir.mkdir(parents=True, exist_ok=True)
    private.mkdir(parents=True, exist_ok=True)
    os.chmod(private, 0o700)
    cleanup_temps(out_dir)
    pseudo = Pseudonymizer(key)
    mapping: dict[str, str] = {}
    _read_mapping(private / "mapping.tsv", mapping)
    counts: dict[str, int] = {}
    # Results are streamed: one audit line per file as it is done, only counters and the
    # PatientID -> pseudonym mapping stay in memory (flat in the number of files).
    from .dicom_resume import Resumer

    resume = Resumer(private / "audit.jsonl", args.in_dir, out_dir, profile, pseudo, private / "work" / "recheck")
    with atomic_open(private / "audit.jsonl", "w", perm=0o600) as audit:
        for r in iter_tree(args.in_dir, out_dir, profile, pseudo, n_cpus=args.n_cpus, progress=True):
            r = resume.complete(r)  # a file an earlier (maybe killed) run wrote: its audit and mapping too
            if getattr(args, "clean_pixels", False) and r.status == "skipped" and "burned-in" in r.reason:
                r = _clean_pixels(r, out_dir, profile, pseudo, private)
            head = json.dumps({
                "src": str(r.src.relative_to(args.in_dir)), "dst": str(r.dst.relative_to(out_dir)) if r.dst else None,
                "status": r.status, "reason": r.reason, "subject": r.subject,
            })
            # the changes (one JSON text per distinct list, made in the worker) close the line
            audit.write(f'{head[:-1]}, "changes": {r.changes_json()}}}\n')
            counts[r.status] = counts.get(r.status, 0) + 1
            _mapping_from((r,), args.in_dir, pseudo, mapping)
            if r.status in ("error", "withheld"):
                print(f"bids-deid: {r.status}: {r.src.relative_to(args.in_dir)}: {r.reason}", file=sys.stderr)
    resume.close()
    rows = ["original_patient_id\tpseudonym"] + [f"{k}\tsub-{v}" for k, v in sorted(mapping.items())]
    atomic_write_text(private / "mapping.tsv", "\n".join(rows) + "\n", perm=0o600)
    errors, withheld = counts.get("error", 0), counts.get("withheld", 0)
    print(
        f"bids-deid-dicom: {counts.get('written', 0)} written, {counts.get('exists', 0)} already done, "
        f"{counts.get('skipped', 0)} skipped, {withheld} withheld, {errors} errors (audit in {private})"
    )
    if counts.get("written", 0) or counts.get("exists", 0):
        print(f"bids-deid-dicom: note: {NO_DEFACE}")
    return 1 if errors or withheld else 0


def _clean_pixels(r, out_dir: Path, profile, pseudo: Pseudonymizer, private: Path):
    """Re-run one skipped file through the burned-in text cleaner (same output naming as the tree)."""
    import pydicom

    from .scrub.pixels import deidentify_file_clean_pixels, write_pixels_qc

    head = pydicom.dcmread(r.src, stop_before_pixels=True, force=True)
    subject = r.subject or pseudo.subject(str(head.get("PatientID", "") or "unknown"))
    dst = TreeDst(out_dir, pseudo, r.src)(subject, str(head.get("SeriesInstanceUID", "") or ""),
                                           str(head.get("SOPInstanceUID", "") or ""))
    res, pres = deidentify_file_clean_pixels(r.src, dst, profile, pseudo, subject=subject)
    if pres is not None and pres.before_png:
        _QC.append({"file": str(dst.relative_to(out_dir)), "boxes": pres.boxes, "passes": pres.passes,
                    "before": pres.before_png, "after": pres.after_png})
        write_pixels_qc(private / "pixels-qc.html", _QC)
    return res


_QC: list[dict] = []


def _read_mapping(path: Path, mapping: dict) -> None:
    """Keep the entries of an earlier run (a resumed run reports finished files as 'exists')."""
    if not path.is_file():
        return
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        if "\t" in line:
            k, v = line.split("\t", 1)
            mapping[k] = v.removeprefix("sub-")


def _mapping_from(results, in_dir: Path, pseudo: Pseudonymizer, mapping: dict) -> None:
    """Original PatientID -> pseudonym, read from the identifiers the engine reported."""
    for r in results:
        if r.subject is None:
            continue
        for kind, value in r.identifiers:
            if kind == "PatientID":
                mapping.setdefault(value, r.subject)
                break


def main(argv: list[str] | None = None) -> int:
    """Console entry point."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except BidsDeidError as exc:
        if args.verbose:
            raise
        print(f"bids-deid: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("bids-deid: error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
