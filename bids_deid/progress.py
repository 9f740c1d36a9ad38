"""Progress bars for long loops: one line per participant on a terminal, nothing elsewhere.

A bar shows files done / total and the current stage ("defacing", "DICOM", ...). It is drawn
only when stderr is a terminal and the run asked for it, so logs, pipes, CI and SLURM job
files stay clean. ``BIDS_DEID_PROGRESS=0`` turns bars off, ``=1`` draws them on any stream.
Parallel runs draw one bar of participants done in the main process (workers draw none).
"""

from __future__ import annotations

import os
import sys
import threading
from typing import TextIO

from tqdm import tqdm

#: what the bar says while a task of each kind runs
STAGES = {
    "nifti": "header", "deface": "defacing", "sidecar": "sidecar", "coldict": "column dictionary",
    "dated_tsv": "table", "copy": "copy", "source": "DICOM", "convert": "convert", "companion": "convert",
    "format": "scrub", "unknown": "left out",
}


def wanted(requested: bool = True, stream: TextIO | None = None) -> bool:
    """Whether bars are drawn: ``requested`` and a terminal (or forced by the environment)."""
    env = os.environ.get("BIDS_DEID_PROGRESS", "").strip()
    if not requested or env == "0":
        return False
    if env == "1":
        return True
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced stream
        return False


class Bar:
    """A files-done / total bar with a stage; a no-op when not shown.

    Parameters
    ----------
    label : str
        What the bar counts for (``sub-<pseudonym>``, "raw input"); never an original identifier.
    total : int or None
        Number of steps; None draws only the stage and a running clock.
    show : bool
        Draw it (see :func:`wanted`).
    unit : str
        Name of one step.
    """

    def __init__(self, label: str, total: int | None, show: bool, unit: str = "file"):
        try:
            sized = os.get_terminal_size(sys.stderr.fileno()).columns > 0
        except (OSError, ValueError, AttributeError):
            sized = False
        # a terminal that reports no size (some pseudo-terminals) would get a bar cut to nothing
        self._bar = tqdm(total=total, desc=label, unit=unit, leave=False, dynamic_ncols=sized,
                         ncols=None if sized else 100, disable=not show, file=sys.stderr, mininterval=0.2,
                         bar_format="{desc}: {n_fmt}/{total_fmt} {unit}s |{bar:20}| [{elapsed}]{postfix}"
                         if total is not None else "{desc} [{elapsed}]")
        self._label, self._steps = label, total is not None
        self._stop = threading.Event()
        if show:  # keep the clock moving during a long step (defacing one image takes seconds)
            threading.Thread(target=self._tick, daemon=True).start()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self._bar.refresh()

    def stage(self, text: str) -> None:
        """Say what is being done now (redrawn at once)."""
        if self._steps:
            self._bar.set_postfix_str(text, refresh=True)
        else:
            self._bar.set_description_str(f"{self._label}: {text}", refresh=True)

    def step(self, n: int = 1) -> None:
        """Count ``n`` steps as done (the last one is always drawn)."""
        self._bar.update(n)
        if self._bar.total is not None and self._bar.n >= self._bar.total:
            self._bar.refresh()

    def each(self, items, stage=None):
        """Yield ``items``, showing ``stage(item)`` while each is worked on and counting it when done."""
        for item in items:
            if stage is not None:
                self.stage(stage(item))
            yield item
            self.step()

    def close(self) -> None:
        self._stop.set()
        self._bar.close()

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
