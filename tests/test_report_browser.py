"""The run report as a data steward sees it: a real run, then the page in headless Chromium.

Checks that the page renders, that every figure loads, that the counts agree with the tables they
summarise, that each withheld file links to its reason, and that "what was removed" counts the
classes the run really removed. Chromium comes from Debian (``apt-get install chromium``); the
browser part skips, saying so, where it is not installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bids_deid.cli import main

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")


class _Page(HTMLParser):
    """Ids, links, images and card values of a page (the standard library's parser, no regex on HTML)."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.images: list[dict] = []
        self.cards: dict[str, str] = {}
        self._card: list[str] | None = None
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("href", "").startswith("#"):
            self.links.append(a["href"][1:])
        if tag == "img":
            self.images.append(a)
        if tag == "div" and a.get("class") == "card":
            self._card, self._depth = [], 0
        elif self._card is not None and tag == "div":
            self._depth += 1

    def handle_endtag(self, tag):
        if tag == "div" and self._card is not None:
            if self._depth == 0:
                text = " ".join(self._card).split()
                self.cards[" ".join(text[:2]) if text[:2] == ["Validator", "errors"] else text[0]] = " ".join(text)
                self._card = None
            else:
                self._depth -= 1

    def handle_data(self, data):
        if self._card is not None and data.strip():
            self._card.append(data.strip())


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One real run on the demo dataset with a realistic head: defacing on, a face-bearing DICOM withheld."""
    from bids_deid.deface import demo_head
    from bids_deid.demo import build_demo_dataset
    from bids_deid.pseudonym import generate_key

    tmp = tmp_path_factory.mktemp("report")
    ds = build_demo_dataset(tmp / "input", head=demo_head())
    key = generate_key(tmp / "k.key")
    out = tmp / "out"
    common = [str(ds), str(out)]
    opts = ["--key-file", str(key), "--participant-label", "canary01", "--license", "CC0"]
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(common + ["participant", *opts]) == 0
        participant_out = buf.getvalue()
        assert main(common + ["group", *opts]) == 0, buf.getvalue()
    private = tmp / "out-private"
    html = (private / "report.html").read_text()
    page = _Page()
    page.feed(html)
    return {"private": private, "html": html, "page": page, "out": out, "participant_out": participant_out}


def test_participant_line_gives_each_withheld_file_and_reason(run):
    lines = run["participant_out"].splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("sub-"))
    n = int(re.search(r"(\d+) withheld", lines[head]).group(1))
    held = [ln.strip() for ln in lines[head + 1:] if ln.startswith("  withheld: ")]
    assert n >= 1 and len(held) == n
    assert all(ln.count(": ") >= 2 and "face" in ln for ln in held)  # file: reason


def test_counts_agree_with_tables(run):
    page, html = run["page"], run["html"]
    withheld_rows = [i for i in page.ids if i.startswith("withheld-")]
    card = page.cards["Withheld"]
    assert int(card.split()[2]) == len(withheld_rows) >= 1, card
    defaced_sections = html.count("defaced, written</span>")
    assert int(page.cards["Defaced"].split()[2]) == defaced_sections == 1
    assert "every image passed" in page.cards["Defaced"]


def test_every_withheld_link_resolves(run):
    page = run["page"]
    targets = [link for link in page.links if link.startswith("withheld-")]
    assert targets, "no link to a withheld file's reason"
    assert set(targets) <= page.ids
    # the subject table links each of its withheld files
    assert set(targets) == {i for i in page.ids if i.startswith("withheld-")}


def test_what_was_removed_counts_real_changes(run):
    from bids_deid.report.html import collect_records
    from bids_deid.report.removed import summarize

    counts = summarize(run["private"], collect_records(run["private"]))
    # the demo plants patient names, IDs, dates, an institution, NIfTI text and extensions, and a face
    for cls in ("names", "ids", "dates", "institutions", "free_text", "extensions", "faces"):
        assert counts[cls].changes > 0, cls
    html = run["html"]
    for field in ("PatientName", "InstitutionName", "extension["):
        assert field in html
    # captions and one line per number
    assert "What to look for" in html
    assert re.search(r"<code>brain_dice</code></td><td[^>]*>[\d.]+</td><td[^>]*>\w", html)
    # the original label is shown on the private side, the public name too
    assert "sub-canary01" in html


def test_readme_states_deidentification_without_identifiers(run):
    readme = (run["out"] / "README").read_text()
    assert "de-identified with bids-deid" in readme
    defaced = [ln.strip()[2:] for ln in readme.splitlines() if ln.strip().startswith("- sub-")]
    assert len(defaced) == 1 and defaced[0].endswith("_T1w.nii.gz") and (run["out"] / defaced[0]).is_file()
    assert "canary" not in readme.lower()
    assert "De-identified with bids-deid" in (run["out"] / "CHANGES").read_text().splitlines()[1]


def _chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@needs_chromium
def test_report_renders_and_figures_load_in_chromium(run, tmp_path):
    url = (run["private"] / "report.html").as_uri()
    dom = _chromium("--virtual-time-budget=10000", "--dump-dom", url, tmp=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = _Page()
    page.feed(dom.stdout)
    figures = [i for i in page.images if "data-qc" in i]
    assert len(figures) >= 6  # four renderings, the mask outline and the registration check
    missing = [i["src"] for i in figures if "missing" in (i.get("class") or "")]
    assert not missing, f"figures that did not load: {missing}"
    assert all(int(i.get("data-loaded", "0")) > 0 for i in figures), [i.get("src") for i in figures]
    assert "What was removed" in dom.stdout and "PASS" in dom.stdout
    shot = tmp_path / "report.png"
    res = _chromium("--window-size=1280,2400", f"--screenshot={shot}", url, tmp=tmp_path)
    assert res.returncode == 0 and shot.stat().st_size > 50_000  # a drawn page, not a blank one


@pytest.mark.slow
@needs_chromium
def test_a_missing_figure_is_visible_in_chromium(run, tmp_path):
    # the page says when a picture is gone (moved private dir, deleted qc/)
    private = tmp_path / "copy"
    shutil.copytree(run["private"], private)
    victim = next((private / "qc").rglob("*_after_front.png"))
    victim.unlink()
    dom = _chromium("--virtual-time-budget=10000", "--dump-dom", (private / "report.html").as_uri(), tmp=tmp_path)
    page = _Page()
    page.feed(dom.stdout)
    broken = [i for i in page.images if "missing" in (i.get("class") or "")]
    assert [Path(i["src"]).name for i in broken] == [victim.name]
