"""MEG fine-calibration files are carried unchanged when they hold sensor numbers only."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SHARED

from bids_deid.formats import handler_for, megcal
from bids_deid.formats.base import Context

REAL = SHARED / "bids-examples" / "ds000248" / "sub-01" / "meg" / "sub-01_acq-calibration_meg.dat"
LINE = "MEG0113 -0.106600 0.046400 -0.060400 -0.012700 0.005700 -0.999903 -0.186801 -0.982403 " \
       "-0.003300 -0.981020 0.192489 0.022924 -0.008282\n"


def _cal(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "sub-01_acq-calibration_meg.dat"
    p.write_text(text)
    return p


def test_sensor_lines_carried_anything_else_withheld(tmp_path: Path) -> None:
    good = _cal(tmp_path, LINE * 3)
    assert handler_for(good) is megcal
    res = megcal.scrub(good, None, Context(rel_out="sub-x/meg/sub-x_acq-calibration_meg.dat"))
    assert not res.withheld and res.writes == {"sub-x/meg/sub-x_acq-calibration_meg.dat": good}
    for bad in (LINE + "# calibrated by Dr canary Smith\n", LINE.replace("MEG0113", "canary"), "", LINE[:40] + "\n"):
        res = megcal.scrub(_cal(tmp_path, bad), None, Context(rel_out="x"))
        assert res.withheld and not res.writes


def test_real_calibration_file_is_accepted() -> None:
    if not REAL.is_file():
        pytest.skip("bids-examples not present")
    res = megcal.scrub(REAL, None, Context(rel_out="x"))
    assert not res.withheld, res.withheld
