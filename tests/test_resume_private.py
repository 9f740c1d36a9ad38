"""Kill -9 at a write point, resume: the public AND the private tree equal those of an uninterrupted run.

The killer counts completed renames (``os.replace``: every atomic write, public or private)
and sends itself SIGKILL right after the k-th, e.g. right after the defaced T1w is renamed
into the output but before the subject's audit and state are written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from killer import killer_script

from bids_deid.cli import main

_KILLER = killer_script("bids_deid.cli")

#: values measured while the run runs (seconds per step): the only ones normalised, with the
#: run's own folder (the reference ran in another temp folder)
RUN_TIME = "seconds"


def _argv(ds: Path, out: Path, key: Path) -> list[str]:
    return [str(ds), str(out), "participant", "--key-file", str(key), "--participant-label", "canary01",
            "--skip-bids-validation"]


def _normalised(value):
    if isinstance(value, dict):
        return {k: ("<run-time>" if k.endswith(RUN_TIME) else _normalised(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalised(v) for v in value]
    return value


def _tree(root: Path, *also: Path) -> dict[str, object]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_dir():
            out[p.relative_to(root).as_posix() + "/"] = oct(p.stat().st_mode & 0o777) if "private" in root.name \
                else None
            continue
        data = p.read_bytes()
        if p.suffix == ".json":
            for r in (root.parent, *also):
                data = data.replace(str(r).encode(), b"<root>")
            data = _normalised(json.loads(data))
        out[p.relative_to(root).as_posix()] = data
    return out


@pytest.fixture(scope="module")
def head_ds(tmp_path_factory):
    from bids_deid.deface import demo_head
    from bids_deid.demo import build_demo_dataset
    from bids_deid.pseudonym import generate_key

    root = tmp_path_factory.mktemp("resume")
    ds = build_demo_dataset(root / "in", head=demo_head())
    key = generate_key(root / "k.key")
    ref = root / "ref"
    assert main(_argv(ds, ref, key)) == 0
    return ds, key, ref


def _kill_and_resume(tmp_path, head_ds, k: int) -> None:
    ds, key, ref = head_ds
    out = tmp_path / "ref"  # same name as the reference: the private dir's name follows it
    proc = subprocess.run([sys.executable, "-c", _KILLER, *_argv(ds, out, key)], capture_output=True, text=True,
                          env={**os.environ, "KILL_AFTER": str(k)})
    assert proc.returncode == -9, f"not killed at write {k}: {proc.returncode} {proc.stderr[-500:]}"
    assert main(_argv(ds, out, key)) == 0
    for side in ("ref", "ref-private"):
        got, want = _tree(tmp_path / side, ds.parent), _tree(ref.parent / side)
        assert sorted(got) == sorted(want), (side, set(got) ^ set(want))
        assert [r for r in want if got[r] != want[r]] == [], side


def test_kill_right_after_defaced_t1w_renamed(tmp_path, head_ds):
    """Write 12 of a subject is the defaced T1w's rename (after its journal entry and QC pictures)."""
    _kill_and_resume(tmp_path, head_ds, 12)


@pytest.mark.slow
@pytest.mark.parametrize("k", range(1, 22))
def test_kill_at_every_write_point(tmp_path, head_ds, k):
    _kill_and_resume(tmp_path, head_ds, k)
