"""``bids-deid-audit OUTPUT_DIR --private-dir PATH``: re-check a dataset before upload, and settle hits.

Exit 0 when no hit is open, 3 when one is. ``--accept HIT_ID --reason "..."`` records a reviewed
acceptance (bound to the value, the file's hash and the reason) in the private dir; a changed
file re-opens it. ``--dry-run`` says what would be searched, by class, without values.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import BidsDeidError


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bids-deid-audit", description=__doc__.split(":", 1)[1].strip(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("output_dir", type=Path, help="the public, de-identified dataset")
    p.add_argument("--private-dir", type=Path, help="the run's private dir (default: OUTPUT_DIR-private)")
    p.add_argument("--key-file", type=Path, help="the run's key (default: $BIDS_DEID_KEY if set): searched for too, it must never be public")
    p.add_argument("--n-cpus", "--n_cpus", type=_positive, default=1, help="files searched in parallel")
    p.add_argument("--accept", metavar="HIT_ID", action="append", default=[],
                   help="record a reviewed acceptance of this hit (repeat for more); needs --reason")
    p.add_argument("--reason", help="why the accepted hit(s) are not a leak (kept with the acceptance)")
    p.add_argument("--free-text", choices=("review", "require"), default=None,
                   help="identifier-shaped strings in kept free text: list for review (default) or fail until "
                        "accepted (default: the profile's audit.free_text recorded by the run, else review)")
    p.add_argument("--dry-run", action="store_true", help="say what would be searched, by class; search nothing")
    return p


def main(argv: list[str] | None = None) -> int:
    """Search OUTPUT_DIR for every identifier recorded in the private dir; exit 3 on an open hit."""
    args = build_parser().parse_args(argv)
    out = args.output_dir.absolute()
    from .settings import default_private_dir

    private = (args.private_dir or default_private_dir(out)).absolute()
    try:
        if not out.is_dir():
            raise BidsDeidError(f"{out} is not a folder")
        if not (private / "identifiers").is_dir():
            raise BidsDeidError(f"{private} holds no identifiers/ folder: is it the private dir of this output?")
        if args.accept and not args.reason:
            raise BidsDeidError('--accept needs --reason "...": say why the hit is not a leak')
        key = None
        if args.key_file or os.environ.get("BIDS_DEID_KEY"):
            from .pseudonym import check_key_place, forget_key_env, load_key

            if args.key_file is not None:
                check_key_place(args.key_file, {"audited output": out})
            key = load_key(args.key_file)  # the file, else $BIDS_DEID_KEY
            forget_key_env()
        from . import audit

        if args.dry_run:
            return _print_plan(audit.make_plan(private, out, key), private)
        free_text = args.free_text or _recorded_free_text(private)
        res = audit.audit_output(out, private, key=key, n_cpus=args.n_cpus, free_text=free_text)
        if args.accept:
            from .audit import accept as acc

            new = acc.accept(res.hits + res.review, args.accept, args.reason, out, private)
            print(f"accepted {len(new)} hit(s): {', '.join(a['id'] for a in new)} (recorded in "
                  f"{private / acc.ACCEPTED})")
            res = audit.audit_output(out, private, key=key, n_cpus=args.n_cpus, free_text=free_text)
    except BidsDeidError as exc:
        print(f"bids-deid-audit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print_result(res, private)
    return 3 if res.open else 0


def _recorded_free_text(private: Path) -> str:
    from .private import read_json

    try:
        return (read_json(private / "audit-settings.json", {}) or {}).get("free_text", "review")
    except BidsDeidError:
        return "review"


def _print_plan(plan, private: Path) -> int:
    print(f"would search {plan.values()} values:")
    for cls, n in plan.by_class().items():
        print(f"  {n:6d}  {cls}")
    print(f"not searched: {len(plan.not_searched)} values (named in {private / 'leak-audit-plan.json'}):")
    for reason, n in plan.not_by_reason().items():
        print(f"  {n:6d}  {reason}")
    from .private import write_json

    write_json(private / "leak-audit-plan.json", {
        "searched": sorted({(n.cls, n.kind, n.value) for lst in plan.needles.values() for n in lst if n.cls != "key"}),
        "not_searched": [{"class": n.cls, "kind": n.kind, "value": n.value, "reason": n.reason}
                         for n in plan.not_searched]})
    return 0


def print_result(res, private: Path) -> None:
    """The audit's verdict for a terminal or a batch log: ids, files, places, classes; never values."""
    mb = res.unpacked / 1e6
    if not res.key_searched:
        print("note: the key was not searched (give --key-file to check that it is not in the output)")
    print(f"searched {res.files} files ({mb:.1f} MB unpacked, {res.seconds:.1f} s) for {res.checked} values "
          f"({len(res.plan.not_searched)} not searchable, named in {private / 'leak-audit.json'}): "
          f"{len(res.open)} hits")
    for line in res.public_lines(limit=10**6):
        print(line)
    if res.review and not res.blocking_review:
        for r in res.review:
            if r["status"] != "accepted":
                print(f"  review {r['id']} {r['file']} [{'; '.join(r['locations'][:2])}]: {r['class']} "
                      f"({r['where']}), {r['count']}x")
    if res.open:
        print(f"settle a hit after review: bids-deid-audit OUT --private-dir {private} --accept HIT_ID "
              f"--reason \"...\"")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
