"""What a dataset needs before an OpenNeuro upload: License, Authors, a BIDSVersion the
validator knows, a public statement of the de-identification, diffusion files that count alike.

Pure helpers: they return values and texts; the group level writes them.
"""

from __future__ import annotations

import importlib.util
import re
from functools import lru_cache
from pathlib import Path

#: licence identifiers OpenNeuro shows; others are accepted but warned about
KNOWN_LICENSES = ("CC0", "PDDL", "CC-BY-4.0", "CC-BY-SA-4.0", "CC-BY-NC-4.0", "CC-BY-NC-SA-4.0", "ODbL", "ODC-By")


@lru_cache(maxsize=1)
def validator_bids_versions() -> tuple[str, ...]:
    """BIDS releases the installed bids-validator-deno knows (newest first); () if it cannot be read.

    Read from the schema bundled in the validator (its ``meta.versions`` list), so the output
    never claims a release the validator flags as UNKNOWN_BIDS_VERSION.
    """
    try:
        spec = importlib.util.find_spec("bids_validator_deno")
    except (ImportError, ValueError):
        return ()
    if spec is None or not spec.origin:
        return ()
    bundle = Path(spec.origin).with_name("bids-validator.js")
    try:
        data = bundle.read_bytes()  # 13 MB: searched as bytes (decoding it would triple the time)
    except OSError:
        return ()
    m = re.search(rb'versions:\s*\[((?:\s*"\d+\.\d+\.\d+"\s*,?)+)\]', data)
    return tuple(v.decode() for v in re.findall(rb'"(\d+\.\d+\.\d+)"', m.group(1))) if m else ()


def bids_version(original: str | None = None) -> str:
    """The BIDSVersion to write: the input's if the validator knows it, else the newest release both
    the validator and the installed BIDS schema know."""
    from .schema import bids_version as schema_version

    known = validator_bids_versions()
    if original and (not known or str(original) in known):
        return str(original)
    ours = schema_version()
    if not known or ours in known:
        return ours
    older = [v for v in known if _key(v) <= _key(ours)]
    return older[0] if older else known[0]


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version)[:3])


def publication_fields(license_: str | None, authors: tuple[str, ...] | None, original: dict) -> tuple[dict, list[str]]:
    """License and Authors for dataset_description (the command line's, else the input's) and warnings."""
    out: dict = {}
    warnings: list[str] = []
    lic = license_ or original.get("License")
    if lic:
        out["License"] = str(lic)
        if str(lic) not in KNOWN_LICENSES:
            warnings.append(f"License {lic!r} is not one OpenNeuro lists ({', '.join(KNOWN_LICENSES)}); "
                            "OpenNeuro publishes public datasets under CC0")
    else:
        warnings.append("no License: pass --license (OpenNeuro publishes public datasets under CC0)")
    auth = list(authors) if authors else original.get("Authors")
    if isinstance(auth, str):
        auth = [auth]
    if auth:
        out["Authors"] = [str(a) for a in auth]
    else:
        warnings.append("no Authors: pass --authors NAME [NAME ...] (OpenNeuro and DOI registration need them)")
    return out, warnings


def image_kinds(rels: list[str]) -> list[str]:
    """Kinds of images (``T1w``, ``FLAIR``, ...) with their counts, from public output names."""
    counts: dict[str, int] = {}
    for rel in rels:
        suffix = Path(rel).name.split(".")[0].rsplit("_", 1)[-1]
        counts[suffix] = counts.get(suffix, 0) + 1
    return [f"{n} {k}" for k, n in sorted(counts.items())]


def statement(version: str, profile: str, method: str, defaced: list[str], withheld: int) -> str:
    """Public README paragraph: how the data were de-identified and which images were defaced.

    ``defaced`` holds public output names only (pseudonymous); no identifier goes in.
    """
    lines = [
        "De-identification",
        "-----------------",
        f"These data were de-identified with bids-deid {version} (profile '{profile}'): subject labels",
        "are keyed pseudonyms, dates are shifted by a per-subject offset, header and sidecar fields that",
        "may identify a person were removed (names, IDs, institutions, free text, private DICOM tags,",
        "NIfTI extensions), and files the tool does not understand were left out.",
    ]
    if method == "none":
        lines.append("Faces were NOT removed (defacing was turned off): anatomical images may show the face.")
    elif defaced:
        how = ("skull stripping (only the brain kept)" if method == "skullstrip"
               else "a template face mask registered to each image and zeroed (no resampling)")
        lines.append(f"Defaced by {how}: {len(defaced)} image(s) ({', '.join(image_kinds(defaced))}):")
        lines += [f"  - {rel}" for rel in defaced]
    else:
        lines.append("No image needed defacing.")
    if withheld:
        lines.append(f"{withheld} file(s) were withheld because they could still identify a person (source DICOM of")
        lines.append("series whose pixels show the face, images whose defacing could not be confirmed).")
    return "\n".join(lines) + "\n"


def changes_entry(version: str, date: str, n_defaced: int) -> str:
    """A CHANGES entry (BIDS CPAN-changelog style) for the de-identified release."""
    return (f"{version} {date}\n"
            f"  - De-identified with bids-deid (pseudonymous labels, shifted dates, identifying fields removed)"
            f"{f'; {n_defaced} anatomical image(s) defaced' if n_defaced else ''}.\n")


def dwi_volume_problems(root: Path) -> list[str]:
    """Diffusion images whose .bval/.bvec do not count their volumes (VOLUME_COUNT_MISMATCH on OpenNeuro)."""
    import nibabel as nib

    problems = []
    for img in sorted(list(root.glob("sub-*/**/*_dwi.nii.gz")) + list(root.glob("sub-*/**/*_dwi.nii"))):
        rel = img.relative_to(root).as_posix()
        stem = img.name.split(".")[0]
        try:
            dim = nib.load(img).header["dim"]
        except Exception:  # noqa: BLE001 - a placeholder or unreadable image: the validator reports it
            continue
        if int(dim[0]) < 4:
            problems.append(f"{rel}: 3-D (validators count volumes on dim[4])")
            continue
        n = int(dim[4])
        for ext, rows in ((".bval", 1), (".bvec", 3)):
            side = img.with_name(stem + ext)
            if not side.is_file():
                continue
            lines = [ln.split() for ln in side.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
            if len(lines) != rows or any(len(ln) != n for ln in lines):
                problems.append(f"{rel}: {ext} has {[len(ln) for ln in lines]} values per row for {n} volume(s)")
    return problems
