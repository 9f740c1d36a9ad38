"""Photos (``*_photo.jpg|png|tif``) and ASL labeling-plane captures (``*_asllabeling.jpg|png``):
a photo may show a face or a tattoo, a labeling capture is often a picture of the scanner console
(the patient's name and the date on screen, a sagittal view of the face). Both are withheld unless
the profile keeps photos (``keep_photos: true``) after someone has looked at them; then their
metadata are removed (JPEG: every APP/COM segment but JFIF; PNG as :mod:`.png`)."""

from __future__ import annotations

from pathlib import Path

from .base import Context, Outcome, ScrubLog

NAME = "photo"
_EXT = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


_WHY = {
    "photo": "photo: may show a face (withheld unless the profile keeps photos)",
    "asllabeling": "ASL labeling capture: often a photo of the scanner console showing the patient's name, "
                   "the date and the face (withheld unless the profile keeps photos, after a check)",
}


def _kind(path: Path) -> str:
    return path.name.lower().split(".")[0].rpartition("_")[2]


def sniff(path: Path) -> bool:
    return path.is_file() and _kind(path) in ("photo", "asllabeling") and path.name.lower().endswith(_EXT)


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
        return Outcome.withhold(_WHY.get(_kind(src), _WHY["photo"]))
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
