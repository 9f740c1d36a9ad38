"""Defacing QC report: one private HTML page with a summary table and embedded renderings."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import nibabel as nib

from bids_deid.deface import DefaceResult, deface_file, demo_head
from bids_deid.report.deface_qc import render_qc_report


def test_report_from_real_and_failed_results(tmp_path: Path) -> None:
    nib.save(demo_head(), str(tmp_path / "demo.nii.gz"))
    ok = deface_file(tmp_path / "demo.nii.gz", tmp_path / "out.nii.gz")
    failed = DefaceResult(False, "weak registration <script>", {"metric": -0.1}, {}, None, None)
    out = tmp_path / "private" / "deface_qc.html"
    render_qc_report([("sub-01_T1w", ok), ("sub-02_T2w", failed)], out)
    html = out.read_text()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert html.index("sub-01_T1w") < html.index("<section")  # summary table first
    assert html.count('class="pass"') >= 1 and html.count('class="fail"') >= 1
    assert "&lt;script&gt;" in html and "<script>" not in html  # escaped
    # every QC image of the passing result is embedded
    for png in ok.qc_images.values():
        assert base64.b64encode(png).decode() in html
    assert "n/a/n/a" in html  # results of a check that did not run are shown as such
    assert "cut_to_brain" in html or "mm to brain" in html
    assert not list(out.parent.glob(".bids-deid-tmp-*"))
