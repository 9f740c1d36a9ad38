"""One pass over each file with a multi-pattern matcher, then an exact check of each candidate.

The matcher finds every needle form case-blind, in UTF-8, UTF-16-LE/BE and Latin-1, in one
pass (Hyperscan's literal compiler where installed, else one compiled alternation). A
candidate then counts only when it sits in the text as its class requires (whole word,
whole token, whole number; see :mod:`.needles`). ``.gz`` files are unpacked with ISA-L as a
stream, member by member, and their gzip headers (which can hold a file name and a comment)
are searched too. In the voxel block of a NIfTI image, the pixel data of a DICOM file and the
raw data of a twix file, only forms of at least ``BINARY_MIN`` bytes count: a short token
meets random numbers by chance every few megabytes.
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from .needles import BINARY_MIN, CASE_EXACT_BELOW, EXACT, NUMBER, WORD, Needle

CHUNK = 4 << 20
ENCODINGS = ("utf-8", "utf-16-le", "utf-16-be", "latin-1")
TEXT_SUFFIXES = (".json", ".tsv", ".txt", ".md", ".bval", ".bvec", ".csv", ".html", ".xml", ".yaml", ".yml",
                 ".rst", ".vmrk", ".vhdr", ".tsv.gz")
TEXT_NAMES = ("README", "CHANGES", "LICENSE", "CITATION.cff")
CONTEXT = 24
LONG_FORM = 12  # forms this long count inside a longer word too (no chance look-alike at that length)
NL = b"\n"

try:  # pragma: no cover - which branch runs depends on the platform
    import hyperscan as _hs
except ImportError:  # pragma: no cover
    _hs = None
if os.environ.get("BIDS_DEID_AUDIT_NO_HYPERSCAN"):  # pragma: no cover - to test the fallback matcher
    _hs = None


@dataclass
class Found:
    """One occurrence of a needle form in one file (before grouping into hits)."""

    form: int  # index into Matcher.forms
    where: str  # "content", "file name", "gzip header"
    offset: int  # byte offset (in the unpacked stream for .gz)
    encoding: str
    context: str = ""


@dataclass
class FileResult:
    rel: str
    size: int = 0
    unpacked: int = 0
    found: list[Found] = field(default_factory=list)
    error: str = ""
    locations: dict[int, str] = field(default_factory=dict)  # offset -> JSON path / TSV cell


class Matcher:
    """All needle forms compiled once; ``scan`` returns verified occurrences in a buffer."""

    def __init__(self, needles: list[Needle]):
        self.forms: list[tuple[str, str, bytes | None]] = []  # (form lower, mode, exact bytes)
        titled: set[int] = set()  # short forms that may also be written in title case (name parts)
        self.needles: list[list[Needle]] = []
        index: dict[tuple[str, str, bytes | None], int] = {}
        for n in needles:
            short = len(n.form) < CASE_EXACT_BELOW
            key = (n.form if short else n.form.lower(), n.mode, n.exact)
            if key not in index:
                index[key] = len(self.forms)
                self.forms.append(key)
                self.needles.append([])
            self.needles[index[key]].append(n)
            if n.cls == "person name":
                titled.add(index[key])
        # (pattern bytes, form index, encoding, caseless)
        pats: dict[tuple[bytes, bool], tuple[int, str]] = {}
        for i, (low, _mode, exact) in enumerate(self.forms):
            if exact is not None:
                if exact:
                    pats.setdefault((exact, False), (i, "bytes"))
                continue
            short = len(low) < CASE_EXACT_BELOW
            if short:  # as written or in capitals, case kept: "USC" and "Usc" but not "usc" inside prose
                variants = {low, low.upper()} | ({low.title()} if i in titled else set())
            else:
                variants = {low, low.upper(), low.title()} if not low.isascii() else {low}
            for enc in ENCODINGS:
                for v in variants:
                    try:
                        b = v.encode(enc)
                    except UnicodeEncodeError:
                        continue
                    if not b or enc == "latin-1" and b == v.encode("utf-8"):
                        continue  # ASCII: the UTF-8 pattern finds it
                    pats.setdefault((b, not short), (i, enc))
        self.patterns = list(pats.items())
        # scopes each form may be found in: "*" anywhere, else subject labels (see Needle.scope)
        self.scopes = [{n.scope for n in lst} for lst in self.needles]
        self.longest = max((len(p[0][0]) for p in self.patterns), default=1)
        self._db = None
        self._rx = None
        if not self.patterns:
            return
        if _hs is not None:
            db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
            db.compile(expressions=[_hs_escape(p[0][0]) for p in self.patterns], ids=list(range(len(self.patterns))),
                       elements=len(self.patterns),
                       flags=[_hs.HS_FLAG_CASELESS if p[0][1] else 0 for p in self.patterns])
            self._db = db
        else:  # one compiled alternation (slower; same results)
            self._rx = []
            for cl in (True, False):
                pats = sorted((p[0][0] for p in self.patterns if p[0][1] == cl), key=len, reverse=True)
                if pats:  # a lookahead at every position: overlapping occurrences too (longest first)
                    alt = b"|".join(re.escape(p) for p in pats)
                    self._rx.append((re.compile(b"(?=(" + alt + b"))", re.IGNORECASE if cl else 0), cl))
            self._by_bytes = {(p[0][0].lower() if p[0][1] else p[0][0]): j for j, p in enumerate(self.patterns)}
            # shorter patterns that begin a longer one: found at the same place as the longer one
            self._prefixes = {j: [k for n in range(1, len(b)) if (k := self._by_bytes.get(b[:n])) is not None
                                  and self.patterns[k][0][1] == self.patterns[j][0][1]]
                              for b, j in self._by_bytes.items()}

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def candidates(self, buf: bytes) -> list[tuple[int, int]]:
        """``(pattern index, end offset)`` of every literal occurrence in ``buf``."""
        out: list[tuple[int, int]] = []
        if self._db is not None:
            def on(pid, _from, to, _flags, _ctx):
                out.append((pid, to))

            self._db.scan(buf, match_event_handler=on)
        elif self._rx is not None:
            for rx, cl in self._rx:
                for m in rx.finditer(buf):
                    g = m.group(1)
                    j = self._by_bytes.get(g.lower() if cl else g)
                    if j is not None:
                        out.append((j, m.start() + len(g)))
                        out += [(k, m.start() + len(self.patterns[k][0][0])) for k in self._prefixes[j]]
        out.sort(key=lambda c: (c[1], c[0]))  # by place: results do not depend on the engine's order
        return out

    def fits(self, fi: int, scope: str) -> bool:
        """May form ``fi`` count in a file of ``scope``?

        A file's scope is its subject label ("*" when it has no needles of its own, "<all>" for
        dataset-level files), with "+text" for text files (JSON, TSV, README, ...).
        """
        return any(_scope_fits(n, scope) for n in self.scopes[fi])

    def needles_in(self, fi: int, scope: str) -> list[Needle]:
        return [n for n in self.needles[fi] if _scope_fits(n.scope, scope)]

    def scan(self, buf: bytes, base: int, lo: int, hi: int, binary: list[tuple[int, int]], final: bool,
             where: str = "content", scope: str = "<all>") -> list[Found]:
        """Verified occurrences in ``buf`` (which starts at stream offset ``base``) starting in [lo, hi)."""
        found = []
        n = len(buf)
        for pid, end in self.candidates(buf):
            (pat, _caseless), (fi, enc) = self.patterns[pid]
            if not self.fits(fi, scope):
                continue
            start = end - len(pat)
            if not lo <= base + start < hi:
                continue  # judged in another buffer
            if not final and end + 4 > n:  # pragma: no cover - the window keeps clear of the end
                continue
            if len(self.forms[fi][0]) < BINARY_MIN and _in_regions(base + start, binary):
                continue
            mode = self.forms[fi][1]
            if mode == WORD and len(self.forms[fi][0]) >= LONG_FORM:
                mode = NUMBER  # a long value glued into other text is still that value; digit edges still count
            if mode != EXACT and not _bounded(buf, start, end, enc, mode):
                continue
            found.append(Found(fi, where, base + start, enc, _context(buf, start, end, enc)))
        return found


def _scope_fits(needle_scope: str, file_scope: str) -> bool:
    """Needle scopes: "*" everywhere; a label: that subject's files; "text:label": those and every text file."""
    base, _plus, text = file_scope.partition("+")
    if needle_scope == "*" or base == "<all>" or needle_scope == base:
        return True
    return needle_scope.startswith("text:") and (bool(text) or needle_scope[5:] == base)


