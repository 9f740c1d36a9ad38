"""Leak audit: search every byte of the public output for every identifier met, by class.

The scrubbers record, on the private side, each identifying value they removed or replaced
(``identifiers/*.json``: source field and value). The audit does not ask them what they did:
it classifies those values (person name, ID, date, place, device, free-text token, label,
UID; see :mod:`.needles`), spells each in the ways a writer would, and searches the output's
raw bytes for them in one pass per file (:mod:`.scan`): file names, contents, ``.gz`` unpacked
and their gzip headers, in UTF-8, UTF-16 and Latin-1, case-blind, with the match rule of the
class. It also searches for the key itself (raw, hex, base64), and screens kept free text for
identifier-shaped strings (:mod:`.screen`).

Each hit names the file, the place in it (byte offset, JSON path or TSV cell), the class and
the source field, and, on the private side only, the value with some context. A reviewer can
settle a hit with a reasoned acceptance (:mod:`.accept`); any other hit fails the run.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..private import write_json
from . import accept as acc
from .needles import KEY, SEARCHED_CLASSES, SEQ_LABEL, Needle, NotSearched, key_needles, needles_for
from .scan import FileResult, Matcher, scan_file

log = logging.getLogger(__name__)
REPORT = "leak-audit.json"
_PRIORITY = {c: i for i, c in enumerate((KEY, "person name", "ID", "device/station", "place/institution",
                                         "subject/session label", "date", "UID", "free-text token", SEQ_LABEL))}


@dataclass
class Plan:
    """What will be searched: needles by scope ('*' or a subject label) and what will not, with why."""

    needles: dict[str, list[Needle]] = field(default_factory=dict)
    not_searched: list[NotSearched] = field(default_factory=list)

    def by_class(self) -> dict[str, int]:
        """Number of distinct values searched per class (no values: safe to print)."""
        seen: dict[str, set[str]] = {}
        for lst in self.needles.values():
            for n in lst:
                seen.setdefault(n.cls, set()).add(n.value.lower())
        return {c: len(seen[c]) for c in SEARCHED_CLASSES if c in seen}

    def not_by_reason(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for n in self.not_searched:
            out[n.reason] = out.get(n.reason, 0) + 1
        return dict(sorted(out.items()))

    def values(self) -> int:
        return sum(self.by_class().values())


@dataclass
class AuditResult:
    plan: Plan = field(default_factory=Plan)
    hits: list[dict] = field(default_factory=list)  # every hit, with status open/accepted/re-opened
    review: list[dict] = field(default_factory=list)  # identifier-shaped strings in kept free text
    blocking_review: bool = False
    files: int = 0
    bytes: int = 0
    unpacked: int = 0
    seconds: float = 0.0
    key_searched: bool = False

    @property
    def open(self) -> list[dict]:
        """Hits that fail the run: not accepted (or re-opened), and review items when the profile requires."""
        out = [h for h in self.hits if h["status"] != "accepted"]
        if self.blocking_review:
            out += [r for r in self.review if r["status"] != "accepted"]
        return out

    @property
    def checked(self) -> int:
        return self.plan.values()

    @property
    def unchecked(self) -> list[str]:
        return sorted({n.kind for n in self.plan.not_searched})

    def public_lines(self, limit: int = 50) -> list[str]:
        """One line per hit that fails the run, and per accepted hit: id, file, place, class, source; no values."""
        lines = []
        for h in sorted(self.open, key=lambda h: (h["file"], h["id"]))[:limit]:
            state = "LEAK (re-opened: file changed since accepted)" if h["status"] == "re-opened" else "LEAK"
            lines.append(f"  {state} {h['id']} {h['file']} [{'; '.join(h['locations'][:2])}]: {h['class']} from "
                         f"{h['kind']}, {h['count']}x ({h['where']})")
        if len(self.open) > limit:
            lines.append(f"  ... and {len(self.open) - limit} more (see leak-audit.json in the private dir)")
        for h in self.hits + self.review:
            if h["status"] == "accepted":
                lines.append(f"  accepted {h['id']} {h['file']}: {h['class']} ({h['accepted']['reason']})")
        return lines

    def summary(self) -> dict:
        return {"checked_values": self.checked, "unchecked_values": len(self.plan.not_searched),
                "files": self.files, "bytes": self.bytes, "unpacked_bytes": self.unpacked,
                "hits": len(self.open), "accepted": sum(h["status"] == "accepted" for h in self.hits + self.review),
                "review": len(self.review), "seconds": round(self.seconds, 2), "key_searched": self.key_searched,
                "searched_by_class": self.plan.by_class()}


# ------------------------------------------------------------------ plan
def public_names(output_dir: Path) -> set[str]:
    """Lower-case names and name words listed as the dataset's Authors (already public)."""
    try:
        dd = json.loads((output_dir / "dataset_description.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    out: set[str] = set()
    authors = dd.get("Authors") if isinstance(dd, dict) else None
    for a in authors if isinstance(authors, list) else []:
        if isinstance(a, str):
            out.add(a.strip().lower())
            out |= {w.strip(".,").lower() for w in a.replace(",", " ").split() if len(w.strip(".,")) >= 2}
    return out


def dataset_name_words(output_dir: Path) -> set[str]:
    """Lower-case words of the dataset's Name (public by the authors' choice)."""
    try:
        dd = json.loads((output_dir / "dataset_description.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    name = dd.get("Name") if isinstance(dd, dict) else None
    import re

    return {w.lower() for w in re.split(r"[\W_]+", name) if len(w) >= 3} if isinstance(name, str) else set()


def public_text(output_dir: Path) -> str:
    """The text of the output's dataset_description.json (lower case, spaces squeezed): what the authors publish."""
    try:
        dd = json.loads((output_dir / "dataset_description.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    parts: list[str] = []

    def walk(x) -> None:
        if isinstance(x, str):
            parts.append(x)
        elif isinstance(x, list):
            for y in x:
                walk(y)
        elif isinstance(x, dict):
            for k, y in x.items():
                if k != "GeneratedBy":
                    walk(y)

    walk(dd)
    return " ".join(" ".join(parts).lower().split())


def make_plan(private_dir: Path, output_dir: Path | None = None, key: bytes | None = None) -> Plan:
    """Read the identifiers the run met and turn them into needles, by scope."""
    plan = Plan(needles={"*": []})
    public = public_names(output_dir) if output_dir is not None else set()
    words = dataset_name_words(output_dir) if output_dir is not None else set()
    text = public_text(output_dir) if output_dir is not None else ""
    seen: set[tuple[str, str, str]] = set()
    for f in sorted((private_dir / "identifiers").glob("*.json")):
        scope = f.name.split(".")[0][4:] if f.name.startswith("sub-") else "*"
        try:
            pairs = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            from ..errors import OutputError

            raise OutputError(f"private file identifiers/{f.name} is unreadable; rerun the participant level") from None
        for kind, value in pairs:
            if (scope, kind, value) in seen:
                continue
            seen.add((scope, kind, value))
            needles, skipped = needles_for(str(kind), str(value), scope, public, words, text)
            for n in needles:
                plan.needles.setdefault(n.scope, []).append(n)
            plan.not_searched += skipped
    if key:
        plan.needles["*"] += key_needles(key)
    uniq = {(n.cls, n.kind, n.value, n.reason): n for n in plan.not_searched}
    plan.not_searched = sorted(uniq.values(), key=lambda n: (n.cls, n.kind, n.value))
    return plan


# ------------------------------------------------------------------ scanning
_WORKER: dict = {}


def _init_worker(needles: dict[str, list[Needle]]) -> None:
    _WORKER.clear()
    _WORKER["needles"] = needles


def _matcher() -> Matcher:
    """One matcher per process for every needle; each file's scope picks the needles that count there."""
    if "matcher" not in _WORKER:
        _WORKER["matcher"] = Matcher([n for lst in _WORKER["needles"].values() for n in lst])
    return _WORKER["matcher"]


def _scan_one(args: tuple[str, str, str]) -> tuple[FileResult, str]:
    path, rel, scope = args
    return scan_file(_matcher(), Path(path), rel, scope), scope


def _scope_of(rel: str, scopes: set[str]) -> str:
    sub = next((p for p in rel.split("/") if p.startswith("sub-")), None)
    if sub is None:
        # Files outside every subject folder (README, participants.tsv, ...) hold no subject's
        # shifted dates: every subject's original dates are searched there too.
        return "<all>"
    label = sub[4:]
    return label if label in scopes else "*"


def _file_scope(path: Path, rel: str, scopes: set[str]) -> str:
    from .scan import is_text

    base = _scope_of(rel, scopes)
    return base + "+text" if is_text(path) else base


def _walk(output_dir: Path) -> list[Path]:
    return sorted(p for p in output_dir.rglob("*"))


def audit_output(output_dir: Path, private_dir: Path, key: bytes | None = None, n_cpus: int = 1,
                 free_text: str = "review") -> AuditResult:
    """Search the public output for the identifiers recorded in ``private_dir``.

    Parameters
    ----------
    output_dir, private_dir : Path
        The run's public and private folders.
    key : bytes, optional
        The pseudonymization key: searched for too (it must never be public).
    n_cpus : int
        Files searched in parallel.
    free_text : {"review", "require"}
        Whether identifier-shaped strings in kept free text are listed for review only, or
        fail the run until accepted.

    Writes ``leak-audit.json`` to the private dir and returns the result.
    """
    t0 = time.perf_counter()
    plan = make_plan(private_dir, output_dir, key)
    res = AuditResult(plan=plan, blocking_review=free_text == "require", key_searched=bool(key))
    scopes = {sc.removeprefix("text:") for sc in plan.needles} - {"*"}
    tasks = [(str(p), p.relative_to(output_dir).as_posix(), _file_scope(p, p.relative_to(output_dir).as_posix(), scopes))
             for p in _walk(output_dir)]
    results: list[tuple[FileResult, str]] = []
    if n_cpus > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(max_workers=n_cpus, initializer=_init_worker, initargs=(plan.needles,)) as ex:
            results = list(ex.map(_scan_one, tasks, chunksize=max(1, len(tasks) // (n_cpus * 8))))
    else:
        _init_worker(plan.needles)
        results = [_scan_one(t) for t in tasks]
    if n_cpus > 1 and len(tasks) > 1 and any(fr.found for fr, _s in results):
        _init_worker(plan.needles)
    s = acc.salt(private_dir)
    groups = _group(results, s, output_dir, res)
    ordered = sorted(groups.values(), key=lambda h: (h["file"], h["class"], h["id"]))
    # An original sequence-number label (sub-01) in the content of a kept file is stale text, not a
    # person: listed for review. In a file name it means a folder was not relabelled: a hit.
    res.hits = [h for h in ordered if h["class"] != SEQ_LABEL or h["where"] == "file name"]
    from .screen import screen_free_text

    res.review = [h for h in ordered if h not in res.hits] + screen_free_text(output_dir, s, plan)
    acc.settle(res.hits + res.review, output_dir, private_dir)
    res.seconds = time.perf_counter() - t0
    write_report(private_dir, res)
    return res


def _group(results: list[tuple[FileResult, str]], s: bytes, output_dir: Path, res: AuditResult) -> dict[tuple, dict]:
    """Occurrences grouped into hits: one per file, place kind, class and value (with its count and places)."""
    groups: dict[tuple, dict] = {}
    for fr, scope in results:
        if fr.size or (output_dir / fr.rel).is_file():
            res.files += 1
        res.bytes += fr.size
        res.unpacked += fr.unpacked or fr.size
        if fr.error:
            groups[(fr.rel, "unreadable")] = _hit(s, fr.rel, "unreadable", "(file)", "", "", "content",
                                                  "the file could not be searched", fr.error)
        if not fr.found:
            continue
        m = _matcher()
        for f in fr.found:
            cands = sorted(m.needles_in(f.form, scope),
                           key=lambda n: (_PRIORITY.get(n.cls, 99), not _native(n.kind, fr.rel)))
            n = cands[0]
            form = m.forms[f.form][0]
            where_txt = fr.locations.get(f.offset) or _offset_text(f, fr.rel)
            context = f.context if n.cls != KEY else "(withheld: key material)"
            gk = (fr.rel, f.where, n.cls, n.value.lower())
            h = groups.get(gk)
            if h is None:
                h = groups[gk] = _hit(s, fr.rel, n.cls, n.kind, n.value, form, f.where, where_txt, context,
                                      f.encoding)
                h["sources"] = sorted({c.kind for c in cands})
            h["count"] += 1
            if len(form) > len(h["form"]):  # show the fullest spelling found (and its context)
                h["form"], h["context"] = form, context
            if len(h["locations"]) < 20 and where_txt not in h["locations"]:
                h["locations"].append(where_txt)
    return groups


def _native(kind: str, rel: str) -> bool:
    """True when ``kind`` was recorded from a file of the same format as ``rel`` (the likelier source)."""
    if rel.endswith(".json"):
        return kind.startswith("sidecar:")
    if rel.endswith((".tsv", ".tsv.gz")):
        return kind.startswith("tsv:")
    return ":" not in kind


def _offset_text(f, rel: str) -> str:
    if f.where == "file name":
        return "file name"
    if f.where == "gzip header":
        return "gzip header"
    unpacked = " of the unpacked stream" if rel.endswith(".gz") else ""
    return f"byte {f.offset}{unpacked} ({f.encoding})"


def _hit(s: bytes, rel: str, cls: str, kind: str, value: str, form: str, where: str, loc: str, context: str,
         encoding: str = "") -> dict:
    return {"id": acc.hit_id(s, rel, cls, value, where), "file": rel, "where": where, "class": cls, "kind": kind,
            "value": value, "form": form, "context": context, "encoding": encoding, "count": 0 if value else 1,
            "locations": [loc], "status": "open"}


def write_report(private_dir: Path, res: AuditResult) -> None:
    """``leak-audit.json`` (private): summary, every hit with value and context, what was not searched."""
    write_json(private_dir / REPORT, {
        "summary": res.summary(),
        "hits": res.hits,
        "review": res.review,
        "searched_by_class": res.plan.by_class(),
        "not_searched": [{"class": n.cls, "kind": n.kind, "value": n.value, "reason": n.reason}
                         for n in res.plan.not_searched],
        "not_searched_by_reason": res.plan.not_by_reason(),
        "unchecked_kinds": res.unchecked,
        "rules": "whole words for names and places; whole tokens for IDs, devices, labels; whole numbers for "
                 "dates and UIDs; forms shorter than 8 bytes are not searched inside voxel, pixel or raw-data blocks",
    })


__all__ = ["AuditResult", "Plan", "audit_output", "make_plan", "write_report"]
