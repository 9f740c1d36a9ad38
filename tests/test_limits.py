"""Bounded resources: a gzip bomb as T1w is withheld under a memory limit; JSON size and depth limits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bids_deid.cli import main
from bids_deid.limits import JSON_MAX_DEPTH, ResourceLimitError, load_json_limited

ANAT = "sub-canary01/ses-01/anat/sub-canary01_ses-01_T1w"


def write_bomb(path: Path, shape: tuple[int, ...]) -> int:
    """A valid .nii.gz of zeros whose header declares ``shape`` (uint8); packed in a few MB.

    Each 16 MiB block of zeros is deflated once after a full flush, so the same bytes
    repeat; the gzip trailer (CRC-32, size) is exact, so every reader takes it as a real file.
    """
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(np.uint8)
    hdr["vox_offset"] = 352
    head = hdr.binaryblock + b"\0" * 4
    total = int(np.prod(shape, dtype=object))
    block = bytes(1 << 24)
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    first = comp.compress(head) + comp.flush(zlib.Z_FULL_FLUSH)
    rep = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    n, rest = divmod(total, len(block))
    tail = comp.compress(bytes(rest)) + comp.flush(zlib.Z_FINISH)
    crc = zlib.crc32(head)
    for _ in range(n):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(bytes(rest), crc)
    size = (len(head) + total) & 0xFFFFFFFF
    with open(path, "wb") as fh:
        fh.write(b"\x1f\x8b\x08\x00\0\0\0\0\x00\xff")
        fh.write(first)
        for _ in range(n):
            fh.write(rep)
        fh.write(tail + crc.to_bytes(4, "little") + size.to_bytes(4, "little"))
    return path.stat().st_size


_LIMITED = """
import resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from bids_deid.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("shape, why", [
    ((2048, 2048, 1024), "defacing limit"),  # 4 GiB declared, 4 MB packed
    pytest.param((512, 512, 400), "decompression bomb", marks=pytest.mark.slow),  # 100 MiB, 1000x+
])
def test_gzip_bomb_as_t1w_is_withheld_under_a_memory_limit(tmp_path, canary_ds, key_file, shape, why):
    t1 = canary_ds / f"{ANAT}.nii.gz"
    packed = write_bomb(t1, shape)
    assert packed < 8 << 20
    out = tmp_path / "out"
    argv = [str(canary_ds), str(out), "participant", "--key-file", str(key_file), "--skip-bids-validation"]
    proc = subprocess.run([sys.executable, "-c", _LIMITED, str(3 << 30), *argv], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [ln for ln in proc.stdout.splitlines() if "_T1w.nii.gz" in ln and why in ln]
    assert len(lines) == 1 and "withheld" in lines[0], proc.stdout
    # the rest was processed: both functional runs are written, the other T1w went through defacing
    assert len(list(out.rglob("*_bold.nii.gz"))) == 2
    state = [json.loads(p.read_text()) for p in (tmp_path / "out-private" / "state").glob("sub-*.json")]
    t1 = sorted((r["status"], why in r["reason"], "metrics" in r) for st in state for k, r in st["records"].items()
                if k.endswith("_T1w.nii.gz"))
    assert len(t1) == 2 and ("withheld", True, False) in t1  # the bomb: withheld unread, no defacing metrics
    assert [x for x in t1 if x[2]]  # the other image: defaced (or withheld by the face check), with metrics


def test_json_limits():
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(ResourceLimitError, match="nested deeper"):
        load_json_limited(deep, "x.json")
    ok = b"[" * JSON_MAX_DEPTH + b"]" * JSON_MAX_DEPTH
    assert load_json_limited(ok, "x.json")
    over = b"[" * (JSON_MAX_DEPTH + 1) + b"]" * (JSON_MAX_DEPTH + 1)
    with pytest.raises(ResourceLimitError):
        load_json_limited(over, "x.json")


def test_deep_json_sidecar_withheld_rest_processed(tmp_path, canary_ds, key_file, capsys):
    side = canary_ds / "sub-canary01/ses-01/func/sub-canary01_ses-01_task-rest_bold.json"
    side.write_bytes(b'{"RepetitionTime": 2, "X": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    out = tmp_path / "out"
    rc = main([str(canary_ds), str(out), "participant", "--key-file", str(key_file), "--deface-method", "none",
               "--skip-bids-validation"])
    text = capsys.readouterr()
    assert rc == 0, text.err
    assert "internal error" not in text.err
    assert any("withheld" in ln and "nested deeper" in ln for ln in text.out.splitlines()), text.out
    assert len(list(out.rglob("*_bold.nii.gz"))) == 2 and len(list(out.rglob("*_bold.json"))) == 1
