"""Reviewed acceptances: a person looked at a hit and says why it is not a leak.

An acceptance lives in the private dir (``audit-accepted.json``, 0600) and is bound to the
hit's id, the found value (a salted hash of it), the file's SHA-256 and the reviewer's
reason. The audit honours it only while the file is byte for byte the one reviewed: a
changed file re-opens its accepted hits. Nothing is ever accepted by default.

Hit ids are keyed with a random salt kept in the private dir, so an id printed on a terminal
or in a batch log tells nothing about the value (a short date could otherwise be guessed
from an unkeyed hash).
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import hmac
import os
from pathlib import Path

from ..errors import BidsDeidError
from ..private import create_once, read_json, write_json

ACCEPTED = "audit-accepted.json"
SALT = "audit-salt"


def salt(private_dir: Path) -> bytes:
    """The private dir's audit salt (made once, race-safe between parallel jobs)."""
    path = private_dir / SALT
    if not path.exists():
        create_once(path, os.urandom(32).hex().encode() + b"\n")
    return path.read_bytes().strip()


def keyed(s: bytes, *parts: str) -> str:
    return hmac.new(s, "\0".join(parts).encode("utf-8"), hashlib.sha256).hexdigest()


def hit_id(s: bytes, file: str, cls: str, value: str, where: str) -> str:
    """Stable id of one hit: the same value of the same class found in the same place of the same file."""
    return "h" + keyed(s, "hit", file, cls, value.lower(), where)[:11]


def value_hash(s: bytes, value: str) -> str:
    return keyed(s, "value", value.lower())[:32]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def load(private_dir: Path) -> list[dict]:
    return list(read_json(private_dir / ACCEPTED, []) or [])


def settle(hits: list[dict], output_dir: Path, private_dir: Path) -> None:
    """Mark each hit ``accepted`` (reviewed, file unchanged), ``re-opened`` (file changed) or ``open``."""
    s = salt(private_dir)
    by_id = {a["id"]: a for a in load(private_dir)}
    hashes: dict[str, str] = {}
    for h in hits:
        a = by_id.get(h["id"])
        h["status"] = "open"
        if a is None or a.get("value_hash") != value_hash(s, h["value"]):
            continue
        path = output_dir / h["file"]
        if h["file"] not in hashes:
            hashes[h["file"]] = file_sha256(path) if path.is_file() else ""
        if hashes[h["file"]] == a.get("file_sha256"):
            h["status"] = "accepted"
            h["accepted"] = {k: a[k] for k in ("reason", "by", "at")}
        else:
            h["status"] = "re-opened"
            h["accepted"] = {**{k: a[k] for k in ("reason", "by", "at")}, "note": "the file changed since"}


def accept(hits: list[dict], ids: list[str], reason: str, output_dir: Path, private_dir: Path) -> list[dict]:
    """Record a reviewed acceptance of each hit in ``ids``; return the new records."""
    if not reason or len(reason.strip()) < 8:
        raise BidsDeidError("--accept needs --reason \"...\": say in a few words why the hit is not a leak")
    by_id = {h["id"]: h for h in hits}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise BidsDeidError(f"no hit with id {', '.join(missing)} in this output; run bids-deid-audit to list them")
    s = salt(private_dir)
    records = {a["id"]: a for a in load(private_dir)}
    new = []
    for i in ids:
        h = by_id[i]
        path = output_dir / h["file"]
        rec = {"id": i, "file": h["file"], "class": h["class"], "kind": h["kind"], "where": h["where"],
               "value_hash": value_hash(s, h["value"]), "file_sha256": file_sha256(path) if path.is_file() else "",
               "reason": reason.strip(), "by": _user(), "at": dt.datetime.now(dt.UTC).isoformat(
                   timespec="seconds")}
        records[i] = rec
        new.append(rec)
    write_json(private_dir / ACCEPTED, sorted(records.values(), key=lambda a: (a["file"], a["id"])))
    return new


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
