"""TSV files: participants/phenotype column allowlists, age caps, shifted acq_time."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from ..errors import InputError
from ..profiles import Profile
from ..pseudonym import shift_iso
from .base import ScrubLog

_AGE_NUM = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*$")


def read_tsv(data: bytes, where: str) -> tuple[list[str], list[list[str]]]:
    """Parse TSV bytes into (header, rows); one-line error if it is not TSV."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"TSV file {where} is not UTF-8") from exc
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise InputError(f"TSV file {where} is empty")
    rows = [ln.split("\t") for ln in lines]
    header, body = rows[0], rows[1:]
    for i, r in enumerate(body, start=2):
        if len(r) != len(header):
            raise InputError(f"TSV file {where}: line {i} has {len(r)} columns, header has {len(header)}")
    return header, body


def regzip_stream(src: Path):
    """A :data:`~bids_deid.formats.base.Stream` re-compressing ``src`` (gzip) with a bare header.

    A gzip header may hold the original file name, a comment, extra fields and a
    timestamp, all possibly identifying; the new one holds none of them (mtime 0). The
    stream raises InputError when ``src`` is not a complete, readable gzip file.
    """

    def stream(out) -> None:
        import zlib

        from isal import igzip
        from isal.igzip_lib import IsalError

        try:
            with igzip.open(src, "rb") as fh, igzip.IGzipFile(filename="", mode="wb", fileobj=out, compresslevel=2,
                                                              mtime=0) as gz:
                while chunk := fh.read(8 << 20):
                    gz.write(chunk)
        except (OSError, EOFError, zlib.error, IsalError) as exc:
            if isinstance(exc, FileNotFoundError | PermissionError) and exc.filename and str(exc.filename) != str(src):
                raise
            raise InputError(f"cannot read {src.name}: corrupt or truncated gzip ({exc.__class__.__name__})") from exc

    return stream


def regzip(src: Path, dst: Path) -> None:
    """Re-compress ``src`` (gzip) into ``dst`` (atomic) with a bare header (see :func:`regzip_stream`)."""
    from ..atomic import write_content

    write_content(dst, regzip_stream(src))


def write_tsv(header: list[str], rows: list[list[str]]) -> bytes:
    """Deterministic TSV bytes."""
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_NONE, escapechar="\\")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _cap_age(value: str, cap: int) -> str:
    m = _AGE_NUM.match(value)
    if m and float(m[1]) > cap:
        return str(cap)
    return value


def scrub_participants(
    header: list[str], rows: list[list[str]], profile: Profile, relabel: dict[str, str], log: ScrubLog
) -> tuple[list[str], list[list[str]], list[str]]:
    """Filter a participants/phenotype table to the profile's columns.

    ``relabel`` maps original ``sub-<label>`` to pseudonymous ``sub-<label>``; rows of
    participants not in it are dropped (they are not in the output). Returns the new
    header, rows, and the removed column names (to drop from the JSON sidecar).
    """
    if "participant_id" not in header:
        raise InputError("participants table has no participant_id column")
    keep_cols = [c for c in header if _column_kept(c, profile)]
    removed = [c for c in header if c not in keep_cols]
    for c in removed:
        log.change(c, "remove", "column not in the profile's participants_columns")
    idx = [header.index(c) for c in keep_cols]
    pid = header.index("participant_id")
    shared = _shared_values(header, rows, removed)
    out_rows = []
    for r in rows:
        orig = r[pid].strip()
        if orig not in relabel:
            continue
        for c in removed:
            v = r[header.index(c)]
            # A value several participants share (a group, a batch) is recorded as such: the
            # audit then knows it names no one person (unless the column holds names or dates).
            log.met(f"tsv:{c} (shared)" if (c, v.strip()) in shared else f"tsv:{c}", v)
        new = []
        for i in idx:
            col, val = header[i], r[i]
            if i == pid:
                val = relabel[orig]
            elif col == "age":
                capped = _cap_age(val, profile.age_cap)
                if capped != val:
                    log.change("age", "replace", f"age above {profile.age_cap} capped")
                val = capped
            new.append(val)
        out_rows.append(new)
    out_rows.sort(key=lambda r: r[0])
    return keep_cols, out_rows, removed


def _shared_values(header: list[str], rows: list[list[str]], columns: list[str]) -> set[tuple[str, str]]:
    """``(column, value)`` pairs that appear in two or more rows."""
    counts: dict[tuple[str, str], int] = {}
    for c in columns:
        i = header.index(c)
        for r in rows:
            if i < len(r) and r[i].strip():
                counts[(c, r[i].strip())] = counts.get((c, r[i].strip()), 0) + 1
    return {k for k, n in counts.items() if n >= 2}


