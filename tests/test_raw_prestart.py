"""dcm2niix started before the App's imports (raw_participant.prestart): taken over by the run,
never left behind, never started when a check fails, and the same output as a run without it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from test_convert_raw import write_series

import bids_deid.convert.batch as batch
import bids_deid.convert.raw as raw
import bids_deid.raw_participant as rp
from bids_deid.cli import main


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture
def counted(monkeypatch):
    """Every Begun made (by prestart or by stage_raw itself), in order."""
    made = []

    def begin(*a, **k):
        made.append(batch.begin(*a, **k))
        return made[-1]

    monkeypatch.setattr(rp, "begin", begin)
    monkeypatch.setattr(raw, "begin", begin)
    return made


def _args(tmp_path, key_file, *extra):
    return [str(tmp_path / "raw"), str(tmp_path / "out"), "participant", "--key-file", str(key_file),
            "--deface-method", "none", "--private-dir", str(tmp_path / "priv"), "-w", str(tmp_path / "work"), *extra]


def test_the_run_takes_the_early_dcm2niix_over(tmp_path, key_file, counted):
    write_series(tmp_path / "raw" / "s1", n=3)
    assert main(_args(tmp_path, key_file)) == 0
    assert len(counted) == 1  # one start: the early one, used by the staging run
    assert counted[0].early is not None and counted[0].early.returncode == 0
    assert rp._started == []
    assert not list((tmp_path / "work").glob("raw-*"))  # the job folder went with the run
    assert any(n.endswith("_T1w.nii.gz") for n in _files(tmp_path / "out"))


def test_same_output_with_and_without_the_early_start(tmp_path, key_file, monkeypatch):
    write_series(tmp_path / "raw" / "s1", n=3)
    assert main(_args(tmp_path, key_file)) == 0
    first = {p: (tmp_path / "out" / p).read_bytes() for p in _files(tmp_path / "out")}
    monkeypatch.setattr(rp, "prestart", lambda s: None)
    out2 = tmp_path / "out2"
    args = _args(tmp_path, key_file)
    args[1] = str(out2)
    args[args.index("--private-dir") + 1] = str(tmp_path / "priv2")
    assert main(args) == 0
    assert {p: (out2 / p).read_bytes() for p in _files(out2)} == first


def test_not_started_when_a_check_fails_or_a_subset_is_asked(tmp_path, key_file, counted, capsys):
    write_series(tmp_path / "raw" / "s1", n=2)
    inside = _args(tmp_path, key_file)
    inside[1] = str(tmp_path / "raw" / "out")  # output inside the input: refused
    assert main(inside) != 0
    assert "inside the input" in capsys.readouterr().err
    assert counted == [] and rp._started == []
    assert main(_args(tmp_path, key_file, "--participant-label", "nobody")) != 0
    assert counted[-1].early is None  # a subset: converted from links, never the whole folder early


def test_an_unused_early_start_is_stopped_and_removed_at_exit(tmp_path, key_file):
    write_series(tmp_path / "raw" / "s1", n=2)
    code = (
        "import sys, atexit\n"
        "from bids_deid.cli import _settings, build_parser\n"
        "import bids_deid.raw_participant as rp\n"
        "p = build_parser(); a = p.parse_args(sys.argv[1:]); s = _settings(a, p)\n"
        "rp.prestart(s)\n"
        "assert len(rp._started) == 1, rp._started\n"
        "print(rp._started[0][1])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, *_args(tmp_path, key_file)], capture_output=True, text=True,
                          check=True)
    job = proc.stdout.strip().splitlines()[-1]
    assert job and not (tmp_path / "work" / job.rsplit("/", 1)[-1]).exists()
    assert not list((tmp_path / "work").glob("raw-*"))
