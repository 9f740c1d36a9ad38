"""PNG (microscopy, figures): critical chunks and the pixel size kept, text, time and EXIF
chunks removed; the image data chunks are carried byte for byte."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from .base import Context, Outcome, ScrubLog

NAME = "png"
SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: image-defining chunks; every other chunk (tEXt, zTXt, iTXt, tIME, eXIf, private ones) goes
_KEEP = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"pHYs", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT",
         b"bKGD", b"acTL", b"fcTL", b"fdAT"}


def sniff(path: Path) -> bool:
    if path.suffix.lower() != ".png" or not path.is_file():
        return False
    with open(path, "rb") as fh:
        return fh.read(8) == SIGNATURE


def companions(path: Path) -> list[Path]:
    return []


def scrub_bytes(data: bytes, log: ScrubLog) -> bytes:
    if not data.startswith(SIGNATURE):
        raise ValueError("no PNG signature")
    out, pos = bytearray(SIGNATURE), 8
    while pos + 8 <= len(data):
        (n,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        end = pos + 12 + n
        if end > len(data):
            raise ValueError("a chunk is cut off")
        if kind in _KEEP:
            out += data[pos:end]
        else:
            body = data[pos + 8:pos + 8 + n]
            if kind == b"tEXt":
                log.met("png:text", body.split(b"\x00", 1)[-1].decode("latin-1"))
            elif kind == b"zTXt":
                try:
                    log.met("png:text", zlib.decompress(body.split(b"\x00", 1)[-1][1:]).decode("latin-1"))
                except zlib.error:
                    pass
            log.change(kind.decode("latin-1"), "remove", "PNG metadata chunk")
        pos = end
        if kind == b"IEND":
            break
    return bytes(out)


def scrub(src: Path, profile, ctx: Context) -> Outcome:
    log = ScrubLog()
    try:
        return Outcome(writes={ctx.rel_out: scrub_bytes(src.read_bytes(), log)}, log=log)
    except ValueError as exc:
        return Outcome.withhold(f"PNG that does not parse: {exc}")
