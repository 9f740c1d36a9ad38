"""The README's first command: ``bids-deid-demo OUT`` builds the demo, runs both levels and leaves a shareable output."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

from bids_deid.demo import FAKE


def test_demo_command_runs_and_publishes_no_canary(tmp_path):
    out = tmp_path / "demo-out"
    res = subprocess.run([sys.executable, "-m", "bids_deid.demo", str(out)], capture_output=True, text=True,
                         timeout=1800)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "leak audit: 0 hits" in res.stdout
    summary = json.loads((out / "output-private" / "run-summary.json").read_text())
    assert summary["validation"]["errors"] == 0
    assert (out / "output-private" / "report.html").stat().st_size > 0
    # an independent byte search of the public side: no planted value, in any spelling the demo uses
    needles = {v.encode().lower() for v in FAKE.values() if len(v) >= 6}
    needles |= {b"canary"}
    for f in (out / "output").rglob("*"):
        if f.is_file():
            blob = f.read_bytes()
            if blob[:2] == b"\x1f\x8b":
                blob = gzip.decompress(blob)
            low = blob.lower()
            assert not [n for n in needles if n in low], f
