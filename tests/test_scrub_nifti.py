import gzip
import struct

import nibabel as nib
import numpy as np
import pytest

from bids_deid.errors import InputError
from bids_deid.formats.base import ScrubLog
from bids_deid.formats.nifti import scrub_nifti_file
from bids_deid.profiles import load_profile


def _planted(cls=nib.Nifti1Image, dtype=np.int16, shape=(5, 6, 7, 3)):
    data = (np.arange(np.prod(shape)) % 3000).astype(dtype).reshape(shape)
    img = cls(data, np.diag([2.0, 2.0, 3.0, 1.0]))
    img.header["descrip"] = b"CANARY descrip"
    img.header["aux_file"] = b"CANARYaux"
    img.header["intent_name"] = b"CANARYint"
    if cls is nib.Nifti1Image:
        img.header["db_name"] = b"CANARYdb"
    img.header.extensions.append(nib.nifti1.Nifti1Extension(6, "CANARY utf16".encode("utf-16-le")))
    img.header.extensions.append(nib.nifti1.Nifti1Extension(4, b"<CANARY afni/>"))
    return img


def _data_bytes(path):
    raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    img = nib.load(path)
    return raw[img.dataobj.offset :]


@pytest.mark.parametrize("cls", [nib.Nifti1Image, nib.Nifti2Image])
@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_header_cleared_and_data_identical(tmp_path, cls, ext):
    src, dst = tmp_path / f"in{ext}", tmp_path / f"out{ext}"
    img = _planted(cls)
    nib.save(img, src)
    log = ScrubLog()
    scrub_nifti_file(src, dst, load_profile("basic"), log)
    out_bytes = gzip.decompress(dst.read_bytes()) if ext.endswith("gz") else dst.read_bytes()
    assert b"canary" not in out_bytes.lower()
    assert "CANARY utf16".encode("utf-16-le").lower() not in out_bytes.lower()
    out = nib.load(dst)
    assert len(out.header.extensions) == 0
    assert out.header["descrip"].item() == b""
    assert _data_bytes(dst) == _data_bytes(src)
    assert np.array_equal(out.affine, nib.load(src).affine)
    kinds = {k for k, _ in log.identifiers}
    assert {"nifti:descrip", "nifti:aux_file", "nifti:extension6", "nifti:extension4"} <= kinds


def test_gzip_deterministic_and_nameless(tmp_path):
    src = tmp_path / "sub-x_T1w.nii.gz"
    nib.save(_planted(), src)
    a, b = tmp_path / "a" / "o.nii.gz", tmp_path / "b" / "o.nii.gz"
    for d in (a, b):
        scrub_nifti_file(src, d, load_profile("basic"), ScrubLog())
    assert a.read_bytes() == b.read_bytes()
    raw = a.read_bytes()
    assert struct.unpack("<I", raw[4:8])[0] == 0  # mtime 0
    assert not raw[3] & 0x08  # no FNAME field in the gzip header


def test_keep_extension_code(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("extends: basic\nnifti:\n  keep_extension_codes: [4]\n")
    src, dst = tmp_path / "i.nii", tmp_path / "o.nii"
    nib.save(_planted(), src)
    scrub_nifti_file(src, dst, load_profile(str(f)), ScrubLog())
    exts = nib.load(dst).header.extensions
    assert [e.get_code() for e in exts] == [4]
    assert _data_bytes(dst) == _data_bytes(src)


def test_big_endian(tmp_path):
    img = _planted(shape=(4, 5, 6))
    hdr = img.header.as_byteswapped(">")
    data = np.asarray(img.dataobj).astype(">i2")
    src, dst = tmp_path / "be.nii", tmp_path / "out.nii"
    nib.save(nib.Nifti1Image(data, img.affine, hdr), src)
    assert nib.load(src).header.endianness == ">"
    scrub_nifti_file(src, dst, load_profile("basic"), ScrubLog())
    out = nib.load(dst)
    assert out.header.endianness == ">"
    assert out.header["descrip"].item() == b""
    assert np.array_equal(out.get_fdata(), nib.load(src).get_fdata())


@pytest.mark.parametrize("damage", ["truncate_header", "not_nifti", "bad_gzip", "truncated_gzip"])
def test_corrupt_inputs_raise_one_line(tmp_path, damage):
    src = tmp_path / "x.nii.gz"
    nib.save(_planted(), src)
    raw = src.read_bytes()
    if damage == "truncate_header":
        src = tmp_path / "x.nii"
        src.write_bytes(gzip.decompress(raw)[:200])
    elif damage == "not_nifti":
        src = tmp_path / "x.nii"
        src.write_bytes(b"hello world" * 100)
    elif damage == "bad_gzip":
        src.write_bytes(raw[:20] + b"\xff" * 50 + raw[70:])
    else:
        src.write_bytes(raw[: len(raw) // 2])
    dst = tmp_path / "out" / src.name
    with pytest.raises(InputError) as exc:
        scrub_nifti_file(src, dst, load_profile("basic"), ScrubLog())
    assert "\n" not in str(exc.value)
    assert not dst.exists()
    assert not any(p.name.startswith(".bids-deid-tmp") for p in dst.parent.glob("*")) if dst.parent.exists() else True
