"""Dataset-level files: everything of a BIDS dataset outside its ``sub-*`` folders.

Each file gets one fate, recorded with a reason:

* ``dataset_description.json``: schema-defined fields kept, ``GeneratedBy`` appended;
* ``participants``/``samples``/``phenotype`` tables: spec columns (and the profile's) kept,
  rows of subjects not in the output dropped, labels replaced; their JSON keeps the
  descriptions of the columns kept;
* README/CHANGES/LICENSE/CITATION and other text: carried with labels replaced;
  ``.bidsignore`` patterns rewritten for the new labels;
* inherited sidecars and column dictionaries (``task-x_bold.json``, ``task-x_events.json``),
  inherited tables and gradients (``task-x_channels.tsv``, ``dwi.bval``): scrubbed or carried;
* ``stimuli/``, ``code/``, ``docs/``, ``logs/``: carried (text relabelled; the leak audit reads them);
* ``derivatives/<name>/`` with its own dataset_description: a nested dataset, processed
  like the top one (the caller's ``nested``), keeping its DatasetType;
* templates and atlases (``tpl-*/``, ``atlas-*``) and any other folder: file by file
  (NIfTI headers scrubbed, JSON scrubbed, tables carried, other formats by the registry);
* ``sourcedata/`` outside subjects: listed as left out (unknown provenance).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from .atomic import atomic_write_bytes
from .dataset import map_strings, outside_link
from .errors import OutputError
from .formats.base import ScrubLog
from .formats.sidecar import dump_json, load_json, scrub_column_dictionary, scrub_sidecar
from .formats.tabular import read_tsv, scrub_participants, write_tsv
from .schema import table_columns, tabular_suffixes

log = logging.getLogger(__name__)

TEXT_NAMES = ("README", "CHANGES", "LICENSE", "CITATION.cff")
CARRIED_DIRS = ("stimuli", "code", "docs", "logs")


def _without_companions(files: list[Path]) -> list[Path]:
    """``files`` less those a format module of another file in the list claims as companions."""
    from .formats import handler_for

    owned: set[Path] = set()
    for f in files:
        mod = handler_for(f) if f.is_file() else None
        if mod is not None:
            owned.update(mod.companions(f))
    return [f for f in files if f not in owned]


def _text_name(name: str) -> bool:
    """README / CHANGES / LICENSE / CITATION.cff (any README.* spelling): prose, carried relabelled."""
    return name in TEXT_NAMES or name.split(".")[0] in TEXT_NAMES or name.startswith(("README", "LICENSE"))
_TEXT_EXT = {"", ".txt", ".md", ".rst", ".py", ".m", ".sh", ".r", ".json", ".tsv", ".csv", ".yaml", ".yml",
             ".cfg", ".ini", ".html", ".ipynb", ".toml", ".bat", ".jl", ".c", ".cpp", ".h", ".js", ".log", ".xml"}


class DatasetFiles:
    """Write the dataset-level files of ``s.bids_dir`` into ``s.output_dir``; collect records.

    ``relabel`` maps any string holding original labels to its new form; ``done`` maps
    ``sub-<original>`` to ``sub-<new>`` for the subjects in the output; ``describe``
    builds the output's dataset_description from the input's; ``nested`` processes a
    nested derivative dataset (input folder, output-relative path) and returns its records.
    """

    def __init__(self, s, relabel: Callable[[str], str], done: dict[str, str], describe: Callable[[dict], dict],
                 nested: Callable[[Path, str], dict] | None = None):
        self.s, self.relabel, self.done, self.describe, self.nested = s, relabel, done, describe, nested
        self.slog = ScrubLog()
        self.records: dict[str, dict] = {}

    # -- bookkeeping
    def _write(self, rel: str, data: bytes | Path) -> None:
        path = self.s.output_dir / rel
        if isinstance(data, Path):
            with open(data, "rb") as fh:
                data = fh.read()
        atomic_write_bytes(path, data)
        self.records[rel] = {"status": "written", "reason": ""}

    def _hold(self, rel: str, status: str, reason: str) -> None:
        self.records[rel] = {"status": status, "reason": reason, "original": True}

    # -- the walk
    def run(self, original_dd: dict) -> dict[str, dict]:
        root = self.s.bids_dir
        # tables before their dictionaries (a dictionary keeps the columns its table kept)
        for path in sorted(root.iterdir(), key=lambda p: (p.name in ("participants.json", "samples.json"), p.name)):
            name = path.name
            rel = name
            if path.is_symlink() and outside_link(path, root):
                self._hold(rel + ("/" if path.is_dir() else ""), "left out", "symbolic link out of the input")
                continue
            if path.is_dir():
                if name.startswith("sub-") or name.startswith("."):
                    if name.startswith("."):
                        self._hold(rel + "/", "left out", "hidden folder (version control, caches)")
                    continue
                self._folder(path, name, original_dd)
                continue
            try:
                self._root_file(path, original_dd)
            except OutputError:
                raise
            except Exception as exc:  # one bad file never stops the run
                log.info("withheld %s", rel, exc_info=self.s.verbose)
                self._hold(rel, "withheld", self.relabel(f"could not be processed ({exc.__class__.__name__}: "
                                                         f"{str(exc).splitlines()[0][:200] if str(exc) else ''})"))
        return self.records

    def _folder(self, path: Path, name: str, original_dd: dict) -> None:
        if name == "sourcedata":
            for f in sorted(p for p in path.rglob("*") if p.is_file()):
                rel = f.relative_to(self.s.bids_dir).as_posix()
                if not any(part.startswith("sub-") for part in rel.split("/")[1:]):
                    self._hold(rel, "left out", "sourcedata file of no subject")
            return
        if name == "phenotype":
            for f in sorted(path.iterdir()):
                self._guard(f, lambda f=f: self._phenotype(f))
            return
        if name == "derivatives":
            for child in sorted(path.iterdir()):
                crel = f"derivatives/{child.name}"
                if child.is_dir() and (child / "dataset_description.json").is_file() and self.nested is not None:
                    self.records.update(self.nested(child, crel))
                elif child.is_dir():
                    self._files(child, carry=False)
                else:
                    self._guard(child, lambda c=child: self._generic(c))
            return
        self._files(path, carry=name in CARRIED_DIRS)

    def _guard(self, f: Path, fn) -> None:
        rel = f.relative_to(self.s.bids_dir).as_posix()
        if f.is_symlink() and outside_link(f, self.s.bids_dir):
            self._hold(rel, "left out", "symbolic link out of the input")
            return
        try:
            fn()
        except OutputError:
            raise
        except Exception as exc:
            log.info("withheld %s", rel, exc_info=self.s.verbose)
            text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            self._hold(rel, "withheld", self.relabel(f"could not be processed ({exc.__class__.__name__}"
                                                     f"{': ' + text if text else ''})"))

    def _files(self, folder: Path, carry: bool) -> None:
        from .formats import is_folder_format

        todo = []
        for f in sorted(folder.rglob("*")):
            inner = f.relative_to(folder).parts
            if any(is_folder_format(p) for p in inner[:-1]):
                continue
            if f.is_dir() and not is_folder_format(f.name):
                continue
            if any(p.startswith(".") for p in inner) and not carry:
                continue
            todo.append(f)
        if carry:
            for f in todo:
                self._guard(f, lambda f=f: self._carry(f))
            return
        todo = _without_companions(todo)  # a .vmrk/.eeg goes with its .vhdr, a .fdt with its .set ...
        # data files first: a withheld one takes its sidecar with it (also one it inherits)
        fates: dict[str, list[tuple[frozenset[str], bool]]] = {}  # folder/suffix -> (entities, written)
        for f in sorted(todo, key=lambda p: p.name.endswith(".json")):
            rel = f.relative_to(self.s.bids_dir).as_posix()
            folder, _, name = rel.rpartition("/")
            ents, suffix = _entities(name)
            if f.name.endswith(".json"):
                data = fates.get(f"{folder}/{suffix}", [])
                served = [ok for e, ok in data if ents <= e]
                if served and not any(served):
                    self._hold(rel, "withheld", "its data files were withheld")
                    continue
            self._guard(f, lambda f=f: self._generic(f))
            if not f.name.endswith(".json"):
                ok = self.records.get(rel, {}).get("status") != "withheld"
                fates.setdefault(f"{folder}/{suffix}", []).append((ents, ok))

    # -- per kind
    def out_rel(self, f: Path) -> str:
        return self.relabel(f.relative_to(self.s.bids_dir).as_posix())

    def _carry(self, f: Path) -> None:
        """stimuli/, code/, docs/, logs/: the file as it is; text with labels replaced."""
        if f.is_dir():
            return
        data = f.read_bytes()
        low = f.suffix.lower()
        if low in (".jpg", ".jpeg", ".png") and data:
            from .formats.photo import strip_jpeg
            from .formats.png import scrub_bytes

            try:  # stimulus pictures are carried, their EXIF/XMP/text metadata (camera, author, place) are not
                data = scrub_bytes(data, self.slog) if low == ".png" else strip_jpeg(data, self.slog)
            except ValueError as exc:
                self._hold(f.relative_to(self.s.bids_dir).as_posix(), "withheld",
                           f"image whose metadata cannot be removed ({exc})")
                return
        if f.suffix.lower() in _TEXT_EXT:
            try:
                data = self.relabel(data.decode("utf-8")).encode("utf-8")
            except UnicodeDecodeError:
                pass
        self._write(self.out_rel(f), data)

    def _root_file(self, path: Path, original_dd: dict) -> None:
        name = path.name
        if name == "dataset_description.json":
            self._write(name, dump_json(self.describe(original_dd)))
        elif name in ("participants.tsv", "samples.tsv"):
            self._table(path, "Participants" if name.startswith("p") else "Samples")
        elif name in ("participants.json", "samples.json"):
            self._table_json(path)
        elif name == ".bidsignore":
            self._write(name, self.relabel(path.read_text(encoding="utf-8", errors="replace")).encode("utf-8"))
        elif _text_name(name):
            self._write(name, self.relabel(path.read_text(encoding="utf-8", errors="replace")).encode("utf-8"))
        elif name.startswith("."):
            self._hold(name, "left out", "hidden file")
        else:
            self._generic(path)

    def _orphan(self, f: Path) -> bool:
        """True for a top-level inherited file (``task-rest_bold.json``) whose data files are all
        withheld: the input has some it applies to, the output none."""
        if f.parent != self.s.bids_dir or not f.name.endswith((".json", ".tsv", ".bval", ".bvec")):
            return False
        stem = f.name.split(".")[0]
        parts = stem.split("_")
        suffix, entities = parts[-1], [p for p in parts[:-1] if "-" in p]
        if not suffix or len(entities) != len(parts) - 1:
            return False

        pattern = "*" if suffix == "description" else f"*_{suffix}.*"  # atlas-X_description.json: any atlas-X file

        def applies(root: Path) -> bool:
            for p in root.glob(f"sub-*/**/{pattern}"):
                if not p.is_file() or suffix == "description" and p.name.endswith(".json"):
                    continue
                if p.name.endswith((".json", ".tsv", ".bval", ".bvec")) and suffix not in ("events", "channels"):
                    continue
                if p.name.endswith(f.name[len(stem):]) and suffix in ("events", "channels"):
                    continue  # a table beside it is another inherited-level file, not data
                if all(f"_{e}_" in f"_{p.name.split('.')[0]}_" for e in entities):
                    return True
            return False

        return applies(self.s.bids_dir) and not applies(self.s.output_dir)

    def _generic(self, f: Path) -> None:
        """Any other file outside subjects: by extension, else through the format registry."""
        from .formats import handler_for
        from .formats.base import Context

        rel_in = f.relative_to(self.s.bids_dir).as_posix()
        rel = self.out_rel(f)
        if self._orphan(f):
            self._hold(rel_in, "withheld", "inherited by files that were all withheld")
            return
        low = f.name.lower()
        suffix = f.name.split(".")[0].rpartition("_")[2]
        if f.is_file() and f.stat().st_size == 0:
            self._write(rel, b"")
        elif low.endswith(".json"):
            obj = load_json(f.read_bytes(), rel_in)
            if suffix in tabular_suffixes():
                obj = scrub_column_dictionary(obj, None, self.s.profile, None, self.slog)
            else:
                obj = scrub_sidecar(obj, self.s.profile, None, self.slog)
            self._write(rel, dump_json(map_strings(obj, self.relabel)))
        elif low.endswith((".nii", ".nii.gz")):
            from .formats.nifti import scrub_nifti_file

            scrub_nifti_file(f, self.s.output_dir / rel, self.s.profile, self.slog)
            self.records[rel] = {"status": "written", "reason": ""}
        elif low.endswith((".tsv", ".bval", ".bvec")) or _text_name(f.name):  # README of a derivative ...
            self._write(rel, self.relabel(f.read_text(encoding="utf-8", errors="replace")).encode("utf-8"))
        elif low.endswith(".tsv.gz"):
            from .formats.tabular import regzip

            regzip(f, self.s.output_dir / rel)
            self.records[rel] = {"status": "written", "reason": ""}
        else:
            mod = handler_for(f)
            if mod is None:
                what = "".join(Path(f.name).suffixes[-2:]) or f.name
                self._hold(rel_in, "withheld", f"no format module reads '{what}' files (unknown may identify)")
                return
            res = mod.scrub(f, self.s.profile, Context(rel_out=rel, relabel=self.relabel,
                                                       keep_photos=self.s.profile.keep_photos))
            self.slog.extend(res.log)
            if res.withheld:
                self._hold(rel_in, "withheld", res.withheld)
                for comp in mod.companions(f):
                    self._hold(comp.relative_to(self.s.bids_dir).as_posix(), "withheld",
                               f"goes with {f.name}, which was withheld")
                return
            for r, data in res.writes.items():
                self._write(r, data)

    # -- tables
    def _kept_columns(self, header: list[str], table: str) -> list[str]:
        spec = table_columns(table)
        out = []
        for c in header:
            rule = self.s.profile.tabular_rule(c)
            if rule is not None:
                if rule.action != "remove":
                    out.append(c)
            elif c in spec or c in self.s.profile.participants_columns:
                out.append(c)
        return out

    def _table(self, path: Path, table: str) -> None:
        rel = path.relative_to(self.s.bids_dir).as_posix()
        header, rows = read_tsv(path.read_bytes(), rel)
        header, rows = self._filter_table(header, rows, table, rel)
        if not rows:
            self._hold(rel, "left out", "no participant of it is in the output")
            return
        self._write(self.relabel(rel), write_tsv(header, rows))

    def _filter_table(self, header, rows, table, rel, extra: set[str] = frozenset()):
        keep = [c for c in header if c in self._kept_columns(header, table) or c in extra]
        if "participant_id" not in header:
            raise ValueError(f"{rel} has no participant_id column")
        from dataclasses import replace

        # scrub_participants keeps the profile's columns: hand it the spec's ones too
        prof = replace(self.s.profile, participants_columns=tuple(dict.fromkeys(
            [*self.s.profile.participants_columns, *keep])))
        header, rows, _removed = scrub_participants(header, rows, prof, self.done, self.slog)
        return header, [[self.relabel(v) if h != "participant_id" else v for h, v in zip(header, r, strict=False)]
                        for r in rows]

    def _table_json(self, path: Path, table: str | None = None) -> None:
        rel = path.relative_to(self.s.bids_dir).as_posix()
        tsv = path.with_suffix(".tsv")
        if not tsv.is_file():
            self._hold(rel, "left out", "column dictionary without its table")
            return
        out_tsv = self.s.output_dir / self.relabel(tsv.relative_to(self.s.bids_dir).as_posix())
        if not out_tsv.is_file():
            self._hold(rel, "left out", "its table is not in the output")
            return
        header = read_tsv(out_tsv.read_bytes(), rel)[0]
        obj = load_json(path.read_bytes(), rel)
        kept = {k: v for k, v in obj.items() if k in header} if isinstance(obj, dict) else {}
        kept = scrub_column_dictionary(kept, header, self.s.profile, None, self.slog)
        gone = [k for k in obj if k not in header] if isinstance(obj, dict) else []
        for k, v in kept.items():  # HED that refers to a removed column ({notes}) would not validate
            if isinstance(v, dict) and "HED" in v and any("{" + g + "}" in json.dumps(v["HED"]) for g in gone):
                kept[k] = {dk: dv for dk, dv in v.items() if dk != "HED"}
        self._write(self.relabel(rel), dump_json(kept))

    def _phenotype(self, f: Path) -> None:
        """Phenotype tables keep the columns their JSON describes whose values are numbers or listed levels."""
        if f.suffix == ".json":
            return  # written with its table
        rel = f.relative_to(self.s.bids_dir).as_posix()
        if f.suffix != ".tsv":
            self._generic(f)
            return
        header, rows = read_tsv(f.read_bytes(), rel)
        side = f.with_suffix(".json")
        desc = load_json(side.read_bytes(), rel) if side.is_file() else {}
        desc = desc if isinstance(desc, dict) else {}
        coded = set()
        for i, c in enumerate(header):
            levels = desc.get(c, {}).get("Levels", {}) if isinstance(desc.get(c), dict) else {}
            values = {r[i].strip() for r in rows}
            if all(_number(v) or v in ("n/a", "") or v in levels for v in values):
                coded.add(c)
        header, rows = self._filter_table(header, rows, "Phenotype", rel, extra=coded | {"session_id"})
        self._write(self.relabel(rel), write_tsv(header, rows))
        if side.is_file():
            self._table_json(side)


def _entities(name: str) -> tuple[frozenset[str], str]:
    """(key-value entities, suffix) of a BIDS file name."""
    parts = name.split(".")[0].split("_")
    return frozenset(p for p in parts[:-1] if "-" in p), parts[-1]


def _number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True