def _hs_escape(pat: bytes) -> bytes:
    """A literal as a Hyperscan expression: letters and digits as they are, every other byte as \\xHH."""
    return b"".join(bytes([c]) if (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122) else b"\\x%02x" % c
                    for c in pat)


def _in_regions(off: int, regions: list[tuple[int, int]]) -> bool:
    return any(a <= off < b for a, b in regions)


def _char_before(buf: bytes, i: int, enc: str) -> str:
    if enc == "utf-16-le":
        return buf[i - 2:i].decode(enc, "replace") if i >= 2 else ""
    if enc == "utf-16-be":
        return buf[i - 2:i].decode(enc, "replace") if i >= 2 else ""
    if i <= 0:
        return ""
    c = buf[i - 1]
    if c < 0x80 or enc == "latin-1":
        return chr(c)
    j = i - 1  # step back over UTF-8 continuation bytes
    while j > 0 and i - j < 4 and 0x80 <= buf[j] < 0xC0:
        j -= 1
    return buf[j:i].decode("utf-8", "replace")[-1:]


def _char_after(buf: bytes, i: int, enc: str, k: int = 1) -> str:
    if enc.startswith("utf-16"):
        return buf[i:i + 2 * k].decode(enc, "replace")
    if enc == "latin-1":
        return buf[i:i + k].decode("latin-1")
    return buf[i:i + 4 * k].decode("utf-8", "replace")[:k]


