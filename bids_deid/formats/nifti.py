"""NIfTI-1/2 headers: clear free-text fields, drop extensions, stream the data block.

The voxel data is never decoded: after the (rewritten) header and extensions, the
bytes from ``vox_offset`` to the end are copied as they are, in fixed-size chunks,
so memory stays flat whatever the file size. ``.nii.gz`` output is deterministic
(gzip mtime 0, no file name in the gzip header) and decompressed once more before
it is renamed into place, to prove it reads.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from isal import igzip
from isal.igzip_lib import IsalError

from ..atomic import atomic_open
from ..errors import InputError
from ..profiles import Profile
from .base import Outcome, ScrubLog
from .cifti import ECODE as CIFTI_ECODE
from .cifti import scrub_cifti_xml
from .headers import NIFTI1, NIFTI2

log = logging.getLogger(__name__)

CHUNK = 8 << 20
GZ_LEVEL = 2  # isal level 2: about gzip -6 ratio at several times its speed
# Free-text header fields, located by nibabel's own header layout.
_TEXT_FIELDS = {1: ("data_type", "db_name", "descrip", "aux_file", "intent_name"), 2: ("descrip", "aux_file", "intent_name", "unused_str")}
# Analyze leftovers NIfTI-1 never reads: any bytes there are copied from the input unless cleared.
_UNUSED_FIELDS = {1: ("extents", "session_error", "glmax", "glmin"), 2: ()}
_DTYPES = {1: NIFTI1, 2: NIFTI2}
_HDR_SIZE = {1: 348, 2: 540}
_SERIES = re.compile(r"_dwi\.nii(\.gz)?$")  # images whose volumes a .bval/.bvec counts


@dataclass
class NiftiHeader:
    """The raw header of one NIfTI file, as read from its stream."""

    version: int
    endian: str  # "<" or ">"
    header: bytearray
    extensions: list[tuple[int, bytes]]  # (ecode, content)
    vox_offset: int


def is_nifti_name(name: str) -> bool:
    return name.endswith(".nii") or name.endswith(".nii.gz")


def _open_read(path: Path) -> IO[bytes]:
    if path.name.endswith(".gz"):
        return igzip.open(path, "rb")
    return open(path, "rb", buffering=0)


def _read_exact(fh: IO[bytes], n: int, where: str) -> bytes:
    buf = fh.read(n)
    if len(buf) != n:
        raise InputError(f"truncated NIfTI file {where}")
    return buf


def read_header(fh: IO[bytes], where: str) -> NiftiHeader:
    """Read header and extensions from ``fh``; leaves ``fh`` at ``vox_offset``."""
    first = _read_exact(fh, 4, where)
    for endian in ("<", ">"):
        size = struct.unpack(endian + "i", first)[0]
        if size in (348, 540):
            break
    else:
        raise InputError(f"not a NIfTI-1/2 file: {where}")
    version = 1 if size == 348 else 2
    header = bytearray(first + _read_exact(fh, size - 4, where))
    dt = _DTYPES[version].newbyteorder(endian)
    magic_off = dt.fields["magic"][1]
    magic = bytes(header[magic_off : magic_off + 4])
    if magic[:3] not in (b"n+1", b"n+2"):
        raise InputError(f"not a single-file NIfTI (magic {magic[:3]!r}): {where}")
    off_dtype, off_pos = dt.fields["vox_offset"][:2]
    vox_offset = int(np.frombuffer(bytes(header), dtype=off_dtype, count=1, offset=off_pos)[0])
    if vox_offset < size:
        raise InputError(f"bad vox_offset in NIfTI header: {where}")
    extensions: list[tuple[int, bytes]] = []
    pos = size
    if vox_offset >= size + 4:
        flag = _read_exact(fh, 4, where)
        pos += 4
        if flag[0]:
            while pos + 8 <= vox_offset:
                esize, ecode = struct.unpack(endian + "ii", _read_exact(fh, 8, where))
                if esize < 8 or pos + esize > vox_offset:
                    raise InputError(f"corrupt NIfTI extension in {where}")
                extensions.append((ecode, _read_exact(fh, esize - 8, where)))
                pos += esize
        _read_exact(fh, vox_offset - pos, where)  # padding up to the data
    return NiftiHeader(version, endian, header, extensions, vox_offset)


def _field_slice(h: NiftiHeader, name: str) -> slice:
    ftype, off = _DTYPES[h.version].fields[name][:2]
    return slice(off, off + ftype.itemsize)


def _printable_runs(data: bytes, minimum: int = 5) -> list[str]:
    """Readable ASCII and UTF-16 runs in ``data`` (what a leak could be made of)."""
    import re

    runs = [m.group().decode("ascii") for m in re.finditer(rb"[\x20-\x7e]{%d,}" % minimum, data)]
    for enc in ("utf-16-le", "utf-16-be"):
        pat = rb"(?:[\x20-\x7e]\x00){%d,}" % minimum if enc.endswith("le") else rb"(?:\x00[\x20-\x7e]){%d,}" % minimum
        runs += [m.group().decode(enc) for m in re.finditer(pat, data)]
    return runs


def scrub_header(h: NiftiHeader, profile: Profile, log_: ScrubLog, series: bool = False) -> bytes:
    """Return the new header + extension bytes; ``h`` is not changed.

    ``series``: the image is a volume series (a diffusion run): a 3-D one is written as 4-D with
    one volume, since validators count its volumes on ``dim[4]`` against the ``.bval``/``.bvec``.
    """
    header = bytearray(h.header)
    dsl = _field_slice(h, "dim")
    dim = np.frombuffer(bytes(header[dsl]), dtype=_DTYPES[h.version].newbyteorder(h.endian).fields["dim"][0].base)
    if series and int(dim[0]) == 3:
        dim = dim.copy()
        dim[0], dim[4] = 4, 1
        header[dsl] = dim.tobytes()
        log_.change("header.dim", "replace", "a single-volume diffusion image is written as 4-D with one volume")
    for name in _TEXT_FIELDS[h.version]:
        if name == "descrip" and profile.nifti_keep_descrip:
            continue
        sl = _field_slice(h, name)
        raw = bytes(header[sl])
        if raw.strip(b"\x00 "):
            log_.met(f"nifti:{name}", raw.split(b"\x00")[0].decode("latin-1"))
            log_.change(f"header.{name}", "empty", "free text in NIfTI header")
            header[sl] = b"\x00" * (sl.stop - sl.start)
    for name in _UNUSED_FIELDS[h.version]:
        sl = _field_slice(h, name)
        if any(header[sl]):
            header[sl] = b"\x00" * (sl.stop - sl.start)
            log_.change(f"header.{name}", "empty", "unused header field (may carry any bytes)")
    rsl = _field_slice(h, "regular") if h.version == 1 else None
    if rsl is not None and bytes(header[rsl]) not in (b"r", b"\x00"):
        header[rsl] = b"r"
        log_.change("header.regular", "replace", "unused header field (may carry any bytes)")
    kept = []
    for ecode, content in h.extensions:
        if ecode in profile.nifti_keep_extension_codes:
            kept.append((ecode, content))
            log_.change(f"extension[{ecode}]", "keep", "profile keeps this extension code")
        elif ecode == CIFTI_ECODE and h.version == 2 and (cifti := scrub_cifti_xml(content, log_)) is not None:
            kept.append((ecode, cifti))  # a CIFTI file without its XML is not CIFTI any more
        else:
            for run in _printable_runs(content):
                log_.met(f"nifti:extension{ecode}", run)
            log_.change(f"extension[{ecode}]", "remove", "NIfTI extensions may carry identifiers")
    ext = bytearray()
    if kept:
        ext += b"\x01\x00\x00\x00"
        for ecode, content in kept:
            body = content + b"\x00" * (-(len(content) + 8) % 16)
            ext += struct.pack(h.endian + "ii", len(body) + 8, ecode) + body
    else:
        ext += b"\x00\x00\x00\x00"
    vox_offset = _HDR_SIZE[h.version] + len(ext)
    sl = _field_slice(h, "vox_offset")
    ftype = _DTYPES[h.version].newbyteorder(h.endian).fields["vox_offset"][0]
    header[sl] = np.array(vox_offset, dtype=ftype).tobytes()
    return bytes(header) + bytes(ext)


def data_size(h: NiftiHeader, where: str) -> int:
    """Bytes of voxel data the header describes; nothing past them is ever copied."""
    dt = _DTYPES[h.version].newbyteorder(h.endian)
    dim = np.frombuffer(bytes(h.header), dtype=dt.fields["dim"][0], count=1, offset=dt.fields["dim"][1])[0]
    bitpix = int(np.frombuffer(bytes(h.header), dtype=dt.fields["bitpix"][0], count=1,
                               offset=dt.fields["bitpix"][1])[0])
    ndim = int(dim[0])
    if not 1 <= ndim <= 7 or bitpix <= 0 or bitpix % 8 or any(int(d) < 0 for d in dim[1 : ndim + 1]):
        raise InputError(f"corrupt NIfTI header (dim/bitpix) in {where}")
    return int(np.prod([int(d) for d in dim[1 : ndim + 1]], dtype=object)) * bitpix // 8


def voxel_count(h: NiftiHeader) -> int:
    """Voxels the header declares (product of the used dims; 0 for a corrupt dim field)."""
    dt = _DTYPES[h.version].newbyteorder(h.endian)
    dim = np.frombuffer(bytes(h.header), dtype=dt.fields["dim"][0], count=1, offset=dt.fields["dim"][1])[0]
    ndim = int(dim[0])
    if not 1 <= ndim <= 7:
        return 0
    return int(np.prod([max(int(d), 0) for d in dim[1 : ndim + 1]], dtype=object))


def _copy_rest(src: IO[bytes], dst: IO[bytes], limit: int | None = None) -> int:
    n = 0
    while chunk := src.read(CHUNK if limit is None else min(CHUNK, limit - n)):
        dst.write(chunk)
        n += len(chunk)
    return n


def _copy_plain(src_path: Path, offset: int, dst: IO[bytes], limit: int | None = None) -> int:
    """Copy bytes ``offset..EOF`` (at most ``limit``) of an uncompressed file, in the kernel when possible."""
    dst.flush()
    total = 0
    with open(src_path, "rb") as src:
        size = os.fstat(src.fileno()).st_size - offset
        size = size if limit is None else min(size, limit)
        pos = offset
        try:
            while total < size:
                n = os.copy_file_range(src.fileno(), dst.fileno(), size - total, pos)
                if n == 0:
                    break
                pos += n
                total += n
        except OSError:
            src.seek(pos)
            total += _copy_rest(src, dst, size - total)
    return total


def _verify_gzip(path: str, expected: int, where: str) -> None:
    n = 0
    with igzip.open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            n += len(chunk)
    if n != expected:
        raise InputError(f"written gzip of {where} has {n} bytes, expected {expected}")


def _write_body(fh: IO[bytes], h: NiftiHeader, src: Path, new_header: bytes, out, gz_out: bool) -> None:
    """The scrubbed header, then the voxel data of ``fh`` (positioned after the header), into ``out``."""
    where = src.name
    size = data_size(h, where)  # bytes after the voxel data (text appended to a file) are dropped
    if gz_out:
        with igzip.IGzipFile(filename="", mode="wb", fileobj=out, compresslevel=GZ_LEVEL, mtime=0) as gz:
            gz.write(new_header)
            n = _copy_rest(fh, gz, size)
    elif src.name.endswith(".gz"):
        out.write(new_header)
        n = _copy_rest(fh, out, size)
    else:
        out.write(new_header)
        n = _copy_plain(src, h.vox_offset, out, size)
    if n != size:
        raise InputError(f"truncated NIfTI file {where}: {n} of {size} data bytes")
    if gz_out:
        out.flush()
        _verify_gzip(out.tmp_path, len(new_header) + n, where)


def _unreadable(src: Path, exc: BaseException) -> None:
    if isinstance(exc, FileNotFoundError | PermissionError) and exc.filename and str(exc.filename) != str(src):
        raise exc
    raise InputError(f"cannot read {src.name}: corrupt or truncated ({exc.__class__.__name__})") from exc


_READ_ERRORS = (OSError, EOFError, zlib.error, gzip.BadGzipFile, IsalError)


def scrub_nifti_file(src: Path, dst: Path | None, profile: Profile, log_: ScrubLog,
                     perm: int = 0o644) -> NiftiHeader:
    """Scrub ``src`` into ``dst`` (atomic, mode ``perm``); with ``dst=None`` only read and log the header.

    Raises
    ------
    InputError
        For a truncated, corrupt or non-NIfTI file, or corrupt gzip.
    """
    where = src.name
    try:
        with _open_read(src) as fh:
            h = read_header(fh, where)
            new_header = scrub_header(h, profile, log_, series=dst is not None and _SERIES.search(dst.name) is not None)
            if dst is None:
                return h
            with atomic_open(dst, "wb", perm) as out:
                _write_body(fh, h, src, new_header, out, dst.name.endswith(".gz"))
            return h
    except _READ_ERRORS as exc:
        _unreadable(src, exc)
        raise  # not reached


# ------------------------------------------------------------------ the format module interface
NAME = "nifti"
SUFFIXES = (".nii", ".nii.gz")
COMPANION_SUFFIXES: tuple[str, ...] = ()


def sniff(path: Path) -> bool:
    return is_nifti_name(path.name) and path.is_file()


def companions(path: Path) -> list[Path]:
    return []


def scrub(src: Path, profile: Profile, ctx) -> Outcome:
    """The header read and scrubbed now (its changes in the log); the image streamed when written."""
    log_ = ScrubLog()
    where, gz_out = src.name, ctx.rel_out.endswith(".gz")
    try:
        with _open_read(src) as fh:
            h = read_header(fh, where)
            data_size(h, where)
    except _READ_ERRORS as exc:
        _unreadable(src, exc)
    new_header = scrub_header(h, profile, log_, series=_SERIES.search(ctx.rel_out) is not None)

    def stream(out) -> None:
        try:
            with _open_read(src) as fh:
                _write_body(fh, read_header(fh, where), src, new_header, out, gz_out)
        except _READ_ERRORS as exc:
            _unreadable(src, exc)

    return Outcome(writes={ctx.rel_out: stream}, log=log_)
