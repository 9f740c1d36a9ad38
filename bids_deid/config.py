"""The run's settings as one frozen dataclass, built from the CLI and the profile."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .profiles import Profile


@dataclass(frozen=True)
class Settings:
    """Everything a run needs; built once by the CLI, handed to every stage."""

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
    clean_pixels: bool = False  # OCR + blackout of burned-in text instead of leaving such DICOM out
    license: str | None = None  # dataset_description License (else the input's)
    authors: tuple[str, ...] | None = None  # dataset_description Authors (else the input's)