def _wordy(ch: str) -> bool:
    return bool(ch) and ch.isalnum() and ch != "\ufffd"


def _bounded(buf: bytes, start: int, end: int, enc: str, mode: str) -> bool:
    """True when the occurrence stands alone as its mode requires.

    WORD: not inside a run of letters and digits (names, places, IDs, devices, labels).
    NUMBER: not inside a longer run of digits (dates, UIDs: ``1961-07-04T00:00`` counts).
    Either way a digit edge that continues a decimal number (``0.45321``) does not count.
    """
    before, after = _char_before(buf, start, enc), _char_after(buf, end, enc, 2)
    if mode == NUMBER:
        if before.isdigit() or after[:1].isdigit():
            return False
    elif _wordy(before) or _wordy(after[:1]):
        return False
    w = 2 if enc.startswith("utf-16") else 1
    first, last = _char_after(buf, start, enc), _char_before(buf, end, enc)
    if first.isdigit() and before == "." and start >= 2 * w and _char_before(buf, start - w, enc).isdigit():
        return False  # the tail of a decimal number or of a longer UID
    if last.isdigit() and after[:1] == "." and after[1:2].isdigit():
        return False
    return True


def _context(buf: bytes, start: int, end: int, enc: str) -> str:
    w = 2 if enc.startswith("utf-16") else 1
    a = max(0, start - CONTEXT * w)
    a -= (start - a) % w
    text = buf[a:end + CONTEXT * w].decode("latin-1" if enc == "bytes" else enc, "replace")
    return "".join(c if c.isprintable() else "." for c in text)


