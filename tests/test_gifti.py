"""GIFTI surfaces in derivatives: arrays kept exactly, free-form metadata removed, read back by nibabel."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.gifti import GiftiDataArray, GiftiImage, GiftiLabel, GiftiLabelTable, GiftiMetaData

from bids_deid.formats import gifti, handler_for
from bids_deid.formats.base import Context


def _surface(path: Path) -> GiftiImage:
    rng = np.random.default_rng(3)
    img = GiftiImage(meta=GiftiMetaData({"UserName": "canaryuser", "Date": "2019-03-14",
                                         "SubjectID": "sub-ab12cd", "CommandLine": "/home/canary/run.sh"}))
    img.add_gifti_data_array(GiftiDataArray(
        rng.normal(size=(50, 3)).astype(np.float32), intent="NIFTI_INTENT_POINTSET",
        meta=GiftiMetaData({"AnatomicalStructurePrimary": "CortexLeft", "GeometricType": "Pial",
                            "Provenance": "canary ran this"})))
    img.add_gifti_data_array(GiftiDataArray(rng.integers(0, 50, (40, 3)).astype(np.int32),
                                            intent="NIFTI_INTENT_TRIANGLE"))
    table = GiftiLabelTable()
    lab = GiftiLabel(key=1, red=1.0, green=0.0, blue=0.0, alpha=1.0)
    lab.label = "precentral"
    table.labels.append(lab)
    img.labeltable = table
    nib.save(img, path)
    return img


def test_gifti_arrays_kept_metadata_removed(tmp_path: Path) -> None:
    src = tmp_path / "sub-ab12cd_hemi-L_pial.surf.gii"
    before = _surface(src)
    assert handler_for(src) is gifti
    res = gifti.scrub(src, None, Context(rel_out="out.surf.gii", relabel=lambda s: s.replace("ab12cd", "X1")))
    assert not res.withheld
    dst = tmp_path / "out.surf.gii"
    dst.write_bytes(res.writes["out.surf.gii"])
    after = nib.load(dst)
    assert len(after.darrays) == 2
    for a, b in zip(after.darrays, before.darrays, strict=True):
        assert a.intent == b.intent and np.array_equal(a.data, b.data)
    assert dict(after.darrays[0].meta) == {"AnatomicalStructurePrimary": "CortexLeft", "GeometricType": "Pial"}
    assert dict(after.meta) == {}
    assert [lb.label for lb in after.labeltable.labels] == ["precentral"]
    for needle in (b"canary", b"2019-03-14", b"ab12cd"):
        assert needle not in dst.read_bytes()
    met = {k for k, _v in res.log.identifiers}
    assert {"gifti:UserName", "gifti:SubjectID", "gifti:Provenance"} <= met  # the audit searches them


def test_external_data_and_entities_withheld(tmp_path: Path) -> None:
    src = tmp_path / "x.func.gii"
    src.write_text('<?xml version="1.0"?><GIFTI Version="1.0" NumberOfDataArrays="1"><DataArray '
                   'Encoding="ExternalFileBinary" ExternalFileName="/home/jdoe/data.bin"/></GIFTI>')
    assert gifti.scrub(src, None, Context(rel_out="x")).withheld
    src.write_text('<?xml version="1.0"?><!DOCTYPE GIFTI [<!ENTITY a "aaaa">]><GIFTI>&a;</GIFTI>')
    assert gifti.scrub(src, None, Context(rel_out="x")).withheld
