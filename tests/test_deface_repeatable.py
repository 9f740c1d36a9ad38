"""Defacing the same real head twice gives the same bytes (a rerun or a resumed run must publish
exactly what an uninterrupted one does). The registration's multi-threaded metric used to make a
0.7 mm head come out 130 voxels different from one run to the next."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SHARED

from bids_deid.deface import deface_file

HEAD = SHARED / "heads" / "controls" / "studyforrest_t1_defaced.nii.gz"


@pytest.mark.slow
@pytest.mark.skipif(not HEAD.is_file(), reason="../shared/data/heads is not present")
def test_same_head_same_bytes(tmp_path: Path) -> None:
    outs = []
    for i in range(2):
        dst = tmp_path / f"run{i}.nii.gz"
        assert deface_file(HEAD, dst, qc=False).passed
        outs.append(dst.read_bytes())
    assert outs[0] == outs[1]
