"""One-page HTML QC report of defacing results (renderings embedded as base64 PNG)."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import jinja2

from ..atomic import atomic_write_text
from ..deface.pipeline import DefaceResult
from .explain import FIGURES, metric_notes

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"
VIEWS = tuple((k, c, look) for k, c, look in FIGURES if k.startswith(("before", "after")))
FIGURES_BIG = tuple((k, c, look) for k, c, look in FIGURES if not k.startswith(("before", "after")))


def render_qc_report(results: list[tuple[str, DefaceResult]], out_html: Path) -> None:
    """Write the defacing QC page: summary table first, then one section per image.

    Parameters
    ----------
    results : list of (str, DefaceResult)
        Display name and result of each image.
    out_html : Path
        Output file; written atomically with mode 0600 (it shows faces: private).
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=jinja2.select_autoescape(["html", "j2"])
    )
    rows = []
    for name, res in results:
        faces = f"{_fmt(res.faces_before)}/{_fmt(res.faces_after)}"
        images = {k: base64.b64encode(v).decode("ascii") for k, v in (res.qc_images or {}).items()}
        rows.append(
            {
                "name": name,
                "passed": res.passed,
                "reason": res.reason,
                "faces": faces,
                "m": _Metrics(res.metrics or {}),
                "images": images,
            }
        )
    html = env.get_template("deface_qc.html.j2").render(
        results=rows,
        n_pass=sum(r["passed"] for r in rows),
        n_fail=sum(not r["passed"] for r in rows),
        views=VIEWS,
        figures=FIGURES_BIG,
        notes=metric_notes(),
    )
    atomic_write_text(out_html, html, perm=0o600)
    log.info("defacing QC report: %s (%d images)", out_html, len(rows))


def _fmt(value: int | None) -> str:
    return "n/a" if value is None else str(value)


class _Metrics(dict):
    """Dict whose missing keys render as an empty cell."""

    def __getattr__(self, key: str):
        return self.get(key, "")
