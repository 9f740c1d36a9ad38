"""The leak audit: per-class matching, look-alikes that must pass, real leaks that must fail,
places a person can judge, reviewed acceptances, the key, kept free text, dry run."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import SHARED, needs_shared

from bids_deid.audit import audit_output, make_plan
from bids_deid.audit.needles import DATE, NAME, PLACE, classify, date_forms, name_forms, needles_for
from bids_deid.audit_cli import main as audit_main


def _dataset(tmp_path: Path, identifiers: dict[str, list[tuple[str, str]]], files: dict[str, bytes | str]):
    """A public output with ``files`` and a private dir whose scrubbers met ``identifiers``."""
    out, priv = tmp_path / "out", tmp_path / "out-private"
    for rel, data in {"dataset_description.json": json.dumps({"Name": "x", "BIDSVersion": "1.9.0"}),
                      **files}.items():
        p = out / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
    (priv / "identifiers").mkdir(parents=True)
    for name, pairs in identifiers.items():
        (priv / "identifiers" / f"{name}.json").write_text(json.dumps([list(p) for p in pairs]))
    return out, priv


def _audit(tmp_path, identifiers, files, **kw):
    out, priv = _dataset(tmp_path, identifiers, files)
    return audit_output(out, priv, **kw), out, priv


SUB = "sub-abc"
EV = f"{SUB}/func/{SUB}_task-rest_events.tsv"


# ------------------------------------------------------------------ look-alikes: must pass
@pytest.mark.parametrize(("ident", "rel", "text"), [
    (("sidecar:ProcedureStepDescription", "Gradient Echo"), f"{SUB}/func/{SUB}_task-rest_bold.json",
     '{"PulseSequenceType": "Gradient Echo EPI"}'),
    (("StudyDescription", "FMRIF^QA"), "sourcedata/twix/sub-abc/x.dat", 'tFree "FMRIFunctor" FMRIF QA'),
    (("MINC image-min:parent", "image"), f"{SUB}/anat/{SUB}_T1w.json", '{"ImageType": ["image", "ORIGINAL"]}'),
    (("tsv:group", "young"), "README", "Younger and older adults walked.\n"),
    (("tsv:dominant_hand", "Right"), EV, "onset\tduration\tposture\n0\t1\tUpright\n"),
    (("tsv:group", "control"), "README", "Patients and control participants.\n"),
    (("InstitutionName", "USC"), EV, "onset\tduration\tnote\n0\t1\tMUSCLE and muscle usc\n"),
    (("PatientID", "DEV"), "sourcedata/twix/sub-abc/x.dat", '"Std-Dev-Sag" "dev"'),
    (("AcquisitionTime", "09:26:33"), f"{SUB}/{SUB}_scans.tsv", "filename\tacq_time\nx\t1890-01-01T09:26:33\n"),
    (("PatientID", "0010"), EV, "onset\tduration\n0010\t1\n"),
    (("DeviceSerialNumber", "45321"), f"{SUB}/func/{SUB}_task-rest_bold.json", '{"SliceTiming": [0.45321]}'),
])
def test_look_alikes_are_not_hits(tmp_path, ident, rel, text):
    res, *_ = _audit(tmp_path, {SUB: [ident]}, {rel: text})
    assert res.open == [], [(h["file"], h["class"], h["value"]) for h in res.open]


def test_staff_name_that_is_a_listed_author_is_public(tmp_path):
    dd = json.dumps({"Name": "visual study", "BIDSVersion": "1.9.0", "Authors": ["Jonathan Winawer", "A. Other"]})
    res, *_ = _audit(tmp_path, {SUB: [("sidecar:ReferringPhysicianName", "Winawer")]},
                     {"dataset_description.json": dd, "README": "Contact Jonathan Winawer.\n"})
    assert res.open == []
    assert any(n.value == "Winawer" and "Authors" in n.reason for n in res.plan.not_searched)


def test_patient_name_equal_to_an_author_is_still_searched(tmp_path):
    dd = json.dumps({"Name": "x", "BIDSVersion": "1.9.0", "Authors": ["Jane Canarysmith"]})
    res, *_ = _audit(tmp_path, {SUB: [("PatientName", "CANARYSMITH^JANE")]},
                     {"dataset_description.json": dd})
    assert [h["file"] for h in res.open] == ["dataset_description.json"]


def test_defined_term_inside_dicom_is_not_a_name(tmp_path):
    """A PatientName part ('Perfusion') met as a word of a CS value (ImageType) is not a leak; in text it is."""
    import pydicom
    from pydicom.dataset import FileMetaDataset

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    ds.ImageType = ["DERIVED", "PRIMARY", "PERFUSION"]
    ds.SeriesDescription = "the perfusion of a case"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    res, *_ = _audit(tmp_path, {SUB: [("PatientName", "Perfusion^MCA Stroke")]},
                     {f"sourcedata/dicom/{SUB}/a.dcm": buf.getvalue()})
    assert len(res.open) == 1
    assert res.open[0]["locations"][0].startswith("DICOM (0008,103E) SeriesDescription [LO]")


# ------------------------------------------------------------------ per-class recall
@pytest.mark.parametrize("written", ["Jane Doe", "DOE^JANE", "Doe, Jane", "JANE Q. DOE", "doe jane", "acq-Doe",
                                     "JaneDoe"])
def test_person_name_forms(tmp_path, written):
    res, *_ = _audit(tmp_path, {SUB: [("PatientName", "DOE^JANE^Q")]}, {EV: f"onset\tnote\n0\t{written}\n"})
    assert [h["class"] for h in res.open] == [NAME]


@pytest.mark.parametrize("written", ["1889-03-14", "18890314", "14.03.1889", "03/14/1889", "14 March 1889",
                                     "Mar 14, 1889", "1889-03-14T10:00", "14-Mar-1889", "ses-18890314"])
def test_dates_before_1900_in_every_spelling(tmp_path, written):
    res, *_ = _audit(tmp_path, {SUB: [("tsv:acq_time", "1889-03-14T10:00:00")]},
                     {f"{SUB}/notes.txt": f"seen {written} x\n"})
    assert [h["class"] for h in res.open] == [DATE]


def test_date_like_session_label_gives_date_needles():
    needles, _ = needles_for("session label", "ses-20090409", "abc")
    assert {"20090409", "2009-04-09", "09.04.2009"} <= {n.form for n in needles}


def test_short_institution_is_searched_as_whole_token(tmp_path):
    res, *_ = _audit(tmp_path, {SUB: [("InstitutionName", "USC")]},
                     {EV: "onset\tnote\n0\tscanned at USC-3T\n", "README": "MUSCLE\n"})
    assert [(h["file"], h["class"]) for h in res.open] == [(EV, PLACE)]
    assert res.open[0]["locations"] == ["TSV row 1 (header row 0), column 'note'"]


def test_free_text_is_searched_by_its_identifying_tokens_only():
    needles, skipped = needles_for("ImageComments", "patient MRN-778812 seen 2019-03-14, Gradient Echo", "abc")
    forms = {n.form for n in needles}
    assert "MRN-778812" in forms and "2019-03-14" in forms
    assert not any("Gradient" in f for f in forms)
    _n, skipped = needles_for("ProcedureStepDescription", "Gradient Echo", "abc")
    assert skipped and skipped[0].reason == "free text without identifying tokens"


def test_a_name_that_is_a_defined_term_is_not_searched():
    # QA phantoms are named after their position (PatientName "HFS"); sidecars keep PatientPosition "HFS"
    needles, skipped = needles_for("dicom:PatientName", "HFS", "abc")
    assert needles == [] and "defined term" in skipped[0].reason
    needles, _ = needles_for("dicom:PatientName", "HFS^Jonathan", "abc")
    assert {"HFS^Jonathan", "Jonathan"} <= {n.form for n in needles}  # the rest of a real name still is


def test_identifying_and_category_columns():
    assert classify("tsv:group", "young") == "not:category value of a dropped column"
    assert classify("tsv:genetic_id", "125425") == "ID"
    assert classify("tsv:rater", "Smith") == NAME
    assert classify("tsv:dob", "1961-07-04") == DATE
    assert classify("tsv:notes", "called Mrs Smith on 2019-03-14").startswith("free")
    assert classify("MINC image-min:parent", "image").startswith("not:")
    assert classify("PatientPosition", "HFS").startswith("not:")


def test_shared_values_of_dropped_columns_are_categories(tmp_path):
    """participants.tsv: a batch shared by several rows is a category; a per-person ID is searched."""
    from bids_deid.formats.base import ScrubLog
    from bids_deid.formats.tabular import scrub_participants
    from bids_deid.profiles import load_profile

    header = ["participant_id", "genetic_id", "BatchID", "group"]
    rows = [["sub-01", "125425", "b001", "young"], ["sub-02", "125698", "b001", "old"]]
    log = ScrubLog()
    scrub_participants(header, rows, load_profile("basic"), {"sub-01": "sub-x", "sub-02": "sub-y"}, log)
    res, *_ = _audit(tmp_path, {"_dataset": log.identifiers},
                     {"README": "Batch_b001-b095 passed QC; old and young groups. Sample 125698.\n"})
    assert [(h["class"], h["value"]) for h in res.open] == [("ID", "125698")]


def test_pn_forms_cover_ideographic_group():
    forms = name_forms("Yamada^Tarou=山田^太郎")
    assert {"Tarou Yamada", "Yamada, Tarou", "山田 太郎", "Yamada"} <= forms


def test_date_forms_include_month_names():
    import datetime as dt

    assert {"4 July 1961", "Jul 4, 1961", "04-Jul-1961", "07/04/1961"} <= date_forms(dt.date(1961, 7, 4))


def test_unsearchable_values_are_named(tmp_path):
    res, out, priv = _audit(tmp_path, {SUB: [("StudyID", "17"), ("PatientAge", "045Y")]}, {})
    report = json.loads((priv / "leak-audit.json").read_text())
    named = {(n["kind"], n["value"]) for n in report["not_searched"]}
    assert {("StudyID", "17"), ("PatientAge", "045Y")} <= named


# ------------------------------------------------------------------ bytes: gzip, UTF-16, binary blocks
def test_gzip_members_headers_and_utf16(tmp_path):
    raw = io.BytesIO()
    with gzip.GzipFile(filename="CANARYSTATION7.tsv", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(b"1\t2\n")
    second = gzip.compress("x Canary Memorial Hospital y".encode("utf-16-le"))
    res, *_ = _audit(tmp_path, {SUB: [("StationName", "CANARYSTATION7"), ("InstitutionName", "Canary Memorial Hospital")]},
                     {f"{SUB}/func/{SUB}_task-rest_physio.tsv.gz": raw.getvalue() + second})
    where = {(h["class"], h["where"]) for h in res.open}
    assert ("device/station", "gzip header") in where and ("place/institution", "content") in where
    assert any("(utf-16-le)" in loc for h in res.open for loc in h["locations"])


def test_short_value_in_voxels_needs_eight_characters(tmp_path):
    data = np.frombuffer(b"..USC.." * 100 + b" CANARYSTATION7 " * 3 + b"\0" * 3, dtype=np.uint8).copy()
    img = nib.Nifti1Image(data.reshape(-1, 1, 1), np.eye(4))
    buf = io.BytesIO()
    img.to_file_map({"image": nib.FileHolder(fileobj=buf), "header": nib.FileHolder(fileobj=buf)})
    res, *_ = _audit(tmp_path, {SUB: [("InstitutionName", "USC"), ("StationName", "CANARYSTATION7")]},
                     {f"{SUB}/anat/{SUB}_T1w.nii.gz": gzip.compress(buf.getvalue())})
    assert [h["value"] for h in res.open] == ["CANARYSTATION7"]


def test_dates_scoped_to_their_subject(tmp_path):
    files = {"sub-b/x.json": '{"n": "2019-03-14"}', "README": "scanned 2019-03-14\n"}
    res, *_ = _audit(tmp_path, {"sub-a": [("StudyDate", "20190314")], "sub-b": []}, files)
    assert [h["file"] for h in res.open] == ["README"]


# ------------------------------------------------------------------ the key
def test_key_bytes_found_in_every_form_and_never_shown(tmp_path, capsys):
    import base64

    key = base64.urlsafe_b64encode(bytes(range(32)))  # as in a key file
    res, out, priv = _audit(tmp_path, {SUB: []}, {"README": b"k=" + key + b"\n",
                                                  "CHANGES": bytes(range(32)).hex().encode() + b"\n"}, key=key)
    assert sorted(h["file"] for h in res.open if h["class"] == "key") == ["CHANGES", "README"]
    assert key.decode() not in (priv / "leak-audit.json").read_text()
    assert audit_main([str(out), "--private-dir", str(priv)]) == 0  # without the key the CLI cannot know
    (tmp_path / "k").write_bytes(key + b"\n")
    (tmp_path / "k").chmod(0o600)  # a key readable by others is refused
    assert audit_main([str(out), "--private-dir", str(priv), "--key-file", str(tmp_path / "k")]) == 3
    assert key.decode() not in capsys.readouterr().out


# ------------------------------------------------------------------ reviewed acceptances
def test_accept_reopen_and_nothing_by_default(tmp_path, capsys):
    out, priv = _dataset(tmp_path, {SUB: [("PatientName", "CANARYSMITH^JANE")]},
                         {EV: "onset\tnote\n0\tJane Canarysmith\n"})
    assert audit_main([str(out), "--private-dir", str(priv)]) == 3
    text = capsys.readouterr().out
    assert "Canarysmith" not in text.lower().replace(str(priv).lower(), "")  # ids and places, never values
    hit = json.loads((priv / "leak-audit.json").read_text())["hits"][0]
    assert hit["value"] == "CANARYSMITH^JANE" and "Jane Canarysmith" in hit["context"]
    assert audit_main([str(out), "--private-dir", str(priv), "--accept", hit["id"]]) == 1  # no reason
    assert audit_main([str(out), "--private-dir", str(priv), "--accept", "h0000", "--reason", "not a leak at all"]) == 1
    assert audit_main([str(out), "--private-dir", str(priv), "--accept", hit["id"],
                       "--reason", "a character of the task's story, not the participant"]) == 0
    assert "accepted" in capsys.readouterr().out
    assert audit_main([str(out), "--private-dir", str(priv)]) == 0
    assert "a character of the task" in capsys.readouterr().out
    rec = json.loads((priv / "audit-accepted.json").read_text())
    assert rec[0]["file_sha256"] and rec[0]["value_hash"] and "CANARY" not in json.dumps(rec).upper()
    (out / EV).write_text("onset\tnote\n0\tJane Canarysmith\n1\tagain\n")
    assert audit_main([str(out), "--private-dir", str(priv)]) == 3
    assert "re-opened" in capsys.readouterr().out


def test_dry_run_lists_classes_without_values(tmp_path, capsys):
    out, priv = _dataset(tmp_path, {SUB: [("PatientName", "CANARYSMITH^JANE"), ("InstitutionName", "USC"),
                                          ("StudyID", "7")]}, {})
    assert audit_main([str(out), "--private-dir", str(priv), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "person name" in text and "place/institution" in text and "a number too short" in text
    assert "CANARY" not in text.upper().replace(str(priv).upper(), "") and "USC" not in text
    plan = json.loads((priv / "leak-audit-plan.json").read_text())
    assert any(v[2] == "USC" for v in plan["searched"])
    assert not (priv / "leak-audit.json").exists()


def test_plan_counts_by_class(tmp_path):
    out, priv = _dataset(tmp_path, {SUB: [("PatientName", "DOE^JANE"), ("AccessionNumber", "ACC-99812")]}, {})
    assert make_plan(priv, out).by_class() == {"person name": 1, "ID": 1}


# ------------------------------------------------------------------ kept free text screened
def test_free_text_screen_lists_and_profile_can_require(tmp_path):
    files = {f"{SUB}/func/{SUB}_task-rest_bold.json": json.dumps(
        {"TaskDescription": "call 555-123-4567 or mail a.b@example.org; MRN 12345678 seen 2019-03-14",
         "AcquisitionDateTime": "1890-01-01T10:00:00"})}
    res, out, priv = _audit(tmp_path, {SUB: []}, files)
    shapes = sorted(r["class"] for r in res.review)
    assert shapes == ["date", "e-mail address", "long digit run", "phone number"]
    assert all(r["locations"] == ["JSON $.TaskDescription"] for r in res.review)
    assert res.open == []  # review only by default
    assert audit_main([str(out), "--private-dir", str(priv), "--free-text", "require"]) == 3
    for r in res.review:
        audit_main([str(out), "--private-dir", str(priv), "--accept", r["id"], "--reason", "the task's fictional story"])
    assert audit_main([str(out), "--private-dir", str(priv), "--free-text", "require"]) == 0


def test_parallel_equals_serial(tmp_path):
    files = {f"sub-{i}/x.json": json.dumps({"Note": f"DOE JANE {i}"}) for i in range(6)}
    out, priv = _dataset(tmp_path, {"sub-1": [("PatientName", "DOE^JANE")]}, files)
    a = audit_output(out, priv, n_cpus=1)
    b = audit_output(out, priv, n_cpus=2)
    assert [h["id"] for h in a.hits] == [h["id"] for h in b.hits] and len(a.hits) == 6


def test_stream_chunk_edges_find_each_occurrence_once(tmp_path, monkeypatch):
    """Occurrences across chunk boundaries are found once each, whatever the chunk size."""
    import bids_deid.audit.scan as scan

    text = ("x" * 37 + " CANARYSTATION7 " + "y" * 5 + " MRN-778812 ") * 40
    for size in (7, 16, 33, 64, 1 << 20):
        monkeypatch.setattr(scan, "CHUNK", size)
        res, *_ = _audit(tmp_path / str(size), {SUB: [("StationName", "CANARYSTATION7"), ("PatientID", "MRN-778812")]},
                         {f"{SUB}/notes.txt": text})
        assert sorted(h["count"] for h in res.hits) == [40, 40], size


def test_long_values_count_inside_longer_words(tmp_path):
    """A long ID glued into other text is still found; a short one is not (look-alike)."""
    res, *_ = _audit(tmp_path, {SUB: [("StationName", "CANARYSTATION7"), ("AccessionNumber", "ACC-CANARY-99"),
                                      ("InstitutionName", "NIH")]},
                     {EV: "onset\tnote\n0\txxCANARYSTATION7yy ACC-CANARY-991 NIHILISM\n"})
    assert [h["value"] for h in res.open] == ["CANARYSTATION7"]


def test_long_name_part_searched_in_other_subjects_files(tmp_path):
    res, *_ = _audit(tmp_path, {"sub-a": [("PatientName", "CANARYSMITH^JANE")], "sub-b": []},
                     {"sub-b/x.json": '{"Note": "Canarysmith and Jane"}'})
    assert [h["form"] for h in res.open] == ["canarysmith"]  # "Jane" alone counts in sub-a's files only


def test_name_part_equal_to_a_word_of_the_dataset_name(tmp_path):
    dd = json.dumps({"Name": "UK Biobank imaging", "BIDSVersion": "1.9.0"})
    res, *_ = _audit(tmp_path, {SUB: [("PatientName", "BIOBANK^SUBJECT7")]},
                     {"dataset_description.json": dd, "README": "Biobank data; BIOBANK SUBJECT7 is pseudonymous\n"})
    assert [(h["file"], h["form"]) for h in res.open] == [("README", "biobank subject7")]


def test_institution_the_dataset_names_itself_is_public(tmp_path):
    dd = json.dumps({"Name": "x", "BIDSVersion": "1.9.0", "License": "Property of the Epilepsy Centre, "
                     "University Hospital Freiburg, Germany"})
    res, *_ = _audit(tmp_path, {SUB: [("sidecar:InstitutionName", "Epilepsy Centre, University Hospital Freiburg, "
                                                                   "Germany"), ("InstitutionName", "Canary Hospital")]},
                     {"dataset_description.json": dd, "README": "Epilepsy Centre, University Hospital Freiburg, "
                      "Germany; Canary Hospital\n"})
    assert [h["value"] for h in res.open] == ["Canary Hospital"]


@pytest.mark.parametrize(("kind", "value"), [("sidecar:InstitutionalDepartmentName", "Department"),
                                             ("tsv:session_doi", "doi:10.15151/ESRF-DC-572252655")])
def test_generic_place_words_and_dois_are_not_identifiers(kind, value):
    needles, skipped = needles_for(kind, value, "abc")
    assert needles == [] and skipped


def test_sequence_label_in_readme_is_for_review_and_initials_label_is_a_hit(tmp_path):
    ids = {"sub-x": [("subject label", "01"), ("subject label", "sub-01")],
           "sub-y": [("subject label", "jh17"), ("subject label", "sub-jh17")]}
    res, *_ = _audit(tmp_path, ids, {"README": "sub-01/\n  anat/\n", "sub-y/func/x_events.tsv":
                                     "onset\tstim\n0\tjh17_audio.wav\n", "sub-01_T1w.json": "{}"})
    assert sorted((h["file"], h["where"]) for h in res.open) == [("sub-01_T1w.json", "file name"),
                                                                  ("sub-y/func/x_events.tsv", "content")]
    assert [(r["file"], r["class"]) for r in res.review] == [("README", "original label (sequence number)")]


@needs_shared
def test_twix_hit_names_its_header_buffer(tmp_path):
    data = bytearray((SHARED / "twix" / "gre.dat").read_bytes())
    i = data.find(b'tProtocolName">  { "gre"')
    data[i + 18:i + 23] = b'"X9Q"'  # a three-letter value, as a patient ID could be
    res, *_ = _audit(tmp_path, {SUB: [("PatientID", "X9Q")]}, {"sourcedata/twix/sub-abc/a.dat": bytes(data)})
    assert len(res.open) == 1 and res.open[0]["locations"][0].startswith("twix header buffer ")


def test_screen_finds_phone_at_sentence_end(tmp_path):
    res, *_ = _audit(tmp_path, {SUB: []}, {"README": "Call 555-123-4567. Or +44 20 7946 0958.\n"})
    assert sorted(r["value"] for r in res.review) == ["+44 20 7946 0958", "555-123-4567"]


def test_fallback_matcher_gives_the_same_hits(tmp_path, monkeypatch):
    """Without Hyperscan (platforms without its wheel) one compiled alternation finds the same hits."""
    import bids_deid.audit as audit_pkg
    import bids_deid.audit.scan as scan

    ids = {SUB: [("PatientName", "DOE^JANE^Q"), ("InstitutionName", "USC"), ("StudyDate", "18890314"),
                 ("StationName", "CANARYSTATION7")]}
    files = {EV: "onset\tnote\n0\tJane Q. Doe at USC-3T on 14.03.1889\n1\tMUSCLE\n",
             f"{SUB}/x.json": json.dumps({"Note": "Canary Station? CANARYSTATION7".encode("utf-16-le").hex()}),
             "README": "Doe, Jane\n".encode("utf-16-le")}
    fast, *_ = _audit(tmp_path / "a", ids, files)
    monkeypatch.setattr(scan, "_hs", None)
    audit_pkg._WORKER.clear()
    slow, *_ = _audit(tmp_path / "b", ids, files)
    key = [(h["file"], h["class"], h["count"], h["locations"]) for h in fast.hits]
    assert key == [(h["file"], h["class"], h["count"], h["locations"]) for h in slow.hits] and len(key) >= 4


def test_long_name_part_not_counted_in_other_subjects_scanner_text(tmp_path):
    """'Perfusion' of one subject's PatientName is a palette name in another subject's twix protocol."""
    ids = {"sub-a": [("PatientName", "Perfusion^MCA Stroke")], "sub-b": [("PatientID", "OTHER-778812")]}
    res, *_ = _audit(tmp_path, ids, {"sourcedata/twix/sub-b/x.dat": b'"Perfusion.pal" "HotMetal.pal"',
                                     "sub-b/anat/sub-b_T1w.json": '{"Note": "Perfusion"}',
                                     "sub-a/y.dat": b"Perfusion"})
    assert sorted(h["file"] for h in res.open) == ["sub-a/y.dat", "sub-b/anat/sub-b_T1w.json"]
