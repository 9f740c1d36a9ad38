"""Photos (``*_photo.jpg|png|tif``): they may show a face or a tattoo, so they are withheld
unless the profile keeps them (``keep_photos: true``), in which case their metadata are
removed (JPEG: every APP/COM segment but JFIF; PNG as :mod:`.png`)."""

from __future__ import annotations

from pathlib import Path

from .base import Context, Outcome, ScrubLog

NAME = "photo"
_EXT = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


def sniff(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and name.split(".")[0].endswith("_photo") and name.endswith(_EXT)


def companions(path: Path) -> list[Path]:
    return []


def strip_jpeg(data: bytes, log: ScrubLog) -> bytes:
    """JPEG without APPn (but APP0 JFIF) and COM segments; image data untouched."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("no JPEG start marker")
    out, pos = bytearray(b"\xff\xd8"), 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError("segment marker expected")
        marker = data[pos + 1]
        if marker == 0xDA:  # start of scan: the rest is image data
            out += data[pos:]
            return bytes(out)
        n = int.from_bytes(data[pos + 2:pos + 4], "big")
        seg = data[pos:pos + 2 + n]
        if (0xE1 <= marker <= 0xEF) or marker == 0xFE:
            log.change(f"JPEG segment 0x{marker:02X}", "remove", "photo metadata (EXIF, XMP, comments)")
        else:
            out += seg
        pos += 2 + n
    raise ValueError("no image data")


def scrub(src: Path, profile, ctx: Context) -> Outcome:
    if not ctx.keep_photos:
        return Outcome.withhold("photo: may show a face (withheld unless the profile keeps photos)")
    log = ScrubLog()
    data = src.read_bytes()
    try:
        if data[:2] == b"\xff\xd8":
            return Outcome(writes={ctx.rel_out: strip_jpeg(data, log)}, log=log)
        if src.suffix.lower() == ".png":
            from .png import scrub_bytes

            return Outcome(writes={ctx.rel_out: scrub_bytes(data, log)}, log=log)
    except ValueError as exc:
        return Outcome.withhold(f"photo that does not parse: {exc}")
    return Outcome.withhold("photo in a format whose metadata bids-deid does not strip")
