"""The format registry: every module has the one interface, the registry finds each format from its
content, and what a module's ``scrub`` returns (written by the one writer) is the file the format's
own scrubber wrote before."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import SHARED, canary_hits, needs_shared

from bids_deid import formats
from bids_deid.dataset import classify
from bids_deid.errors import InputError
from bids_deid.formats import analyze, minc, nifti, parrec, sidecar, tabular, twix, wsi
from bids_deid.formats.base import Context, Outcome, write_outcome
from bids_deid.formats.nifti import scrub_nifti_file
from bids_deid.profiles import load_profile

PROFILE = load_profile("basic")


@pytest.mark.parametrize("mod", formats.ALL, ids=lambda m: m.NAME)
def test_every_module_has_the_interface(mod):
    assert isinstance(mod.NAME, str) and mod.NAME
    for name in ("sniff", "companions", "scrub"):
        assert callable(getattr(mod, name)), name
    if mod in formats.IMAGES or mod in formats.ROUTED:
        assert all(s == s.lower() and s.startswith(".") for s in mod.COMPANION_SUFFIXES)
    if mod in formats.CONVERTIBLE:
        assert callable(mod.to_nifti)
    assert formats.by_name(mod.NAME) is mod


def test_names_are_unique_and_companion_extensions_listed_once():
    names = [m.NAME for m in formats.ALL]
    assert len(names) == len(set(names))
    assert formats.companion_suffixes() == (".img", ".mat", ".rec")
    # the subject-folder classification asks the registry, so the two cannot drift apart
    for ext in formats.companion_suffixes():
        assert classify(f"sub-a/anat/sub-a_T1w{ext}")[0] == "companion"
    for ext in formats.header_suffixes():
        assert classify(f"sub-a/anat/sub-a_T1w{ext}")[0] == "convert"


def _analyze(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    img = nib.AnalyzeImage(np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6), np.eye(4))
    img.header["descrip"] = b"DOE^JANE scanned 20240101"
    nib.save(img, str(folder / "a.hdr"))
    return folder / "a.hdr"


def test_registry_sniffs_by_content(tmp_path):
    hdr = _analyze(tmp_path / "an")
    assert formats.image_format(hdr) is analyze
    fake = tmp_path / "x.hdr"
    fake.write_bytes(b"not an analyze header")
    assert formats.image_format(fake) is None  # a name is not enough
    nii = tmp_path / "b.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4)), str(nii))
    assert formats.handler_for(nii, formats.ROUTED) is nifti
    assert formats.handler_for(nii) is None  # routed by name, not a registry format
    assert analyze.companions(hdr) == [hdr.with_suffix(".img")]


def test_analyze_outcome_is_pure_until_written(tmp_path):
    hdr = _analyze(tmp_path / "in")
    res = analyze.scrub(hdr, PROFILE, Context(rel_out="src/a.hdr"))
    assert set(res.writes) == {"src/a.img", "src/a.hdr"}
    assert not (tmp_path / "out").exists()  # nothing written by the scrubber
    assert ("Analyze descrip", "DOE^JANE scanned 20240101") in res.log.identifiers
    write_outcome(tmp_path / "out", res)
    assert canary_hits(tmp_path / "out", (b"DOE^JANE", b"20240101")) == []
    a, b = nib.load(str(hdr)), nib.load(str(tmp_path / "out" / "src" / "a.hdr"))
    assert np.array_equal(a.get_fdata(), b.get_fdata())


def test_analyze_truncated_raises_before_anything_is_written(tmp_path):
    hdr = _analyze(tmp_path / "in")
    img = hdr.with_suffix(".img")
    img.write_bytes(img.read_bytes()[:10])
    with pytest.raises(InputError, match="truncated"):
        analyze.scrub(hdr, PROFILE, Context(rel_out="a.hdr"))


def test_nifti_outcome_writes_the_same_bytes_as_the_file_scrubber(tmp_path):
    src = tmp_path / "sub-a_T1w.nii.gz"
    img = nib.Nifti1Image(np.random.default_rng(0).integers(0, 99, (6, 7, 8)).astype(np.int16), np.eye(4))
    img.header["descrip"] = b"DOE^JANE"
    img.header["db_name"] = b"MRN1234"
    nib.save(img, str(src))
    log = nifti.ScrubLog()
    scrub_nifti_file(src, tmp_path / "ref" / src.name, PROFILE, log)
    res = nifti.scrub(src, PROFILE, Context(rel_out=f"out/{src.name}"))
    assert callable(res.writes[f"out/{src.name}"])  # streamed: the image is not held in memory
    assert res.log.changes == log.changes and res.log.identifiers == log.identifiers
    write_outcome(tmp_path, res)
    new = tmp_path / "out" / src.name
    assert new.read_bytes() == (tmp_path / "ref" / src.name).read_bytes()
    assert b"DOE^JANE" not in gzip.decompress(new.read_bytes())


def test_nifti_outcome_of_a_truncated_file_raises(tmp_path):
    src = tmp_path / "a.nii"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), str(src))
    src.write_bytes(src.read_bytes()[:-100])
    res = nifti.scrub(src, PROFILE, Context(rel_out="a.nii"))
    with pytest.raises(InputError, match="truncated"):
        write_outcome(tmp_path / "out", res)
    assert not (tmp_path / "out" / "a.nii").exists()  # the one writer leaves no half file


def test_sidecar_and_table_modules_relabel_and_scrub(tmp_path):
    side = tmp_path / "sub-a_task-x_bold.json"
    side.write_text('{"RepetitionTime": 2, "InstitutionName": "St Elsewhere", "IntendedFor": "sub-a/x"}')
    ctx = Context(rel_out="sub-b/func/sub-b_task-x_bold.json", relabel=lambda s: s.replace("sub-a", "sub-b"))
    res = sidecar.scrub(side, PROFILE, ctx)
    text = res.writes[ctx.rel_out].decode()
    assert "St Elsewhere" not in text and '"RepetitionTime": 2' in text and "sub-b/x" in text
    scans = tmp_path / "sub-a_scans.tsv"
    scans.write_text("filename\tacq_time\toperator\nanat/sub-a_T1w.nii.gz\t2020-01-01T10:00:00\tJD\n"
                     "anat/sub-a_T2w.nii.gz\t2020-01-01T11:00:00\tJD\n")
    ctx = Context(rel_out="sub-b/sub-b_scans.tsv", offset_days=10, relabel=lambda s: s.replace("sub-a", "sub-b"),
                  in_output=lambda rel: rel.endswith("T1w.nii.gz"))
    res = tabular.scrub(scans, PROFILE, ctx)
    assert res.writes[ctx.rel_out] == b"filename\tacq_time\nanat/sub-b_T1w.nii.gz\t2020-01-11T10:00:00\n"


@needs_shared
def test_minc_and_parrec_outcomes(tmp_path):
    src = SHARED / "minc" / "minc2_1_scale.mnc"
    assert formats.image_format(src) is minc
    res = minc.scrub(src, PROFILE, Context(rel_out="m.mnc"))
    write_outcome(tmp_path, res)
    assert np.allclose(nib.load(str(src)).get_fdata(), nib.load(str(tmp_path / "m.mnc")).get_fdata(), atol=1e-4)
    assert res.log.changes  # the attributes left out are logged while the file is rebuilt
    par = SHARED / "parrec" / "phantom_EPI_asc_CLEAR_2_1.PAR"
    assert formats.image_format(par) is parrec
    res = parrec.scrub(par, PROFILE, Context(rel_out="p/x.PAR"))
    assert list(res.writes) == ["p/x.PAR", "p/x.REC"] and res.writes["p/x.REC"] == par.with_suffix(".REC")
    write_outcome(tmp_path, res)
    assert canary_hits(tmp_path / "p", (b"phantom", b"2014.02.14")) == []


@needs_shared
def test_twix_outcome_same_as_scrub_twix(tmp_path):
    src = SHARED / "twix" / "epi.dat"
    if not src.exists():
        pytest.skip("shared twix data absent")
    changes, idents = twix.scrub_twix(src, tmp_path / "ref.dat", "sub-x")
    res = twix.scrub(src, PROFILE, Context(rel_out="t.dat", subject="x"))
    assert res.log.changes == changes and res.log.identifiers == idents
    write_outcome(tmp_path, res)
    assert (tmp_path / "t.dat").read_bytes() == (tmp_path / "ref.dat").read_bytes()


def test_tiff_without_image_pages_raises_before_writing(tmp_path):
    import tifffile

    src = tmp_path / "s.tif"
    tifffile.imwrite(src, np.zeros((16, 16), np.uint8), description="label", subfiletype=9)
    assert formats.image_format(src) is wsi
    with pytest.raises(InputError, match="no image page"):
        wsi.scrub(src, PROFILE, Context(rel_out="o.tif"))
    assert not (tmp_path / "o.tif").exists()


def test_outcome_withhold_carries_reason():
    res = Outcome.withhold("because")
    assert res.withheld == "because" and not res.writes


def test_the_profile_governs_analyze_descrip(tmp_path):
    from dataclasses import replace

    hdr = _analyze(tmp_path / "in")
    keep = replace(PROFILE, nifti_keep_descrip=True)
    kept = analyze.scrub(hdr, keep, Context(rel_out="a.hdr")).writes["a.hdr"]
    gone = analyze.scrub(hdr, PROFILE, Context(rel_out="a.hdr")).writes["a.hdr"]
    assert b"DOE^JANE scanned 20240101" in kept and b"DOE^JANE" not in gone
