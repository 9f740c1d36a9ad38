"""Adversarial privacy review through the App: each test plants an identifier where a
scrubber could miss it and proves it never reaches the public output (or that the leak
audit catches it, where the value is carried over by design)."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import CANARY_DATES, canary_hits, run_both, run_level, tree_digest

from bids_deid.cli import main
from bids_deid.demo import FAKE, build_demo_dataset

SUB = "sub-canary01"
SES = f"{SUB}/ses-01"


_run, _both = run_level, run_both


@pytest.fixture
def ds(tmp_path: Path) -> Path:
    return build_demo_dataset(tmp_path / "input", dicom=False)


def _hits(tmp_path: Path) -> list[dict]:
    return json.loads((tmp_path / "out-private" / "leak-audit.json").read_text())["hits"]


def _records(tmp_path: Path) -> dict:
    recs = {}
    for f in (tmp_path / "out-private" / "state").glob("*.json"):
        recs.update(json.loads(f.read_text()).get("records", {}))
    return recs


# ------------------------------------------------------------------ file names
def test_identifier_in_acq_label_is_caught_by_audit(tmp_path, ds, key_file):
    """A patient name met in a sidecar, reused as an acq- label: the audit must fail the run."""
    func = ds / SES / "func"
    for f in list(func.glob("*_bold.*")):
        f.rename(f.with_name(f.name.replace("_task-rest_", "_task-rest_acq-CANARYSMITH_")))
    (ds / SES / f"{SUB}_ses-01_scans.tsv").unlink()
    assert _both(ds, tmp_path / "out", key_file) == 3
    assert any(h["where"] == "file name" and "acq-CANARYSMITH" in h["file"] for h in _hits(tmp_path))


def test_non_bids_file_name_in_subject_folder_left_out(tmp_path, ds, key_file):
    """A .json/.tsv named after the patient (not a BIDS name) must not be written."""
    anat = ds / SES / "anat"
    (anat / "jane_canarysmith_notes.tsv").write_text("a\tb\n1\t2\n")
    (anat / "canary_extra.json").write_text('{"RepetitionTime": 2}\n')
    assert _both(ds, tmp_path / "out", key_file) == 0
    assert canary_hits(tmp_path / "out") == []
    left = [k for k, v in _records(tmp_path).items() if v["status"] == "left out"]
    assert any(k.endswith("jane_canarysmith_notes.tsv") for k in left)


# ------------------------------------------------------------------ gzip headers
def _gz_with_header(payload: bytes, fname: str) -> bytes:
    import io

    buf = io.BytesIO()
    with gzip.GzipFile(filename=fname, mode="wb", fileobj=buf, mtime=1552555613) as gz:
        gz.write(payload)
    return buf.getvalue()


def test_physio_tsv_gz_header_is_not_copied(tmp_path, ds, key_file):
    """gzip FNAME (the original file name) and mtime of an input .tsv.gz must not be copied."""
    func = ds / SES / "func"
    stem = f"{SUB}_ses-01_task-rest_physio"
    (func / f"{stem}.tsv.gz").write_bytes(_gz_with_header(b"1\t2\n3\t4\n", "/home/CANARYSMITH/physio_canary.tsv"))
    (func / f"{stem}.json").write_text(json.dumps({"SamplingFrequency": 50, "StartTime": 0,
                                                   "Columns": ["cardiac", "respiratory"]}))
    assert _both(ds, tmp_path / "out", key_file) == 0
    out = tmp_path / "out"
    assert canary_hits(out) == []
    written = next(out.rglob("*_physio.tsv.gz")).read_bytes()
    assert written[3] & 0x1E == 0  # no FNAME/FCOMMENT/FEXTRA/FHCRC
    assert written[4:8] == b"\0\0\0\0"  # mtime 0: no timestamp
    assert gzip.decompress(written) == b"1\t2\n3\t4\n"


def test_nifti_gz_input_header_not_copied(tmp_path, ds, key_file):
    f = next((ds / SES / "func").glob("*_bold.nii.gz"))
    f.write_bytes(_gz_with_header(gzip.decompress(f.read_bytes()), "CANARYSMITH_bold.nii"))
    assert _both(ds, tmp_path / "out", key_file) == 0
    assert canary_hits(tmp_path / "out") == []


def test_corrupt_tsv_gz_is_withheld_and_input_untouched(tmp_path, ds, key_file, capsys):
    func = ds / SES / "func"
    whole = _gz_with_header("".join(f"{i}\t{i * i}\n" for i in range(5000)).encode(), "x")
    (func / f"{SUB}_ses-01_task-rest_physio.tsv.gz").write_bytes(whole[: len(whole) // 2])
    before = tree_digest(ds)
    rc = _run(ds, tmp_path / "out", key_file, "participant")
    text = capsys.readouterr().out
    held = [ln for ln in text.splitlines() if "withheld:" in ln and "_physio.tsv.gz" in ln]
    assert rc == 0 and held and "gzip" in held[0], text  # withheld with its reason; the run goes on
    assert not list((tmp_path / "out").rglob("*_physio.tsv.gz"))
    assert tree_digest(ds) == before
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.startswith(".bids-deid-tmp")]


# ------------------------------------------------------------------ JSON
def test_identifier_in_kept_free_text_field_caught(tmp_path, ds, key_file):
    side = ds / SES / "func" / f"{SUB}_ses-01_task-rest_bold.json"
    obj = json.loads(side.read_text())
    obj["Instructions"] = "Ask Jane CanarySmith to keep her eyes open"
    side.write_text(json.dumps(obj))
    assert _both(ds, tmp_path / "out", key_file) == 3
    assert any(h["file"].endswith("_bold.json") for h in _hits(tmp_path))


@pytest.mark.parametrize("field", ["Sources", "RawSources", "IntendedFor", "AssociatedEmptyRoom"])
def test_original_labels_in_path_fields_are_relabelled(tmp_path, ds, key_file, field):
    side = ds / SES / "func" / f"{SUB}_ses-01_task-rest_bold.json"
    obj = json.loads(side.read_text())
    value = f"bids::{SUB}/ses-01/anat/{SUB}_ses-01_T1w.nii.gz"
    obj[field] = value if field == "AssociatedEmptyRoom" else [value, "bids:raw:" + value[6:]]
    side.write_text(json.dumps(obj))
    assert _both(ds, tmp_path / "out", key_file, "--dataset-type", "derivative") == 0
    out = tmp_path / "out"
    assert canary_hits(out) == []
    text = next(out.rglob("*_task-rest_bold.json")).read_text()
    if field in json.loads(text):
        assert "_ses-01_T1w.nii.gz" in text


def test_json_with_bom_and_duplicate_keys(tmp_path, ds, key_file):
    side = ds / SES / "anat" / f"{SUB}_ses-01_T1w.json"
    side.write_bytes(b"\xef\xbb\xbf" + b'{"RepetitionTime": 2.3, "InstitutionName": "Canary A", '
                     b'"InstitutionName": "Canary B", "EchoTime": 0.002}')
    assert _both(ds, tmp_path / "out", key_file) == 0
    assert canary_hits(tmp_path / "out") == []


# ------------------------------------------------------------------ TSV
def test_name_in_events_free_text_caught(tmp_path, ds, key_file):
    ev = ds / SES / "func" / f"{SUB}_ses-01_task-rest_events.tsv"
    ev.write_text("onset\tduration\ttrial_type\tnote\n0\t10\trest\tCANARYSMITH said ok\n")
    assert _both(ds, tmp_path / "out", key_file) == 3
    assert any(h["file"].endswith("_events.tsv") for h in _hits(tmp_path))


def test_participants_tsv_crlf_and_spaces(tmp_path, ds, key_file):
    p = ds / "participants.tsv"
    rows = p.read_text().splitlines()
    rows[1] = rows[1].replace("sub-canary01", " sub-canary01 ")
    p.write_bytes(("\r\n".join(rows) + "\r\n").encode())
    assert _both(ds, tmp_path / "out", key_file) == 0
    assert canary_hits(tmp_path / "out") == []
    text = (tmp_path / "out" / "participants.tsv").read_bytes()
    assert b"\r" not in text and len(text.splitlines()) == 3


def test_participant_id_in_other_case_is_dropped_not_copied(tmp_path, ds, key_file):
    """A row whose participant_id matches no folder (other case, quotes) never reaches the output."""
    p = ds / "participants.tsv"
    p.write_text(p.read_text().replace("sub-canary02", "SUB-CANARY02").replace("sub-canary01", '"sub-canary01"'))
    assert _run(ds, tmp_path / "out", key_file, "participant") == 0
    _run(ds, tmp_path / "out", key_file, "group")  # the validator may object to the missing rows
    assert canary_hits(tmp_path / "out") == []


def test_participants_lookalike_root_files_not_copied(tmp_path, ds, key_file):
    """participants.csv / participants.tsv.bak are not BIDS files: never copied verbatim."""
    (ds / "participants.csv").write_text("id,name\ncanary01,Jane CanarySmith\n")
    (ds / "participants.tsv.orig").write_text("participant_id\tname\nsub-canary01\tJane CanarySmith\n")
    assert _both(ds, tmp_path / "out", key_file) == 0
    assert canary_hits(tmp_path / "out") == []


def test_participants_json_without_tsv_is_filtered(tmp_path, ds, key_file):
    (ds / "participants.tsv").unlink()
    (ds / "phenotype").mkdir()
    (ds / "phenotype" / "moca.json").write_text(json.dumps({"rater": {"Description": "Dr Canary Who"}}))
    assert _both(ds, tmp_path / "out", key_file) == 0
    assert canary_hits(tmp_path / "out") == []


# ------------------------------------------------------------------ NIfTI
def _bold(ds: Path) -> Path:
    return next((ds / SES / "func").glob("*_bold.nii.gz"))


def _plain_nifti(ds: Path, *, big_endian=False, version=1) -> tuple[Path, bytes]:
    src = _bold(ds)
    img = nib.load(src)
    data = np.asanyarray(img.dataobj)
    cls = nib.Nifti2Image if version == 2 else nib.Nifti1Image
    hdr = cls.header_class(endianness=">" if big_endian else "<")
    new = cls(data.astype(">i2" if big_endian else "<i2"), img.affine, header=hdr)
    new.header.set_xyzt_units("mm", "sec")
    new.header.set_zooms(img.header.get_zooms())
    dst = src.with_name(src.name.replace(".nii.gz", ".nii"))
    nib.save(new, dst)
    src.unlink()
    scans = ds / SES / f"{SUB}_ses-01_scans.tsv"
    scans.write_text(scans.read_text().replace("_bold.nii.gz", "_bold.nii"))
    return dst, data.astype("<i2").tobytes()


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("big_endian", [False, True])
def test_nifti_padding_and_trailing_text_dropped(tmp_path, ds, key_file, version, big_endian):
    """Text between the header and vox_offset, and after the voxel data, must not be copied."""
    path, voxels = _plain_nifti(ds, big_endian=big_endian, version=version)
    raw = bytearray(path.read_bytes())
    hdr = 348 if version == 1 else 540
    e = ">" if big_endian else "<"
    off_fmt, off_pos = (e + "f", 108) if version == 1 else (e + "q", 168)
    old = int(struct.unpack_from(off_fmt, raw, off_pos)[0])
    pad = b"\x00\x00\x00\x00" + b"CANARYSMITH padding" + b"\x00" * 45  # flag 0: no extensions
    raw[off_pos:off_pos + struct.calcsize(off_fmt)] = struct.pack(off_fmt, old - hdr + hdr + len(pad) - 4)
    raw = raw[:hdr] + pad + raw[old:] + b"trailing CANARY text"
    path.write_bytes(bytes(raw))
    assert _both(ds, tmp_path / "out", key_file) == 0
    out = tmp_path / "out"
    assert canary_hits(out) == []
    img = nib.load(next(out.rglob("*_bold.nii")))
    assert np.asanyarray(img.dataobj).astype("<i2").tobytes() == voxels


def test_nifti_unused_header_bytes_cleared(tmp_path, ds, key_file):
    """NIfTI-1 fields unused since Analyze (extents, session_error, glmax/glmin) can hold text."""
    path, _ = _plain_nifti(ds)
    raw = bytearray(path.read_bytes())
    raw[32:38] = b"CANARY"  # extents + session_error
    raw[140:148] = b"canary!!"  # glmax + glmin
    path.write_bytes(bytes(raw))
    assert _both(ds, tmp_path / "out", key_file) == 0
    assert canary_hits(tmp_path / "out") == []


def test_nifti_extension_size_lie_is_an_error(tmp_path, ds, key_file, capsys):
    path, _ = _plain_nifti(ds)
    raw = bytearray(path.read_bytes())
    old = int(struct.unpack_from("<f", raw, 108)[0])
    ext = b"\x01\x00\x00\x00" + struct.pack("<ii", 4096, 6) + b"CANARYSMITH" + b"\x00" * 13
    struct.pack_into("<f", raw, 108, 348 + len(ext))
    path.write_bytes(bytes(raw[:348]) + ext + bytes(raw[old:]))
    before = tree_digest(ds)
    assert _run(ds, tmp_path / "out", key_file, "participant") == 0  # withheld; the run goes on
    held = [ln for ln in capsys.readouterr().out.splitlines() if "withheld:" in ln and "corrupt NIfTI extension" in ln]
    assert len(held) == 1 and path.name.split(".")[0].split("_", 1)[1] in held[0]
    assert tree_digest(ds) == before
    assert canary_hits(tmp_path / "out") == []


# ------------------------------------------------------------------ root files and links
def test_root_text_files_and_folders(tmp_path, ds, key_file):
    (ds / "README").write_text("Scanned Jane CanarySmith (MRN-CANARY-778812) twice.\n")
    for d in ("derivatives", "code", "stimuli", ".git"):
        (ds / d).mkdir()
        (ds / d / "canary.txt").write_text("CANARYSMITH\n")
    (ds / ".hidden_canary").write_text("x")
    assert _both(ds, tmp_path / "out", key_file) == 3  # README, code/, stimuli/ carried: the audit must catch them
    hit_files = {h["file"] for h in _hits(tmp_path)}
    assert {"README", "code/canary.txt", "stimuli/canary.txt"} <= hit_files, hit_files
    carried = ("README", "code/", "stimuli/", "name:code/", "name:stimuli/")
    # hidden files, .git and a loose file in derivatives/ (no module reads .txt there) are not carried
    assert [h for h in canary_hits(tmp_path / "out") if not h.startswith(carried)] == []


def test_birth_date_in_readme_caught(tmp_path, ds, key_file):
    (ds / "README").write_text("Participant born 04.07.1961, scanned at 9:26.\n")
    assert _both(ds, tmp_path / "out", key_file) == 3
    assert any(h["file"] == "README" for h in _hits(tmp_path))


def test_symlink_outside_input_not_followed(tmp_path, ds, key_file):
    secret = tmp_path / "elsewhere"
    secret.mkdir()
    (secret / "notes.tsv").write_text("onset\tduration\tnote\n0\t1\tCANARY private note\n")
    (secret / "README").write_text("CANARY private readme\n")
    ev = ds / SES / "func" / f"{SUB}_ses-01_task-rest_events.tsv"
    ev.unlink()
    ev.symlink_to(secret / "notes.tsv")
    (ds / "README").unlink()
    (ds / "README").symlink_to(secret / "README")
    (ds / SES / "beh").symlink_to(secret, target_is_directory=True)
    assert _both(ds, tmp_path / "out", key_file) == 0
    assert canary_hits(tmp_path / "out") == []
    assert any(v["status"] == "left out" and "link" in v["reason"] for v in _records(tmp_path).values())


def test_symlink_inside_input_is_followed(tmp_path, ds, key_file):
    """git-annex/DataLad style links into the dataset itself stay usable."""
    ev = ds / SES / "func" / f"{SUB}_ses-01_task-rest_events.tsv"
    store = ds / ".git" / "annex"
    store.mkdir(parents=True)
    (store / "obj").write_bytes(ev.read_bytes())
    ev.unlink()
    ev.symlink_to(store / "obj")
    assert _both(ds, tmp_path / "out", key_file) == 0
    assert len(list((tmp_path / "out").rglob("*_events.tsv"))) == 2


# ------------------------------------------------------------------ sessions
def test_date_session_label_is_pseudonymized(tmp_path, ds, key_file):
    for subj in ("canary01", "canary02"):
        root = ds / f"sub-{subj}"
        (root / "ses-01").rename(root / "ses-20190314")
        for f in sorted(root.rglob("*ses-01*"), key=lambda p: -len(p.parts)):
            f.rename(f.with_name(f.name.replace("ses-01", "ses-20190314")))
        for f in root.rglob("*.tsv"):
            f.write_text(f.read_text().replace("ses-01", "ses-20190314"))
    assert _both(ds, tmp_path / "out", key_file) == 0
    out = tmp_path / "out"
    assert canary_hits(out) == [] and canary_hits(out, CANARY_DATES) == []
    assert len(list(out.rglob("*_T1w.nii.gz"))) == 2
    sessions = next(out.rglob("*_sessions.tsv")).read_text().splitlines()[1].split("\t")[0]
    assert sessions.startswith("ses-") and next(out.glob("sub-*/" + sessions)).is_dir()


# ------------------------------------------------------------------ private / public separation
@pytest.mark.parametrize("where", ["work", "key"])
def test_private_things_inside_output_refused(tmp_path, ds, key_file, capsys, where):
    out = tmp_path / "out"
    if where == "work":
        rc = _run(ds, out, key_file, "participant", "-w", str(out / "work"))
    else:
        out.mkdir()
        inside = out / "study.key"
        inside.write_bytes(key_file.read_bytes())
        rc = main([str(ds), str(out), "participant", "--key-file", str(inside), "--deface-method", "none"])
    err = capsys.readouterr().err
    assert rc != 0 and err.startswith("bids-deid: error: ") and "output" in err
    assert not (out / "work").exists() and not list(out.glob("sub-*"))


def test_input_untouched_on_error_midway(tmp_path, ds, key_file):
    before = tree_digest(ds)
    (ds / "sub-canary02" / "ses-01" / "anat" / "sub-canary02_ses-01_T1w.json").write_text("[1, 2")
    before = tree_digest(ds)
    _both(ds, tmp_path / "out", key_file)
    assert tree_digest(ds) == before
    assert len(list((tmp_path / "out").rglob("*_T1w.json"))) == 1  # the corrupt one is withheld, the other written


# ------------------------------------------------------------------ the leak audit's own forms
@pytest.mark.parametrize("written", ["Jane Doe", "JANE DOE", "Doe, Jane", "Jane Q. Doe", "Jane Q Doe",
                                     "04.07.1961", "07/04/1961", "1961-07-04T00:00", "1961/07/04"])
def test_audit_finds_other_forms(tmp_path, ds, key_file, written):
    side = ds / SES / "anat" / f"{SUB}_ses-01_T1w.json"
    obj = json.loads(side.read_text())
    obj["PatientName"] = "DOE^JANE^Q"
    obj["PatientBirthDate"] = "1961-07-04"
    side.write_text(json.dumps(obj))
    ev = ds / SES / "func" / f"{SUB}_ses-01_task-rest_events.tsv"
    ev.write_text(f"onset\tduration\tnote\n0\t1\t{written}\n")
    assert _both(ds, tmp_path / "out", key_file) == 3
    assert any(h["file"].endswith("_events.tsv") for h in _hits(tmp_path))


def test_audit_finds_utf16_with_bom(tmp_path, ds, key_file):
    (ds / "README").write_bytes("\ufeffAbout Canary Memorial Hospital\n".encode("utf-16"))
    assert _both(ds, tmp_path / "out", key_file) == 3
    assert any(h["file"] == "README" for h in _hits(tmp_path))


def test_clean_demo_has_no_false_alarm(tmp_path, ds, key_file, capsys):
    assert _both(ds, tmp_path / "out", key_file) == 0
    assert "0 hits" in capsys.readouterr().out
    assert FAKE["PatientName"].split("^")[0].lower() not in (tmp_path / "out" / "participants.tsv").read_text().lower()
