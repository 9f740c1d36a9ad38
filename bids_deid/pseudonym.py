"""Keyed pseudonyms: subject/session labels, DICOM UIDs and per-subject date shifts.

Everything is derived from one secret key with HMAC-SHA256, so the same key gives
the same pseudonyms, UIDs and offsets on every machine, in every run and in every
parallel participant job, with no shared state between them.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import os
import re
import secrets
import string
from functools import lru_cache
from pathlib import Path

from .errors import KeyFileError

KEY_ENV = "BIDS_DEID_KEY"
KEY_BYTES = 32
LABEL_ALPHABET = string.digits + string.ascii_lowercase  # BIDS labels: alphanumeric
LABEL_LENGTH = 10  # 36**10 ~ 3.6e15: collisions are checked anyway
# Date offsets: whole days, 1 to 10 years into the past.
OFFSET_MIN_DAYS = 365
OFFSET_MAX_DAYS = 3650


def generate_key(path: str | os.PathLike) -> Path:
    """Write a fresh random key to ``path`` (mode 0600); refuse to overwrite."""
    path = Path(path)
    if path.exists():
        raise KeyFileError(f"key file {path} already exists; refusing to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode() + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path


#: what a key must have: length, distinct characters and estimated entropy (bits)
KEY_MIN_CHARS = 32
KEY_MIN_DISTINCT = 12
KEY_MIN_BITS = 128
_MAKE_ONE = "make a good one with 'bids-deid --generate-key KEYFILE' (32 random bytes, mode 0600)"


def key_weakness(text: str) -> str | None:
    """Why ``text`` is too weak to be a key, or None.

    The entropy is estimated from the key's own character frequencies (Shannon entropy per
    character times its length): a guessable key (a repeated letter, a word, a short
    number) falls below :data:`KEY_MIN_BITS` even when it is long enough.
    """
    import math
    from collections import Counter

    if len(text) < KEY_MIN_CHARS:
        return f"too short ({len(text)} characters, need at least {KEY_MIN_CHARS})"
    counts = Counter(text)
    if len(counts) < KEY_MIN_DISTINCT:
        return f"too few distinct characters ({len(counts)}, need at least {KEY_MIN_DISTINCT})"
    bits = -sum(n * math.log2(n / len(text)) for n in counts.values())
    if bits < KEY_MIN_BITS:
        return f"too little entropy (about {bits:.0f} bits, need at least {KEY_MIN_BITS})"
    return None


def _decode_key(text: str, where: str) -> bytes:
    text = text.strip()
    weak = key_weakness(text)
    if weak:
        raise KeyFileError(f"the key in {where} is weak: {weak}; {_MAKE_ONE}")
    return text.encode("utf-8")


def check_key_place(key_file: str | os.PathLike, forbidden: dict[str, str | os.PathLike]) -> None:
    """Refuse a key file inside any of the ``forbidden`` folders (input, public output).

    A key inside the input would be read as data (and could be copied); inside the output it
    would be published.
    """
    key = Path(key_file).absolute().resolve()
    for what, folder in forbidden.items():
        f = Path(folder).absolute().resolve()
        if f == key or f in key.parents:
            raise KeyFileError(f"the key file {key_file} lies inside the {what} folder {folder}; move it to a "
                               "private place outside both (e.g. your home folder, mode 0600)")


def forget_key_env() -> None:
    """Drop ``$BIDS_DEID_KEY`` from this process's environment once the key is read.

    Every child process (the validator, dcm2niix, workers started later) then starts without it.
    """
    os.environ.pop(KEY_ENV, None)


def load_key(key_file: str | os.PathLike | None = None) -> bytes:
    """Return the key from ``key_file`` or the ``BIDS_DEID_KEY`` environment variable.

    Raises
    ------
    KeyFileError
        When there is no key, it cannot be read, it is weak, or its file can be read by the
        group or by others.
    """
    if key_file is not None:
        path = Path(key_file)
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise KeyFileError(f"cannot read key file {path}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise KeyFileError(f"key file {path} is not text") from exc
        if mode & 0o077:
            raise KeyFileError(f"key file {path} can be read by others (mode {mode & 0o777:04o}); "
                               f"make it private with: chmod 600 {path}")
        return _decode_key(text, str(path))
    env = os.environ.get(KEY_ENV)
    if env:
        return _decode_key(env, f"${KEY_ENV}")
    raise KeyFileError(
        "no pseudonymization key: create one with 'bids-deid --generate-key KEYFILE' "
        f"and pass it with --key-file KEYFILE (or set ${KEY_ENV}); keep it private"
    )


def key_fingerprint(key: bytes) -> str:
    """A one-way fingerprint to tell whether two runs used the same key."""
    return hmac.new(key, b"bids-deid/fingerprint/v1", hashlib.sha256).hexdigest()[:16]


def _digest(key: bytes, domain: str, value: str) -> bytes:
    return hmac.new(key, f"{domain}\x00{value}".encode(), hashlib.sha256).digest()


def _to_label(digest: bytes, length: int = LABEL_LENGTH) -> str:
    n = int.from_bytes(digest, "big")
    out = []
    for _ in range(length):
        n, r = divmod(n, len(LABEL_ALPHABET))
        out.append(LABEL_ALPHABET[r])
    return "".join(out)


class Pseudonymizer:
    """Keyed pseudonyms for one key.

    Parameters
    ----------
    key : bytes
        The secret key (see :func:`load_key`).
    """

    def __init__(self, key: bytes):
        self._key = key
        self.fingerprint = key_fingerprint(key)
        self._seen: dict[tuple[str, str], str] = {}

    def _label(self, domain: str, original: str) -> str:
        label = _token(self._key, domain, original, LABEL_LENGTH)
        prior = self._seen.setdefault((domain, label), original)
        if prior != original:  # pragma: no cover - 36**10 space, but never silent
            raise KeyFileError(f"pseudonym collision between two {domain} labels; use another key")
        return label

    def subject(self, original: str) -> str:
        """Pseudonymous subject label (without ``sub-``) for an original label or PatientID."""
        return self._label("subject", original)

    def session(self, subject: str, original: str) -> str:
        """Pseudonymous session label; depends on the subject so it cannot be linked across."""
        return self._label("session", f"{subject}\x00{original}")

    def date_offset_days(self, subject: str) -> int:
        """Whole days to add to every date of ``subject`` (negative: into the past)."""
        return _offset(self._key, subject)

    def uid(self, original: str) -> str:
        """Remap a DICOM UID to ``2.25.<decimal>`` (a UUID-shaped 128-bit number)."""
        return _uid(self._key, original.strip().rstrip("\x00"))

    def text_token(self, domain: str, original: str, length: int = 12) -> str:
        """A keyed opaque token for free-text values that must stay consistent."""
        return _token(self._key, domain, original, length)


# Keyed values are pure functions of (key, input): cached, since a DICOM series asks for the same
# subject, series token and date offset once per file.
@lru_cache(maxsize=4096)
def _token(key: bytes, domain: str, original: str, length: int) -> str:
    return _to_label(_digest(key, domain, original), length)


@lru_cache(maxsize=1024)
def _offset(key: bytes, subject: str) -> int:
    n = int.from_bytes(_digest(key, "dateshift", subject)[:8], "big")
    return -(OFFSET_MIN_DAYS + n % (OFFSET_MAX_DAYS - OFFSET_MIN_DAYS + 1))


@lru_cache(maxsize=1 << 16)
def _uid(key: bytes, original: str) -> str:
    b = bytearray(_digest(key, "uid", original)[:16])
    b[6] = (b[6] & 0x0F) | 0x80  # UUID version 8 (custom, RFC 9562)
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    return "2.25." + str(int.from_bytes(bytes(b), "big"))


# ---------------------------------------------------------------- date shifting
_ISO_RE = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})(?:(?P<sep>[T ])(?P<time>\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)(?P<tz>Z|[+-]\d{2}:?\d{2})?)?$"
)


def shift_iso(value: str, days: int) -> str | None:
    """Shift an ISO-8601 date or datetime string by ``days``; None if it does not parse."""
    m = _ISO_RE.match(value.strip())
    if not m:
        return None
    try:
        d = dt.date.fromisoformat(m["date"]) + dt.timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    rest = value.strip()[len(m["date"]) :]
    return d.isoformat() + rest


@lru_cache(maxsize=8192)
def shift_da(value: str, days: int) -> str | None:
    """Shift a DICOM DA value (YYYYMMDD); None if it does not parse."""
    v = value.strip()
    if not re.fullmatch(r"\d{8}", v):
        return None
    try:
        d = dt.datetime.strptime(v, "%Y%m%d").date() + dt.timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    return f"{d.year:04d}{d.month:02d}{d.day:02d}"


@lru_cache(maxsize=8192)
def shift_dt(value: str, days: int) -> str | None:
    """Shift a DICOM DT value (YYYYMMDD[hhmmss[.f]][&ZZXX]) keeping its time part."""
    v = value.strip()
    m = re.fullmatch(r"(\d{4})(\d{2})?(\d{2})?(.*)", v)
    if not m:
        return None
    if m[2] is None or m[3] is None:  # year or year+month only: shift by year fraction
        return v if days == 0 else None
    shifted = shift_da(m[1] + m[2] + m[3], days)
    return None if shifted is None else shifted + m[4]
