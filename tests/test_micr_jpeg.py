"""JPEG-compressed slides and OME-TIFFs (the usual case: Aperio SVS tiles are JPEG) are carried,
their compressed tiles copied unchanged (no second lossy encoding), not withheld for want of a codec."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile  # noqa: E402  (imagecodecs, a dependency, gives it the JPEG codec)
from conftest import SHARED, canary_hits

from bids_deid.cli import main


def _tiles(path: Path, level: int = 0) -> list[bytes]:
    with tifffile.TiffFile(path) as t:
        page = t.series[0].levels[level].pages[0] if t.series else t.pages[0]
        fh = t.filehandle
        out = []
        for off, n in zip(page.dataoffsets, page.databytecounts, strict=True):
            fh.seek(off)
            out.append(fh.read(n))
        return out


def test_jpeg_svs_to_bids_micr_tiles_unchanged(tmp_path: Path, key_file: Path, capsys) -> None:
    raw = tmp_path / "raw" / "case7"
    raw.mkdir(parents=True)
    yy, xx = np.mgrid[0:512, 0:512]
    base = np.stack([(xx // 2) % 256, (yy // 2) % 256, ((xx + yy) // 4) % 256], -1).astype(np.uint8)
    desc = ("Aperio Image Library v12.0.15 \r\n512x512 [0,0 512x512] (256x256) JPEG/RGB Q=70|AppMag = 20|"
            "ScanScope ID = SS1302|Filename = canaryDOE_MRN7788|Date = 07/02/15|User = canaryuser|MPP = 0.5")
    svs = raw / "canaryDOE.svs"
    with tifffile.TiffWriter(svs) as tw:
        tw.write(base, tile=(256, 256), compression="jpeg", photometric="rgb", description=desc, metadata=None,
                 software="Aperio", datetime="2015:07:02 10:30:55")
        tw.write(base[::2, ::2], tile=(256, 256), compression="jpeg", photometric="rgb", subfiletype=1,
                 metadata=None, description="Aperio Image Library v12.0.15 \r\n256x256 (256x256) JPEG/RGB Q=70")
    out = tmp_path / "out"
    opts = ["--key-file", str(key_file), "--deface-method", "none"]
    assert main([str(tmp_path / "raw"), str(out), "participant", *opts]) == 0
    assert main([str(tmp_path / "raw"), str(out), "group", *opts]) == 0
    text = capsys.readouterr().out
    assert "validator: 0 errors" in text and "leak audit: 0 hits" in text, text
    omes = sorted(out.glob("sub-*/micr/*_BF.ome.tif"))
    assert len(omes) == 1, sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert _tiles(omes[0]) == _tiles(svs)  # compressed tiles copied as they were
    with tifffile.TiffFile(omes[0]) as t, tifffile.TiffFile(svs) as s:
        assert np.array_equal(t.series[0].levels[0].asarray(), s.pages[0].asarray())
    assert canary_hits(out, (b"canary", b"MRN7788", b"SS1302", b"2015:07:02")) == []


@pytest.mark.skipif(not (SHARED / "bids-examples" / "micr_SPIM").is_dir(), reason="bids-examples not present")
def test_jpeg_ome_tiff_in_bids_input_carried(tmp_path: Path, key_file: Path) -> None:
    src = tmp_path / "in"
    shutil.copytree(SHARED / "bids-examples" / "micr_SPIM", src)
    out = tmp_path / "out"
    assert main([str(src), str(out), "participant", "--key-file", str(key_file), "--deface-method", "none",
                 "--skip-bids-validation"]) == 0
    ins = sorted(src.rglob("*_SPIM.ome.tif"))
    outs = sorted(out.rglob("*_SPIM.ome.tif"))
    assert ins and len(outs) == len(ins)
    for a in outs:
        with tifffile.TiffFile(a) as t:
            assert t.pages[0].compression == 7  # still JPEG, now readable
