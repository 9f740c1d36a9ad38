"""Stimuli named after the person they were made for (``stimuli/cm4_audio.wav``, pointed at by
``stim_file`` in that subject's events): the name carries the original subject code. The file is
renamed with the pseudonym and every reference to it follows, so the tables still point at a
file that exists and no original label is left in a name or a table."""

from __future__ import annotations

import json
from pathlib import Path

from bids_deid.cli import main
from bids_deid.dataset import Relabel, stimulus_renames


def _t(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_renames_whole_tokens_of_subject_labels_only(tmp_path):
    root = tmp_path / "ds"
    for name in ("cm4_audio.wav", "CM4-loud.wav", "xcm4_audio.wav", "ir05/tone.wav", "stim_01.wav", "ir07_a.wav"):
        _t(root / "stimuli" / name, "x")
    _t(root / "stimuli" / "P1_a.wav", "already there")
    ren = stimulus_renames(root, {"cm4": "P1", "ir05": "P2", "01": "P3", "ir07": "P1"})
    assert ren["cm4_audio.wav"] == "P1_audio.wav"
    assert ren["CM4-loud.wav"] == "P1-loud.wav"  # case-blind
    assert ren["ir05/tone.wav"] == "P2/tone.wav"  # a folder named after the subject
    assert "xcm4_audio.wav" not in ren  # not a whole token
    assert "stim_01.wav" not in ren  # digits-only labels are numbering, not identity
    assert "ir07_a.wav" not in ren  # would land on a stimulus that exists: left, the audit will name it

    rel = Relabel({"cm4": "P1", "ir05": "P2"}, {}, ren)
    assert rel("cm4_audio.wav") == "P1_audio.wav"
    assert rel("stimuli/cm4_audio.wav") == "stimuli/P1_audio.wav"
    assert rel("bids::stimuli/ir05/tone.wav") == "bids::stimuli/P2/tone.wav"
    assert rel("tone.wav") == "tone.wav"  # a bare name shared by no renamed file stays
    assert rel("xcm4_audio.wav") == "xcm4_audio.wav"
    assert rel("onset\tstim_file\n1\tcm4_audio.wav\n") == "onset\tstim_file\n1\tP1_audio.wav\n"


def _dataset(root: Path) -> None:
    _t(root / "dataset_description.json", json.dumps({"Name": "stim", "BIDSVersion": "1.10.0", "License": "CC0",
                                                      "Authors": ["A. Author"]}))
    _t(root / "README", "Per-subject audio stimuli.\n")
    _t(root / "participants.tsv", "participant_id\tage\nsub-cm4\t30\nsub-ir05\t40\n")
    for sub in ("cm4", "ir05"):
        (root / "stimuli").mkdir(parents=True, exist_ok=True)
        (root / "stimuli" / f"{sub}_audio.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVE")
        _t(root / f"sub-{sub}" / "beh" / f"sub-{sub}_task-listen_events.tsv",
           f"onset\tduration\ttrial_type\tstim_file\n1.0\t2.0\tspeech\t{sub}_audio.wav\n4.0\t2.0\tspeech\tn/a\n")
    _t(root / "task-listen_events.json", json.dumps({"stim_file": {"Description": "file in stimuli/"}}))


def test_stimulus_names_and_references_relabelled_end_to_end(tmp_path):
    src, out, priv, key = tmp_path / "in", tmp_path / "out", tmp_path / "priv", tmp_path / "key"
    _dataset(src)
    assert main(["--generate-key", str(key)]) == 0
    common = ["--key-file", str(key), "--private-dir", str(priv)]
    assert main([str(src), str(out), "participant", *common]) == 0
    rc = main([str(src), str(out), "group", *common])
    audit = json.loads((priv / "leak-audit.json").read_text())
    assert audit.get("hits") == [], audit.get("hits")
    assert rc == 0

    names = [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()]
    assert not [n for n in names if "cm4" in n.lower() or "ir05" in n.lower()], names
    stimuli = sorted(p.name for p in (out / "stimuli").iterdir())
    assert len(stimuli) == 2
    pointed = set()
    for ev in out.glob("sub-*/beh/*_events.tsv"):
        text = ev.read_text()
        assert "cm4" not in text and "ir05" not in text
        rows = [line.split("\t") for line in text.splitlines()[1:]]
        pointed |= {r[3] for r in rows if r[3] != "n/a"}
        sub = ev.name.split("_")[0][4:]
        assert pointed and all(v.startswith(sub + "_") for v in {r[3] for r in rows} - {"n/a"})
    assert pointed == set(stimuli)  # every reference names a file that exists, each file is referenced
