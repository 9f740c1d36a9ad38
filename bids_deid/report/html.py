"""The run report: one HTML page in the private dir, rendered with jinja2."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import jinja2

from .. import __version__
from ..config import Settings
from ..private import read_json, write_private


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("bids_deid", "report/templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )


def collect_records(private_dir: Path) -> dict[str, dict]:
    """Every file record of every subject state and of the dataset level."""
    records: dict[str, dict] = {}
    for f in sorted((private_dir / "state").glob("*.json")):
        records.update((read_json(f, {}) or {}).get("records", {}))
    return records


def _deface_results(items: list[tuple[str, dict]], private_dir: Path):
    """Rebuild DefaceResult objects from the subject state records (for the QC page)."""
    from ..deface import DefaceResult

    for rel, r in items:
        images = {name: (private_dir / p).read_bytes() for name, p in (r.get("qc") or {}).items()
                  if (private_dir / p).is_file()}
        yield rel, DefaceResult(passed=r["status"] == "defaced", reason=r.get("reason", ""),
                                metrics=r.get("metrics") or {}, qc_images=images,
                                faces_before=r.get("faces_before"), faces_after=r.get("faces_after"))


def pixels_qc_pages(private_dir: Path) -> list[str]:
    """Burned-in text QC pages in the private dir (``pixels-qc.html`` and ``qc/sub-*/pixels-qc.html``), relative."""
    pages = [p for p in [private_dir / "pixels-qc.html", *sorted((private_dir / "qc").glob("sub-*/pixels-qc.html"))]
             if p.is_file()]
    return [p.relative_to(private_dir).as_posix() for p in pages]


def write_run_report(s: Settings, summary: dict) -> Path:
    """Render ``report.html`` into the private dir and return its path."""
    records = collect_records(s.private_dir)
    defaced = [(k, v) for k, v in sorted(records.items()) if v["status"] == "defaced"]
    withheld = [(k, v) for k, v in sorted(records.items()) if v["status"] == "withheld" and "metrics" in v]
    other = [(k, v) for k, v in sorted(records.items())
             if v["status"] not in ("written", "defaced", "left out") and "metrics" not in v]
    left_out = [(k, v) for k, v in sorted(records.items()) if v["status"] == "left out"]
    audit = read_json(s.private_dir / "leak-audit.json", {}) or {}
    ok = summary["validation"]["errors"] == 0 and summary["audit"]["hits"] == 0
    deface_qc = "deface-qc.html"
    if defaced or withheld:
        from .deface_qc import render_qc_report

        render_qc_report(list(_deface_results(defaced + withheld, s.private_dir)), s.private_dir / deface_qc)
    pixels_qc = pixels_qc_pages(s.private_dir)
    html = _env().get_template("run_report.html.j2").render(
        version=__version__, profile=s.profile.source, when=dt.datetime.now().isoformat(timespec="seconds"),
        verdict="PASS" if ok else "FAIL", summary=summary, hits=audit.get("hits", []), defaced=defaced,
        review=audit.get("review", []), not_searched=audit.get("not_searched", []),
        withheld=withheld, withheld_other=other, left_out=left_out, deface_qc=deface_qc, pixels_qc=pixels_qc,
        written=sum(1 for v in records.values() if v["status"] in ("written", "defaced")),
    )
    out = s.private_dir / "report.html"
    write_private(out, html)
    write_private(s.private_dir / "run-summary.json", json.dumps(summary, indent=1) + "\n")
    return out
