"""The run's settings: one frozen object, built once, saved as a file and loaded back.

The participant stage records the settings it ran with in the private dir
(``run-settings.json``, see :mod:`bids_deid.record`); SLURM tasks and the group step load
that file instead of rebuilding command-line flags, so every part of a run behaves alike.
The key travels by path and fingerprint only: its bytes are never written anywhere.

Default locations live here and nowhere else: the private dir is ``OUTPUT_DIR-private``
beside the output, the work dir is ``PRIVATE_DIR/work``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .errors import BidsDeidError
from .profiles import Profile

FORMAT = 1

#: settings that change what is written for a file: a rerun into the same output must match them
OUTPUT_CHANGING = ("profile_sha256", "deface_method", "template", "template_sha256", "write_defacemask",
                   "sourcedata", "input_type", "heuristic", "heuristic_sha256", "skip_series_policy",
                   "clean_pixels", "dataset_type", "key_fingerprint")
#: command-line option for each output-changing setting (for one-line messages)
OPTION = {"profile_sha256": "--profile", "deface_method": "--deface-method", "template": "--template",
          "template_sha256": "--template", "write_defacemask": "--write-defacemask", "sourcedata": "--sourcedata",
          "input_type": "--input-type", "heuristic": "--heuristic", "heuristic_sha256": "--heuristic",
          "skip_series_policy": "--skip-series-policy", "clean_pixels": "--clean-pixels",
          "dataset_type": "--dataset-type", "key_fingerprint": "--key-file"}


class SettingsError(BidsDeidError):
    """A settings file is unreadable, or does not fit this run."""


@dataclass(frozen=True)
class Settings:
    """Everything a run needs; built once (by the CLI or from a file), handed to every stage."""

    bids_dir: Path
    output_dir: Path
    private_dir: Path
    work_dir: Path
    analysis_level: str
    profile: Profile
    key: bytes = field(repr=False)
    participants: tuple[str, ...] | None = None
    sessions: tuple[str, ...] | None = None
    n_cpus: int = 1
    skip_validation: bool = False
    dataset_type: str = "raw"
    dry_run: bool = False
    verbose: bool = False
    deface_method: str = "template"
    template: str | None = None
    write_defacemask: bool = False
    sourcedata: str = "dicom"
    input_type: str = "bids"
    heuristic: Path | None = None
    skip_series_policy: str = "sourcedata"  # raw input: series without a BIDS name -> sourcedata | drop
    progress: bool = True
    labels_pseudonymized: bool = False  # raw input: staging labels are already pseudonyms
    gzip_images: bool = False  # raw input: staged (uncompressed) .nii images are written as .nii.gz
    clean_pixels: bool = False  # OCR + blackout of burned-in text instead of leaving such DICOM out
    license: str | None = None  # dataset_description License (else the input's)
    authors: tuple[str, ...] | None = None  # dataset_description Authors (else the input's)
    profile_spec: str = "basic"  # what --profile said (a shipped name or an absolute path)
    key_file: Path | None = None  # where the key came from (None: $BIDS_DEID_KEY)
    bids_validator_config: Path | None = None  # --bids-validator-config: passed to every validator call
    run_id: str = ""  # id of the recorded settings this run writes with (see bids_deid.record)


# ------------------------------------------------------------------ default locations
def default_private_dir(output_dir: Path) -> Path:
    """``OUTPUT_DIR-private``, beside the output (never inside it)."""
    out = Path(output_dir).absolute()
    return out.with_name(out.name + "-private")


def default_work_dir(private_dir: Path) -> Path:
    return Path(private_dir).absolute() / "work"


def locations(output_dir: Path, private_dir: Path | None, work_dir: Path | None) -> tuple[Path, Path, Path]:
    """Absolute (output, private, work) with the defaults filled in."""
    out = Path(output_dir).absolute()
    private = Path(private_dir).absolute() if private_dir else default_private_dir(out)
    work = Path(work_dir).absolute() if work_dir else default_work_dir(private)
    return out, private, work


# ------------------------------------------------------------------ identity of the settings
def file_sha256(path: str | Path | None) -> str | None:
    """sha256 of a file given by path, None when ``path`` is not a file (a TemplateFlow ID, 'reproin')."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        return None
    return hashlib.sha256(p.read_bytes()).hexdigest()


def profile_sha256(profile: Profile) -> str:
    """sha256 of the effective profile (every rule, not where it was read from)."""
    fields = {f.name: getattr(profile, f.name) for f in dataclasses.fields(profile) if f.name not in ("raw", "source")}
    text = json.dumps(fields, sort_keys=True, default=lambda o: dataclasses.asdict(o)
                      if dataclasses.is_dataclass(o) else str(o))
    return hashlib.sha256(text.encode()).hexdigest()


