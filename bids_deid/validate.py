"""Run the BIDS validator (bids-validator-deno from PyPI, offline) and count issues."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import BidsDeidError

log = logging.getLogger(__name__)


@dataclass
class ValidatorResult:
    errors: int
    warnings: int
    report: dict
    codes: list[str]


def _binary() -> str:
    here = Path(sys.executable).parent / "bids-validator-deno"
    found = str(here) if here.exists() else shutil.which("bids-validator-deno")
    if not found:
        raise BidsDeidError("bids-validator-deno is not installed (pip install bids-validator-deno)")
    return found


def run_validator(dataset: Path, timeout: int = 1800, config: Path | None = None) -> ValidatorResult:
    """Validate ``dataset``; returns counts and the parsed JSON report.

    ``config`` is a bids-validator configuration file (``--config``: issues to ignore or
    to raise), passed on as given so that input and output are judged the same way.
    """
    cmd = [_binary(), "--format", "json", "--max-rows", "-1"]
    if config is not None:
        if not Path(config).is_file():
            raise BidsDeidError(f"bids-validator config {config} does not exist")
        cmd += ["--config", str(config)]
    cmd.append(str(dataset))
    log.info("running the BIDS validator on %s", dataset.name)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        first = (proc.stderr or proc.stdout).strip().splitlines()[:1]
        raise BidsDeidError(f"the BIDS validator failed to run: {first[0] if first else 'no output'}") from exc
    issues = report.get("issues", {}).get("issues", [])
    errors = [i for i in issues if i.get("severity") == "error"]
    warnings = [i for i in issues if i.get("severity") == "warning"]
    codes = sorted({i.get("code", "?") for i in errors})
    return ValidatorResult(len(errors), len(warnings), report, codes)
