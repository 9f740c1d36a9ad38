import pytest

from bids_deid.errors import InputError
from bids_deid.formats.base import ScrubLog
from bids_deid.formats.sidecar import load_json, scrub_sidecar
from bids_deid.formats.tabular import read_tsv, scrub_dated_table, scrub_participants
from bids_deid.profiles import load_profile
from bids_deid.schema import metadata_fields


def test_allowlist_comes_from_schema():
    fields = metadata_fields()
    assert len(fields) > 300
    assert {"RepetitionTime", "EchoTime", "TaskName", "InstitutionName"} <= fields
    assert "PatientName" not in fields


def test_sidecar_scrub():
    data = {
        "RepetitionTime": 2.0, "TaskName": "rest", "InstitutionName": "Canary Hospital", "StationName": "ST1",
        "DeviceSerialNumber": "12345", "PatientName": "DOE^JANE", "ImageComments": "jane",
        "SeriesDescription": "t1 mprage jane", "ScanDate": "2020-03-01", "MyLabField": 3,
        "AcquisitionDateTime": "2020-03-01T10:00:00",
    }
    log = ScrubLog()
    out = scrub_sidecar(data, load_profile("basic"), -10, log)
    assert out == {"RepetitionTime": 2.0, "TaskName": "rest", "ScanDate": "2020-02-20"}
    met = {v for _, v in log.identifiers}
    assert {"Canary Hospital", "DOE^JANE", "t1 mprage jane", "2020-03-01T10:00:00"} <= met
    assert all("DOE" not in str(c) for c in log.changes)  # audit entries carry no values


def test_sidecar_dataset_level_dates_removed_and_profile_keep(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("extends: basic\nsidecar:\n  rules:\n    - {field: AcquisitionDateTime, action: shift_date}\n"
                 "    - {field: SeriesDescription, action: keep}\n    - {field: StationName, action: replace, value: X}\n")
    p = load_profile(str(f))
    out = scrub_sidecar({"ScanDate": "2020-03-01", "AcquisitionDateTime": "2020-03-01T10:00:00",
                         "SeriesDescription": "t1", "StationName": "S"}, p, 5, ScrubLog())
    assert out == {"ScanDate": "2020-03-06", "AcquisitionDateTime": "2020-03-06T10:00:00",
                   "SeriesDescription": "t1", "StationName": "X"}
    assert scrub_sidecar({"ScanDate": "2020-03-01"}, p, None, ScrubLog()) == {}


def test_corrupt_json():
    with pytest.raises(InputError, match="corrupt JSON"):
        load_json(b"{not json", "x.json")


def test_participants_columns_and_age_cap():
    header, rows = read_tsv(b"participant_id\tage\tsex\tname\nsub-01\t93\tF\tJane\nsub-02\t40\tM\tJoe\n", "p.tsv")
    log = ScrubLog()
    h, r, removed = scrub_participants(header, rows, load_profile("basic"), {"sub-01": "sub-aaa"}, log)
    assert h == ["participant_id", "age", "sex"]
    assert r == [["sub-aaa", "89", "F"]]  # sub-02 not processed: dropped
    assert removed == ["name"]
    assert ("tsv:name", "Jane") in log.identifiers


def test_scans_acq_time_shift_and_unknown_columns():
    header, rows = read_tsv(b"filename\tacq_time\toperator\nanat/sub-01_T1w.nii.gz\t2020-03-01T10:00:00\tBob\n", "s")
    h, r = scrub_dated_table(header, rows, load_profile("basic"), -1, lambda v: v.replace("sub-01", "sub-x"),
                             ScrubLog())
    assert h == ["filename", "acq_time"]
    assert r == [["anat/sub-x_T1w.nii.gz", "2020-02-29T10:00:00"]]


def test_ragged_tsv():
    with pytest.raises(InputError, match="line 2"):
        read_tsv(b"a\tb\n1\n", "x.tsv")
