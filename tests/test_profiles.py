import pytest

from bids_deid.errors import ProfileError
from bids_deid.profiles import load_profile, shipped_profiles


def test_basic_loads():
    p = load_profile("basic")
    assert "basic" in shipped_profiles()
    assert p.sidecar_rule("InstitutionName").action == "remove"
    assert p.age_cap == 89
    assert p.dates == "shift"


@pytest.mark.parametrize(
    "text,match",
    [
        ("sidecar:\n  rules:\n    - {field: X, action: obliterate}\n", "unknown action 'obliterate'"),
        ("sidecar:\n  rules:\n    - {fiel: X, action: keep}\n", "unknown field"),
        ("sidecar:\n  rules:\n    - {field: X, action: replace}\n", "needs a 'value'"),
        ("dicom:\n  rules:\n    - {tag: PatientNaem, action: keep}\n", "not a DICOM keyword"),
        ("dicom:\n  options: [retain_everything]\n", "unknown dicom option"),
        ("colour: blue\n", "unknown key"),
        ("dates: fuzz\n", "dates must be one of"),
        ("sidecar: [1, 2\n", "not valid YAML"),
        ("tabular:\n  participants_columns: [age]\n", "participant_id"),
    ],
)
def test_bad_profiles(tmp_path, text, match):
    f = tmp_path / "p.yaml"
    f.write_text(text)
    with pytest.raises(ProfileError, match=match):
        load_profile(str(f))


def test_extends_and_override(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text(
        "extends: basic\nname: mine\nsidecar:\n  rules:\n    - {field: InstitutionName, action: keep}\n"
        "dicom:\n  options: [retain_uids]\n  rules:\n    - {tag: '(0010,0040)', action: keep}\n"
    )
    p = load_profile(str(f))
    assert p.name == "mine"
    assert p.sidecar_rule("InstitutionName").action == "keep"  # later rule wins
    assert p.sidecar_rule("StationName").action == "remove"  # inherited
    assert "retain_uids" in p.dicom_options
    assert any(r.target == "00100040" for r in p.dicom_rules)


def test_unknown_profile_name():
    with pytest.raises(ProfileError, match="unknown profile"):
        load_profile("no-such-profile")