def _column_kept(col: str, profile: Profile) -> bool:
    rule = profile.tabular_rule(col)
    if rule is not None:
        return rule.action != "remove"
    return col in profile.participants_columns


def scrub_dated_table(
    header: list[str], rows: list[list[str]], profile: Profile, offset_days: int, relabel_path, log: ScrubLog
) -> tuple[list[str], list[list[str]]]:
    """scans.tsv / sessions.tsv: shift ``acq_time``, rename ``filename``/``session_id``.

    Columns the BIDS schema does not define are removed unless the profile keeps them.
    ``relabel_path`` maps an original value of ``filename`` or ``session_id`` to its new form.
    """
    from ..schema import column_names

    known = column_names()
    keep = []
    for c in header:
        rule = profile.tabular_rule(c)
        if (rule is not None and rule.action != "remove") or (rule is None and c in known):
            keep.append(c)
        else:
            log.change(c, "remove", "column not defined by BIDS")
    out_rows = []
    for r in rows:
        new = []
        for c in keep:
            val = r[header.index(c)]
            rule = profile.tabular_rule(c)
            action = rule.action if rule else "keep"
            if c in ("filename", "session_id"):
                val = relabel_path(val)
            elif c == "acq_time" or action == "shift_date":
                val = _date_cell(val, profile, offset_days, c, log)
            elif action == "empty":
                log.met(f"tsv:{c}", val)
                val = "n/a"
            elif action == "replace":
                log.met(f"tsv:{c}", val)
                val = str(rule.value)
            new.append(val)
        out_rows.append(new)
    for c in header:
        if c not in keep:
            for r in rows:
                log.met(f"tsv:{c}", r[header.index(c)])
    return keep, out_rows


def _date_cell(val: str, profile: Profile, offset_days: int, col: str, log: ScrubLog) -> str:
    if val in ("n/a", ""):
        return val
    if profile.dates == "keep":
        return val
    log.met(f"tsv:{col}", val)
    if profile.dates == "remove":
        log.change(col, "empty", "profile removes dates")
        return "n/a"
    shifted = shift_iso(val, offset_days)
    if shifted is None:
        log.change(col, "empty", "date that does not parse")
        return "n/a"
    return shifted


# ------------------------------------------------------------------ the format module interface
NAME = "tsv"
SUFFIXES = (".tsv", ".tsv.gz")
COMPANION_SUFFIXES: tuple[str, ...] = ()
#: tables whose dates are shifted and whose columns follow the schema (the rest are copied, relabelled)
DATED = ("_scans.tsv", "_sessions.tsv")


def sniff(path: Path) -> bool:
    return path.name.endswith(SUFFIXES) and path.is_file()


def companions(path: Path) -> list[Path]:
    return []


def scrub(src: Path, profile: Profile, ctx):
    """A table of a subject under ``ctx.rel_out``.

    ``*_scans.tsv`` / ``*_sessions.tsv``: :func:`scrub_dated_table`; a scans table also loses
    the rows of files not in the output (``ctx.in_output``). Other tables (events, channels
    ...) are carried with every label in their text relabelled (they name files, such as
    ``stim_file``); a ``.tsv.gz`` is re-compressed with a bare gzip header.
    """
    from .base import Outcome

    log = ScrubLog()
    if src.name.endswith(DATED):
        header, rows = read_tsv(src.read_bytes(), src.name)
        header, rows = scrub_dated_table(header, rows, profile, ctx.offset_days, ctx.relabel, log)
        if ctx.rel_out.endswith("_scans.tsv") and "filename" in header:
            col, base = header.index("filename"), ctx.rel_out.rsplit("/", 1)[0]
            kept = [r for r in rows if ctx.in_output(f"{base}/{r[col]}")]
            if len(kept) != len(rows):
                log.change("filename", "remove", f"{len(rows) - len(kept)} row(s) of files not in the output")
            rows = kept
        return Outcome(writes={ctx.rel_out: write_tsv(header, rows)}, log=log)
    if src.name.endswith(".gz"):
        return Outcome(writes={ctx.rel_out: regzip_stream(src)}, log=log)
    raw = src.read_bytes()
    try:
        raw = ctx.relabel(raw.decode("utf-8")).encode("utf-8")
    except UnicodeDecodeError:
        pass
    return Outcome(writes={ctx.rel_out: raw}, log=log)