def to_record(s: Settings) -> dict:
    """The settings as a JSON-able dict: paths as text, the key by path and fingerprint only."""
    from .pseudonym import key_fingerprint

    rec = {
        "format": FORMAT,
        "tool_version": __version__,
        "bids_dir": str(s.bids_dir), "output_dir": str(s.output_dir), "private_dir": str(s.private_dir),
        "work_dir": str(s.work_dir),
        "key_file": str(s.key_file) if s.key_file else None,
        "key_fingerprint": key_fingerprint(s.key),
        "profile": s.profile_spec, "profile_name": s.profile.name, "profile_sha256": profile_sha256(s.profile),
        "deface_method": s.deface_method,
        "template": s.template, "template_sha256": file_sha256(s.template),
        "write_defacemask": s.write_defacemask, "sourcedata": s.sourcedata, "input_type": s.input_type,
        "heuristic": str(s.heuristic) if s.heuristic else None, "heuristic_sha256": file_sha256(s.heuristic),
        "skip_series_policy": s.skip_series_policy, "clean_pixels": s.clean_pixels,
        "dataset_type": s.dataset_type,
        "sessions": list(s.sessions) if s.sessions else None,
        "skip_validation": s.skip_validation,
        "license": s.license, "authors": list(s.authors) if s.authors else None,
        "bids_validator_config": str(s.bids_validator_config) if s.bids_validator_config else None,
    }
    rec["settings_id"] = settings_id(rec)
    return rec


def settings_id(rec: dict) -> str:
    """Short hash of the output-changing part of a record: equal ids, equal outputs."""
    part = {k: rec.get(k) for k in OUTPUT_CHANGING}
    return hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()[:16]


def differences(old: dict, new: dict) -> list[str]:
    """Output-changing settings that differ, as ``--option: old -> new`` (the key by fingerprint only)."""
    out = []
    for k in OUTPUT_CHANGING:
        if k.endswith("_sha256") and k != "profile_sha256" and old.get(k[: -len("_sha256")]) != new.get(
                k[: -len("_sha256")]):
            continue  # the path differs already: said once
        if old.get(k) != new.get(k):
            if k == "profile_sha256":
                out.append(f"--profile: {old.get('profile')!s} (sha256 {str(old.get(k))[:8]}) -> "
                           f"{new.get('profile')!s} (sha256 {str(new.get(k))[:8]})")
            elif k == "key_fingerprint":
                out.append("--key-file: another key")
            elif k.endswith("_sha256"):
                out.append(f"{OPTION[k]}: the file's content changed")
            else:
                out.append(f"{OPTION[k]}: {old.get(k)!s} -> {new.get(k)!s}")
    return out


# ------------------------------------------------------------------ save and load
def save(s: Settings, path: Path) -> dict:
    """Write the settings to ``path`` (JSON, mode 0600, atomic); returns the record written."""
    from .private import write_json

    rec = to_record(s)
    write_json(path, rec)
    return rec


def read(path: Path) -> dict:
    """A saved settings record (JSON, or TOML by the ``.toml`` suffix)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc.strerror or exc}") from exc
    try:
        if str(path).endswith(".toml"):
            import tomllib

            rec = tomllib.loads(raw.decode("utf-8"))
        else:
            rec = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SettingsError(f"settings file {path} is not valid JSON/TOML: {exc}") from exc
    if not isinstance(rec, dict) or rec.get("format") != FORMAT:
        raise SettingsError(f"settings file {path} is not a bids-deid settings file (format {FORMAT})")
    return rec


def from_record(rec: dict, *, analysis_level: str, key: bytes | None = None, **override) -> Settings:
    """Rebuild the settings of a record.

    The profile is loaded again and must hash as recorded; the key is read from the recorded
    file (or ``$BIDS_DEID_KEY``, or ``key``) and must have the recorded fingerprint.
    """
    from .profiles import load_profile
    from .pseudonym import key_fingerprint, load_key

    profile = load_profile(rec["profile"])
    if profile_sha256(profile) != rec.get("profile_sha256"):
        raise SettingsError(f"the profile {rec['profile']} changed since these settings were recorded; "
                            "restore it, or start again with a new output and private dir")
    key_file = Path(rec["key_file"]) if rec.get("key_file") else None
    if key is None:
        key = load_key(key_file)
    if key_fingerprint(key) != rec.get("key_fingerprint"):
        from .errors import KeyFileError

        raise KeyFileError("the key is not the one these settings were recorded with; use the same --key-file")
    for name, k in (("template", "template_sha256"), ("heuristic", "heuristic_sha256")):
        if rec.get(k) and file_sha256(rec.get(name)) != rec[k]:
            raise SettingsError(f"the {name} file {rec[name]} changed since these settings were recorded")
    values = dict(
        bids_dir=Path(rec["bids_dir"]), output_dir=Path(rec["output_dir"]), private_dir=Path(rec["private_dir"]),
        work_dir=Path(rec["work_dir"]), analysis_level=analysis_level, profile=profile, key=key,
        sessions=tuple(rec["sessions"]) if rec.get("sessions") else None,
        skip_validation=bool(rec.get("skip_validation")), dataset_type=rec["dataset_type"],
        deface_method=rec["deface_method"], template=rec.get("template"),
        write_defacemask=bool(rec["write_defacemask"]), sourcedata=rec["sourcedata"], input_type=rec["input_type"],
        heuristic=Path(rec["heuristic"]) if rec.get("heuristic") else None,
        skip_series_policy=rec["skip_series_policy"], clean_pixels=bool(rec["clean_pixels"]),
        license=rec.get("license"), authors=tuple(rec["authors"]) if rec.get("authors") else None,
        profile_spec=rec["profile"], key_file=key_file,
        bids_validator_config=Path(rec["bids_validator_config"]) if rec.get("bids_validator_config") else None,
    )
    values.update(override)
    return Settings(**values)


def load(path: Path, *, analysis_level: str, **override) -> Settings:
    """Settings from a file written by :func:`save`."""
    return from_record(read(path), analysis_level=analysis_level, **override)
