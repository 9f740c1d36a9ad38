"""Checks made before anything is written: places, the defacing method, the input."""

from __future__ import annotations

import logging
import os

from .config import Settings
from .errors import BidsDeidError, InputError, OutputError
from .private import ensure_dir, write_json

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ set-up checks
def check_locations(s: Settings) -> None:
    """Refuse outputs inside the input, a private dir inside the output, unwritable places."""
    bids, out, priv = (p.resolve() for p in (s.bids_dir, s.output_dir, s.private_dir))
    if out == bids or bids in out.parents:
        raise OutputError("the output folder must not be inside the input folder")
    if out in bids.parents:
        raise OutputError("the input folder must not be inside the output folder")
    if priv == out or out in priv.parents:
        raise OutputError("the private dir must not be inside the public output folder")
    if priv == bids or bids in priv.parents:
        raise OutputError("the private dir must not be inside the input folder")
    work = s.work_dir.resolve()
    if work == out or out in work.parents:
        raise OutputError("the work dir must not be inside the public output folder (temp files would land there)")
    if work == bids or bids in work.parents:
        raise OutputError("the work dir must not be inside the input folder")
    for where in (out, priv, s.work_dir.resolve()):
        try:
            where.mkdir(parents=True, exist_ok=True)
            probe = where / f".bids-deid-tmp-probe-{os.getpid()}-{os.urandom(4).hex()}"  # parallel jobs
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise OutputError(f"cannot write to {where}: {exc.strerror or exc}") from exc
    ensure_dir(priv)
    if priv in work.parents or work == priv:
        ensure_dir(work)  # the default work dir: 0700 like the rest of the private side



def check_deface_method(s: Settings) -> None:
    """Refuse a defacing method that cannot run here, before anything is written."""
    if s.deface_method != "skullstrip":
        return
    try:
        from .deface.skullstrip import available
    except ImportError:
        reason = "it is not part of this installation"
    else:
        reason = available()
    if reason:
        raise BidsDeidError(f"--deface-method skullstrip cannot run: {reason}")


def validate_input(s: Settings) -> None:
    from .validate import run_validator

    res = run_validator(s.bids_dir, config=s.bids_validator_config)
    write_json(s.private_dir / "validator-input.json", res.report)
    if res.errors:
        raise InputError(
            f"the input is not valid BIDS: {res.errors} error(s) ({', '.join(res.codes[:5])}); "
            f"see {s.private_dir / 'validator-input.json'} or pass --skip-bids-validation"
        )


_DATATYPES = {"anat", "func", "dwi", "fmap", "perf", "eeg", "meg", "ieeg", "pet", "beh", "micr", "nirs", "motion"}


def input_kind(s: Settings) -> str:
    """'bids' or 'raw', from --input-type or by looking at the input."""
    if s.input_type in ("bids", "raw"):
        return s.input_type
    if not s.bids_dir.is_dir():
        raise InputError(f"input folder {s.bids_dir} does not exist")
    if (s.bids_dir / "dataset_description.json").is_file():
        return "bids"
    bids_like = sorted(p.parent.relative_to(s.bids_dir).as_posix() for p in s.bids_dir.glob("sub-*/*")
                       if p.is_dir() and (p.name in _DATATYPES or p.name.startswith("ses-")))
    if bids_like:  # a BIDS tree that lost its dataset_description.json is not raw scanner data
        raise InputError(f"{s.bids_dir} looks like a BIDS dataset ({bids_like[0]}/ has BIDS folders) but has no "
                         "dataset_description.json; add one, or pass --input-type raw if it is raw DICOM/twix")
    from .convert.detect import is_raw_input  # light: no pydicom/numpy before dcm2niix starts

    if is_raw_input(s.bids_dir):
        return "raw"
    raise InputError(f"{s.bids_dir} is neither a BIDS dataset (no dataset_description.json) nor raw DICOM/twix")

