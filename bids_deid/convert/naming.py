"""Classified outputs to BIDS names: sessions (ReproIn), ASL and field-map sets, runs, relative paths."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from .classify import Guess, bids_name
from .fmap import TARGET_SUFFIXES, fieldmap_sets, link_fieldmaps
from .series import Series


def reproin_sessions(series: list[Series]) -> None:
    """ReproIn ``ses-`` labels: a study whose named series agree on one label becomes that session.

    A label that looks like a date (or a long number) is not taken; the numbered session stays.
    """
    from .reproin import parse

    by_study: dict[tuple[str, str | None], list[Series]] = defaultdict(list)
    for s in series:
        by_study[(s.subject, s.session)].append(s)
    taken: dict[str, set[str]] = defaultdict(set)
    for (sub, _ses), members in sorted(by_study.items(), key=lambda x: str(x[0])):
        labels = set()
        for s in members:
            p = parse(s.fields.get("ProtocolName")) or parse(s.fields.get("SeriesDescription"))
            if p is not None:
                labels.add(p["entities"].get("ses"))
        labels.discard(None)
        if len(labels) == 1:
            label = next(iter(labels))
            if re.search(r"\d{6,}|(19|20)\d\d[01]\d", label) or label in taken[sub]:
                continue
            taken[sub].add(label)
            for s in members:
                s.session = label


def name_outputs(series: list[Series]) -> dict[tuple[str, str | None], list[tuple[Series, dict]]]:
    """Action, runs and final relative path (``o['rel']``, ``s.names``) of every classified output.

    The dry run stops here, so its names are the real run's names.
    """
    by_ses: dict[tuple[str, str | None], list[tuple[Series, dict]]] = defaultdict(list)
    ordered = sorted(series, key=lambda s: (s.number, s.time, s.token))
    for s in ordered:
        for o in s.outputs:
            if not o["guess"].skipped:
                by_ses[(s.subject, s.session)].append((s, o))
    for (_sub, ses), items in by_ses.items():  # ASL runs and field-map sets can turn images BIDS cannot name
        _complete_perfusion(items)                # into skipped ones
        items[:] = [(s, o) for s, o in items if not o["guess"].skipped]
        sets = fieldmap_sets(items, ses)
        targets = [(s, o) for s, o in items if not o["guess"].skipped and o["guess"].suffix in TARGET_SUFFIXES]
        link_fieldmaps(sets, targets)
        items[:] = [(s, o) for s, o in items if not o["guess"].skipped]
    for s in ordered:
        kept = [o for o in s.outputs if not o["guess"].skipped]
        left = [o for o in s.outputs if o["guess"].skipped]
        if not kept:
            s.action = "skipped"
            s.reason = s.reason or (left[0]["guess"].reason if left else "dcm2niix produced no image")
            continue
        s.action, s.reason = "bids", kept[0]["guess"].reason
        if left:  # part of the series could not be named: its DICOM is kept in sourcedata as well
            s.partial = "; ".join(sorted({o["guess"].reason for o in left}))
            s.reason += f"; {len(left)} of {len(s.outputs)} images not named ({s.partial})"
    for (sub, ses), items in by_ses.items():
        _assign_runs(items, sub, ses)
        prefix = Path(f"sub-{sub}") / (f"ses-{ses}" if ses else "")
        for s, o in items:
            o["rel"] = prefix / o["guess"].datatype / f"{o['name']}.nii.gz"
            s.names.append(str(o["rel"]))
    return by_ses


def _complete_perfusion(items: list[tuple[Series, dict]]) -> None:
    """ASL runs get their required fields and volume order, or are skipped with what is missing; M0 scans
    are linked to the session's ASL runs (skipped when there is none)."""
    from .asl import complete_asl

    m0s = [o for _s, o in items if o["guess"].suffix == "m0scan"]
    asls = [o for _s, o in items if o["guess"].suffix == "asl"]
    for o in asls:
        g = o["guess"]
        side, context, missing = complete_asl(o["fields"], int(o.get("n_vols") or 1), has_m0scan=bool(m0s),
                                              pattern=g.aslcontext, metadata=g.metadata)
        if missing:
            g.datatype, g.suffix, g.entities = None, None, {}
            g.reason = (f"ASL run without {', '.join(missing)} (BIDS needs them; give them in a heuristic "
                        "rule's metadata/aslcontext)")
            continue
        o["asl_side"], o["aslcontext"] = side, context
    kept = [o for o in asls if not o["guess"].skipped]
    for o in m0s:
        if not kept:
            g = o["guess"]
            g.datatype, g.suffix, g.entities = None, None, {}
            g.reason = "M0 scan without an ASL run in BIDS"
        else:
            o["m0_for"] = kept


def _assign_runs(items: list[tuple[Series, dict]], subject: str, session: str | None) -> None:
    """Number repeated names run-1, run-2, ... in series order; store ``o['name']``."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for _s, o in items:
        g: Guess = o["guess"]
        base = bids_name(subject, session, g)
        o["base"] = base
        groups[base].append(o)
    for base, outs in groups.items():
        if len(outs) == 1:
            outs[0]["name"] = base
            continue
        for i, o in enumerate(outs, 1):
            o["name"] = bids_name(subject, session, o["guess"], run=i)
            if o["name"] == base:  # run fixed by a heuristic: keep the rule's choice, avoid clashes
                o["name"] = f"{base}{'' if i == 1 else f'_dup{i}'}"
