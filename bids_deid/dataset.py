"""Walk a BIDS input, decide what each file is, and plan where it goes."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from .errors import InputError
from .jsonwalk import map_strings  # noqa: F401 - its old place: dataset_files imports it from here

# Files inside a subject folder that we know how to handle.
ANAT_DEFACE_SUFFIXES = {
    "T1w", "T2w", "FLAIR", "PDw", "T2starw", "PD", "T2star", "MEGRE", "MESE", "UNIT1",
    "inplaneT1", "inplaneT2", "angio", "MP2RAGE", "T1map", "T2map", "PDT2", "VFA", "IRT1",
}
ROOT_TEXT = re.compile(r"^(README(\.md|\.txt|\.rst)?|CHANGES|LICENSE|CITATION\.cff|\.bidsignore)$")


@dataclass(frozen=True)
class FileTask:
    """One input file and what to do with it."""

    src: Path
    rel_out: str | None  # path under OUTPUT_DIR (None: not written)
    kind: str  # nifti | sidecar | coldict | dated_tsv | copy | source | convert | companion | format | unknown
    deface: bool = False
    note: str = ""  # why an "unknown" task is left out, when it is not just its type


def outside_link(path: Path, root: Path) -> bool:
    """True when ``path`` is (or passes through) a symbolic link resolving outside ``root``.

    Links inside the dataset (git-annex/DataLad object stores) are fine; a link out of it
    may point into private places and is never followed.
    """
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):  # dangling or looping link
        return True
    base = root.resolve()
    return real != base and base not in real.parents


_MONTHS = "jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec"


def date_like_label(label: str) -> bool:
    """True when a BIDS label holds a calendar date (``20190314``, ``14032019``, ``14mar2019``).

    A date is an identifier (HIPAA): such a label is pseudonymized even where the profile
    keeps session labels.
    """
    import datetime as _dt

    low = label.lower()
    if re.search(rf"\d{{1,2}}({_MONTHS})[a-z]*\d{{2,4}}|({_MONTHS})[a-z]*\d{{1,2}}\d{{4}}", low):
        return True
    for m in re.finditer(r"(?=(\d{8}))", low):
        d = m.group(1)
        for y, mo, da in ((d[:4], d[4:6], d[6:]), (d[4:], d[2:4], d[:2]), (d[4:], d[:2], d[2:4])):
            if not 1800 <= int(y) <= 2099:  # shifted dates (OpenNeuro moves them to the 1800s) too
                continue
            try:
                _dt.date(int(y), int(mo), int(da))
            except ValueError:
                continue
            return True
    return False


def bids_name(name: str, subject: str) -> bool:
    """True when a file name inside ``sub-<subject>/`` starts with its subject entity, as BIDS requires.

    Other names are not BIDS and may carry anything (a patient's name): they are left out.
    """
    return name.startswith((f"sub-{subject}_", f"sub-{subject}."))


def check_bids_input(bids_dir: Path) -> dict:
    """Return dataset_description.json of ``bids_dir`` or raise a one-line error."""
    if not bids_dir.is_dir():
        raise InputError(f"input folder {bids_dir} does not exist")
    dd = bids_dir / "dataset_description.json"
    if not dd.is_file():
        raise InputError(
            f"{bids_dir} is not a BIDS dataset (no dataset_description.json); for raw DICOM/twix use --input-type raw"
        )
    try:
        data = json.loads(dd.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"corrupt JSON file dataset_description.json: {exc.__class__.__name__}") from exc
    if not isinstance(data, dict):
        raise InputError("dataset_description.json must hold a JSON object")
    return data


def list_subjects(bids_dir: Path) -> list[str]:
    """Subject labels (without ``sub-``) of a BIDS dataset, sorted."""
    return sorted(p.name[4:] for p in bids_dir.glob("sub-*") if p.is_dir())


def normalise_labels(labels: list[str] | None, prefix: str) -> tuple[str, ...] | None:
    """Strip ``sub-``/``ses-`` and split on whitespace/commas; None stays None."""
    if not labels:
        return None
    out: list[str] = []
    for item in labels:
        for part in re.split(r"[\s,]+", item.strip()):
            if part:
                out.append(part[len(prefix) :] if part.startswith(prefix) else part)
    return tuple(dict.fromkeys(out))


def relabel_name(name: str, subject: str, new_subject: str, sessions: dict[str, str]) -> str:
    """Replace the ``sub-``/``ses-`` entities of one path component."""
    name = re.sub(rf"(?<![A-Za-z0-9])sub-{re.escape(subject)}(?=$|[_./])", f"sub-{new_subject}", name)
    for old, new in sessions.items():
        name = re.sub(rf"(?<![A-Za-z0-9])ses-{re.escape(old)}(?=$|[_./])", f"ses-{new}", name)
    return name


def relabel_rel(rel: str, subject: str, new_subject: str, sessions: dict[str, str]) -> str:
    """Relabel every component of a relative path."""
    return "/".join(relabel_name(p, subject, new_subject, sessions) for p in rel.split("/"))


def _suffix(name: str) -> str:
    stem = name.split(".")[0]
    return stem.rsplit("_", 1)[-1]


def classify(rel: str) -> tuple[str, bool]:
    """(kind, deface) for a file inside a subject folder, from its relative path."""
    name = rel.rsplit("/", 1)[-1]
    parts = rel.split("/")
    if name.endswith((".nii", ".nii.gz")):
        deface = "anat" in parts[:-1] and _suffix(name) in ANAT_DEFACE_SUFFIXES
        return "nifti", deface
    if name.endswith(("_scans.tsv", "_sessions.tsv")):
        return "dated_tsv", False
    if name.endswith(("_scans.json", "_sessions.json")):
        return "coldict", False
    if name.endswith(".json"):
        return "sidecar", False
    if name.endswith((".tsv", ".tsv.gz", ".bval", ".bvec")):
        return "copy", False
    low = name.lower()
    if name.split(".")[0].endswith("_photo"):
        return "format", False  # photos: withheld unless the profile keeps them (bids_deid.formats.photo)
    from .convert.micr import SLIDE_SUFFIXES
    from .formats import companion_suffixes, header_suffixes

    if "micr" in parts[:-1] and low.endswith(SLIDE_SUFFIXES):
        return "convert", False  # whole-slide image: scrubbed, written as OME-TIFF (bids_deid.convert.micr)
    if low.endswith(header_suffixes()):
        return "convert", False  # Analyze / MINC / PAR: converted to NIfTI (their bids_deid.formats modules)
    if low.endswith(companion_suffixes()):
        return "companion", False  # data half of a pair: read through its header
    return "unknown", False


def subject_sessions(bids_dir: Path, subject: str) -> list[str]:
    return sorted(p.name[4:] for p in (bids_dir / f"sub-{subject}").glob("ses-*") if p.is_dir())


def plan_subject(
    bids_dir: Path,
    subject: str,
    new_subject: str,
    sessions: dict[str, str],
    selected_sessions: tuple[str, ...] | None,
    deface: bool,
    follow_links: bool = False,
    gzip_images: bool = False,
) -> list[FileTask]:
    """Every file of one subject (its folder and its part of sourcedata/) with a task.

    Symbolic links out of ``bids_dir`` are not followed unless ``follow_links`` (set for the
    staging tree bids-deid builds from raw input, whose links point at that input). With
    ``gzip_images`` (the same staging tree: dcm2niix writes it uncompressed, so that each image
    is compressed once, by the writer) a ``.nii`` image is written as ``.nii.gz``.
    """
    from .formats import is_folder_format

    tasks: list[FileTask] = []
    root = bids_dir / f"sub-{subject}"
    for path in sorted(root.rglob("*")):
        if not follow_links and outside_link(path, bids_dir):
            if path.is_symlink():  # reported once, at the link itself; what lies behind it is not looked at
                tasks.append(FileTask(path, None, "unknown", note="symbolic link out of the input: not followed"))
            continue
        inner = path.relative_to(root).parts
        if any(is_folder_format(p) for p in inner[:-1]):
            continue  # inside a recording stored as a folder: handled with the folder
        if path.is_dir() and is_folder_format(path.name):
            rel = path.relative_to(bids_dir).as_posix()
            ses = re.search(r"(?:^|/)ses-([A-Za-z0-9]+)(?:/|$)", rel)
            if selected_sessions and ses and ses.group(1) not in selected_sessions:
                continue
            if not bids_name(path.name, subject):
                tasks.append(FileTask(path, None, "unknown", note="not a BIDS file name (no sub- entity first)"))
            else:
                tasks.append(FileTask(path, relabel_rel(rel, subject, new_subject, sessions), "format"))
            continue
        if path.is_dir() or path.name.startswith("."):
            if path.is_file():
                tasks.append(FileTask(path, None, "unknown"))
            continue
        rel = path.relative_to(bids_dir).as_posix()
        ses = re.search(r"(?:^|/)ses-([A-Za-z0-9]+)(?:/|$)", rel)
        if selected_sessions and ses and ses.group(1) not in selected_sessions:
            continue
        kind, needs_deface = classify(rel)
        if kind == "unknown" and bids_name(path.name, subject):
            kind = "format"  # the format registry decides: scrubbed and carried, or withheld with a reason
        if kind not in ("unknown", "companion") and not bids_name(path.name, subject):
            tasks.append(FileTask(path, None, "unknown", note="not a BIDS file name (no sub- entity first)"))
            continue
        out = None if kind == "unknown" else relabel_rel(rel, subject, new_subject, sessions)
        if gzip_images and out is not None and out.endswith(".nii"):
            out += ".gz"
        tasks.append(FileTask(path, out, kind, needs_deface and deface))
    src_root = bids_dir / "sourcedata"
    if src_root.is_dir():
        for path in sorted(src_root.rglob("*")):
            if not path.is_file() or not follow_links and outside_link(path, bids_dir):
                continue  # links out of the input are never followed
            rel = path.relative_to(src_root).as_posix()
            if not any(p == f"sub-{subject}" or p.startswith(f"sub-{subject}_") for p in rel.split("/")):
                continue
            tasks.append(FileTask(path, None, "source"))
    return tasks


def root_files(bids_dir: Path) -> tuple[list[Path], list[Path]]:
    """(dataset-level files we handle, files/folders we leave out) at the top of a dataset."""
    handled, left_out = [], []
    for path in sorted(bids_dir.iterdir()):
        name = path.name
        if path.is_symlink() and outside_link(path, bids_dir):
            left_out.append(path)  # never followed out of the input
            continue
        if path.is_dir():
            if name == "phenotype":
                handled += sorted(p for p in path.iterdir() if p.suffix in (".tsv", ".json")
                                  and not (p.is_symlink() and outside_link(p, bids_dir)))
            elif not name.startswith("sub-"):
                left_out.append(path)
            continue
        if name in ("dataset_description.json", "participants.tsv", "participants.json") or ROOT_TEXT.match(name):
            handled.append(path)
        elif name.endswith(".json") or name.endswith("_events.tsv"):
            handled.append(path)
        else:
            left_out.append(path)
    return handled, left_out


@dataclass(frozen=True)
class Relabel:
    """Every subject and session label of a dataset, old -> new, applied to any string.

    Cross-subject references (``AssociatedEmptyRoom`` naming ``sub-emptyroom``,
    ``bids::sub-02/...`` URIs, ``.bidsignore`` patterns) are relabelled like the
    subject's own paths. A ``ses-`` label takes the map of the last ``sub-`` label seen
    before it in the string; with none, a session label that maps the same way in every
    subject (or the subject given) is replaced.
    """

    subjects: dict[str, str]
    sessions: dict[str, dict[str, str]]
    stimuli: dict[str, str] = field(default_factory=dict)  # stimulus path holding a label -> its new path

    def __call__(self, value: str, subject: str | None = None) -> str:
        """``value`` relabelled; ``subject`` (original label) owns ``ses-`` labels met before any ``sub-``."""
        if self.stimuli:
            value = self._stimulus_pattern.sub(lambda m: self._stimulus_names[m[0]], value)
        if "sub-" not in value and "ses-" not in value:
            return value
        current: list[str | None] = [subject]

        def one(m: re.Match) -> str:
            kind, label = m[1], m[2]
            if kind == "sub":
                current[0] = label
                return f"sub-{self.subjects.get(label, label)}"
            if current[0] is not None and current[0] in self.sessions:
                return f"ses-{self.sessions[current[0]].get(label, label)}"
            return f"ses-{self.unambiguous_sessions().get(label, label)}"

        return self._pattern.sub(one, value)

    @cached_property
    def _pattern(self) -> re.Pattern:
        """``sub-``/``ses-`` labels: the dataset's own first (longest first, so labels that are
        not valid BIDS, with dashes, are found whole), then any alphanumeric label."""
        known = sorted({*self.subjects, *(s for m in self.sessions.values() for s in m)}, key=len, reverse=True)
        alts = "|".join(re.escape(k) for k in known if k)
        label = f"(?:{alts}|[A-Za-z0-9]+)" if alts else "[A-Za-z0-9]+"
        return re.compile(rf"(?<![A-Za-z0-9])(sub|ses)-({label})(?![A-Za-z0-9])")

    @cached_property
    def _stimulus_names(self) -> dict[str, str]:
        """Each renamed stimulus by its path under ``stimuli/`` and, where that alone is unique, its file name."""
        names = dict(self.stimuli)
        base: dict[str, set[str]] = {}
        for old, new in self.stimuli.items():
            base.setdefault(old.rsplit("/", 1)[-1], set()).add(new.rsplit("/", 1)[-1])
        for old, new in base.items():
            if len(new) == 1 and old not in names:
                names[old] = next(iter(new))
        return names

    @cached_property
    def _stimulus_pattern(self) -> re.Pattern:
        alts = "|".join(re.escape(k) for k in sorted(self._stimulus_names, key=len, reverse=True))
        return re.compile(rf"(?<![A-Za-z0-9_.-])(?:{alts})(?![A-Za-z0-9_-])")

    def unambiguous_sessions(self) -> dict[str, str]:
        seen: dict[str, set[str]] = {}
        for m in self.sessions.values():
            for old, new in m.items():
                seen.setdefault(old, set()).add(new)
        return {old: next(iter(new)) for old, new in seen.items() if len(new) == 1}




def stimulus_renames(bids_dir: Path, subjects: dict[str, str]) -> dict[str, str]:
    """Paths under ``stimuli/`` whose names hold an original subject label, old -> new.

    Stimuli recorded per person are often named after the person's code (``stimuli/cm4_audio.wav``,
    pointed at by ``stim_file`` in that subject's events): the label is replaced by the pseudonym
    wherever it is a whole name token (between non-alphanumerics). Labels of digits only
    (``01``) are left alone: stimulus numbering uses the same tokens and they identify no one.
    """
    root = bids_dir / "stimuli"
    labels = {old.lower(): new for old, new in subjects.items()
              if old != new and re.search(r"[A-Za-z]", old) and len(old) >= 2}
    if not labels or not root.is_dir():
        return {}
    files = [p for p in sorted(root.rglob("*")) if p.is_file() and not (p.is_symlink() and outside_link(p, bids_dir))]
    out: dict[str, str] = {}
    for path in files:
        rel = path.relative_to(root).as_posix()
        new = re.sub(r"[A-Za-z0-9]+", lambda m: labels.get(m[0].lower(), m[0]), rel)
        if new != rel:
            out[rel] = new
    staying = {p.relative_to(root).as_posix() for p in files} - set(out)
    targets = list(out.values())
    # never two stimuli onto one name
    return {old: new for old, new in out.items() if targets.count(new) == 1 and new not in staying}
