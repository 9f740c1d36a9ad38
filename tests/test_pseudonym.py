import re

import pytest

from bids_deid.errors import KeyFileError
from bids_deid.pseudonym import Pseudonymizer, generate_key, load_key, shift_da, shift_dt, shift_iso


def test_labels_stable_and_keyed():
    a, b = Pseudonymizer(b"k" * 32), Pseudonymizer(b"j" * 32)
    assert a.subject("01") == Pseudonymizer(b"k" * 32).subject("01")
    assert a.subject("01") != b.subject("01")
    assert a.subject("01") != a.subject("02")
    assert re.fullmatch(r"[a-z0-9]{10}", a.subject("patient 01 ^ weird"))


def test_uid_form_and_consistency():
    p = Pseudonymizer(b"k" * 32)
    u = p.uid("1.2.3.4.5")
    assert u == p.uid("1.2.3.4.5 ") == p.uid("1.2.3.4.5\x00")
    assert u != p.uid("1.2.3.4.6")
    assert re.fullmatch(r"2\.25\.[1-9][0-9]*", u) and len(u) <= 64
    # UUID-shaped: the version nibble is 8
    n = int(u.split(".")[-1])
    assert (n >> 76) & 0xF == 8


def test_date_offset_range_and_stable():
    p = Pseudonymizer(b"k" * 32)
    offs = {p.date_offset_days(f"s{i}") for i in range(200)}
    assert all(-3650 <= o <= -365 for o in offs)
    assert len(offs) > 150
    assert p.date_offset_days("s1") == Pseudonymizer(b"k" * 32).date_offset_days("s1")


@pytest.mark.parametrize(
    "value,days,expected",
    [
        ("2020-03-01", -1, "2020-02-29"),
        ("2020-03-01T10:11:12.5", -366, "2019-03-01T10:11:12.5"),
        ("2020-03-01T10:11:12Z", 1, "2020-03-02T10:11:12Z"),
        ("not a date", 3, None),
        ("2020-13-01", 3, None),
    ],
)
def test_shift_iso(value, days, expected):
    assert shift_iso(value, days) == expected


def test_shift_dicom_forms():
    assert shift_da("20200301", -1) == "20200229"
    assert shift_da("2020", 3) is None
    assert shift_dt("20200301101112.123+0100", -1) == "20200229101112.123+0100"


def test_key_file_roundtrip(tmp_path, monkeypatch):
    path = generate_key(tmp_path / "k")
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_key(path) == load_key(path)
    with pytest.raises(KeyFileError):
        generate_key(path)
    with pytest.raises(KeyFileError, match="generate-key"):
        load_key(None)
    good = path.read_text().strip()
    monkeypatch.setenv("BIDS_DEID_KEY", good)
    assert load_key(None) == good.encode()
    (tmp_path / "short").write_text("abc")
    (tmp_path / "short").chmod(0o600)
    with pytest.raises(KeyFileError, match="too short"):
        load_key(tmp_path / "short")


@pytest.mark.parametrize("text, why", [
    ("a" * 16, "too short"),  # accepted before: sixteen a's
    ("x" * 40, "distinct"),
    ("abababababcdcdcdcdcdefefefefefghghghghgh", "distinct"),
    ("abcdefghijkl" + "a" * 30, "entropy"),
])
def test_weak_keys_refused_with_how_to_make_one(tmp_path, monkeypatch, text, why):
    f = tmp_path / "weak.key"
    f.write_text(text + "\n")
    f.chmod(0o600)
    with pytest.raises(KeyFileError, match=why) as exc:
        load_key(f)
    assert "--generate-key" in str(exc.value)
    monkeypatch.setenv("BIDS_DEID_KEY", text)
    with pytest.raises(KeyFileError, match=why):
        load_key(None)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_key_file_open_to_others_refused(tmp_path, mode):
    f = generate_key(tmp_path / "k")
    f.chmod(mode)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_key(f)
    f.chmod(0o600)
    assert load_key(f)


def test_generated_and_hex_keys_are_strong():
    import secrets

    from bids_deid.pseudonym import key_weakness

    for _ in range(200):
        assert key_weakness(secrets.token_urlsafe(32)) is None
        assert key_weakness(secrets.token_hex(32)) is None
