"""``bids-deid-audit OUTPUT_DIR --private-dir PATH``: re-check a dataset before upload."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import BidsDeidError


def main(argv: list[str] | None = None) -> int:
    """Search OUTPUT_DIR for every identifier recorded in the private dir; exit 3 on a hit."""
    p = argparse.ArgumentParser(prog="bids-deid-audit", description=__doc__.split(":", 1)[1].strip())
    p.add_argument("output_dir", type=Path, help="the public, de-identified dataset")
    p.add_argument("--private-dir", type=Path, help="the run's private dir (default: OUTPUT_DIR-private)")
    args = p.parse_args(argv)
    out = args.output_dir.absolute()
    private = (args.private_dir or out.with_name(out.name + "-private")).absolute()
    try:
        if not out.is_dir():
            raise BidsDeidError(f"{out} is not a folder")
        if not (private / "identifiers").is_dir():
            raise BidsDeidError(f"{private} holds no identifiers/ folder: is it the private dir of this output?")
        from .audit import audit_output

        res = audit_output(out, private)
    except BidsDeidError as exc:
        print(f"bids-deid-audit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"searched {res.files} files ({res.bytes / 1e6:.1f} MB) for {res.checked} values "
          f"({len(res.unchecked)} kinds too short or common to search): {len(res.hits)} hits")
    for h in res.hits:
        print(f"  LEAK {h['file']}: {h['kind']} ({h['where']})")
    return 3 if res.hits else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
