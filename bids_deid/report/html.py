"""The run report: one HTML page in the private dir, rendered with jinja2.

Every count on the page comes from one list (a card and the table it summarises cannot
disagree); each withheld file has an anchor with its reason, what that reason means and what to
do; each defaced image has captioned pictures with "what to look for" and one line per number.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
from pathlib import Path

import jinja2

from .. import __version__
from ..config import Settings
from ..private import read_json, write_private
from .explain import FIGURES, metric_notes, reason_note
from .removed import CLASSES, summarize

#: statuses of files that are in the public output
PUBLIC = ("written", "defaced")
#: statuses of raw series (not files): how the report shows each
SERIES_STATUS = {"converted": "ok", "sourcedata": "", "left out": "warn"}


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("bids_deid", "report/templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )


def _states(private_dir: Path) -> list[tuple[str, dict]]:
    return [(f.stem, read_json(f, {}) or {}) for f in sorted((private_dir / "state").glob("*.json"))]


def collect_records(private_dir: Path) -> dict[str, dict]:
    """Every file record of every subject state and of the dataset level."""
    records: dict[str, dict] = {}
    for _name, state in _states(private_dir):
        records.update(state.get("records", {}))
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


def _originals(private_dir: Path) -> dict[str, str]:
    """Pseudonym -> original label (PRIVATE: this page lives in the private dir)."""
    out = {}
    path = private_dir / "mapping.tsv"
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines()[1:]:
            cols = line.split("\t")
            if len(cols) >= 2:
                out[cols[1].removeprefix("sub-")] = cols[0]
    return out


def _fmt(v) -> str:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def build_context(s: Settings, summary: dict) -> dict:
    """Everything the page shows, as plain data (also what the tests read)."""
    p = s.private_dir
    states = _states(p)
    records: dict[str, dict] = {}
    for _name, state in states:
        records.update(state.get("records", {}))
    files = {k: v for k, v in records.items() if not k.startswith("raw series ")}
    withheld = [{"rel": k, **v} for k, v in sorted(files.items()) if v["status"] not in PUBLIC + ("left out",)]
    for i, w in enumerate(withheld, 1):
        w["anchor"] = f"withheld-{i}"
        w["note"] = reason_note(w.get("reason", ""))
    anchor_of = {w["rel"]: w["anchor"] for w in withheld}
    images = []
    notes = metric_notes()
    for rel, r in sorted(files.items()):
        if "metrics" not in r:
            continue
        m = dict(r.get("metrics") or {})
        rows = [(k, _fmt(v), notes.get(k, "")) for k, v in m.items()]
        rows.append(("faces", f"{r.get('faces_before')}/{r.get('faces_after')}", notes["faces"]))
        figs = [(key, (r.get("qc") or {}).get(key), cap, look) for key, cap, look in FIGURES
                if (r.get("qc") or {}).get(key)]
        images.append({"rel": rel, "status": r["status"], "reason": r.get("reason", ""), "record": r,
                       "anchor": anchor_of.get(rel, f"image-{len(images) + 1}"), "rows": rows, "figures": figs})
    originals = _originals(p)
    subjects = []
    for name, state in states:
        if not name.startswith("sub-"):
            continue
        recs = state.get("records", {})
        counts: dict[str, int] = {}
        for r in recs.values():
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        label = name.removeprefix("sub-")
        subjects.append({"label": name, "original": originals.get(label, ""), "counts": counts,
                         "withheld": [(k, anchor_of[k]) for k in sorted(recs) if k in anchor_of]})
    series, problems = [], []
    for _name, state in states:
        problems += state.get("problems", [])
        for k, r in sorted(state.get("records", {}).items()):
            if k.startswith("raw series "):
                name = f"{r.get('series_number') or ''} {r.get('description') or ''}".strip()
                series.append({"token": k.removeprefix("raw series "), "name": name,
                               "status": r["status"], "css": SERIES_STATUS.get(r["status"], ""),
                               "bids_name": r.get("bids_name") or "", "reason": r.get("reason", "")})
    removed = summarize(p, files)
    removed_rows = [{"id": c, "title": t, "what": what, "changes": removed[c].changes, "files": len(removed[c].files),
                     "fields": removed[c].top_fields(), "more": max(0, len(removed[c].fields) - 8)}
                    for c, t, what in CLASSES]
    left_out = [(k, v) for k, v in sorted(files.items()) if v["status"] == "left out"]
    defaced = [k for k, v in sorted(files.items()) if v["status"] == "defaced"]
    ok = summary["validation"]["errors"] == 0 and summary["audit"]["hits"] == 0
    audit = read_json(p / "leak-audit.json", {}) or {}
    method = getattr(s, "deface_method", "template")
    affirm = "--affirmConsent" if method == "none" else "--affirmDefaced"
    return {
        "version": __version__, "profile": s.profile.source, "when": dt.datetime.now().isoformat(timespec="seconds"),
        "verdict": "PASS" if ok else "FAIL", "summary": summary,
        "hits": audit.get("hits", []), "review": audit.get("review", []), "not_searched": audit.get("not_searched", []),
        "images": images, "n_defaced": len(defaced), "n_images_withheld": sum(i["status"] != "defaced" for i in images),
        "withheld": withheld, "left_out": left_out, "subjects": subjects, "series": series, "problems": problems,
        "removed": removed_rows, "pixels_qc": pixels_qc_pages(p), "deface_qc": "deface-qc.html" if images else "",
        "written": sum(1 for v in files.values() if v["status"] in PUBLIC),
        "openneuro": summary.get("openneuro", []), "deface_method": method,
        "upload": f"openneuro upload {affirm} {shlex.quote(str(getattr(s, 'output_dir', 'OUT_DIR')))}",
    }


def write_run_report(s: Settings, summary: dict) -> Path:
    """Render ``report.html`` into the private dir and return its path."""
    ctx = build_context(s, summary)
    if ctx["images"]:
        from .deface_qc import render_qc_report

        items = [(i["rel"], i["record"]) for i in ctx["images"]]
        render_qc_report(list(_deface_results(items, s.private_dir)), s.private_dir / "deface-qc.html")
    html = _env().get_template("run_report.html.j2").render(**ctx)
    out = s.private_dir / "report.html"
    write_private(out, html)
    write_private(s.private_dir / "run-summary.json", json.dumps(summary, indent=1) + "\n")
    return out