# ------------------------------------------------------------------ file structure
def binary_regions(path: Path, head: bytes, size: int) -> list[tuple[int, int]]:
    """Byte ranges (of the unpacked stream) that hold numbers only: voxels, pixels, raw k-space."""
    name = path.name.lower()
    try:
        if name.endswith((".nii", ".nii.gz")):
            return _nifti_voxels(head)
        if name.endswith(".dcm") or head[128:132] == b"DICM":
            return _dicom_pixels(path, head, size)
        if name.endswith(".dat"):
            return _twix_data(path, size)
    except (struct.error, ValueError, OSError):
        return []
    return []


def _nifti_voxels(head: bytes) -> list[tuple[int, int]]:
    if len(head) < 348:
        return []
    for e in "<>":
        n = struct.unpack_from(e + "i", head, 0)[0]
        if n == 348:
            dims = struct.unpack_from(e + "8h", head, 40)
            bitpix = struct.unpack_from(e + "h", head, 72)[0]
            off = int(struct.unpack_from(e + "f", head, 108)[0])
            break
        if n == 540:
            dims = struct.unpack_from(e + "8q", head, 16)
            bitpix = struct.unpack_from(e + "h", head, 14)[0]
            off = int(struct.unpack_from(e + "q", head, 168)[0])
            break
    else:
        return []
    nd = max(1, min(int(dims[0]), 7))
    count = 1
    for d in dims[1:nd + 1]:
        count *= max(1, int(d))
    return [(off, off + count * max(1, bitpix) // 8)]


_PIXEL_TAGS = (b"\xe0\x7f\x10\x00", b"\xe0\x7f\x08\x00", b"\xe0\x7f\x09\x00")


def _dicom_pixels(path: Path, head: bytes, size: int) -> list[tuple[int, int]]:
    """The value of the pixel data element that ends the file (a look-alike tag inside the header does not)."""
    with open(path, "rb") as fh:
        data = fh.read(min(size, 16 << 20))
    for tag in _PIXEL_TAGS:
        i = data.find(tag)
        while i >= 0:
            vr = data[i + 4:i + 6]
            if vr in (b"OB", b"OW", b"OF", b"OD", b"OL", b"UN") and data[i + 6:i + 8] == b"\0\0":
                n, start = struct.unpack_from("<I", data, i + 8)[0], i + 12
            else:  # implicit VR
                n, start = struct.unpack_from("<I", data, i + 4)[0], i + 8
            end = size if n == 0xFFFFFFFF else start + n
            if 0 <= size - end < 4096:
                return [(start, end)]
            i = data.find(tag, i + 1)
    return []


def _twix_data(path: Path, size: int) -> list[tuple[int, int]]:
    from ..formats.twix import twix_layout

    try:
        _version, names, buffers = twix_layout(path)
    except Exception:  # noqa: BLE001 - not twix: no binary region known
        return []
    text = sorted([(o, o + n) for o, n in names] + [(o, o + n) for _nm, o, n in buffers])
    regions, pos = [], 0
    for a, b in text:
        if a > pos:
            regions.append((pos, a))
        pos = max(pos, b)
    if pos < size:
        regions.append((pos, size))
    return [r for r in regions if r[1] - r[0] > 0]


# ------------------------------------------------------------------ streams
def _gzip_members(fh, on_header):
    """Yield the unpacked bytes of every gzip member of ``fh`` (ISA-L); headers go to ``on_header``."""
    from isal import isal_zlib

    buf = fh.read(CHUNK)
    pos = 0  # unpacked offset
    while len(buf) >= 10 and buf[:2] == b"\x1f\x8b":
        while True:
            hdr_len = _gzip_header_len(buf)
            if hdr_len is not None:
                break
            more = fh.read(CHUNK)
            if not more:
                raise EOFError("truncated gzip header")
            buf += more
        on_header(buf[:hdr_len], pos)
        d = isal_zlib.decompressobj(-15)
        data = buf[hdr_len:]
        while True:
            out = d.decompress(data, CHUNK)
            if out:
                pos += len(out)
                yield out
            while d.unconsumed_tail and not d.eof:
                out = d.decompress(d.unconsumed_tail, CHUNK)
                pos += len(out)
                yield out
            if d.eof:
                break
            data = fh.read(CHUNK)
            if not data:
                raise EOFError("truncated gzip stream")
        rest = d.unused_data
        while len(rest) < 8:
            more = fh.read(CHUNK)
            if not more:
                break
            rest += more
        buf = rest[8:]
        if len(buf) < 10:
            buf += fh.read(CHUNK)


def _gzip_header_len(buf: bytes) -> int | None:
    if len(buf) < 10:
        return None
    flags = buf[3]
    i = 10
    if flags & 4:
        if len(buf) < i + 2:
            return None
        i += 2 + struct.unpack_from("<H", buf, i)[0]
    for bit in (8, 16):
        if flags & bit:
            j = buf.find(b"\0", i)
            if j < 0:
                return None
            i = j + 1
    if flags & 2:
        i += 2
    return i if i <= len(buf) else None


def _stream_scan(matcher: Matcher, chunks, binary, res: FileResult, scope: str) -> None:
    """Scan a stream chunk by chunk; each stream offset is judged in exactly one buffer.

    A buffer accepts occurrences that start in its window [``lo``, ``hi``): far enough from its
    end that the whole form and the character after it are inside. Its last bytes (with some
    bytes before them, for the boundary check and the context) start the next buffer.
    """
    keep = matcher.longest + 8
    pre = 2 * CONTEXT + 8
    tail, base, lo = b"", 0, 0  # base: stream offset of buf[0]; lo: first offset not yet judged
    for chunk in chunks:
        res.unpacked += len(chunk)
        buf = tail + chunk
        hi = base + len(buf) - keep
        if hi > lo:
            res.found += matcher.scan(buf, base, lo, hi, binary, final=False, scope=scope)
            lo = hi
        cut = max(0, lo - base - pre)
        tail, base = buf[cut:], base + cut
    if tail:
        res.found += matcher.scan(tail, base, lo, base + len(tail) + 1, binary, final=True, scope=scope)


def scan_file(matcher: Matcher, path: Path, rel: str, scope: str = "<all>") -> FileResult:
    """Search one file's name and bytes (``.gz`` unpacked too) for the needles of ``scope``."""
    res = FileResult(rel)
    res.found += matcher.scan(rel.encode("utf-8"), 0, 0, 1 << 62, [], final=True, where="file name",
                              scope=scope)
    if not path.is_file() or path.is_symlink():
        return res
    res.size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
            fh.seek(0)
            if path.name.endswith(".gz") and head[:2] == b"\x1f\x8b":
                def on_header(hdr: bytes, pos: int) -> None:
                    for f in matcher.scan(hdr, 0, 0, 1 << 62, [], final=True, where="gzip header", scope=scope):
                        f.offset = pos
                        res.found.append(f)

                gen = _gzip_members(fh, on_header)
                first = next(gen, b"")
                binary = binary_regions(path, first[: 1 << 16], 0)

                def chained():
                    if first:
                        yield first
                    yield from gen

                _stream_scan(matcher, chained(), binary, res, scope)
            else:
                binary = binary_regions(path, head, res.size)
                _stream_scan(matcher, iter(lambda: fh.read(CHUNK), b""), binary, res, scope)
    except (OSError, EOFError, ValueError) as exc:  # isal raises its own error classes too
        res.error = f"{exc.__class__.__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - a corrupt stream must be reported, not crash the audit
        res.error = f"{exc.__class__.__name__}: {exc}"
    if res.found and is_text(path):
        res.locations = text_locations(path, matcher, res.found)
    elif any(f.where == "content" for f in res.found) and (path.suffix.lower() == ".dcm" or head[128:132] == b"DICM"):
        _dicom_places(path, matcher, res, scope)
    elif any(f.where == "content" for f in res.found) and path.suffix.lower() == ".dat":
        _twix_places(path, res)
    return res


def _twix_places(path: Path, res: FileResult) -> None:
    """Name the header buffer (``MeasYaps``, ``Phoenix``, ...) of each hit in a twix file."""
    from ..formats.twix import twix_layout

    try:
        _version, names, buffers = twix_layout(path)
    except Exception:  # noqa: BLE001 - not twix after all: byte offsets only
        return
    spans = [(o, o + n, "twix measurement table, patient name field") for o, n in names]
    spans += [(o, o + n, f"twix header buffer {name}") for name, o, n in buffers]
    for f in res.found:
        where = next((w for a, b, w in spans if a <= f.offset < b), "twix raw data")
        res.locations[f.offset] = f"{where}, byte {f.offset}"


_CODE_CLASSES = {"person name", "place/institution", "free-text token", "device/station", "ID"}


def _dicom_places(path: Path, matcher: Matcher, res: FileResult, scope: str) -> None:
    """Name the element of each hit in a DICOM file; drop words met inside defined terms (CS values)."""
    from .dicomwalk import element_at, elements, label

    try:
        elems = elements(path)
    except (OSError, struct.error):
        return
    if not elems:
        return
    starts = [e[0] for e in elems]
    kept = []
    for f in res.found:
        if f.where != "content":
            kept.append(f)
            continue
        at = element_at(elems, starts, f.offset)
        if at is not None:
            tag, vr = at
            classes = {n.cls for n in matcher.needles_in(f.form, scope)}
            if vr == "CS" and classes <= _CODE_CLASSES:
                continue  # "PERFUSION" in ImageType is a defined term, not a person's name
            res.locations[f.offset] = label(tag, vr) + f", byte {f.offset}"
        kept.append(f)
    res.found = kept


def is_text(path: Path) -> bool:
    n = path.name
    return n.endswith(TEXT_SUFFIXES) or n.split(".")[0] in TEXT_NAMES


# ------------------------------------------------------------------ where in a text file
def text_locations(path: Path, matcher: Matcher, found: list[Found]) -> dict[int, str]:
    """JSON path or TSV cell (row, column) of each content occurrence in a text file."""
    try:
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            import gzip

            data = gzip.decompress(data)
    except (OSError, EOFError):
        return {}
    out: dict[int, str] = {}
    content = [f for f in found if f.where == "content" and f.encoding == "utf-8"]
    if not content:
        return out
    name = path.name.removesuffix(".gz")
    if name.endswith(".tsv"):
        header = data.split(b"\n", 1)[0].decode("utf-8", "replace").rstrip("\r").split("\t")
        for f in content:
            line_start = data.rfind(b"\n", 0, f.offset) + 1
            row = data.count(b"\n", 0, f.offset)
            col = data.count(b"\t", line_start, f.offset)
            colname = header[col] if col < len(header) else f"#{col + 1}"
            out[f.offset] = f"TSV row {row} (header row 0), column {colname!r}" if row else \
                f"TSV header, column {col + 1}"
    elif name.endswith(".json"):
        try:
            obj = json.loads(data.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return out
        for f in content:
            low, mode, _exact = matcher.forms[f.form]
            paths = list(_json_paths(obj, low, mode, "$"))
            out[f.offset] = "JSON " + (", ".join(paths[:3]) if paths else "(not inside a string value)")
    else:
        for f in content:
            out[f.offset] = f"line {data.count(NL, 0, f.offset) + 1}"
    return out


def _json_paths(obj, low: str, mode: str, path: str):
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{path}.{k}" if re.fullmatch(r"\w+", str(k)) else f"{path}[{json.dumps(k)}]"
            if _text_has(str(k), low, mode):
                yield p + " (key)"
            yield from _json_paths(v, low, mode, p)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _json_paths(v, low, mode, f"{path}[{i}]")
    elif obj is not None and not isinstance(obj, bool) and _text_has(str(obj), low, mode):
        yield path


def _text_has(text: str, low: str, mode: str) -> bool:
    b = text.encode("utf-8")
    t = b.lower()
    needle = low.encode("utf-8")
    i = t.find(needle)
    while i >= 0:
        if mode == EXACT or _bounded(b, i, i + len(needle), "utf-8", mode):
            return True
        i = t.find(needle, i + 1)
    return False
